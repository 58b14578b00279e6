/*
 * Background snapshot as a migration: see background.h for the sequence
 * and docs/devel/background-snapshot.md for the engine.
 *
 * The engine is the `ram` section's page source: each PART is one step of
 * its saver (fault copies first, then the scan), whose pages the sink hands
 * to the section.
 *
 * Who touches what: the migration thread owns the stream and drives the
 * engine; the main thread (migrate_cancel, query-migrate, exit) only calls
 * bg_snapshot_cancel() and reads stats, under BgMigration.lock, so the
 * engine context never goes away under it.
 */
#include <inttypes.h>
#include <string.h>

#include "background.h"
#include "migration/bg-engine.h"
#include "qapi-events.h"
#include "util/trace.h"
#include "util/uffd.h"

/* Pages per PART section: bounds the time between two progress updates. */
#define BG_PAGES_PER_PART 4096

struct BgMigration {
    pthread_mutex_t lock;                /* ctx and the copies below */
    BgSnapshot *ctx;            /* from new() until free() */
    bool armed;                 /* the pause is over: stats mean something */
    bool wp_unpopulated;        /* arm() protected unpopulated memory directly */
    BgSnapshotStats final;      /* stats of ctx as it was freed */
    bool have_final;
    BgSnapshotConfig cfg;
    uint64_t pause_us;          /* stop to start, as the guest saw it */

    /* The migration thread's, while bg_migration_save() runs. */
    MigrationState *ms;
    QEMUFile *f;
    MachineStateImage *img;
    bool ram_done;              /* the engine's run returned 1 */
};

/* ---- checks --------------------------------------------------------------------- */

bool bg_migration_usable(Machine *m, Error **errp)
{
    RamBlockList *ram = m ? machine_ram(m) : NULL;
    uint64_t features;

    if (ram && ram->nblocks) {
        return bg_snapshot_check(ram->blocks, ram->nblocks, NULL, errp);
    }
    /* No machine yet: what the kernel offers is all that can be checked. */
    return bg_snapshot_kernel_features(&features, errp) &&
           uffd_check_features(UFFD_FEATURE_PAGEFAULT_FLAG_WP, features,
                               "background-snapshot", errp);
}

bool bg_migration_check_params(const uint64_t *pool_size, const uint64_t *chunk_size,
                               Error **errp)
{
    if (pool_size && *pool_size && (*pool_size < MIGRATE_MIN_BG_POOL_SIZE ||
                      *pool_size > MIGRATE_MAX_BG_POOL_SIZE)) {
        error_setg(errp, "Parameter 'x-background-snapshot-pool-size' expects 0 "
                   "(automatic) or a size from %llu to %llu bytes", MIGRATE_MIN_BG_POOL_SIZE,
                   MIGRATE_MAX_BG_POOL_SIZE);
        return false;
    }
    if (chunk_size && (*chunk_size < MIGRATE_MIN_BG_CHUNK_SIZE ||
                       *chunk_size > MIGRATE_MAX_BG_CHUNK_SIZE ||
                       (*chunk_size & (*chunk_size - 1)))) {
        error_setg(errp, "Parameter 'x-background-snapshot-chunk-size' expects a power "
                   "of two from %llu to %llu bytes", MIGRATE_MIN_BG_CHUNK_SIZE,
                   MIGRATE_MAX_BG_CHUNK_SIZE);
        return false;
    }
    return true;
}

/* ---- life of ms->bg ---------------------------------------------------------------- */

void bg_migration_prepare(MigrationState *ms)
{
    BgMigration *bg;

    if (!migrate_background_snapshot(&ms->opts)) {
        return;
    }
    bg = g_new0(BgMigration, 1);
    pthread_mutex_init(&bg->lock, NULL);
    bg_snapshot_config_default(&bg->cfg);
    bg->cfg.pool_bytes = ms->opts.bg_pool_size;
    bg->cfg.chunk_bytes = ms->opts.bg_chunk_size;
    ms->bg = bg;
}

void bg_migration_free(MigrationState *ms)
{
    BgMigration *bg = ms->bg;

    if (!bg) {
        return;
    }
    g_assert(!bg->ctx);
    pthread_mutex_destroy(&bg->lock);
    g_free(bg);
    ms->bg = NULL;
}

void bg_migration_cancel(MigrationState *ms)
{
    BgMigration *bg = ms->bg;

    if (!bg) {
        return;
    }
    pthread_mutex_lock(&bg->lock);
    if (bg->ctx) {
        bg_snapshot_cancel(bg->ctx);
    }
    pthread_mutex_unlock(&bg->lock);
}

/* Disarm (every vCPU released), keep the final stats, free the engine. */
static void engine_end(BgMigration *bg)
{
    BgSnapshot *ctx = bg->ctx;

    if (!ctx) {
        return;
    }
    bg_snapshot_disarm(ctx);
    pthread_mutex_lock(&bg->lock);
    bg_snapshot_get_stats(ctx, &bg->final);
    bg->have_final = true;
    bg->ctx = NULL;
    pthread_mutex_unlock(&bg->lock);
    bg_snapshot_free(ctx);
}

/* ---- the page source: `ram` records into the stream ------------------------------- */

/*
 * The engine's pace (BgSnapshotPace): max-bandwidth, which may change
 * meanwhile, holds back the scan, never the fault copies.  The engine asks
 * after whole batches, far more than a window's budget at low rates: the
 * limiter carries the excess into the next windows, so the scan waits
 * until it is paid off.
 */
static uint64_t pace(void *opaque)
{
    BgMigration *bg = opaque;

    migration_apply_rate_limit(bg->ms, bg->f);
    if (migration_cancelled(bg->ms, NULL)) {
        return 0;
    }
    return qemu_file_rate_limit_delay_us(bg->f);
}

/*
 * The engine's sink.  data may point into guest RAM that the guest writes
 * as soon as we return: the section copies it into the stream.
 */
static bool put_page(void *opaque, RAMBlock *rb, uint64_t offset, const uint8_t *data,
                     Error **errp)
{
    BgMigration *bg = opaque;

    ram_saver_put_page(bg->ms->ram, bg->f, rb, offset, data, false);
    /* A full disk or a dead reader: stop at once, not at the section's end. */
    return qemu_file_check(bg->f, errp);
}

static bool bg_source_setup(void *opaque, RamSaver *rs, QEMUFile *f, Error **errp)
{
    ram_saver_new_pass(rs);
    return true;
}

/* One step of the engine's saver per PART; the END gets whatever is left. */
static int bg_source_fill(void *opaque, RamSaver *rs, QEMUFile *f, uint64_t max_pages,
                          bool final, Error **errp)
{
    BgMigration *bg = opaque;
    int ret;

    if (bg->ram_done) {
        return 1;
    }
    g_assert(f == bg->f && bg->ctx);
    ret = bg_snapshot_run_step(bg->ctx, max_pages, errp);
    bg->ram_done = ret == 1;
    return ret;
}

static const RamPageSourceOps bg_source = {
    .part_pages = BG_PAGES_PER_PART,
    .setup = bg_source_setup,
    .fill = bg_source_fill,
};

bool bg_migration_register(MigrationState *ms, SaveStateRegistry *r, Error **errp)
{
    return ram_saver_register(ms->ram, r, &bg_source, ms->bg, errp);
}

/* ---- the pause (main thread) ---------------------------------------------------------- */

/* Machine paused: its state into img (plain copies, serialised later). */
static bool capture_devices(BgMigration *bg, Error **errp)
{
    if (!machine_state_capture(bg->ms->s->machine, bg->img, errp)) {
        error_prepend(errp, "cannot read the machine state: ");
        return false;
    }
    return true;
}

static bool pause_main(Amber *s, void *data, Error **errp)
{
    BgMigration *bg = data;
    int64_t t0 = migration_now_us();
    bool was_running = runstate_is_running(machine_runstate(s->machine));
    Error *err = NULL;
    bool ok;

    /* A guest the user paused stays paused; it is snapshotted as it is. */
    if (was_running && !amber_vm_stop(s, RUN_STATE_PAUSED, errp)) {
        return false;
    }
    ok = capture_devices(bg, &err) && bg_snapshot_arm(bg->ctx, &err);
    if (ok) {
        pthread_mutex_lock(&bg->lock);
        bg->armed = true;
        bg->wp_unpopulated = bg_snapshot_uses_wp_unpopulated(bg->ctx);
        pthread_mutex_unlock(&bg->lock);
    }
    /* Resume whatever happened: a failed snapshot must not keep the guest. */
    if (was_running && !amber_vm_start(s, ok ? &err : NULL)) {
        ok = false;
    }
    bg->pause_us = migration_now_us() - t0;
    if (!ok) {
        error_propagate(errp, err);
    }
    return ok;
}

/* ---- after the pause (migration thread) -------------------------------------------------- */

/*
 * The device sections serialised from the machine state captured at the
 * pause, EOF and the description.
 *
 * Serialising waits until the RAM is done, protection gone: building the
 * sections and the description allocates, and the allocator's mprotect and
 * mmap calls take the mmap lock for writing, which holds up every vCPU
 * fault meanwhile.  Right after the pause, when nearly every guest write
 * faults, that was some 30 such calls over the saver's first 14 ms.
 */
static bool write_tail(BgMigration *bg, SaveStateRegistry *r, Error **errp)
{
    uint64_t at;
    bool ok;

    if (!machine_state_register(bg->ms->s->machine, bg->img, r, errp)) {
        error_prepend(errp, "cannot read the machine state: ");
        return false;
    }
    at = qemu_file_transferred(bg->f);
    ok = savevm_save_tail(r, bg->f, errp);
    if (ok) {
        trace(bg_migration_devices, "tail_bytes=%" PRIu64, qemu_file_transferred(bg->f) - at);
        migration_publish_bytes(bg->ms, bg->f);
    }
    return ok;
}

static bool new_engine(BgMigration *bg, Error **errp)
{
    RamBlockList *ram = machine_ram(bg->ms->s->machine);
    BgSnapshot *ctx;

    /* qmp_migrate checked the blocks; new() checks the features once more. */
    ctx = bg_snapshot_new(ram->blocks, ram->nblocks, &bg->cfg, put_page, bg, errp);
    if (!ctx) {
        return false;
    }
    bg_snapshot_set_pace(ctx, pace);
    pthread_mutex_lock(&bg->lock);
    bg->ctx = ctx;
    pthread_mutex_unlock(&bg->lock);
    return true;
}

/* The `ram` PARTs, each a step of the engine's saver, then its END. */
static bool save_ram(BgMigration *bg, SaveStateRegistry *r, Error **errp)
{
    int ret;

    /* The engine paces its scan itself, never its fault copies: no wait here. */
    while ((ret = migration_save_iterate(bg->ms, r, bg->f, false, errp)) == 0) {
    }
    return ret > 0 && savevm_save_complete(r, bg->f, errp);
}

bool bg_migration_save(MigrationState *ms, SaveStateRegistry *r, QEMUFile *f,
                       MachineStateImage *img, Error **errp)
{
    BgMigration *bg = ms->bg;
    bool ok;

    g_assert(bg);
    bg->ms = ms;
    bg->f = f;
    bg->img = img;
    bg->ram_done = false;
    /* Registration happens now, with the guest running: the pause stays short. */
    ok = !migration_cancelled(ms, errp) && new_engine(bg, errp) &&
         migration_call_main(ms, pause_main, bg, errp);
    if (ok && migrate_events(&ms->opts)) {
        qapi_event_send_migration_pass(ms->s, 1);
    }
    ok = ok && save_ram(bg, r, errp);
    /* Protection off (vCPUs released) before anything else is reported. */
    if (!ok && bg->ctx) {
        bg_snapshot_cancel(bg->ctx);
    }
    engine_end(bg);
    ok = ok && write_tail(bg, r, errp);
    trace(bg_migration_end, "ok=%d pause_us=%" PRIu64, ok, bg->pause_us);
    bg->f = NULL;
    bg->img = NULL;
    return ok;
}

/* ---- stats ------------------------------------------------------------------------------- */

static BackgroundSnapshotStats *stats_to_qapi(const BgSnapshotStats *st,
                                              const BgMigration *bg)
{
    BackgroundSnapshotStats *q = g_new0(BackgroundSnapshotStats, 1);
    uint64List **tail = &q->stall_histogram;

    q->write_faults = st->faults;
    q->fault_pages = st->fault_pages;
    q->pool_high_water_bytes = st->pool_high_water;
    q->pool_size = st->pool_size;
    q->pages_skipped = st->pages_skipped;
    q->pause_us = bg->pause_us;
    q->write_protect_us = st->pause_us;
    q->stalls = st->stalls;
    q->stall_p50_us = st->stall_p50_us;
    q->stall_p99_us = st->stall_p99_us;
    q->stall_max_us = st->stall_max_us;
    q->huge_pages_restored = st->huge_pages_restored;
    for (int i = 0; i < BG_STALL_BUCKETS; i++) {
        *tail = g_new0(uint64List, 1);
        (*tail)->value = st->stall_hist[i];
        tail = &(*tail)->next;
    }
    return q;
}

void bg_migration_info(MigrationState *ms, MigrationInfo *info)
{
    BgMigration *bg = ms->bg;
    BgSnapshotStats st;
    bool have, wp_unpop = false;

    if (!bg) {
        return;
    }
    pthread_mutex_lock(&bg->lock);
    have = bg->armed;
    if (have && bg->ctx) {
        bg_snapshot_get_stats(bg->ctx, &st);
    } else if (have) {
        st = bg->final;
    }
    wp_unpop = bg->wp_unpopulated;
    pthread_mutex_unlock(&bg->lock);
    if (!have) {
        return;
    }
    info->has_x_background_snapshot = true;
    info->x_background_snapshot = stats_to_qapi(&st, bg);
    info->x_background_snapshot->wp_unpopulated = wp_unpop;
    if (info->has_ram) {
        /* Pages never populated are not sent, yet they are done with. */
        uint64_t done = (info->ram->normal + info->ram->duplicate + st.pages_skipped) *
                        RAM_PAGE_SIZE;

        info->ram->remaining = info->ram->total - MIN((uint64_t)info->ram->total, done);
    }
    if (info->status == MIGRATION_STATUS_COMPLETED) {
        info->has_downtime = true;
        info->downtime = bg->pause_us / 1000;
    }
}
