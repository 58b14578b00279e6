/*
 * Background snapshot as a migration: see snapshot.h for the sequence and
 * docs/devel/background-snapshot.md for the engine.
 *
 * Who touches what: the migration thread owns the stream and drives the
 * engine; the main thread (migrate_cancel, query-migrate, exit) only calls
 * bg_snapshot_cancel() and reads stats, under BgMigration.lock, so the
 * engine context never goes away under it.
 */
#include <inttypes.h>
#include <string.h>

#include "migration/background-snapshot.h"
#include "qapi-events.h"
#include "snapshot.h"
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
};

/* Everything the pause and the sink need; lives on the thread's stack. */
typedef struct BgSave {
    MigrationState *ms;
    BgMigration *bg;
    SaveStateRegistry *r;
    QEMUFile *f;
    MachineStateImage *img;
    SaveStateEntry *ram_se;
    unsigned part_pages;        /* records in the open PART, 0: none open */
} BgSave;

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

/* ---- the sink: `ram` records into the stream ------------------------------------------ */

static bool cancel_asked(MigrationState *ms, Error **errp)
{
    if (__atomic_load_n(&ms->cancel, __ATOMIC_ACQUIRE)) {
        error_setg(errp, "migration cancelled");
        return true;
    }
    return false;
}

/*
 * The engine's pace (BgSnapshotPace): max-bandwidth, which may change
 * meanwhile, holds back the scan, never the fault copies.  The engine asks
 * after whole batches, far more than a window's budget at low rates: the
 * limiter carries the excess into the next windows, so the scan waits
 * until it is paid off.
 */
static uint64_t pace(void *opaque)
{
    BgSave *b = opaque;

    migration_apply_rate_limit(b->ms, b->f);
    if (cancel_asked(b->ms, NULL)) {
        return 0;
    }
    return qemu_file_rate_limit_delay_us(b->f);
}

/* End the open PART and publish progress. */
static bool close_part(BgSave *b, Error **errp)
{
    if (!b->part_pages) {
        return true;
    }
    qemu_put_be64(b->f, RAM_SAVE_FLAG_EOS);
    savevm_put_section_footer(b->f, b->ram_se);
    b->part_pages = 0;
    __atomic_store_n(&b->ms->bytes, qemu_file_transferred(b->f), __ATOMIC_RELAXED);
    return qemu_file_check(b->f, errp) && !cancel_asked(b->ms, errp);
}

/*
 * The engine's sink.  data may point into guest RAM that the guest writes
 * as soon as we return: ram_save_put_page copies it into the stream.
 */
static bool put_page(void *opaque, RAMBlock *rb, uint64_t offset, const uint8_t *data,
                     Error **errp)
{
    BgSave *b = opaque;

    if (!b->part_pages) {
        savevm_put_section_header(b->f, b->ram_se, QEMU_VM_SECTION_PART);
    }
    ram_save_put_page(b->ms->ram, b->f, rb, offset, data);
    if (++b->part_pages >= BG_PAGES_PER_PART) {
        return close_part(b, errp);
    }
    /* A full disk or a dead reader: stop at once, not at the section's end. */
    return qemu_file_check(b->f, errp);
}

/* ---- the pause (main thread) ---------------------------------------------------------- */

/* Machine paused: its state into img (plain copies, serialised later). */
static bool capture_devices(BgSave *b, Error **errp)
{
    if (!machine_state_capture(b->ms->s->machine, b->img, errp)) {
        error_prepend(errp, "cannot read the machine state: ");
        return false;
    }
    return true;
}

static bool pause_main(Amber *s, void *data, Error **errp)
{
    BgSave *b = data;
    BgMigration *bg = b->bg;
    int64_t t0 = migration_now_us();
    bool was_running = runstate_is_running(machine_runstate(s->machine));
    Error *err = NULL;
    bool ok;

    /* A guest the user paused stays paused; it is snapshotted as it is. */
    if (was_running && !amber_vm_stop(s, RUN_STATE_PAUSED, errp)) {
        return false;
    }
    ok = capture_devices(b, &err) && bg_snapshot_arm(bg->ctx, &err);
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
 * The RAM section's END, then the device sections serialised from the
 * machine state captured at the pause, EOF and the description.
 *
 * Serialising waits until the RAM is done, protection gone: building the
 * sections and the description allocates, and the allocator's mprotect and
 * mmap calls take the mmap lock for writing, which holds up every vCPU
 * fault meanwhile.  Right after the pause, when nearly every guest write
 * faults, that was some 30 such calls over the saver's first 14 ms.
 */
static bool write_tail(BgSave *b, Error **errp)
{
    uint64_t at;
    bool ok;

    if (!close_part(b, errp)) {
        return false;
    }
    savevm_put_section_header(b->f, b->ram_se, QEMU_VM_SECTION_END);
    qemu_put_be64(b->f, RAM_SAVE_FLAG_EOS);
    savevm_put_section_footer(b->f, b->ram_se);
    if (!machine_state_register(b->ms->s->machine, b->img, b->r, errp)) {
        error_prepend(errp, "cannot read the machine state: ");
        return false;
    }
    at = qemu_file_transferred(b->f);
    ok = savevm_save_tail(b->r, b->f, errp);
    if (ok) {
        trace(bg_migration_devices, "tail_bytes=%" PRIu64, qemu_file_transferred(b->f) - at);
        __atomic_store_n(&b->ms->bytes, qemu_file_transferred(b->f), __ATOMIC_RELAXED);
    }
    return ok;
}

static bool new_engine(BgSave *b, Error **errp)
{
    RamBlockList *ram = machine_ram(b->ms->s->machine);
    BgSnapshot *ctx;

    /* qmp_migrate checked the blocks; new() checks the features once more. */
    ctx = bg_snapshot_new(ram->blocks, ram->nblocks, &b->bg->cfg, put_page, b, errp);
    if (!ctx) {
        return false;
    }
    bg_snapshot_set_pace(ctx, pace);
    pthread_mutex_lock(&b->bg->lock);
    b->bg->ctx = ctx;
    pthread_mutex_unlock(&b->bg->lock);
    return true;
}

bool bg_migration_save(MigrationState *ms, SaveStateRegistry *r, QEMUFile *f,
                       MachineStateImage *img, Error **errp)
{
    BgSave b = { .ms = ms, .bg = ms->bg, .r = r, .f = f, .img = img };
    bool ok;

    b.ram_se = savevm_find(r, RAM_SECTION_NAME, 0);
    g_assert(b.ram_se && b.bg);
    /* Registration happens now, with the guest running: the pause stays short. */
    ok = !cancel_asked(ms, errp) && new_engine(&b, errp) &&
         migration_call_main(ms, pause_main, &b, errp);
    if (ok && migrate_events(&ms->opts)) {
        qapi_event_send_migration_pass(ms->s, 1);
    }
    ok = ok && !cancel_asked(ms, errp) && bg_snapshot_run(b.bg->ctx, errp);
    /* Protection off (vCPUs released) before anything else is reported. */
    if (!ok && b.bg->ctx) {
        bg_snapshot_cancel(b.bg->ctx);
    }
    engine_end(b.bg);
    ok = ok && write_tail(&b, errp);
    trace(bg_migration_end, "ok=%d pause_us=%" PRIu64, ok, b.bg->pause_us);
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

void bg_migration_hmp_print(Hmp *h, const BackgroundSnapshotStats *st)
{
    hmp_printf(h, "background snapshot pause: %" PRIu64 " us (write-protect %" PRIu64
               " us, %s)\n", st->pause_us, st->write_protect_us,
               st->wp_unpopulated ? "wp-unpopulated" : "populated by reading");
    hmp_printf(h, "write faults: %" PRIu64 " (%" PRIu64 " pages copied by faults)\n",
               st->write_faults, st->fault_pages);
    hmp_printf(h, "pages skipped (never populated): %" PRIu64 "\n", st->pages_skipped);
    hmp_printf(h, "huge pages restored: %" PRIu64 "\n", st->huge_pages_restored);
    hmp_printf(h, "copy pool: %" PRIu64 " of %" PRIu64 " kbytes at most\n",
               st->pool_high_water_bytes >> 10, st->pool_size >> 10);
    hmp_printf(h, "vCPU stalls: %" PRIu64 ", p50 %" PRIu64 " us, p99 %" PRIu64
               " us, max %" PRIu64 " us\n", st->stalls, st->stall_p50_us,
               st->stall_p99_us, st->stall_max_us);
    hmp_printf(h, "stall histogram (log2 us):");
    for (const uint64List *l = st->stall_histogram; l; l = l->next) {
        hmp_printf(h, " %" PRIu64, l->value);
    }
    hmp_printf(h, "\n");
}
