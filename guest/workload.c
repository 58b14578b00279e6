/*
 * The workloads, in ring 3 on every vCPU: wave (ordered passes over the
 * vCPU's partition, the snapshot-consistency oracle), random (xorshift
 * over the partition) and idle (reports only).
 *
 * Stalls are the rdtsc gaps between consecutive batches of page writes;
 * time spent on purpose (rate cap, printing a report) is not counted.
 */
#include "guest.h"

#define BATCH 16

uint64_t cycles_to_us(uint64_t cycles)
{
    return cycles * 1000 / G.p.tsc_khz;
}

uint64_t ms_to_cycles(uint64_t ms)
{
    return ms * G.p.tsc_khz;
}

/* ---- stall histogram: exact below 16 cycles, then 8 steps per power of 2 ---- */

static unsigned bucket_of(uint64_t cycles)
{
    unsigned m;

    if (cycles < 16) {
        return (unsigned)cycles;
    }
    m = 63 - __builtin_clzll(cycles);
    return 16 + (m - 4) * 8 + ((cycles >> (m - 3)) & 7);
}

static uint64_t bucket_top(unsigned b)
{
    unsigned m, sub;

    if (b < 16) {
        return b;
    }
    m = (b - 16) / 8 + 4;
    sub = (b - 16) % 8;
    return ((8ull + sub) << (m - 3)) + (1ull << (m - 3)) - 1;
}

static inline void sample(struct cpu *c, uint64_t cycles)
{
    c->hist[bucket_of(cycles)]++;
    c->samples++;
    if (cycles > c->max_cycles) {
        c->max_cycles = cycles;
    }
}

static uint64_t p99_cycles(const struct cpu *c)
{
    uint64_t need = (c->samples * 99 + 99) / 100, cum = 0;

    if (!c->samples) {
        return 0;
    }
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
        cum += c->hist[b];
        if (cum >= need) {
            uint64_t top = bucket_top(b);
            return top < c->max_cycles ? top : c->max_cycles;
        }
    }
    return c->max_cycles;
}

static void report(struct cpu *c, uint64_t now)
{
    uint64_t dt_us = cycles_to_us(now - c->interval_start);
    uint64_t progress = *(volatile uint64_t *)&c->rec->pos;
    struct line l = { .len = 0 };

    line_str(&l, "vcpu=");
    line_u64(&l, c->index);
    line_str(&l, " pass=");
    line_u64(&l, progress >> 32);
    line_str(&l, " pos=");
    line_u64(&l, (uint32_t)progress);
    line_str(&l, " writes/s=");
    line_u64(&l, dt_us ? c->writes * 1000000 / dt_us : 0);
    line_str(&l, " maxstall_us=");
    line_u64(&l, cycles_to_us(c->max_cycles));
    line_str(&l, " p99_us=");
    line_u64(&l, cycles_to_us(p99_cycles(c)));
    con_put_line(&l);

    memset(c->hist, 0, sizeof(c->hist));
    c->samples = 0;
    c->writes = 0;
    c->max_cycles = 0;
    c->interval_start = now;
    c->next_report += G.report_cycles;
    if (c->next_report <= now) {        /* we were stopped for a while */
        c->next_report = now + G.report_cycles;
    }
}

/* Reports and the duration= deadline; rare, so kept out of the loops. */
static void __attribute__((noinline)) slow_tick(struct cpu *c, uint64_t now)
{
    if (G.end_tsc && now >= G.end_tsc) {
        report(c, now);
        guest_exit(EXIT_OK);
    }
    if (now >= c->next_report) {
        report(c, now);
    }
    c->next_check = c->next_report;
    if (G.end_tsc && G.end_tsc < c->next_check) {
        c->next_check = G.end_tsc;
    }
    c->last = rdtsc();                  /* printing is not a stall */
}

static inline void tick(struct cpu *c, uint64_t pages)
{
    uint64_t now = rdtsc();

    sample(c, now - c->last);
    c->last = now;
    c->writes += pages;
    if (now >= c->next_check) {
        slow_tick(c, now);
    }
}

/* rate=: wait for this batch's slot; the wait is not a stall. */
static inline void pace(struct cpu *c, uint64_t pages)
{
    uint64_t now;

    if (!G.cycles_per_page) {
        return;
    }
    now = rdtsc();
    if (now < c->next_write) {
        while ((now = rdtsc()) < c->next_write) {
            cpu_relax();
        }
    } else if (now - c->next_write > G.report_cycles) {
        c->next_write = now;            /* no catch-up burst after a stop */
    }
    c->next_write += pages * G.cycles_per_page;
    c->last = now;
}

/* passes= reached: stop writing; the last vCPU to get here ends the run. */
static void __attribute__((noreturn)) finish(struct cpu *c)
{
    report(c, rdtsc());
    if (__atomic_add_fetch(&G.done, 1, __ATOMIC_SEQ_CST) == G.ncpus) {
        guest_exit(EXIT_OK);
    }
    for (;;) {
        cpu_relax();
    }
}

/* First report one interval from now; stall timing starts now. */
static void start_intervals(struct cpu *c)
{
    uint64_t now = rdtsc();

    c->interval_start = now;
    c->next_report = now + G.report_cycles;
    c->next_check = c->next_report;
    if (G.end_tsc && G.end_tsc < c->next_check) {
        c->next_check = G.end_tsc;
    }
    c->next_write = now;
    c->last = rdtsc();
}

/*
 * Zero the stamps of every page of the partition, then publish the record:
 * "never written" must read as zero, but firmware (SeaBIOS under QEMU) or
 * a run before a reset may have left data in free RAM.  This touches
 * only the working set, which the first pass would populate anyway.
 */
static void clear_partition(struct cpu *c)
{
    struct guest_record *rec = c->rec;

    for (uint32_t s = 0; s < rec->nseg; s++) {
        volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)rec->seg[s].addr;

        for (uint64_t i = 0; i < rec->seg[s].npages; i++, p += PAGE_WORDS) {
            p[0] = 0;
            p[PAGE_WORDS - 1] = 0;
        }
    }
    barrier();
    *(volatile uint64_t *)&rec->magic = GUEST_RECORD_MAGIC;
    /* The clearing time is neither a stall nor part of the first interval. */
    start_intervals(c);
}

/*
 * Pass after pass over the partition in order.  Each page gets its stamp
 * in the first and the last 8 bytes, then the record's {pos, pass} word
 * moves on with one 64-bit store: a snapshot at any instant shows pages
 * [0, pos) in `pass`, pages after pos in pass - 1, page pos in either.
 */
static void __attribute__((noreturn)) run_wave(struct cpu *c)
{
    const struct guest_record *rec = c->rec;
    volatile uint64_t *progress = (volatile uint64_t *)&c->rec->pos;
    const uint64_t npages = rec->npages;
    const uint32_t v = c->index;
    uint32_t pass = 1;

    clear_partition(c);
    for (;;) {
        uint64_t idx = 0;

        for (uint32_t s = 0; s < rec->nseg; s++) {
            volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)rec->seg[s].addr;
            uint64_t left = rec->seg[s].npages;

            while (left) {
                uint64_t n = left < G.batch ? left : G.batch;

                pace(c, n);
                for (uint64_t k = 0; k < n; k++) {
                    uint64_t st = page_stamp(pass, v, idx);

                    p[0] = st;
                    p[PAGE_WORDS - 1] = st;
                    idx++;
                    *progress = idx == npages ? (uint64_t)(pass + 1) << 32
                                              : ((uint64_t)pass << 32) | idx;
                    p += PAGE_WORDS;
                }
                left -= n;
                tick(c, n);
            }
        }
        pass++;
        if (G.p.passes && pass > G.p.passes) {
            finish(c);
        }
    }
}

static volatile uint64_t *page_addr(const struct guest_record *rec, uint64_t idx)
{
    uint32_t s = 0;

    while (idx >= rec->seg[s].npages) {
        idx -= rec->seg[s].npages;
        s++;
    }
    return (volatile uint64_t *)(uintptr_t)(rec->seg[s].addr + idx * PAGE_SIZE);
}

/*
 * Random pages of the partition (xorshift64).  The record counts writes
 * as pass = 1 + writes / npages, pos = writes % npages; a page's stamp
 * carries the pass of the write that last hit it.
 */
static void __attribute__((noreturn)) run_random(struct cpu *c)
{
    const struct guest_record *rec = c->rec;
    volatile uint64_t *progress = (volatile uint64_t *)&c->rec->pos;
    const uint64_t npages = rec->npages;
    const uint32_t v = c->index;
    uint64_t x = G.p.seed ^ (0x9e3779b97f4a7c15ull * (v + 1));
    uint64_t pos = 0;
    uint32_t pass = 1;

    if (!x) {
        x = 1;
    }
    for (;;) {
        pace(c, G.batch);
        for (uint64_t k = 0; k < G.batch; k++) {
            uint64_t idx, st;
            volatile uint64_t *p;

            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            idx = ((x >> 32) * npages) >> 32;
            p = page_addr(rec, idx);
            st = page_stamp(pass, v, idx);
            p[0] = st;
            p[PAGE_WORDS - 1] = st;
            if (++pos == npages) {
                pos = 0;
                pass++;
            }
            *progress = ((uint64_t)pass << 32) | pos;
        }
        tick(c, G.batch);
        if (G.p.passes && pass > G.p.passes) {
            finish(c);
        }
    }
}

static void __attribute__((noreturn)) run_idle(struct cpu *c)
{
    for (;;) {
        uint64_t now = rdtsc();

        sample(c, now - c->last);
        c->last = now;
        if (now >= c->next_check) {
            slow_tick(c, now);
        }
        cpu_relax();
    }
}

/* vCPU 0, before go: the constants every loop uses. */
void workload_prepare(void)
{
    uint64_t tsc_hz = G.p.tsc_khz * 1000;

    G.report_cycles = ms_to_cycles(G.p.report_ms);
    G.end_tsc = G.p.duration_ms ? rdtsc() + ms_to_cycles(G.p.duration_ms) : 0;
    G.batch = BATCH;
    G.cycles_per_page = 0;
    if (G.p.rate) {
        G.cycles_per_page = tsc_hz / G.p.rate ? tsc_hz / G.p.rate : 1;
        if (G.p.rate <= 10000) {
            G.batch = 1;                /* slow: no bursts */
        }
    }
}

void run_workload(struct cpu *c)
{
    start_intervals(c);
    switch (G.p.workload) {
    case WORKLOAD_RANDOM:
        run_random(c);
    case WORKLOAD_IDLE:
        run_idle(c);
    default:
        run_wave(c);
    }
}
