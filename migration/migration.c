/*
 * Outgoing migration: the state machine, the migration thread, stats and
 * events, and the stream's descriptor I/O.
 *
 * Status: none -> setup -> active -> completed, or -> failed, or
 * -> cancelling -> cancelled.  The handler moves none -> setup; the thread
 * does the rest (cancelling is set by migrate_cancel).
 *
 * The thread never changes the run state itself: it asks the main loop
 * (migration_call_main), which is where the monitor changes it too.  It
 * stops the VM only after the header and block list are out, so a
 * channel that cannot be written fails before the guest notices, and on
 * any failure the guest gets back the run state it had.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "migration-int.h"
#include "monitor/monitor.h"
#include "qapi-commands.h"
#include "qapi-events.h"
#include "migration/mapped-ram.h"
#include "migration/savers.h"
#include "savers/background.h"
#include "savers/precopy.h"
#include "postcopy/postcopy.h"
#include "util/trace.h"
#include "util/main-loop.h"

/*
 * How long a socket save waits after its last byte for the destination to
 * close (amber and QEMU close as soon as they have read the stream).
 */
#define PEER_CLOSE_WAIT_MS  5000

struct MainCall {
    MigrationMainFn fn;
    void *data;
    Error *err;
    bool ok;
    bool done;
};

int64_t migration_now_us(void)
{
    return g_get_monotonic_time();
}

int migration_get_status(const int *status)
{
    return __atomic_load_n(status, __ATOMIC_ACQUIRE);
}

void migration_event_status(MigrationState *ms, int status)
{
    if (migrate_events(&ms->opts)) {
        qapi_event_send_migration(ms->s, status);
    }
}

void migration_set_status(MigrationState *ms, int *status, int new_status)
{
    trace(migration_status, "%s -> %s", MigrationStatus_str(migration_get_status(status)),
          MigrationStatus_str(new_status));
    __atomic_store_n(status, new_status, __ATOMIC_RELEASE);
    migration_event_status(ms, new_status);
    /* Someone may wait in the main loop for this (HMP migrate without -d). */
    g_main_context_wakeup(NULL);
}

bool migration_change_status(MigrationState *ms, int *status, int old_status,
                             int new_status)
{
    if (!__atomic_compare_exchange_n(status, &old_status, new_status, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        return false;
    }
    trace(migration_status, "%s -> %s", MigrationStatus_str(old_status),
          MigrationStatus_str(new_status));
    migration_event_status(ms, new_status);
    return true;
}

/* ---- the state ------------------------------------------------------------------ */

MigrationState *migration_state(Amber *s)
{
    MigrationState *ms = s->migration;

    if (!ms) {
        ms = g_new0(MigrationState, 1);
        ms->s = s;
        migrate_options_init(&ms->opts);
        pthread_mutex_init(&ms->lock, NULL);
        pthread_cond_init(&ms->cond, NULL);
        ms->status = MIGRATION_STATUS_NONE;
        ms->cancel_fd = -1;
        s->migration = ms;
    }
    return ms;
}

MigrationOptions *migration_options(MigrationState *ms)
{
    return &ms->opts;
}

bool migration_outgoing_running(MigrationState *ms)
{
    int st = migration_get_status(&ms->status);

    return st == MIGRATION_STATUS_SETUP || st == MIGRATION_STATUS_ACTIVE ||
           st == MIGRATION_STATUS_CANCELLING || migration_status_postcopy(st);
}

bool migration_status_postcopy(int st)
{
    return st == MIGRATION_STATUS_POSTCOPY_ACTIVE || st == MIGRATION_STATUS_POSTCOPY_PAUSED ||
           st == MIGRATION_STATUS_POSTCOPY_RECOVER_SETUP ||
           st == MIGRATION_STATUS_POSTCOPY_RECOVER;
}

int migration_outgoing_status(MigrationState *ms)
{
    return migration_get_status(&ms->status);
}

bool migration_is_running(MigrationState *ms)
{
    return migration_outgoing_running(ms) || migration_incoming_running(ms);
}

bool migration_exiting(MigrationState *ms)
{
    bool r;

    pthread_mutex_lock(&ms->lock);
    r = ms->shutting_down;
    pthread_mutex_unlock(&ms->lock);
    return r;
}

void migration_apply_rate_limit(MigrationState *ms, QEMUFile *f)
{
    uint64_t limit = __atomic_load_n(&ms->opts.max_bandwidth, __ATOMIC_RELAXED);

    if (limit != qemu_file_get_rate_limit(f)) {
        qemu_file_set_rate_limit(f, limit);
    }
}

/* ---- calls into the main loop ------------------------------------------------------ */

static gboolean main_call_dispatch(gpointer opaque)
{
    MigrationState *ms = opaque;
    MainCall *c;

    pthread_mutex_lock(&ms->lock);
    c = ms->call;
    ms->call_source = 0;
    pthread_mutex_unlock(&ms->lock);
    if (c) {
        c->ok = c->fn(ms->s, c->data, &c->err);
    }
    pthread_mutex_lock(&ms->lock);
    if (c) {
        c->done = true;
    }
    pthread_cond_broadcast(&ms->cond);
    pthread_mutex_unlock(&ms->lock);
    return G_SOURCE_REMOVE;
}

bool migration_call_main(MigrationState *ms, MigrationMainFn fn, void *data, Error **errp)
{
    MainCall c = { .fn = fn, .data = data };

    pthread_mutex_lock(&ms->lock);
    if (!ms->shutting_down) {
        ms->call = &c;
        ms->call_source = main_loop_call_soon(main_call_dispatch, ms);
        while (!c.done && !ms->shutting_down) {
            pthread_cond_wait(&ms->cond, &ms->lock);
        }
        ms->call = NULL;
    }
    pthread_mutex_unlock(&ms->lock);
    if (!c.done) {
        error_setg(errp, "amber is exiting");
        return false;
    }
    if (!c.ok) {
        error_propagate(errp, c.err);
    }
    return c.ok;
}

/* ---- main-loop steps of the thread -------------------------------------------------------- */

static bool stop_vm_main(Amber *s, void *data, Error **errp)
{
    MigrationState *ms = data;

    ms->old_runstate = machine_runstate(s->machine);
    if (!amber_vm_stop(s, RUN_STATE_FINISH_MIGRATE, errp)) {
        return false;
    }
    ms->stopped = true;
    return true;
}

static bool finish_vm_main(Amber *s, void *data, Error **errp)
{
    MigrationState *ms = data;
    bool success = ms->succeeded;

    /* Someone else changed the run state meanwhile (stop): leave theirs. */
    if (!ms->stopped || machine_runstate(s->machine) != RUN_STATE_FINISH_MIGRATE) {
        return true;
    }
    if (success) {
        machine_set_runstate(s->machine, RUN_STATE_POSTMIGRATE);
    } else if (ms->old_runstate == RUN_STATE_RUNNING) {
        return amber_vm_start(s, errp);
    } else {
        machine_set_runstate(s->machine, ms->old_runstate);
    }
    return true;
}

/* ---- the thread ---------------------------------------------------------------------- */

void migration_publish_bytes(MigrationState *ms, QEMUFile *f)
{
    __atomic_store_n(&ms->bytes, __atomic_load_n(&ms->bytes_base, __ATOMIC_RELAXED) +
                     qemu_file_transferred(f), __ATOMIC_RELAXED);
}

bool migration_cancelled(MigrationState *ms, Error **errp)
{
    if (__atomic_load_n(&ms->cancel, __ATOMIC_ACQUIRE)) {
        error_setg(errp, "migration cancelled");
        return true;
    }
    return false;
}

int migration_save_iterate(MigrationState *ms, SaveStateRegistry *r, QEMUFile *f,
                           bool wait_limit, Error **errp)
{
    int ret = savevm_save_iterate(r, f, errp);

    migration_publish_bytes(ms, f);
    if (ret < 0 || migration_cancelled(ms, errp)) {
        return -1;
    }
    if (wait_limit) {
        migration_apply_rate_limit(ms, f);
        qemu_file_rate_limit_wait(f);
    }
    return ret;
}

/* Header, configuration and the RAM block list: the VM still runs. */
static bool save_setup_phase(MigrationState *ms, SaveStateRegistry *r, QEMUFile *f,
                             Error **errp)
{
    const char *const *caps = savevm_stream_caps(ms->mapped != NULL,
                                                   migrate_checksum(&ms->opts));

    if (!(ms->postcopy ? postcopy_save_head(ms, r, f, errp)
                       : savevm_save_head(r, f, caps, errp))) {
        return false;
    }
    qemu_fflush(f);
    migration_publish_bytes(ms, f);
    if (!qemu_file_check(f, errp) || migration_cancelled(ms, errp)) {
        return false;
    }
    __atomic_store_n(&ms->setup_end_us, migration_now_us(), __ATOMIC_RELAXED);
    /* Not over a `cancelling` that came meanwhile. */
    migration_change_status(ms, &ms->status, MIGRATION_STATUS_SETUP,
                            MIGRATION_STATUS_ACTIVE);
    return true;
}

/* RAM pass, device sections, EOF and description: the VM is stopped. */
static bool save_stopped_phase(MigrationState *ms, SaveStateRegistry *r, QEMUFile *f,
                               MachineStateImage *img, Error **errp)
{
    Machine *m = ms->s->machine;
    int ret;

    if (migration_cancelled(ms, errp)) {
        return false;
    }
    /* Registered once captured: the image then knows which vCPUs exist. */
    if (!machine_state_capture(m, img, errp) || !machine_state_register(m, img, r, errp)) {
        error_prepend(errp, "cannot read the machine state: ");
        return false;
    }
    /* A live migration counts its passes itself. */
    if (migrate_events(&ms->opts) && !precopy_live(ms)) {
        qapi_event_send_migration_pass(ms->s, 1);
    }
    while ((ret = migration_save_iterate(ms, r, f, true, errp)) == 0) {
    }
    if (ret < 0 || !savevm_save_complete(r, f, errp) || !savevm_save_tail(r, f, errp)) {
        return false;
    }
    migration_publish_bytes(ms, f);
    return true;
}

/* The `ram` section's page source: the one this migration is (see savers/). */
static bool register_ram(MigrationState *ms, SaveStateRegistry *r, RamStopped **stopped,
                         Error **errp)
{
    if (precopy_wanted(ms)) {
        return precopy_register(ms, r, errp);
    }
    if (ms->postcopy) {
        error_setg(errp, "postcopy-ram needs a socket (unix:, tcp:, or fd: of a socket), "
                   "which also carries the destination's return path; '%s' is not one",
                   ms->uri);
        return false;
    }
    if (ms->bg) {
        return bg_migration_register(ms, r, errp);
    }
    *stopped = ram_stopped_new();
    return ram_stopped_register(*stopped, ms->ram, r, errp);
}

static bool outgoing_run(MigrationState *ms, Error **errp)
{
    Machine *m = ms->s->machine;
    SaveStateRegistry *r = savevm_registry_new();
    MachineStateImage *img = machine_state_image_new(m);
    MigrationIO io = { .saved_flags = -1 };
    RamStopped *stopped = NULL;
    QEMUFile *f = NULL;
    bool to_postcopy = false;
    bool ok = false;

    if (!ms->ch) {
        ms->ch = channel_connect(ms->uri, ms->cancel_fd, errp);
    }
    if (ms->ch && migrate_mapped_ram(&ms->opts)) {
        ms->mapped = mapped_ram_writer_new(ms->ch->fd, machine_ram(m),
                                           ms->opts.multifd_channels, ms->opts.direct_io,
                                           errp);
        if (!ms->mapped) {
            goto out;
        }
        ram_saver_set_mapped(ms->ram, ms->mapped);
    }
    if (!ms->ch || !register_ram(ms, r, &stopped, errp) ||
        !migration_io_init(&io, ms->ch->fd, ms->cancel_fd, errp) ||
        (ms->ch->direct && !(io.direct = direct_writer_new(ms->ch->fd, errp))) ||
        !postcopy_source_start(ms, errp)) {
        goto out;
    }
    if (ms->bg && !ms->mapped) {
        /*
         * The guest runs on: the page-cache work of a big image is CPU it
         * needs.  A stopped save keeps the cache, for a load right after.
         * (mapped-ram's pages are not the sequential stream it follows.)
         */
        write_behind_init(&io.wb, io.fd);
    }
    f = migration_io_output(&io, ms->uri);
    migration_apply_rate_limit(ms, f);

    if (!save_setup_phase(ms, r, f, errp)) {
        goto out;
    }
    if (ms->bg) {
        /* One short pause; the guest runs on while RAM is written. */
        ok = bg_migration_save(ms, r, f, img, errp);
        goto out;
    }
    /* Live: passes while the guest runs, until the rest fits downtime-limit. */
    if (!precopy_iterate(ms, r, f, &to_postcopy, errp) ||
        (to_postcopy && !postcopy_source_ready(ms, errp)) ||
        !migration_call_main(ms, stop_vm_main, ms, errp)) {
        goto out;
    }
    __atomic_store_n(&ms->stop_us, migration_now_us(), __ATOMIC_RELAXED);
    __atomic_store_n(&ms->bytes_at_stop, qemu_file_transferred(f), __ATOMIC_RELAXED);
    if (to_postcopy) {
        RamDirty *todo = precopy_final_sync(ms, errp);

        ok = todo && postcopy_complete(ms, r, f, img, todo, errp);
        goto out;
    }
    ok = save_stopped_phase(ms, r, f, img, errp);
out:
    precopy_end(ms);
    postcopy_source_end(ms, ok ? NULL : errp);
    if (f) {
        qemu_fclose(f);
        write_behind_finish(&io.wb);
        if (ok && io.direct && !direct_writer_finish(io.direct, errp)) {
            error_prepend(errp, "write to %s failed: ", ms->uri);
            ok = false;
        }
        migration_io_restore(&io);
    }
    direct_writer_free(io.direct);
    ram_saver_set_mapped(ms->ram, NULL);
    g_clear_pointer(&ms->mapped, mapped_ram_writer_free);
    /*
     * Closing is part of success: fsync of a file, an exec child's exit
     * status, a socket's peer that read it all (postcopy's SHUT said so).
     */
    if (ok && !ms->postcopy) {
        ok = channel_wait_peer_close(ms->ch, ms->cancel_fd, PEER_CLOSE_WAIT_MS, errp);
    }
    if (ok) {
        ok = channel_close(ms->ch, ms->cancel_fd, errp);
    } else {
        channel_abort(ms->ch);
    }
    ms->ch = NULL;
    machine_state_image_free(img);
    savevm_registry_free(r);
    ram_stopped_free(stopped);
    return ok;
}

static gpointer outgoing_thread(gpointer opaque)
{
    MigrationState *ms = opaque;
    Error *err = NULL, *err2 = NULL;
    bool ok = outgoing_run(ms, &err);
    /*
     * After the switch the guest may run on the destination: the source
     * keeps its memory and stays stopped, paused, whatever went wrong.
     */
    bool paused = !ok && postcopy_switched(ms);
    /* A cancel that came after the last byte changes nothing: completed. */
    bool was_cancel = !ok && !paused && migration_cancelled(ms, NULL);

    __atomic_store_n(&ms->end_us, migration_now_us(), __ATOMIC_RELAXED);
    ms->succeeded = ok;
    if (!ok && !was_cancel) {
        pthread_mutex_lock(&ms->lock);
        error_free(ms->error);
        ms->error = err;
        err = NULL;
        pthread_mutex_unlock(&ms->lock);
    }
    error_free(err);
    /* The run state first, so a client that sees the status sees it too. */
    if (!paused && !migration_call_main(ms, finish_vm_main, ms, &err2)) {
        if (!migration_exiting(ms)) {
            warn_report("after migration: %s", error_get_pretty(err2));
        }
        error_free(err2);
    }
    trace(migration_thread_end, "ok=%d cancel=%d", ok, was_cancel);
    if (paused) {
        error_report("postcopy paused: %s", error_get_pretty(ms->error));
    }
    migration_set_status(ms, &ms->status,
                         ok ? MIGRATION_STATUS_COMPLETED
                            : paused ? MIGRATION_STATUS_POSTCOPY_PAUSED
                            : was_cancel ? MIGRATION_STATUS_CANCELLED
                                         : MIGRATION_STATUS_FAILED);
    return NULL;
}

/* ---- commands ----------------------------------------------------------------------- */

static void join_thread(MigrationState *ms)
{
    if (ms->thread) {
        g_thread_join(ms->thread);
        ms->thread = NULL;
    }
}

static void reset_outgoing(MigrationState *ms)
{
    join_thread(ms);
    bg_migration_free(ms);
    postcopy_source_free(ms);
    precopy_free(ms);
    g_clear_pointer(&ms->uri, g_free);
    g_clear_pointer(&ms->ram, ram_saver_free);
    if (ms->error) {
        error_free(ms->error);
        ms->error = NULL;
    }
    if (ms->cancel_fd >= 0) {
        close(ms->cancel_fd);
        ms->cancel_fd = -1;
    }
    ms->cancel = false;
    ms->stopped = false;
    ms->succeeded = false;
    ms->start_us = ms->setup_end_us = ms->stop_us = ms->end_us = 0;
    ms->bytes = ms->bytes_at_stop = ms->bytes_base = 0;
}

static int lookup_fd(void *opaque, const char *name, Error **errp)
{
    return monitor_fd_get(opaque, name, errp);
}

/*
 * A file that backs RAM (memory-backend-file, or the image after a
 * zero-copy restore) is the guest's memory: a save that truncated or
 * rewrote it would pull pages from under the guest and the saver.  st:
 * the target file, found by name before it is opened, or by its
 * descriptor.
 */
static bool backs_ram(MigrationState *ms, const struct stat *st, const char *uri,
                      Error **errp)
{
    RamBlockList *ram = machine_ram(ms->s->machine);

    for (int i = 0; i < ram->nblocks; i++) {
        struct stat bst;

        if (ram->blocks[i]->fd >= 0 && fstat(ram->blocks[i]->fd, &bst) == 0 &&
            bst.st_dev == st->st_dev && bst.st_ino == st->st_ino) {
            error_setg(errp, "'%s' holds the memory of RAM block '%s' (its backing file, or "
                       "the image of a zero-copy restore): saving there would overwrite the "
                       "guest's memory; save to another file", uri, ram->blocks[i]->idstr);
            return true;
        }
    }
    return false;
}

/*
 * Channels that open at once (file, exec, fd) are opened here, so a path
 * that cannot be written is an error reply; unix/tcp connect from the
 * thread, where a slow peer blocks nobody.
 */
static bool open_early(MigrationState *ms, const char *uri, Channel **ch, Error **errp)
{
    ChannelAddress addr;
    ChannelKind kind;
    bool early;

    *ch = NULL;
    if (!channel_parse_uri(uri, &addr, errp)) {
        return false;
    }
    kind = addr.kind;
    if (kind == CHANNEL_FILE) {
        struct stat st;

        if (stat(addr.path, &st) == 0 && backs_ram(ms, &st, uri, errp)) {
            channel_address_clear(&addr);
            return false;
        }
    }
    channel_address_clear(&addr);
    early = kind == CHANNEL_FILE || kind == CHANNEL_EXEC || kind == CHANNEL_FD;
    if (migrate_postcopy_ram(&ms->opts) && (kind == CHANNEL_FILE || kind == CHANNEL_EXEC)) {
        error_setg(errp, "postcopy-ram needs a socket (unix:, tcp:, or fd: of a socket), "
                   "which also carries the destination's return path; '%s' is not one",
                   uri);
        return false;
    }
    if (migrate_checksum(&ms->opts) && migrate_postcopy_ram(&ms->opts)) {
        error_setg(errp, "x-checksum covers the migration stream, and postcopy-ram sends "
                   "pages over the return path's requests and a second channel too: turn "
                   "one of them off");
        return false;
    }
    if (migrate_postcopy_preempt(&ms->opts) && kind == CHANNEL_FD) {
        error_setg(errp, "postcopy-preempt opens a second connection to the same address: "
                   "it needs a unix: or tcp: URI, not '%s'", uri);
        return false;
    }
    if (ms->opts.direct_io && kind != CHANNEL_FILE) {
        error_setg(errp, "direct-io needs a file: URI, not '%s'", uri);
        return false;
    }
    if (migrate_mapped_ram(&ms->opts) && kind != CHANNEL_FILE && kind != CHANNEL_FD) {
        error_setg(errp, "mapped-ram gives every page a fixed place in a file: it needs a "
                   "file: URI or an fd: of a regular file, not '%s'", uri);
        return false;
    }
    if (early) {
        struct stat st;

        *ch = channel_open_outgoing(uri, lookup_fd, ms->s, errp);
        if (*ch && kind == CHANNEL_FD && fstat((*ch)->fd, &st) == 0 &&
            backs_ram(ms, &st, uri, errp)) {
            channel_abort(*ch);
            *ch = NULL;
            return false;
        }
        if (*ch && migrate_mapped_ram(&ms->opts)) {
            /* Its pages go through a descriptor of their own, opened then. */
            if (!mapped_ram_channel_ok((*ch)->fd, uri, errp) ||
                (ms->opts.direct_io && !mapped_ram_direct_ok((*ch)->fd, (*ch)->path, errp))) {
                channel_abort(*ch);
                *ch = NULL;
            }
            return *ch != NULL;
        }
        if (*ch && ms->opts.direct_io) {
            if (!direct_io_enable((*ch)->fd, (*ch)->path, errp)) {
                channel_abort(*ch);
                *ch = NULL;
                return false;
            }
            (*ch)->direct = true;
        }
        return *ch != NULL;
    }
    return true;
}

void qmp_migrate(Amber *s, const char *uri, bool has_blk, bool blk, bool has_inc, bool inc,
                 bool has_detach, bool detach, bool has_resume, bool resume, Error **errp)
{
    MigrationState *ms = migration_state(s);
    Channel *ch = NULL;
    int cancel_fd;
    RunState rs;

    if (has_resume && resume) {
        postcopy_source_resume(ms, uri, errp);
        return;
    }
    if (!s->machine) {
        error_setg(errp, "The machine is not created yet");
        return;
    }
    if (migration_is_running(ms)) {
        error_setg(errp, "There's a migration process in progress");
        return;
    }
    if (migration_incoming_pages_missing(ms)) {
        error_setg(errp, "the guest's memory is incomplete: the incoming migration failed "
                   "after the guest started here, before every page came, and a save would "
                   "write the missing pages as zeros");
        return;
    }
    rs = machine_runstate(s->machine);
    if (rs == RUN_STATE_INMIGRATE) {
        error_setg(errp, "Guest is waiting for an incoming migration");
        return;
    }
    if (!migrate_caps_check(ms->opts.caps, s->machine, errp)) {
        return;
    }
    /* Nothing changes (the last migration's state stays) until all is good. */
    cancel_fd = migration_cancel_fd_new(errp);
    if (cancel_fd < 0) {
        return;
    }
    if (!open_early(ms, uri, &ch, errp)) {
        close(cancel_fd);
        return;
    }
    reset_outgoing(ms);
    ms->cancel_fd = cancel_fd;
    ms->ch = ch;
    ms->uri = g_strdup(uri);
    ms->ram = ram_saver_new(machine_ram(s->machine));
    /* Set here, before the thread: query-migrate reads it after the writer is gone. */
    ms->mapped_save = migrate_mapped_ram(&ms->opts);
    bg_migration_prepare(ms);
    precopy_prepare(ms);
    postcopy_source_prepare(ms);
    ms->start_us = migration_now_us();
    migration_set_status(ms, &ms->status, MIGRATION_STATUS_SETUP);
    ms->thread = g_thread_new("mig/src", outgoing_thread, ms);
}

/*
 * Make the thread end as cancelled: the flag its checkpoints read, the
 * eventfd its waits watch, and the engine's release of blocked vCPUs.
 */
static void stop_thread(MigrationState *ms)
{
    __atomic_store_n(&ms->cancel, true, __ATOMIC_RELEASE);
    migration_cancel_fd_signal(ms->cancel_fd);
    bg_migration_cancel(ms);
    postcopy_source_cancel(ms);
}

void qmp_migrate_pause(Amber *s, Error **errp)
{
    MigrationState *ms = migration_state(s);

    if (postcopy_source_pause(ms, errp) || migration_incoming_pause(ms)) {
        return;
    }
    error_setg(errp, "migrate-pause is currently only supported during postcopy-active or "
               "postcopy-recover state");
}

void qmp_migrate_cancel(Amber *s, Error **errp)
{
    MigrationState *ms = migration_state(s);
    int st = migration_outgoing_status(ms);

    if (migration_status_postcopy(st)) {
        error_setg(errp, "Postcopy migration in progress, cannot cancel: the guest may "
                   "already run on the destination and its memory is split between "
                   "the two sides");
        return;
    }
    if (!migration_change_status(ms, &ms->status, MIGRATION_STATUS_SETUP,
                                 MIGRATION_STATUS_CANCELLING) &&
        !migration_change_status(ms, &ms->status, MIGRATION_STATUS_ACTIVE,
                                 MIGRATION_STATUS_CANCELLING)) {
        return;         /* nothing in progress (or it is already ending) */
    }
    stop_thread(ms);
}

/* ---- query-migrate ----------------------------------------------------------------------- */

static int64_t ms_since(int64_t from, int64_t to)
{
    return from && to >= from ? (to - from) / 1000 : 0;
}

static MigrationStats *ram_stats(MigrationState *ms, int64_t now)
{
    MigrationStats *st = g_new0(MigrationStats, 1);
    RamCounters c;
    int64_t start = ms->start_us;
    int64_t end = __atomic_load_n(&ms->end_us, __ATOMIC_RELAXED);
    double secs = ((end ? end : now) - start) / 1e6;
    uint64_t bytes = __atomic_load_n(&ms->bytes, __ATOMIC_RELAXED);
    uint64_t at_stop = __atomic_load_n(&ms->bytes_at_stop, __ATOMIC_RELAXED);

    ram_saver_counters(ms->ram, &c);
    st->transferred = bytes;
    st->total = c.total_bytes;
    st->remaining = c.total_bytes - MIN(c.total_bytes, c.scanned_pages * RAM_PAGE_SIZE);
    st->duplicate = c.zero_pages;
    st->normal = c.normal_pages;
    st->normal_bytes = c.normal_pages * RAM_PAGE_SIZE;
    st->dirty_sync_count = c.passes;
    st->page_size = RAM_PAGE_SIZE;
    if (secs > 0) {
        st->mbps = bytes * 8.0 / 1e6 / secs;
        st->pages_per_second = (int64_t)(c.scanned_pages / secs);
    }
    st->precopy_bytes = at_stop ? at_stop : bytes;
    st->downtime_bytes = at_stop ? bytes - at_stop : 0;
    /* mapped-ram: every data page goes through the writing threads. */
    st->multifd_bytes = ms->mapped_save ? st->normal_bytes : 0;
    return st;
}

static void outgoing_info(MigrationState *ms, MigrationInfo *info)
{
    int st = migration_get_status(&ms->status);
    int64_t now = migration_now_us();
    int64_t setup_end = __atomic_load_n(&ms->setup_end_us, __ATOMIC_RELAXED);
    int64_t stop = __atomic_load_n(&ms->stop_us, __ATOMIC_RELAXED);
    int64_t end = __atomic_load_n(&ms->end_us, __ATOMIC_RELAXED);

    info->has_status = true;
    info->status = st;
    if (st == MIGRATION_STATUS_SETUP || st == MIGRATION_STATUS_CANCELLED) {
        return;
    }
    info->has_total_time = true;
    info->total_time = ms_since(ms->start_us, end ? end : now);
    if (setup_end) {
        info->has_setup_time = true;
        info->setup_time = ms_since(ms->start_us, setup_end);
        info->has_ram = ms->ram != NULL;
        info->ram = ms->ram ? ram_stats(ms, now) : NULL;
    }
    if (st == MIGRATION_STATUS_COMPLETED) {
        info->has_downtime = true;
        info->downtime = ms_since(stop, end);
    } else if (st == MIGRATION_STATUS_ACTIVE) {
        info->has_expected_downtime = true;
        info->expected_downtime = ms->opts.downtime_limit;
    } else if (st == MIGRATION_STATUS_FAILED || st == MIGRATION_STATUS_POSTCOPY_PAUSED) {
        pthread_mutex_lock(&ms->lock);
        if (ms->error) {
            info->has_error_desc = true;
            info->error_desc = g_strdup(error_get_pretty(ms->error));
        }
        pthread_mutex_unlock(&ms->lock);
    }
    bg_migration_info(ms, info);
    precopy_info(ms, info);
    postcopy_source_info(ms, info);
}

MigrationInfo *qmp_query_migrate(Amber *s, Error **errp)
{
    MigrationState *ms = migration_state(s);
    MigrationInfo *info = g_new0(MigrationInfo, 1);

    if (migration_get_status(&ms->status) != MIGRATION_STATUS_NONE) {
        outgoing_info(ms, info);
    } else {
        migration_incoming_info(ms, info);
    }
    return info;
}

/* ---- exit ---------------------------------------------------------------------------- */

void migration_shutdown(Amber *s)
{
    MigrationState *ms = s->migration;

    if (!ms) {
        return;
    }
    pthread_mutex_lock(&ms->lock);
    ms->shutting_down = true;
    if (ms->call_source) {
        g_source_remove(ms->call_source);
        ms->call_source = 0;
    }
    pthread_cond_broadcast(&ms->cond);
    pthread_mutex_unlock(&ms->lock);
    if (migration_outgoing_running(ms)) {
        stop_thread(ms);
    }
    migration_incoming_shutdown(ms);
    reset_outgoing(ms);
    migration_incoming_free(ms->incoming);
    pthread_mutex_destroy(&ms->lock);
    pthread_cond_destroy(&ms->cond);
    g_free(ms);
    s->migration = NULL;
}
