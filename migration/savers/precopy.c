/*
 * Live migration (precopy): the `ram` section's page source for a running
 * guest and the loop that decides when to stop it.  See precopy.h for the
 * phases.
 *
 * The source gives the pages marked in a RamDirty, 64-page chunk by chunk: the
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
#include "../postcopy/postcopy.h"
#include "migration/dirty.h"
#include "qapi-events.h"
#include "util/bitmap.h"
#include "util/cutils.h"
#include "util/stat.h"
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
    RamSaver *rs;                   /* the section; its passes are the dirty syncs */
    bool live;                      /* atomic: read by query-migrate */
    RamDirty *dirty;
    int pagemap_fd;

    /* scan position of the pass in progress */
    int block;
    uint64_t page;
    bool first_pass;

    /* measurements, atomics */
    uint64_t dirty_rate;            /* pages/s logged between the last two syncs */
    uint64_t logged_since;          /* pages logged since sync_us */
    uint64_t expected_downtime;     /* ms */
    uint64_t bandwidth;             /* bytes/s */
    int64_t sync_us;
    int64_t window_us;
    uint64_t window_bytes;
};

/* ---- life cycle --------------------------------------------------------------------- */

void precopy_prepare(MigrationState *ms)
{
    Precopy *pc = g_new0(Precopy, 1);

    pc->ms = ms;
    pc->m = ms->s->machine;
    pc->ram = machine_ram(ms->s->machine);
    pc->rs = ms->ram;
    pc->pagemap_fd = -1;
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

/* ---- which pages of a chunk hold data (first pass) ------------------------------------- */

/* Pages of [start, start + n) that may hold data; all of them when unknown. */
static unsigned long chunk_populated(Precopy *pc, const RAMBlock *rb, uint64_t start,
                                     uint64_t n)
{
    unsigned long map = 0;

    if (!pc->first_pass) {
        return ~0UL;        /* a page logged as written holds data */
    }
    if (pc->pagemap_fd < 0) {
        pc->pagemap_fd = pagemap_open(0, NULL);
    }
    return ram_populated(rb, pc->pagemap_fd, RAM_PAGE_SIZE, start, n, &map) ? map : ~0UL;
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
        /* Copied now (no nocopy): the guest may change the page right after. */
        ram_saver_put_guest_page(pc->rs, f, rb, (start + i) * RAM_PAGE_SIZE,
                                 (pop >> i) & 1, false);
        bits &= bits - 1;
        (*done)++;
    }
    migration_publish_bytes(pc->ms, f);
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
    /*
     * A rate over a few microseconds (the switch's sync right after a
     * pass's) says nothing: measure over PRECOPY_BW_WINDOW_US at least.
     */
    pc->logged_since += logged;
    if (now - pc->sync_us >= PRECOPY_BW_WINDOW_US) {
        stat_set(&pc->dirty_rate, pc->logged_since * G_USEC_PER_SEC / (now - pc->sync_us));
        pc->logged_since = 0;
        pc->sync_us = now;
    }
    pass = ram_saver_new_pass(pc->rs);
    trace(migration_precopy_pass, "pass=%" PRIu64 " logged=%" PRIu64 " pending=%" PRIu64,
          pass, logged, ram_dirty_pending(pc->dirty));
    pass_event(pc, pass);
    return true;
}

/* ---- the page source ---------------------------------------------------------------- */

static bool precopy_setup(void *opaque, RamSaver *rs, QEMUFile *f, Error **errp)
{
    Precopy *pc = opaque;

    if (!ram_dirty_start(pc->dirty, errp)) {
        return false;
    }
    /* Every page is marked: the first pass is the whole of RAM. */
    pc->block = 0;
    pc->page = 0;
    pc->first_pass = true;
    pc->sync_us = migration_now_us();
    /* Nothing measured yet: say the limit, as QEMU does. */
    stat_set(&pc->expected_downtime,
                __atomic_load_n(&pc->ms->opts.downtime_limit, __ATOMIC_RELAXED));
    pass_event(pc, ram_saver_new_pass(rs));
    return true;
}

/*
 * Live, the marked pages from the scan position within the rate limit;
 * final (the VM is stopped, the last sync complete): everything marked.
 */
static int precopy_fill(void *opaque, RamSaver *rs, QEMUFile *f, uint64_t max_pages,
                        bool final, Error **errp)
{
    Precopy *pc = opaque;
    int ret;

    if (final) {
        pc->block = 0;
        pc->page = 0;
        return sync_pass(pc, errp) ? save_marked(pc, f, max_pages, false, errp) : -1;
    }
    ret = save_marked(pc, f, max_pages, true, errp);
    if (ret == 1) {
        pc->first_pass = false;
    }
    return ret;
}

static const RamPageSourceOps precopy_source = {
    .part_pages = PRECOPY_PART_PAGES,
    .setup = precopy_setup,
    .fill = precopy_fill,
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
    return ram_saver_register(pc->rs, r, &precopy_source, pc, errp);
}

/* ---- the live loop ------------------------------------------------------------------------- */

/* Bytes per second over the last stretch of at least PRECOPY_BW_WINDOW_US. */
static void measure_bandwidth(Precopy *pc, QEMUFile *f)
{
    int64_t now = migration_now_us();
    uint64_t bytes = qemu_file_transferred(f);

    if (now - pc->window_us < PRECOPY_BW_WINDOW_US && stat_get(&pc->bandwidth)) {
        return;
    }
    if (now > pc->window_us && bytes > pc->window_bytes) {
        stat_set(&pc->bandwidth,
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
    bw = stat_get(&pc->bandwidth);
    left = ram_dirty_pending(pc->dirty) * RAM_PAGE_SIZE;
    expected = !left ? 0 : bw ? left * 1000 / bw : UINT64_MAX;
    stat_set(&pc->expected_downtime, MIN(expected, (uint64_t)INT64_MAX));
    trace(migration_precopy_converge, "left=%" PRIu64 " bw=%" PRIu64 " expected_ms=%" PRIu64
          " limit_ms=%" PRIu64, left, bw, expected, limit);
    *converged = expected <= limit;
    return true;
}

bool precopy_iterate(MigrationState *ms, SaveStateRegistry *r, QEMUFile *f,
                     bool *to_postcopy, Error **errp)
{
    Precopy *pc = ms->precopy;
    bool converged = false;

    *to_postcopy = false;
    if (!precopy_live(ms)) {
        return true;
    }
    pc->window_us = migration_now_us();
    pc->window_bytes = qemu_file_transferred(f);
    while (!converged) {
        int ret;

        /*
         * As soon as asked, between two PART sections, as QEMU does: pages
         * not sent yet are simply pages the destination asks for or the
         * push brings.  (Waiting for the end of the first pass was tried:
         * every page sent before the switch and written again must be
         * dropped by the destination while the guest is stopped, which
         * tripled the downtime; docs/performance.md.)
         */
        if (postcopy_switch_requested(ms)) {
            *to_postcopy = true;
            return true;
        }
        ret = migration_save_iterate(ms, r, f, true, errp);

        if (ret < 0) {
            return false;
        }
        if (ret == 1 && !pass_converged(pc, f, &converged, errp)) {
            return false;
        }
    }
    return true;
}

RamDirty *precopy_final_sync(MigrationState *ms, Error **errp)
{
    Precopy *pc = ms->precopy;

    if (!sync_pass(pc, errp)) {
        return NULL;
    }
    ram_dirty_stop(pc->dirty);
    return pc->dirty;
}

/* ---- query-migrate ---------------------------------------------------------------------------- */

void precopy_info(MigrationState *ms, MigrationInfo *info)
{
    Precopy *pc = ms->precopy;
    MigrationStats *st = info->ram;
    RamDirty *d;

    if (!precopy_live(ms) || !st) {
        return;
    }
    /* Pages go out more than once: what is left is what the log has marked. */
    d = __atomic_load_n(&pc->dirty, __ATOMIC_ACQUIRE);
    st->remaining = d ? ram_dirty_pending(d) * RAM_PAGE_SIZE : st->total;
    st->dirty_pages_rate = stat_get(&pc->dirty_rate);
    if (info->has_expected_downtime) {
        info->expected_downtime = stat_get(&pc->expected_downtime);
    }
}
