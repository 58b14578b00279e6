/*
 * Injected faults (tests/faults/): the stopped save (plain stream and
 * mapped-ram), the background snapshot with writer threads as the guest,
 * and the loads (plain stream, mapped-ram eager, lazy restore) meet EINTR,
 * short reads and writes, ENOSPC and EIO at seeded random points, and an
 * exec: child is SIGKILLed mid-save.  Over unix: and tcp: sockets
 * (tests/faults/socket-cases.c) the stopped and background saves and the
 * stream load meet EINTR, EAGAIN, short calls, ECONNRESET and EPIPE, and a
 * peer process that is SIGKILLed, resets or shuts the connection down
 * mid-stream.  This file is also the harness both share (harness.h).  What
 * a user would check:
 *
 *   - EINTR, EAGAIN and short I/O are retried: the result is byte for byte
 *     the result without them;
 *   - ENOSPC and EIO fail the save or load with a message naming them, and
 *     so do ECONNRESET, EPIPE and a peer that went away;
 *   - the guest keeps running: its writers advance during and after every
 *     save, and its RAM holds what they wrote (the wave: one edge per
 *     partition, at the position each writer recorded);
 *   - no page is left write-protected, no range registered with
 *     userfaultfd;
 *   - a load gives the saved RAM or an error, never something else; a lazy
 *     restore that cannot read a page reports it, and every page a vCPU
 *     saw meanwhile was the saved one; a stream load from a socket that
 *     failed left every page saved or as it was, but for the one it was
 *     reading into (zeroed);
 *   - a socket case leaves no descriptor open behind it.
 *
 * Each scenario first runs once without faults, counting the calls and
 * bytes its I/O makes, then picks its cases' injection points within them.
 * Every case prints its plan; AMBER_FAULTS_SEED, AMBER_FAULTS_CASES and
 * AMBER_FAULTS_ONLY (see docs/devel/fault-injection.md) replay or narrow it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <glib.h>

#include "faults.h"
#include "harness.h"
#include "peer.h"
#include "migration/bg-engine.h"
#include "migration/channel.h"
#include "migration/lazy-restore.h"
#include "migration/mapped-ram.h"
#include "migration/write-behind.h"
#include "test-ram-helpers.h"
#include "util/cutils.h"
#include "util/uffd.h"

#define PROGRESS_GAP_S  5               /* a writer that does not advance in this is stuck */

/* ---- the run's settings ----------------------------------------------------------------- */

Settings settings;

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *v = g_getenv(name);

    return v && *v ? g_ascii_strtoull(v, NULL, 0) : dflt;
}

uint64_t case_seed(const char *scenario, int i)
{
    return settings.only ? settings.only :
           fault_mix(fault_mix(settings.seed ^ fault_mix(g_str_hash(scenario))) + i);
}

int case_count(int dflt)
{
    return settings.only ? 1 : settings.cases ? settings.cases : dflt;
}

/* ---- blocks ------------------------------------------------------------------------------- */

void blocks_new(Blocks *b, RamBackendKind kind)
{
    test_blocks_new(b, kind, MAIN_SIZE, ROM_SIZE);
}

void blocks_free(Blocks *b)
{
    test_blocks_free(b);
}

/* Data pages, zero pages written, and pages never touched, from first on. */
void fill(RAMBlock *rb, uint64_t first, unsigned salt)
{
    for (uint64_t p = first; p < rb->used_length / PAGE; p++) {
        uint64_t v = p * 1000 + salt;

        if (p % 7 == 3) {
            memset(rb->host + p * PAGE, 0, PAGE);
            continue;
        }
        if (p % 3 == 0 || (p / 32) % 5 == 4) {
            continue;
        }
        for (unsigned i = 0; i < PAGE; i += 8) {
            memcpy(rb->host + p * PAGE + i, &v, sizeof(v));
        }
    }
}

/* The first page where a and b differ, or -1. */
static int64_t first_diff(const uint8_t *a, const uint8_t *b, uint64_t len)
{
    for (uint64_t p = 0; p < len / PAGE; p++) {
        if (memcmp(a + p * PAGE, b + p * PAGE, PAGE)) {
            return p;
        }
    }
    return -1;
}

void assert_blocks_equal(const Blocks *a, const Blocks *b, const char *what)
{
    for (int i = 0; i < 2; i++) {
        int64_t p = first_diff(a->rb[i]->host, b->rb[i]->host, a->rb[i]->used_length);

        if (p >= 0) {
            g_error("%s: block %s page %" PRId64 " differs", what, a->rb[i]->idstr, p);
        }
    }
}

/* ---- what must not be left behind --------------------------------------------------------- */

/*
 * Whether a mapping overlapping [host, host + len) is registered with a
 * userfaultfd: smaps lists "um" (missing), "uw" (write-protect) or "ui"
 * (minor) among its VmFlags.  Read a line at a time: under the sanitizers
 * the file runs to megabytes.
 */
static bool uffd_registered(const void *host, uint64_t len)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    uintptr_t lo = (uintptr_t)host, hi = lo + len;
    char *line = NULL;
    size_t cap = 0;
    bool in = false, found = false;

    g_assert_nonnull(f);
    while (!found && getline(&line, &cap, f) > 0) {
        unsigned long s, e;

        if (g_ascii_isxdigit(line[0]) && sscanf(line, "%lx-%lx ", &s, &e) == 2) {
            in = s < hi && lo < e;
        } else if (in && g_str_has_prefix(line, "VmFlags:")) {
            found = strstr(line, " um") || strstr(line, " uw") || strstr(line, " ui");
        }
    }
    free(line);
    fclose(f);
    return found;
}

void assert_released(const Blocks *b, const char *what)
{
    for (int i = 0; i < 2; i++) {
        const RAMBlock *rb = b->rb[i];

        if (pagemap_any_wp(0, (uintptr_t)rb->host, rb->used_length, &error_abort)) {
            g_error("%s: block %s has pages still write-protected", what, rb->idstr);
        }
        if (uffd_registered(rb->host, rb->used_length)) {
            g_error("%s: block %s is still registered with a userfaultfd", what, rb->idstr);
        }
    }
}

/* ---- the guest: the wave ------------------------------------------------------------------- */

/*
 * The store a vCPU makes.  Not instrumented under ThreadSanitizer: guest
 * writes happen inside KVM, unseen by it, and are ordered against the
 * snapshot's copies by write protection, which it cannot see either.
 */
__attribute__((no_sanitize("thread"), noinline))
static void guest_store(uint8_t *page, uint64_t stamp, uint64_t *progress, uint64_t pass,
                        uint64_t index)
{
    *(volatile uint64_t *)page = stamp;
    *(volatile uint64_t *)(page + PAGE - 8) = stamp;
    *(volatile uint64_t *)&progress[0] = pass;
    *(volatile uint64_t *)&progress[1] = index;
}

static uint64_t stamp_of(int id, uint64_t pass, uint64_t i)
{
    return pass ? (uint64_t)id << 56 | pass << 32 | i : 0;
}

static void writer_park(Wave *w)
{
    pthread_mutex_lock(&w->lock);
    w->parked++;
    pthread_cond_broadcast(&w->cond);
    while (__atomic_load_n(&w->pause_req, __ATOMIC_ACQUIRE)) {
        pthread_cond_wait(&w->cond, &w->lock);
    }
    w->parked--;
    pthread_mutex_unlock(&w->lock);
}

static void *writer_fn(void *opaque)
{
    Writer *wr = opaque;
    Wave *w = wr->w;
    uint8_t *part = w->base + (1 + wr->id * PART_PAGES) * PAGE;
    uint64_t *progress = (uint64_t *)(w->base + wr->id * 64);

    for (uint64_t pass = 1;; pass++) {
        for (uint64_t i = 0; i < PART_PAGES; i++) {
            if (__atomic_load_n(&w->pause_req, __ATOMIC_ACQUIRE)) {
                writer_park(w);
            }
            if (__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
                return NULL;
            }
            guest_store(part + i * PAGE, stamp_of(wr->id, pass, i), progress, pass, i);
            __atomic_fetch_add(&wr->pages, 1, __ATOMIC_RELAXED);
            /* Leave the saver and the fault threads some of the two cores. */
            if (i % 32 == 31) {
                g_usleep(20);
            }
        }
    }
}

void wave_start(Wave *w, uint8_t *base)
{
    memset(w, 0, sizeof(*w));
    w->base = base;
    memset(base, 0, (1 + NWRITERS * PART_PAGES) * PAGE);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    for (int i = 0; i < NWRITERS; i++) {
        w->writers[i] = (Writer){ .w = w, .id = i };
        pthread_create(&w->writers[i].tid, NULL, writer_fn, &w->writers[i]);
    }
}

static void wave_pause(Wave *w)
{
    pthread_mutex_lock(&w->lock);
    __atomic_store_n(&w->pause_req, 1, __ATOMIC_RELEASE);
    while (w->parked < NWRITERS) {
        pthread_cond_wait(&w->cond, &w->lock);
    }
    pthread_mutex_unlock(&w->lock);
}

static void wave_resume(Wave *w)
{
    pthread_mutex_lock(&w->lock);
    __atomic_store_n(&w->pause_req, 0, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

void wave_stop(Wave *w)
{
    __atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
    wave_resume(w);
    for (int i = 0; i < NWRITERS; i++) {
        pthread_join(w->writers[i].tid, NULL);
    }
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
}

/* The wave invariant over a copy of pc.ram (or pc.ram with the writers parked). */
static void wave_check(const uint8_t *mem, const char *what)
{
    for (int id = 0; id < NWRITERS; id++) {
        const uint64_t *progress = (const uint64_t *)(mem + id * 64);
        const uint8_t *part = mem + (1 + id * PART_PAGES) * PAGE;

        for (uint64_t i = 0; i < PART_PAGES; i++) {
            uint64_t pass = i <= progress[1] ? progress[0] : progress[0] - 1;
            uint64_t want = progress[0] ? stamp_of(id, pass, i) : 0, head, tail;

            memcpy(&head, part + i * PAGE, 8);
            memcpy(&tail, part + i * PAGE + PAGE - 8, 8);
            if (head != want || tail != want) {
                g_error("%s: writer %d page %" PRIu64 " holds %016" PRIx64 "/%016" PRIx64
                        ", the wave at pass %" PRIu64 " index %" PRIu64 " wants %016" PRIx64,
                        what, id, i, head, tail, progress[0], progress[1], want);
            }
        }
    }
}

/* Every writer stores again within PROGRESS_GAP_S: none is stuck on a fault. */
static void wave_assert_running(Wave *w, const char *what)
{
    uint64_t before[NWRITERS];
    gint64 deadline = g_get_monotonic_time() + PROGRESS_GAP_S * G_USEC_PER_SEC;

    for (int i = 0; i < NWRITERS; i++) {
        before[i] = __atomic_load_n(&w->writers[i].pages, __ATOMIC_RELAXED);
    }
    for (int i = 0; i < NWRITERS; i++) {
        while (__atomic_load_n(&w->writers[i].pages, __ATOMIC_RELAXED) <= before[i]) {
            if (g_get_monotonic_time() > deadline) {
                g_error("%s: writer %d made no store in %d s", what, i, PROGRESS_GAP_S);
            }
            g_usleep(100);
        }
    }
}

/* ---- saving, as the migration thread does ---------------------------------------------- */

/* The engine's sink: as savers/background.c, the page into the stream or its place. */
static bool bg_put(void *opaque, RAMBlock *rb, uint64_t offset, const uint8_t *data,
                   Error **errp)
{
    SaveJob *j = opaque;

    ram_saver_put_page(j->rs, j->f, rb, offset, data, false);
    return qemu_file_check(j->f, errp);
}

static bool bg_setup(void *opaque, RamSaver *rs, QEMUFile *f, Error **errp)
{
    ram_saver_new_pass(rs);
    return true;
}

static int bg_fill(void *opaque, RamSaver *rs, QEMUFile *f, uint64_t max_pages, bool final,
                   Error **errp)
{
    SaveJob *j = opaque;
    int ret;

    if (j->ram_done) {
        return 1;
    }
    ret = bg_snapshot_run_step(j->ctx, max_pages, errp);
    j->ram_done = ret == 1;
    return ret;
}

static const RamPageSourceOps bg_source = {
    .part_pages = 4096,
    .setup = bg_setup,
    .fill = bg_fill,
};

/* The instant: writers parked, the reference taken, protection armed. */
static bool bg_instant(SaveJob *j, Error **errp)
{
    bool ok;

    wave_pause(j->wave);
    for (int i = 0; i < 2; i++) {
        memcpy(j->ref[i], j->src->rb[i]->host, j->src->rb[i]->used_length);
    }
    wave_check(j->ref[0], "the instant");
    ok = bg_snapshot_arm(j->ctx, errp);
    if (ok && j->check_registered) {
        g_assert_true(uffd_registered(j->src->rb[0]->host, MAIN_SIZE));
    }
    wave_resume(j->wave);
    return ok;
}

/* The RAM while the guest runs, then the tail (savers/background.c's order). */
static bool bg_save(SaveJob *j, SaveStateRegistry *r, Error **errp)
{
    BgSnapshotConfig cfg;
    bool ok;
    int ret;

    bg_snapshot_config_default(&cfg);
    cfg.chunk_bytes = 64 << 10;
    j->ram_done = false;
    j->ctx = bg_snapshot_new(j->src->l.blocks, j->src->l.nblocks, &cfg, bg_put, j, errp);
    if (!j->ctx) {
        return false;
    }
    ok = bg_instant(j, errp);
    while (ok && (ret = savevm_save_iterate(r, j->f, errp)) == 0) {
    }
    ok = ok && ret > 0 && savevm_save_complete(r, j->f, errp);
    if (!ok) {
        bg_snapshot_cancel(j->ctx);
    }
    bg_snapshot_disarm(j->ctx);
    bg_snapshot_free(j->ctx);
    j->ctx = NULL;
    return ok && savevm_save_tail(r, j->f, errp);
}

static bool stopped_save(SaveStateRegistry *r, QEMUFile *f, Error **errp)
{
    int ret;

    while ((ret = savevm_save_iterate(r, f, errp)) == 0) {
    }
    return ret > 0 && savevm_save_complete(r, f, errp) && savevm_save_tail(r, f, errp);
}

static bool save_register(SaveJob *j, RamSaver *rs, SaveStateRegistry *r, RamStopped **st,
                          Error **errp)
{
    if (j->kind == SAVE_BACKGROUND) {
        return ram_saver_register(rs, r, &bg_source, j, errp);
    }
    *st = ram_stopped_new();
    return ram_stopped_register(*st, rs, r, errp);
}

/* One save of j->src to j->uri, in migration.c's outgoing_run() steps. */
bool save_run(SaveJob *j, Error **errp)
{
    SaveStateRegistry *r = savevm_registry_new();
    RamSaver *rs = ram_saver_new(&j->src->l);
    MigrationIO io = { .saved_flags = -1 };
    MappedRamWriter *w = NULL;
    RamStopped *st = NULL;
    QEMUFile *f = NULL;
    Channel *ch;
    bool ok = false;

    ch = channel_open_outgoing(j->uri, NULL, NULL, errp);
    if (!ch) {
        goto out;
    }
    j->child = ch->child;
    j->fd = ch->fd;
    if (j->arm_on_open) {
        faults_target_fd(ch->fd);
        faults_arm(j->arm_on_open);
    }
    if (j->mapped) {
        w = mapped_ram_writer_new(ch->fd, &j->src->l, j->threads, false, errp);
        if (!w) {
            goto out;
        }
        ram_saver_set_mapped(rs, w);
    }
    if (!save_register(j, rs, r, &st, errp) || !migration_io_init(&io, ch->fd, -1, errp)) {
        goto out;
    }
    if (j->kind == SAVE_BACKGROUND && !j->mapped) {
        write_behind_init(&io.wb, io.fd);
    }
    f = migration_io_output(&io, j->uri);
    j->f = f;
    j->rs = rs;
    if (!savevm_save_head(r, f, savevm_stream_caps(j->mapped, false), errp)) {
        goto out;
    }
    qemu_fflush(f);
    ok = qemu_file_check(f, errp) &&
         (j->kind == SAVE_BACKGROUND ? bg_save(j, r, errp) : stopped_save(r, f, errp));
out:
    if (f) {
        qemu_fclose(f);
        write_behind_finish(&io.wb);
        migration_io_restore(&io);
    }
    mapped_ram_writer_free(w);
    /* As migration.c ends a save: a socket's peer has read it all. */
    if (ok) {
        ok = channel_wait_peer_close(ch, -1, 5000, errp);
    }
    if (ok) {
        ok = channel_close(ch, -1, errp);
    } else {
        channel_abort(ch);
    }
    savevm_registry_free(r);
    ram_stopped_free(st);
    ram_saver_free(rs);
    j->f = NULL;
    j->rs = NULL;
    j->fd = -1;
    return ok;
}

/* ---- loading ---------------------------------------------------------------------------- */

/* As a vCPU on a lazily restored guest: every page it reads must be the saved one. */
typedef struct Toucher {
    const RAMBlock *src, *dst;
    uint64_t seed;
    uint64_t wrong;                 /* neither the saved page nor zero */
    uint64_t zero;                  /* zero where the saved page is not */
} Toucher;

static void *toucher_fn(void *opaque)
{
    Toucher *t = opaque;
    uint64_t r = t->seed;

    for (int i = 0; i < 150; i++) {
        uint64_t p = (r = fault_mix(r)) % (t->src->used_length / PAGE);
        const uint8_t *d = t->dst->host + p * PAGE;

        if (memcmp(d, t->src->host + p * PAGE, PAGE)) {
            if (buffer_is_zero(d, PAGE)) {
                t->zero++;
            } else {
                t->wrong++;
            }
        }
    }
    return NULL;
}

/* Placed pages are as saved; a page never placed reads zero once unregistered. */
static void assert_saved_or_zero(const LoadJob *lj, const char *what)
{
    for (int b = 0; b < 2; b++) {
        const RAMBlock *s = lj->src->rb[b], *d = lj->dst->rb[b];

        for (uint64_t p = 0; p < s->used_length / PAGE; p++) {
            if (memcmp(d->host + p * PAGE, s->host + p * PAGE, PAGE) &&
                !buffer_is_zero(d->host + p * PAGE, PAGE)) {
                g_error("%s: block %s page %" PRIu64 " is neither the saved page nor zero",
                        what, s->idstr, p);
            }
        }
    }
}

/*
 * The pages still in the file: touchers read while both threads place,
 * then wait.  A failure leaves vCPUs waiting (the owner pauses the guest);
 * free() releases them onto zero pages.
 */
static bool lazy_run(LoadJob *lj, RamLoader *ls, int fd, const char *what, Error **errp)
{
    const MappedRamBlock *mbs[2] = { ram_loader_mapped_block(ls, 0),
                                     ram_loader_mapped_block(ls, 1) };
    LazyRestore *lr = lazy_restore_new(&lj->dst->l, fd, mbs, errp);
    Toucher t[2];
    pthread_t th[2];
    bool ok;

    if (!lr) {
        return false;
    }
    for (int i = 0; i < 2; i++) {
        t[i] = (Toucher){ .src = lj->src->rb[0], .dst = lj->dst->rb[0],
                          .seed = lj->seed + i };
        pthread_create(&th[i], NULL, toucher_fn, &t[i]);
    }
    lazy_restore_start(lr);
    ok = lazy_restore_wait(lr, errp);
    lazy_restore_free(lr);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        if (t[i].wrong || (ok && t[i].zero)) {
            g_error("%s: a vCPU read %" PRIu64 " wrong and %" PRIu64 " zero pages", what,
                    t[i].wrong, t[i].zero);
        }
    }
    if (!ok) {
        assert_saved_or_zero(lj, what);
    }
    return ok;
}

/* Load the stream on fd (named name) into lj->dst as incoming.c does; false with errp. */
bool load_fd(LoadJob *lj, int fd, const char *name, const char *what, Error **errp)
{
    SaveStateRegistry *r = savevm_registry_new();
    RamLoader *ls = ram_loader_new_memcpy(&lj->dst->l);
    MigrationIO io = { .saved_flags = -1 };
    SaveVMLoader *sl = NULL;
    QEMUFile *f = NULL;
    char *json = NULL;
    bool ok;

    ok = ram_loader_register(ls, r, errp) && migration_io_init(&io, fd, -1, errp);
    if (ok) {
        f = migration_io_input(&io, name);
        sl = savevm_loader_new(r, f, NULL);
        ok = savevm_loader_read_header(sl, errp);
    }
    if (ok && lj->mode != LOAD_STREAM) {
        g_assert_true(savevm_loader_has_capability(sl, MAPPED_RAM_CAPABILITY));
        ram_loader_set_map_image(ls, lj->mode == LOAD_MAP);
        ok = ram_loader_set_mapped(ls, fd, lj->threads, lj->mode == LOAD_LAZY, errp);
    }
    ok = ok && savevm_loader_run(sl, errp) == SAVEVM_LOAD_EOF &&
         savevm_loader_read_vmdesc(sl, &json, errp) && ram_loader_complete(ls, errp);
    ok = ok && (lj->mode != LOAD_LAZY || lazy_run(lj, ls, fd, what, errp));
    g_free(json);
    savevm_loader_free(sl);
    if (f) {
        qemu_fclose(f);
        migration_io_restore(&io);
    }
    ram_loader_free(ls);
    savevm_registry_free(r);
    return ok;
}

/* Load lj->path into lj->dst as incoming.c does for a file; false with errp. */
static bool load_run(LoadJob *lj, const char *what, Error **errp)
{
    int fd = open(lj->path, O_RDONLY | O_CLOEXEC);
    bool ok;

    g_assert_cmpint(fd, >=, 0);
    ok = load_fd(lj, fd, lj->path, what, errp);
    close(fd);
    return ok;
}

/* ---- plans and verdicts --------------------------------------------------------------- */

/*
 * A plan from seed within what the fault-free run counted: the kinds a
 * save or a load can meet, at a random counted call (or, for a disk
 * filling up, a random byte).
 */
static void plan_for(FaultPlan *p, uint64_t seed, bool saving, const FaultStats *count)
{
    static const FaultKind save_kinds[] = { FAULT_EINTR, FAULT_SHORT, FAULT_ENOSPC, FAULT_EIO };
    static const FaultKind load_kinds[] = { FAULT_EINTR, FAULT_SHORT, FAULT_EIO };
    uint64_t r = seed;

#define PICK(n) ((r = fault_mix(r)) % (n))
    *p = (FaultPlan){ .seed = seed };
    p->kind = saving ? save_kinds[PICK(4)] : load_kinds[PICK(3)];
    p->ops = saving ? FAULT_OP_WRITE : FAULT_OP_READ;
    p->times = 1 + PICK(3);
    p->sticky = PICK(2);
    if (saving && p->kind >= FAULT_ENOSPC && PICK(8) == 0) {
        /* Writeback that fails: the data went out, the close's fsync reports it. */
        p->ops = FAULT_OP_SYNC;
        p->at_call = 1;
    } else if (p->kind == FAULT_ENOSPC && PICK(3) == 0) {
        p->at_byte = PICK(MAX(count->bytes, 1));
    } else {
        p->at_call = 1 + PICK(MAX(count->calls, 1));
    }
#undef PICK
}

/*
 * What the user sees of a run under plan p: ENOSPC, EIO, ECONNRESET or
 * EPIPE that hit must fail it, naming the errno; anything else must
 * succeed.  True when it succeeded (the caller then checks the result).
 */
bool verdict(const FaultPlan *p, const FaultStats *st, bool ok, Error **err, const char *what,
             Tally *t)
{
    int e = fault_kind_errno(p->kind, p->ops);

    t->cases++;
    t->injected += st->hits > 0;
    if (st->hits && e) {
        if (ok) {
            g_error("%s: %s was injected %" PRIu64 " times, yet it succeeded", what,
                    strerror(e), st->hits);
        }
        if (!strstr(error_get_pretty(*err), g_strerror(e))) {
            g_error("%s: the error '%s' does not say '%s'", what, error_get_pretty(*err),
                    g_strerror(e));
        }
        t->failed++;
        g_clear_pointer(err, error_free);
        return false;
    }
    if (!ok) {
        g_error("%s: failed: %s", what, error_get_pretty(*err));
    }
    return true;
}

void tally_report(const char *scenario, const Tally *t)
{
    g_test_message("%s: %d cases, %d injected, %d failed as they must", scenario, t->cases,
                   t->injected, t->failed);
    g_assert_cmpint(t->injected, >=, t->cases / 2);
}

char *tmp_path(const char *name)
{
    g_autofree char *path = g_build_filename(settings.dir, name, NULL);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    g_assert_cmpint(fd, >=, 0);
    close(fd);
    return g_steal_pointer(&path);
}

static void target_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    g_assert_cmpint(fd, >=, 0);
    faults_target_fd(fd);
    close(fd);
}

/* ---- the stopped save -------------------------------------------------------------------- */

static void test_save_stopped(gconstpointer data)
{
    bool mapped = GPOINTER_TO_INT(data);
    const char *scenario = mapped ? "save/stopped/mapped-ram" : "save/stopped/stream";
    g_autofree char *path = tmp_path("save.img");
    g_autofree char *uri = g_strdup_printf("file:%s", path);
    g_autofree char *ref = NULL;
    FaultPlan count = { .kind = FAULT_COUNT, .ops = FAULT_OP_WRITE };
    SaveJob j = { .uri = uri, .kind = SAVE_STOPPED, .mapped = mapped, .threads = 2 };
    FaultStats counted;
    Tally t = { 0 };
    Blocks src;
    gsize ref_len;

    blocks_new(&src, RAM_BACKEND_RAM);
    fill(src.rb[0], 0, 1);
    fill(src.rb[1], 0, 2);
    j.src = &src;
    target_path(path);
    faults_arm(&count);
    g_assert_true(save_run(&j, &error_abort));
    counted = faults_disarm();
    g_assert_true(g_file_get_contents(path, &ref, &ref_len, NULL));
    for (int i = 0, n = case_count(mapped ? 50 : 60); i < n; i++) {
        uint64_t seed = case_seed(scenario, i);
        g_autofree char *plan_text = NULL, *what = NULL;
        g_autofree char *got = NULL;
        Error *err = NULL;
        FaultPlan p;
        FaultStats st;
        gsize len;
        bool ok;

        plan_for(&p, seed, true, &counted);
        j.threads = 1 + seed % 3;
        plan_text = fault_plan_describe(&p);
        what = g_strdup_printf("%s case %d: %s, %d threads", scenario, i, plan_text,
                               j.threads);
        g_test_message("%s", what);
        faults_arm(&p);
        ok = save_run(&j, &err);
        st = faults_disarm();
        if (!verdict(&p, &st, ok, &err, what, &t)) {
            continue;
        }
        /* The same RAM saved again: the same bytes, however the writes went. */
        g_assert_true(g_file_get_contents(path, &got, &len, NULL));
        if (len != ref_len || memcmp(got, ref, len)) {
            g_error("%s: the image differs from the one saved without faults", what);
        }
    }
    tally_report(scenario, &t);
    faults_reset();
    unlink(path);
    blocks_free(&src);
}

/* ---- the background snapshot ------------------------------------------------------------- */

typedef struct BgScenario {
    const char *name;
    bool mapped;
    bool exec;                      /* to exec:cat, whose shell is killed mid-save */
} BgScenario;

static void kill_child(void *opaque)
{
    SaveJob *j = opaque;

    g_assert_cmpint(j->child, >, 0);
    kill(j->child, SIGKILL);
}

/* The snapshot's image loaded into dst must be the blocks at the instant. */
void check_bg_image(SaveJob *j, const char *path, const char *what)
{
    Blocks dst;
    LoadJob lj = { .dst = &dst, .path = path, .threads = 2,
                   .mode = j->mapped ? LOAD_EAGER : LOAD_STREAM };
    Error *err = NULL;

    blocks_new(&dst, RAM_BACKEND_RAM);
    lj.src = &dst;
    if (!load_run(&lj, what, &err)) {
        g_error("%s: the image does not load: %s", what, error_get_pretty(err));
    }
    for (int i = 0; i < 2; i++) {
        int64_t p = first_diff(dst.rb[i]->host, j->ref[i], dst.rb[i]->used_length);

        if (p >= 0) {
            g_error("%s: block %s page %" PRId64 " of the image is not the instant's", what,
                    dst.rb[i]->idstr, p);
        }
    }
    wave_check(dst.rb[0]->host, what);
    blocks_free(&dst);
}

/* After every case: the guest runs, its RAM is the wave, nothing is protected. */
void check_guest(SaveJob *j, const char *what)
{
    wave_assert_running(j->wave, what);
    assert_released(j->src, what);
    wave_pause(j->wave);
    wave_check(j->src->rb[0]->host, what);
    if (first_diff(j->src->rb[1]->host, j->ref[1], ROM_SIZE) >= 0) {
        g_error("%s: pc.rom changed", what);
    }
    wave_resume(j->wave);
}

bool bg_usable_or_skip(Blocks *b)
{
    Error *err = NULL;

    if (!bg_snapshot_check(b->l.blocks, b->l.nblocks, NULL, &err)) {
        g_test_skip(error_get_pretty(err));
        error_free(err);
        return false;
    }
    return true;
}

static void bg_case(SaveJob *j, const BgScenario *sc, uint64_t seed, int i,
                    const FaultStats *counted, const char *path, Tally *t)
{
    g_autofree char *plan_text = NULL, *what = NULL;
    Error *err = NULL;
    FaultPlan p;
    FaultStats st;
    bool ok;

    if (sc->exec) {
        /* The shell (or the cat it became) dies at a random write. */
        p = (FaultPlan){ .seed = seed, .ops = FAULT_OP_WRITE, .kind = FAULT_HOOK,
                         .at_call = 1 + seed % MAX(counted->calls, 1),
                         .hook = kill_child, .hook_opaque = j };
    } else {
        plan_for(&p, seed, true, counted);
    }
    j->threads = 1 + seed % 3;
    plan_text = fault_plan_describe(&p);
    what = g_strdup_printf("%s case %d: %s", sc->name, i, plan_text);
    g_test_message("%s", what);
    if (sc->exec) {
        j->arm_on_open = &p;
    } else {
        faults_arm(&p);
    }
    ok = save_run(j, &err);
    st = faults_disarm();
    if (sc->exec) {
        t->cases++;
        t->injected += st.hits > 0;
        if (st.hits && ok) {
            g_error("%s: the exec: child was killed, yet the save succeeded", what);
        }
        if (!ok && !strstr(error_get_pretty(err), "killed by signal 9") &&
            !strstr(error_get_pretty(err), g_strerror(EPIPE))) {
            g_error("%s: the error '%s' says neither that the child was killed nor that "
                    "the pipe broke", what, error_get_pretty(err));
        }
        t->failed += !ok;
        g_clear_pointer(&err, error_free);
    } else if (verdict(&p, &st, ok, &err, what, t)) {
        check_bg_image(j, path, what);
    }
    check_guest(j, what);
}

static void test_save_background(gconstpointer data)
{
    const BgScenario *sc = data;
    g_autofree char *path = tmp_path("bg.img");
    g_autofree char *quoted = g_shell_quote(path);
    g_autofree char *uri = sc->exec ? g_strdup_printf("exec:cat > %s", quoted)
                                    : g_strdup_printf("file:%s", path);
    FaultPlan count = { .kind = FAULT_COUNT, .ops = FAULT_OP_WRITE };
    SaveJob j = { .uri = uri, .kind = SAVE_BACKGROUND, .mapped = sc->mapped, .threads = 2 };
    FaultStats counted;
    Tally t = { 0 };
    Blocks src;
    Wave w;

    blocks_new(&src, RAM_BACKEND_RAM);
    if (!bg_usable_or_skip(&src)) {
        blocks_free(&src);
        return;
    }
    fill(src.rb[0], 1 + NWRITERS * PART_PAGES, 1);
    fill(src.rb[1], 0, 2);
    j.src = &src;
    j.wave = &w;
    j.ref[0] = g_malloc(MAIN_SIZE);
    j.ref[1] = g_malloc(ROM_SIZE);
    wave_start(&w, src.rb[0]->host);
    g_usleep(2000);
    /* Fault-free, counting the calls to a file the cases choose from. */
    {
        g_autofree char *count_uri = g_strdup_printf("file:%s", path);
        SaveJob cj = j;

        cj.uri = count_uri;
        cj.check_registered = true;
        target_path(path);
        faults_arm(&count);
        g_assert_true(save_run(&cj, &error_abort));
        counted = faults_disarm();
        faults_reset();
        check_bg_image(&cj, path, sc->name);
        check_guest(&cj, sc->name);
    }
    if (!sc->exec) {
        target_path(path);
    }
    for (int i = 0, n = case_count(sc->exec ? 12 : 40); i < n; i++) {
        bg_case(&j, sc, case_seed(sc->name, i), i, &counted, path, &t);
        if (sc->exec) {
            faults_reset();
        }
    }
    tally_report(sc->name, &t);
    faults_reset();
    wave_stop(&w);
    g_free(j.ref[0]);
    g_free(j.ref[1]);
    unlink(path);
    blocks_free(&src);
}

/* ---- the stopped save to an exec: child killed mid-way ------------------------------- */

static void test_exec_kill_stopped(void)
{
    const char *scenario = "save/stopped/exec-kill";
    g_autofree char *path = tmp_path("exec.img");
    g_autofree char *quoted = g_shell_quote(path);
    g_autofree char *file_uri = g_strdup_printf("file:%s", path);
    g_autofree char *exec_uri = g_strdup_printf("exec:cat > %s", quoted);
    FaultPlan count = { .kind = FAULT_COUNT, .ops = FAULT_OP_WRITE };
    SaveJob j = { .uri = file_uri, .kind = SAVE_STOPPED };
    FaultStats counted;
    Tally t = { 0 };
    Blocks src;

    blocks_new(&src, RAM_BACKEND_RAM);
    fill(src.rb[0], 0, 1);
    fill(src.rb[1], 0, 2);
    j.src = &src;
    target_path(path);
    faults_arm(&count);
    g_assert_true(save_run(&j, &error_abort));
    counted = faults_disarm();
    faults_reset();
    j.uri = exec_uri;
    for (int i = 0, n = case_count(12); i < n; i++) {
        uint64_t seed = case_seed(scenario, i);
        FaultPlan p = { .seed = seed, .ops = FAULT_OP_WRITE, .kind = FAULT_HOOK,
                        .at_call = 1 + seed % MAX(counted.calls, 1),
                        .hook = kill_child, .hook_opaque = &j };
        g_autofree char *plan_text = fault_plan_describe(&p);
        g_autofree char *what = g_strdup_printf("%s case %d: %s", scenario, i, plan_text);
        Error *err = NULL;
        FaultStats st;
        bool ok;

        g_test_message("%s", what);
        j.arm_on_open = &p;
        ok = save_run(&j, &err);
        st = faults_disarm();
        faults_reset();
        t.cases++;
        t.injected += st.hits > 0;
        if (st.hits && ok) {
            g_error("%s: the exec: child was killed, yet the save succeeded", what);
        }
        if (!ok && !strstr(error_get_pretty(err), "killed by signal 9") &&
            !strstr(error_get_pretty(err), g_strerror(EPIPE))) {
            g_error("%s: unexpected error '%s'", what, error_get_pretty(err));
        }
        t.failed += !ok;
        g_clear_pointer(&err, error_free);
    }
    tally_report(scenario, &t);
    unlink(path);
    blocks_free(&src);
}

/* ---- loads -------------------------------------------------------------------------------- */

typedef struct LoadScenario {
    const char *name;
    LoadMode mode;
    RamBackendKind kind;
    int cases;
} LoadScenario;

static void load_case(const LoadScenario *sc, Blocks *src, const char *path, uint64_t seed,
                      int i, const FaultStats *counted, Tally *t)
{
    g_autofree char *plan_text = NULL, *what = NULL;
    Blocks dst;
    LoadJob lj = { .src = src, .dst = &dst, .path = path, .mode = sc->mode,
                   .threads = 1 + seed % 4, .seed = seed };
    Error *err = NULL;
    FaultPlan p;
    FaultStats st;
    bool ok;

    plan_for(&p, seed, false, counted);
    plan_text = fault_plan_describe(&p);
    what = g_strdup_printf("%s case %d: %s, %d threads", sc->name, i, plan_text, lj.threads);
    g_test_message("%s", what);
    blocks_new(&dst, sc->kind);
    /* What the machine wrote at creation must not survive a load. */
    memset(dst.rb[0]->host, 0x77, 8 * PAGE);
    faults_arm(&p);
    ok = load_run(&lj, what, &err);
    st = faults_disarm();
    if (verdict(&p, &st, ok, &err, what, t)) {
        assert_blocks_equal(src, &dst, what);
    }
    assert_released(&dst, what);
    blocks_free(&dst);
}

static void test_load(gconstpointer data)
{
    const LoadScenario *sc = data;
    g_autofree char *path = tmp_path("load.img");
    g_autofree char *uri = g_strdup_printf("file:%s", path);
    FaultPlan count = { .kind = FAULT_COUNT, .ops = FAULT_OP_READ };
    SaveJob j = { .uri = uri, .kind = SAVE_STOPPED, .mapped = sc->mode != LOAD_STREAM,
                  .threads = 2 };
    Blocks src, dst;
    LoadJob lj = { .src = &src, .dst = &dst, .path = path, .mode = sc->mode, .threads = 2 };
    FaultStats counted;
    Tally t = { 0 };

    blocks_new(&src, sc->kind);
    fill(src.rb[0], 0, 1);
    fill(src.rb[1], 0, 2);
    j.src = &src;
    g_assert_true(save_run(&j, &error_abort));
    if (sc->mode == LOAD_LAZY) {
        Error *err = NULL;

        if (!ram_uffd_usable(&src.l, &err)) {
            g_test_skip(error_get_pretty(err));
            error_free(err);
            blocks_free(&src);
            return;
        }
    }
    /* Fault-free, counting the reads the cases choose from. */
    blocks_new(&dst, sc->kind);
    target_path(path);
    faults_arm(&count);
    g_assert_true(load_run(&lj, sc->name, &error_abort));
    counted = faults_disarm();
    assert_blocks_equal(&src, &dst, sc->name);
    blocks_free(&dst);
    for (int i = 0, n = case_count(sc->cases); i < n; i++) {
        load_case(sc, &src, path, case_seed(sc->name, i), i, &counted, &t);
    }
    tally_report(sc->name, &t);
    faults_reset();
    unlink(path);
    blocks_free(&src);
}

/* ---- writeback and zero-copy reads --------------------------------------------------- */

/*
 * Writeback of a background snapshot's stream fails past WB_START + WB_LAG,
 * where write-behind waits for its windows: the snapshot must fail.  The
 * kernel reports a writeback error once per open file (errseq), to the
 * first wait; write-behind waits first, so it keeps the error for the
 * stream (io_writev() then fails the save with it): the close's fsync
 * would not see it again.  The stream
 * here is accounted, not written (1 GiB of holes), as io_writev() would
 * account it; the file system refuses preallocation, as the code allows.
 */
static void test_write_behind_writeback(void)
{
    g_autofree char *path = tmp_path("wb.img");
    FaultPlan p = { .kind = FAULT_WRITEBACK, .ops = FAULT_OP_SYNC };
    WriteBehind wb;
    int fd, ret;

    fd = open(path, O_RDWR | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(write(fd, "QEVM", 4), ==, 4);
    faults_target_fd(fd);
    write_behind_init(&wb, fd);
    wb.no_prealloc = true;
    faults_arm(&p);
    for (uint64_t n = 0; n < WB_START + WB_LAG + 2 * WB_WINDOW; n += WB_WINDOW) {
        write_behind_wrote(&wb, WB_WINDOW);
    }
    write_behind_finish(&wb);
    /* The kernel has handed its error out once: the close would not fail. */
    ret = fsync(fd);
    faults_reset();
    close(fd);
    unlink(path);
    g_assert_cmpint(wb.err, ==, EIO);
    g_assert_cmpint(ret, ==, 0);
}


/*
 * Zero-copy restore of an image written over an older file, so a page its
 * bitmap calls zero holds data there: the loader reads that page (and falls
 * back to copying the block).  An EINTR or a short read there must be
 * retried like every other read: the load succeeds and the RAM is the
 * saved RAM, at every read of the load.
 */
static void test_zero_copy_interrupted(void)
{
    g_autofree char *path = tmp_path("zc.img");
    g_autofree char *uri = g_strdup_printf("file:%s", path);
    g_autofree uint8_t *junk = g_malloc(PAGE);
    FaultPlan count = { .kind = FAULT_COUNT, .ops = FAULT_OP_READ };
    SaveJob j = { .uri = uri, .kind = SAVE_STOPPED, .mapped = true, .threads = 2 };
    Blocks src, dst;
    LoadJob lj = { .src = &src, .dst = &dst, .path = path, .mode = LOAD_MAP, .threads = 2 };
    FaultStats counted;
    Tally t = { 0 };
    int fd;

    blocks_new(&src, RAM_BACKEND_RAM);
    fill(src.rb[0], 0, 1);
    fill(src.rb[1], 0, 2);
    j.src = &src;
    g_assert_true(save_run(&j, &error_abort));
    /* pc.ram's page 0 was never touched: a hole, zero in the bitmap. */
    memset(junk, 0x5a, PAGE);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    g_assert_true(pwrite_full(fd, junk, PAGE, test_image_pages_offset(path)));
    close(fd);
    blocks_new(&dst, RAM_BACKEND_RAM);
    target_path(path);
    faults_arm(&count);
    g_assert_true(load_run(&lj, "zero-copy", &error_abort));
    counted = faults_disarm();
    assert_blocks_equal(&src, &dst, "zero-copy");
    blocks_free(&dst);
    for (uint64_t call = 1; call <= counted.calls; call++) {
        for (FaultKind k = FAULT_EINTR; k <= FAULT_SHORT; k++) {
            FaultPlan p = { .seed = call, .ops = FAULT_OP_READ, .kind = k, .at_call = call };
            g_autofree char *plan_text = fault_plan_describe(&p);
            g_autofree char *what = g_strdup_printf("load/zero-copy: %s", plan_text);
            Error *err = NULL;
            FaultStats st;
            bool ok;

            g_test_message("%s", what);
            blocks_new(&dst, RAM_BACKEND_RAM);
            faults_arm(&p);
            ok = load_run(&lj, what, &err);
            st = faults_disarm();
            if (verdict(&p, &st, ok, &err, what, &t)) {
                assert_blocks_equal(&src, &dst, what);
            }
            blocks_free(&dst);
        }
    }
    faults_reset();
    unlink(path);
    blocks_free(&src);
}

/* ---- main ----------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const BgScenario bg[] = {
        { "save/background/stream", false, false },
        { "save/background/mapped-ram", true, false },
        { "save/background/exec-kill", false, true },
    };
    static const LoadScenario loads[] = {
        { "load/stream", LOAD_STREAM, RAM_BACKEND_RAM, 40 },
        { "load/mapped-ram/eager", LOAD_EAGER, RAM_BACKEND_RAM, 40 },
        { "load/mapped-ram/lazy/anon", LOAD_LAZY, RAM_BACKEND_RAM, 30 },
        { "load/mapped-ram/lazy/memfd", LOAD_LAZY, RAM_BACKEND_MEMFD, 20 },
    };
    g_autofree char *dir = NULL;
    int ret;

    if (argc > 1 && !strcmp(argv[1], PEER_ARG)) {
        peer_main(argc - 2, argv + 2);      /* a socket test's other end */
    }
    g_test_init(&argc, &argv, NULL);
    signal(SIGPIPE, SIG_IGN);       /* as amber's main does */
    settings.seed = env_u64("AMBER_FAULTS_SEED", 1);
    settings.cases = env_u64("AMBER_FAULTS_CASES", 0);
    settings.only = env_u64("AMBER_FAULTS_ONLY", 0);
    dir = g_dir_make_tmp("amber-faults-XXXXXX", NULL);
    g_assert_nonnull(dir);
    settings.dir = dir;
    g_test_message("AMBER_FAULTS_SEED=0x%" PRIx64, settings.seed);

    g_test_add_data_func("/faults/save/stopped/stream", GINT_TO_POINTER(false),
                         test_save_stopped);
    g_test_add_data_func("/faults/save/stopped/mapped-ram", GINT_TO_POINTER(true),
                         test_save_stopped);
    g_test_add_func("/faults/save/stopped/exec-kill", test_exec_kill_stopped);
    for (size_t i = 0; i < G_N_ELEMENTS(bg); i++) {
        g_autofree char *name = g_strdup_printf("/faults/%s", bg[i].name);

        g_test_add_data_func(name, &bg[i], test_save_background);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(loads); i++) {
        g_autofree char *name = g_strdup_printf("/faults/%s", loads[i].name);

        g_test_add_data_func(name, &loads[i], test_load);
    }
    faults_add_socket_tests();
    g_test_add_func("/faults/write-behind/writeback-error", test_write_behind_writeback);
    g_test_add_func("/faults/load/zero-copy/interrupted", test_zero_copy_interrupted);
    ret = g_test_run();
    rmdir(dir);
    return ret;
}
