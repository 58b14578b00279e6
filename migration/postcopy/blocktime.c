/*
 * Postcopy, destination side: how long threads wait for pages that must
 * come from the source (capability postcopy-blocktime), as query-migrate
 * reports them with QEMU's names.
 *
 * The fault thread notes each remote fault (the faulting thread's id comes
 * with the fault, UFFD_FEATURE_THREAD_ID); whoever places the page resolves
 * its waiters.  A vCPU waits on one page at a time, so a vCPU's blocked
 * time is the sum of its waits, and the time all vCPUs are blocked at once
 * is tracked from the count of vCPUs waiting.  Faults served on the spot
 * (zero pages precopy already gave) are not counted: they never wait for
 * the network.
 */
#include <time.h>

#include "postcopy.h"

/* Latency buckets: [2^i, 2^(i+1)) microseconds, the last one open-ended. */
#define LATENCY_BUCKETS 24

typedef struct Waiter {
    int vcpu;                       /* -1: not a vCPU thread */
    int tid;
    int64_t since_ns;
} Waiter;

typedef struct VcpuWait {
    int tid;
    bool waiting;
    int64_t since_ns;
    uint64_t blocked_ns;
    uint64_t latency_ns, faults;
} VcpuWait;

struct PostcopyBlocktime {
    pthread_mutex_t lock;
    GHashTable *waits;              /* page key -> GArray of Waiter */
    int nvcpus;
    VcpuWait *vcpu;
    int nwaiting;                   /* vCPUs waiting now */
    int64_t all_since_ns;
    uint64_t all_blocked_ns;
    uint64_t latency_ns, faults;
    uint64_t other_latency_ns, other_faults;
    uint64_t hist[LATENCY_BUCKETS];
};

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void free_waiters(gpointer p)
{
    g_array_free(p, TRUE);
}

PostcopyBlocktime *postcopy_blocktime_new(Machine *m)
{
    PostcopyBlocktime *bt = g_new0(PostcopyBlocktime, 1);

    pthread_mutex_init(&bt->lock, NULL);
    bt->waits = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, free_waiters);
    bt->nvcpus = machine_ncpus(m);
    bt->vcpu = g_new0(VcpuWait, bt->nvcpus);
    /* The vCPU threads exist (parked) before the stream is loaded. */
    for (int i = 0; i < bt->nvcpus; i++) {
        bt->vcpu[i].tid = cpu_thread_id(machine_cpu(m, i));
    }
    return bt;
}

void postcopy_blocktime_free(PostcopyBlocktime *bt)
{
    if (bt) {
        g_hash_table_unref(bt->waits);
        pthread_mutex_destroy(&bt->lock);
        g_free(bt->vcpu);
        g_free(bt);
    }
}

static int vcpu_of(PostcopyBlocktime *bt, int tid)
{
    for (int i = 0; tid && i < bt->nvcpus; i++) {
        if (bt->vcpu[i].tid == tid) {
            return i;
        }
    }
    return -1;
}

void postcopy_blocktime_fault(PostcopyBlocktime *bt, uint64_t key, int tid)
{
    int64_t now = now_ns();
    Waiter w = { .vcpu = vcpu_of(bt, tid), .tid = tid, .since_ns = now };
    GArray *list;

    pthread_mutex_lock(&bt->lock);
    list = g_hash_table_lookup(bt->waits, &key);
    if (!list) {
        list = g_array_new(FALSE, FALSE, sizeof(Waiter));
        g_hash_table_insert(bt->waits, g_memdup2(&key, sizeof(key)), list);
    }
    for (guint i = 0; i < list->len; i++) {
        if (g_array_index(list, Waiter, i).tid == tid) {
            goto out;           /* the same wait, faulting again */
        }
    }
    g_array_append_val(list, w);
    if (w.vcpu >= 0 && !bt->vcpu[w.vcpu].waiting) {
        bt->vcpu[w.vcpu].waiting = true;
        bt->vcpu[w.vcpu].since_ns = now;
        if (++bt->nwaiting == bt->nvcpus) {
            bt->all_since_ns = now;
        }
    }
out:
    pthread_mutex_unlock(&bt->lock);
}

static void resolve(PostcopyBlocktime *bt, const Waiter *w, int64_t now)
{
    uint64_t lat = now - w->since_ns;
    int bucket = 0;

    for (uint64_t us = lat / 1000; us > 1 && bucket < LATENCY_BUCKETS - 1; us >>= 1) {
        bucket++;
    }
    bt->hist[bucket]++;
    bt->latency_ns += lat;
    bt->faults++;
    if (w->vcpu < 0) {
        bt->other_latency_ns += lat;
        bt->other_faults++;
        return;
    }
    bt->vcpu[w->vcpu].latency_ns += lat;
    bt->vcpu[w->vcpu].faults++;
    if (bt->vcpu[w->vcpu].waiting) {
        bt->vcpu[w->vcpu].waiting = false;
        bt->vcpu[w->vcpu].blocked_ns += now - bt->vcpu[w->vcpu].since_ns;
        if (bt->nwaiting-- == bt->nvcpus) {
            bt->all_blocked_ns += now - bt->all_since_ns;
        }
    }
}

void postcopy_blocktime_placed(PostcopyBlocktime *bt, uint64_t key)
{
    int64_t now = now_ns();
    GArray *list;

    pthread_mutex_lock(&bt->lock);
    list = g_hash_table_lookup(bt->waits, &key);
    for (guint i = 0; list && i < list->len; i++) {
        resolve(bt, &g_array_index(list, Waiter, i), now);
    }
    if (list) {
        g_hash_table_remove(bt->waits, &key);
    }
    pthread_mutex_unlock(&bt->lock);
}

static uint64_t avg(uint64_t sum, uint64_t n)
{
    return n ? sum / n : 0;
}

void postcopy_blocktime_info(PostcopyBlocktime *bt, MigrationInfo *info)
{
    int64_t now = now_ns();
    uint64_t all;
    uint32List **vb = &info->postcopy_vcpu_blocktime;
    uint64List **vl = &info->postcopy_vcpu_latency, **dist = &info->postcopy_latency_dist;

    pthread_mutex_lock(&bt->lock);
    /* A wait still going on counts up to now. */
    all = bt->all_blocked_ns + (bt->nwaiting == bt->nvcpus ? now - bt->all_since_ns : 0);
    info->has_postcopy_blocktime = true;
    info->postcopy_blocktime = MIN(all / 1000000, UINT32_MAX);
    info->has_postcopy_vcpu_blocktime = true;
    info->has_postcopy_vcpu_latency = true;
    for (int i = 0; i < bt->nvcpus; i++) {
        const VcpuWait *v = &bt->vcpu[i];
        uint64_t ns = v->blocked_ns + (v->waiting ? now - v->since_ns : 0);

        *vb = g_new0(uint32List, 1);
        (*vb)->value = MIN(ns / 1000000, UINT32_MAX);
        vb = &(*vb)->next;
        *vl = g_new0(uint64List, 1);
        (*vl)->value = avg(v->latency_ns, v->faults);
        vl = &(*vl)->next;
    }
    info->has_postcopy_latency = true;
    info->postcopy_latency = avg(bt->latency_ns, bt->faults);
    info->has_postcopy_non_vcpu_latency = true;
    info->postcopy_non_vcpu_latency = avg(bt->other_latency_ns, bt->other_faults);
    info->has_postcopy_latency_dist = true;
    for (int i = 0; i < LATENCY_BUCKETS; i++) {
        *dist = g_new0(uint64List, 1);
        (*dist)->value = bt->hist[i];
        dist = &(*dist)->next;
    }
    pthread_mutex_unlock(&bt->lock);
}
