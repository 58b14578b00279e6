/*
 * Live migration (precopy): the `ram` saver for a running guest and the
 * loop that decides when to stop it.  See precopy.h for the phases.
 *
 * The saver sends pages marked in a RamDirty, 64-page chunk by chunk: the
 * chunk's marks are taken and its pages re-armed in the dirty log, then
 * the pages are copied into the stream (never queued from guest memory:
 * the guest keeps writing them).  A write that races with the copy is
 * logged again and the page goes out in a later pass; the destination
 * keeps the last copy of a page.
 *
 * In the first pass, pages the kernel never populated are sent as ZERO
 * records without being read (asked after the chunk was re-armed, so a
 * page populated later is logged).
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "precopy.h"
#include "migration/dirty.h"
#include "qapi-events.h"
#include "util/bitmap.h"
#include "util/cutils.h"
#include "util/trace.h"
#include "util/uffd.h"

/* Pages per PART section: bounds the time between two cancel checks. */
#define PRECOPY_PART_PAGES  16384
/* Pages taken and re-armed at once: one bitmap word. */
#define PRECOPY_CHUNK       64
/* Shortest stretch the bandwidth is measured over. */
#define PRECOPY_BW_WINDOW_US 50000

struct Precopy {
    MigrationState *ms;
    Machine *m;
    RamBlockList *ram;
    bool live;                      /* atomic: read by query-migrate */
    RamDirty *dirty;
    int pagemap_fd;

    /* scan position of the pass in progress */
    int block;
    uint64_t page;
    bool first_pass;
    RamRecordWriter w;

    /* measurements, atomics */
    RamCounters c;                  /* passes = dirty syncs */
    uint64_t dirty_rate;            /* pages/s logged between the last two syncs */
    uint64_t expected_downtime;     /* ms */
    uint64_t bandwidth;             /* bytes/s */
    int64_t sync_us;
    int64_t window_us;
    uint64_t window_bytes;
};

static void counter_add(uint64_t *p, uint64_t n)
{
    __atomic_add_fetch(p, n, __ATOMIC_RELAXED);
}

static uint64_t counter_get(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void counter_set(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

/* ---- life cycle --------------------------------------------------------------------- */

void precopy_prepare(MigrationState *ms)
{
    Precopy *pc = g_new0(Precopy, 1);
    RamBlockList *ram = machine_ram(ms->s->machine);

    pc->ms = ms;
    pc->m = ms->s->machine;
    pc->ram = ram;
    pc->pagemap_fd = -1;
    for (int i = 0; i < ram->nblocks; i++) {
        pc->c.total_bytes += ram->blocks[i]->used_length;
    }
    ms->precopy = pc;
}

void precopy_free(MigrationState *ms)
{
    Precopy *pc = ms->precopy;

    if (!pc) {
        return;
    }
    ram_dirty_free(pc->dirty);
    if (pc->pagemap_fd >= 0) {
        close(pc->pagemap_fd);
    }
    g_free(pc);
    ms->precopy = NULL;
}

bool precopy_wanted(MigrationState *ms)
{
    struct stat st;
    bool live;

    /* A background snapshot never stops the guest: it has its own saver. */
    live = ms->precopy && !ms->bg && ms->ch && fstat(ms->ch->fd, &st) == 0 &&
           S_ISSOCK(st.st_mode);
    if (ms->precopy) {
        __atomic_store_n(&ms->precopy->live, live, __ATOMIC_RELEASE);
    }
    return live;
}

bool precopy_live(MigrationState *ms)
{
    return ms->precopy && __atomic_load_n(&ms->precopy->live, __ATOMIC_ACQUIRE);
}

void precopy_end(MigrationState *ms)
{
    if (ms->precopy && ms->precopy->dirty) {
        ram_dirty_stop(ms->precopy->dirty);
    }
}

/* ---- records ------------------------------------------------------------------------- */

static void send_page(Precopy *pc, QEMUFile *f, const RAMBlock *rb, uint64_t offset,
                      bool populated)
{
    const uint8_t *p = rb->host + offset;
    const uint8_t *data = populated && !buffer_is_zero(p, RAM_PAGE_SIZE) ? p : NULL;

    /* Copied now (no nocopy): the guest may change the page right after. */
    ram_record_put(&pc->w, f, rb, offset, data, false);
    counter_add(data ? &pc->c.normal_pages : &pc->c.zero_pages, 1);
    counter_add(&pc->c.scanned_pages, 1);
}

/* ---- which pages of a chunk hold data (first pass) ------------------------------------- */

/* Pages of [start, start + n) that may hold data; all of them when unknown. */
static unsigned long chunk_populated(Precopy *pc, const RAMBlock *rb, uint64_t start,
                                     uint64_t n)
{
    unsigned long map = 0;

    if (!pc->first_pass) {
        return ~0UL;        /* a page logged as written holds data */
    }
    if (rb->fd < 0 && pc->pagemap_fd < 0) {
        pc->pagemap_fd = pagemap_open(0, NULL);
    }
    return ram_block_populated(rb, pc->pagemap_fd, start, n, &map) ? map : ~0UL;
}

/* ---- passes ------------------------------------------------------------------------------ */

/*
 * Send the marked pages of one chunk.  Returns 1 when the chunk is done,
 * 0 when the rate limit stopped it (its unsent marks are given back), -1
 * on error.
 */
static int send_chunk(Precopy *pc, QEMUFile *f, int b, uint64_t start, uint64_t n,
                      bool limit, uint64_t *done, Error **errp)
{
    const RAMBlock *rb = pc->ram->blocks[b];
    unsigned long bits, pop;

    if (!ram_dirty_take(pc->dirty, b, start, n, &bits, errp)) {
        return -1;
    }
    pop = chunk_populated(pc, rb, start, n);
    while (bits) {
        int i = __builtin_ctzl(bits);

        if (limit && qemu_file_rate_limit_exceeded(f)) {
            ram_dirty_put_back(pc->dirty, b, start, n, &bits);
            return 0;
        }
        send_page(pc, f, rb, (start + i) * RAM_PAGE_SIZE, (pop >> i) & 1);
        bits &= bits - 1;
        (*done)++;
    }
    __atomic_store_n(&pc->ms->bytes, qemu_file_transferred(f), __ATOMIC_RELAXED);
    return 1;
}

/*
 * Up to max_pages marked pages from the scan position.  1: the pass is
 * over (the position goes back to the start), 0: pages remain, -1: error.
 */
static int save_marked(Precopy *pc, QEMUFile *f, uint64_t max_pages, bool limit,
                       Error **errp)
{
    uint64_t done = 0;

    while (pc->block < pc->ram->nblocks) {
        uint64_t np = ram_dirty_block_pages(pc->dirty, pc->block);
        uint64_t next = ram_dirty_next(pc->dirty, pc->block, pc->page);
        uint64_t start;
        int ret;

        if (next >= np) {
            pc->block++;
            pc->page = 0;
            continue;
        }
        if (done >= max_pages || qemu_file_get_error(f) ||
            (limit && qemu_file_rate_limit_exceeded(f))) {
            return 0;
        }
        start = next - next % PRECOPY_CHUNK;
        ret = send_chunk(pc, f, pc->block, start, MIN(PRECOPY_CHUNK, np - start), limit,
                         &done, errp);
        if (ret <= 0) {
            pc->page = start;
            return ret;
        }
        pc->page = start + PRECOPY_CHUNK;
    }
    pc->block = 0;
    pc->page = 0;
    return 1;
}

static void pass_event(Precopy *pc, uint64_t pass)
{
    if (migrate_events(&pc->ms->opts)) {
        qapi_event_send_migration_pass(pc->ms->s, pass);
    }
}

/* Merge the logs: a new pass over what they report. */
static bool sync_pass(Precopy *pc, Error **errp)
{
    int64_t now = migration_now_us();
    uint64_t logged;
    uint64_t pass;

    if (!ram_dirty_sync(pc->dirty, &logged, errp)) {
        return false;
    }
    if (now > pc->sync_us) {
        counter_set(&pc->dirty_rate, logged * G_USEC_PER_SEC / (now - pc->sync_us));
    }
    pc->sync_us = now;
    pass = counter_get(&pc->c.passes) + 1;
    counter_set(&pc->c.passes, pass);
    trace(migration_precopy_pass, "pass=%" PRIu64 " logged=%" PRIu64 " pending=%" PRIu64,
          pass, logged, ram_dirty_pending(pc->dirty));
    pass_event(pc, pass);
    return true;
}

/* ---- section handlers --------------------------------------------------------------------- */

static bool precopy_save_setup(QEMUFile *f, void *opaque, Error **errp)
{
    Precopy *pc = opaque;

    qemu_put_be64(f, pc->c.total_bytes | RAM_SAVE_FLAG_MEM_SIZE);
    for (int i = 0; i < pc->ram->nblocks; i++) {
        const RAMBlock *rb = pc->ram->blocks[i];

        qemu_put_byte(f, strlen(rb->idstr));
        qemu_put_buffer(f, rb->idstr, strlen(rb->idstr));
        qemu_put_be64(f, rb->used_length);
    }
    qemu_put_be64(f, RAM_SAVE_FLAG_EOS);
    if (!qemu_file_check(f, errp) || !ram_dirty_start(pc->dirty, errp)) {
        return false;
    }
    /* Every page is marked: the first pass is the whole of RAM. */
    pc->block = 0;
    pc->page = 0;
    pc->first_pass = true;
    pc->w.last = NULL;
    pc->sync_us = migration_now_us();
    /* Nothing measured yet: say the limit, as QEMU does. */
    counter_set(&pc->expected_downtime,
                __atomic_load_n(&pc->ms->opts.downtime_limit, __ATOMIC_RELAXED));
    counter_set(&pc->c.passes, 1);
    pass_event(pc, 1);
    return true;
}

static int precopy_save_iterate(QEMUFile *f, void *opaque, Error **errp)
{
    Precopy *pc = opaque;
    int ret = save_marked(pc, f, PRECOPY_PART_PAGES, true, errp);

    if (ret == 1) {
        pc->first_pass = false;
    }
    qemu_put_be64(f, RAM_SAVE_FLAG_EOS);
    if (ret < 0 || !qemu_file_check(f, errp)) {
        return -1;
    }
    return ret;
}

/* The VM is stopped: the last sync is complete, everything marked goes. */
static bool precopy_save_complete(QEMUFile *f, void *opaque, Error **errp)
{
    Precopy *pc = opaque;

    pc->block = 0;
    pc->page = 0;
    if (!sync_pass(pc, errp) || save_marked(pc, f, UINT64_MAX, false, errp) < 0) {
        return false;
    }
    qemu_put_be64(f, RAM_SAVE_FLAG_EOS);
    return qemu_file_check(f, errp);
}

static bool precopy_load_refused(QEMUFile *f, void *opaque, int version_id, Error **errp)
{
    error_setg(errp, "this registry saves RAM; it cannot load it");
    return false;
}

static const SaveStateHandlers precopy_handlers = {
    .save_setup = precopy_save_setup,
    .save_iterate = precopy_save_iterate,
    .save_complete = precopy_save_complete,
    .load_state = precopy_load_refused,
};

bool precopy_register(MigrationState *ms, SaveStateRegistry *r, Error **errp)
{
    Precopy *pc = ms->precopy;
    RamDirty *d = ram_dirty_new(pc->m, errp);

    if (!d) {
        return false;
    }
    /* Published for query-migrate, which reads the pending count. */
    __atomic_store_n(&pc->dirty, d, __ATOMIC_RELEASE);
    return savevm_register(r, RAM_SECTION_NAME, 0, RAM_SECTION_VERSION, &precopy_handlers,
                           pc, errp) != NULL;
}

/* ---- the live loop ------------------------------------------------------------------------- */

/* Bytes per second over the last stretch of at least PRECOPY_BW_WINDOW_US. */
static void measure_bandwidth(Precopy *pc, QEMUFile *f)
{
    int64_t now = migration_now_us();
    uint64_t bytes = qemu_file_transferred(f);

    if (now - pc->window_us < PRECOPY_BW_WINDOW_US && counter_get(&pc->bandwidth)) {
        return;
    }
    if (now > pc->window_us && bytes > pc->window_bytes) {
        counter_set(&pc->bandwidth,
                    (bytes - pc->window_bytes) * G_USEC_PER_SEC / (now - pc->window_us));
    }
    pc->window_us = now;
    pc->window_bytes = bytes;
}

/* End of a pass: sync, and whether what is left fits downtime-limit. */
static bool pass_converged(Precopy *pc, QEMUFile *f, bool *converged, Error **errp)
{
    uint64_t limit = __atomic_load_n(&pc->ms->opts.downtime_limit, __ATOMIC_RELAXED);
    uint64_t bw, left, expected;

    measure_bandwidth(pc, f);
    if (!sync_pass(pc, errp)) {
        return false;
    }
    bw = counter_get(&pc->bandwidth);
    left = ram_dirty_pending(pc->dirty) * RAM_PAGE_SIZE;
    expected = !left ? 0 : bw ? left * 1000 / bw : UINT64_MAX;
    counter_set(&pc->expected_downtime, MIN(expected, (uint64_t)INT64_MAX));
    trace(migration_precopy_converge, "left=%" PRIu64 " bw=%" PRIu64 " expected_ms=%" PRIu64
          " limit_ms=%" PRIu64, left, bw, expected, limit);
    *converged = expected <= limit;
    return true;
}

bool precopy_iterate(MigrationState *ms, SaveStateRegistry *r, QEMUFile *f, Error **errp)
{
    Precopy *pc = ms->precopy;
    bool converged = false;

    if (!precopy_live(ms)) {
        return true;
    }
    pc->window_us = migration_now_us();
    pc->window_bytes = qemu_file_transferred(f);
    while (!converged) {
        int ret = savevm_save_iterate(r, f, errp);

        __atomic_store_n(&ms->bytes, qemu_file_transferred(f), __ATOMIC_RELAXED);
        if (ret < 0) {
            return false;
        }
        if (__atomic_load_n(&ms->cancel, __ATOMIC_ACQUIRE)) {
            error_setg(errp, "migration cancelled");
            return false;
        }
        migration_apply_rate_limit(ms, f);
        qemu_file_rate_limit_wait(f);
        if (ret == 1 && !pass_converged(pc, f, &converged, errp)) {
            return false;
        }
    }
    return true;
}

/* ---- query-migrate ---------------------------------------------------------------------------- */

void precopy_info(MigrationState *ms, MigrationInfo *info)
{
    Precopy *pc = ms->precopy;
    MigrationStats *st = info->ram;
    RamDirty *d;
    int64_t end = __atomic_load_n(&ms->end_us, __ATOMIC_RELAXED);
    double secs;
    uint64_t scanned;

    if (!precopy_live(ms) || !st) {
        return;
    }
    secs = ((end ? end : migration_now_us()) - ms->start_us) / 1e6;
    scanned = counter_get(&pc->c.scanned_pages);
    st->duplicate = counter_get(&pc->c.zero_pages);
    st->normal = counter_get(&pc->c.normal_pages);
    st->normal_bytes = st->normal * RAM_PAGE_SIZE;
    st->dirty_sync_count = counter_get(&pc->c.passes);
    d = __atomic_load_n(&pc->dirty, __ATOMIC_ACQUIRE);
    st->remaining = d ? ram_dirty_pending(d) * RAM_PAGE_SIZE : st->total;
    st->pages_per_second = secs > 0 ? (int64_t)(scanned / secs) : 0;
    st->has_dirty_pages_rate = true;
    st->dirty_pages_rate = counter_get(&pc->dirty_rate);
    if (info->has_expected_downtime) {
        info->expected_downtime = counter_get(&pc->expected_downtime);
    }
}
