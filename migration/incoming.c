/*
 * Incoming migration: -incoming URI|defer, migrate-incoming, and the load
 * thread.
 *
 * The machine is built as usual but stays in inmigrate with its vCPUs
 * parked.  The load thread reads the whole stream into the RAM blocks and
 * a MachineStateImage, checking everything; only after EOF, the RAM
 * coverage check and machine_state_complete() does the main loop apply
 * the image to KVM and the devices and start the guest (unless -S or a
 * `stop`).  Any error before that ends the process with status 1 and the
 * message "load of migration failed: ...": no vCPU ever ran, so nothing
 * of a partial state can leak into a running guest.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "migration-int.h"
#include "migration/lazy-restore.h"
#include "migration/mapped-ram.h"
#include "monitor/monitor.h"
#include "postcopy/postcopy.h"
#include "qapi-commands.h"
#include "util/trace.h"

struct MigrationIncoming {
    MigrationState *ms;
    int status;                     /* MigrationStatus, atomic */
    bool started;                   /* a URI was given (not just "defer") */
    bool autostart;                 /* main thread only */
    GThread *thread;
    Channel *ch;                    /* file/exec/fd: opened by the main thread */
    ChannelListener *listener;      /* unix/tcp: the thread accepts */
    int cancel_fd;
    char *uri;
    RamLoader *ram;
    MachineStateImage *img;
    SaveStateRegistry *r;
    PostcopyDest *postcopy;         /* the stream's postcopy commands */
    bool lazy;                      /* a mapped-ram image restored lazily */
    LazyRestore *lazy_restore;      /* atomic: its pages follow while the guest runs */
    LazyRestoreStats lazy_final;    /* once it ended: its last counters */
    bool lazy_ended;                /* atomic */
    char *error;                    /* under ms->lock: why a lazy restore failed */
    MigrationLink cur;              /* the stream's connection: migrate-pause shuts it down */
    /* postcopy recovery, under ms->lock */
    ChannelListener *recover;       /* migrate-recover's, until the load thread takes it */
    ChannelListener *recovering;    /* the one the load thread accepts on */
};

static MigrationIncoming *incoming(Amber *s)
{
    return s->migration ? s->migration->incoming : NULL;
}

int migration_incoming_status(MigrationState *ms)
{
    return ms->incoming ? migration_get_status(&ms->incoming->status)
                        : MIGRATION_STATUS_NONE;
}

bool migration_incoming_running(MigrationState *ms)
{
    int st = migration_incoming_status(ms);

    return st == MIGRATION_STATUS_SETUP || st == MIGRATION_STATUS_ACTIVE ||
           migration_status_postcopy(st);
}

/* A lazy restore's progress: pages placed, read, faults and their service times. */
static void lazy_info(MigrationIncoming *mis, MigrationInfo *info)
{
    LazyRestoreStats st;
    MigrationStats *r;
    uint64List **dist = &info->postcopy_latency_dist;

    pthread_mutex_lock(&mis->ms->lock);
    if (mis->error) {
        info->has_error_desc = true;
        info->error_desc = g_strdup(mis->error);
    }
    if (__atomic_load_n(&mis->lazy_ended, __ATOMIC_ACQUIRE)) {
        st = mis->lazy_final;
    } else if (mis->lazy_restore) {
        lazy_restore_stats(mis->lazy_restore, &st);
    } else {
        pthread_mutex_unlock(&mis->ms->lock);
        return;
    }
    pthread_mutex_unlock(&mis->ms->lock);
    r = g_new0(MigrationStats, 1);
    r->total = st.total_pages * MAPPED_RAM_PAGE_SIZE;
    r->remaining = (st.total_pages - MIN(st.placed_pages, st.total_pages)) *
                   MAPPED_RAM_PAGE_SIZE;
    r->transferred = st.bytes_read;
    r->normal = st.data_pages;
    r->normal_bytes = st.data_pages * MAPPED_RAM_PAGE_SIZE;
    r->duplicate = st.zero_pages;
    r->page_size = MAPPED_RAM_PAGE_SIZE;
    r->postcopy_requests = st.faults;
    r->postcopy_bytes = st.bytes_read;
    info->has_ram = true;
    info->ram = r;
    info->has_postcopy_latency = true;
    info->postcopy_latency = st.faults ? st.fault_ns / st.faults : 0;
    info->has_postcopy_latency_dist = true;
    for (int i = 0; i < LAZY_LATENCY_BUCKETS; i++) {
        *dist = g_new0(uint64List, 1);
        (*dist)->value = st.latency_hist[i];
        dist = &(*dist)->next;
    }
}

bool migration_incoming_pages_missing(MigrationState *ms)
{
    MigrationIncoming *mis = ms->incoming;
    bool lazy;

    if (!mis) {
        return false;
    }
    /* A lazy restore is kept after a failure only, or while it runs. */
    pthread_mutex_lock(&ms->lock);
    lazy = mis->lazy_restore != NULL;
    pthread_mutex_unlock(&ms->lock);
    return lazy || postcopy_dest_pages_missing(__atomic_load_n(&mis->postcopy,
                                                               __ATOMIC_ACQUIRE));
}

void migration_incoming_info(MigrationState *ms, MigrationInfo *info)
{
    int st = migration_incoming_status(ms);

    if (st != MIGRATION_STATUS_NONE) {
        info->has_status = true;
        info->status = st;
    }
    if (ms->incoming) {
        lazy_info(ms->incoming, info);
        /* Published by the load thread once made; freed only after it ended. */
        postcopy_dest_info(__atomic_load_n(&ms->incoming->postcopy, __ATOMIC_ACQUIRE), info);
    }
}

void migration_incoming_set_autostart(Amber *s, bool on)
{
    MigrationIncoming *mis = incoming(s);

    if (mis) {
        mis->autostart = on;
    }
}

/* ---- the process ---------------------------------------------------------------- */

bool migration_incoming_check_uri(const char *uri, Error **errp)
{
    ChannelAddress addr;

    if (!strcmp(uri, "defer")) {
        return true;
    }
    if (!channel_parse_uri(uri, &addr, errp)) {
        error_prepend(errp, "-incoming %s: ", uri);
        return false;
    }
    channel_address_clear(&addr);
    return true;
}

void migration_incoming_prepare(Amber *s)
{
    MigrationState *ms = migration_state(s);
    MigrationIncoming *mis = g_new0(MigrationIncoming, 1);

    mis->ms = ms;
    mis->status = MIGRATION_STATUS_NONE;
    mis->cancel_fd = -1;
    migration_link_init(&mis->cur);
    mis->autostart = !machine_options(s->machine)->start_paused;
    ms->incoming = mis;
    /* machine_start() leaves the vCPUs parked in any state but prelaunch. */
    machine_set_runstate(s->machine, RUN_STATE_INMIGRATE);
}

void migration_incoming_free(MigrationIncoming *mis)
{
    if (!mis) {
        return;
    }
    /* Before the RAM goes: this unregisters it and stops the fault thread. */
    postcopy_dest_free(mis->postcopy);
    lazy_restore_free(mis->lazy_restore);
    g_free(mis->error);
    channel_listener_free(mis->recover);
    channel_abort(mis->ch);
    channel_listener_free(mis->listener);
    if (mis->cancel_fd >= 0) {
        close(mis->cancel_fd);
    }
    savevm_registry_free(mis->r);
    ram_loader_free(mis->ram);
    machine_state_image_free(mis->img);
    migration_link_destroy(&mis->cur);
    g_free(mis->uri);
    g_free(mis);
}

/* ---- main-loop steps of the load thread ------------------------------------------------ */

static bool apply_main(Amber *s, void *data, Error **errp)
{
    MigrationIncoming *mis = data;
    Machine *m = s->machine;

    if (!machine_state_apply(m, mis->img, errp)) {
        error_prepend(errp, "cannot apply the loaded state: ");
        return false;
    }
    /* A `stop` meanwhile left the state paused: keep it so. */
    if (machine_runstate(m) != RUN_STATE_INMIGRATE) {
        return true;
    }
    if (mis->autostart) {
        return amber_vm_start(s, errp);
    }
    machine_set_runstate(m, RUN_STATE_PAUSED);
    return true;
}

static bool fail_main(Amber *s, void *data, Error **errp)
{
    Error *err = data;

    error_report("load of migration failed: %s", error_get_pretty(err));
    if (!s->quit_requested) {
        s->quit_requested = true;
        s->exit_code = 1;
        g_main_loop_quit(s->loop);
    }
    return true;
}

/* ---- the load thread ------------------------------------------------------------------- */

/* The stream's header is good: the load is active. */
static void header_read(void *opaque)
{
    MigrationIncoming *mis = opaque;

    migration_change_status(mis->ms, &mis->status, MIGRATION_STATUS_SETUP,
                            MIGRATION_STATUS_ACTIVE);
}

/* Postcopy's LISTEN: RAM takes faults from now on. */
static void postcopy_listening(void *opaque)
{
    MigrationIncoming *mis = opaque;

    migration_change_status(mis->ms, &mis->status, MIGRATION_STATUS_ACTIVE,
                            MIGRATION_STATUS_POSTCOPY_ACTIVE);
}

/* Postcopy's RUN: the device state is whole; the guest runs while RAM follows. */
static bool postcopy_run(void *opaque, Error **errp)
{
    MigrationIncoming *mis = opaque;

    return machine_state_complete(mis->img, errp) &&
           migration_call_main(mis->ms, apply_main, mis, errp);
}

/* Postcopy's RESUME after a recovery. */
static void postcopy_resumed(void *opaque)
{
    MigrationIncoming *mis = opaque;

    migration_set_status(mis->ms, &mis->status, MIGRATION_STATUS_POSTCOPY_ACTIVE);
}

static const PostcopyDestOps postcopy_dest_ops = {
    .listening = postcopy_listening,
    .run = postcopy_run,
    .resumed = postcopy_resumed,
};

/* The stream since the last recovery. */
typedef struct Reconnected {
    Channel *ch;
    MigrationIO io;
    QEMUFile *f;
} Reconnected;

static void reconnected_close(Reconnected *rc)
{
    if (rc->f) {
        qemu_fclose(rc->f);
        rc->f = NULL;
    }
    g_clear_pointer(&rc->ch, channel_abort);
}

/* migrate-recover's listener, or NULL once amber is exiting. */
static ChannelListener *wait_recover(MigrationIncoming *mis)
{
    MigrationState *ms = mis->ms;
    ChannelListener *l;

    pthread_mutex_lock(&ms->lock);
    while (!mis->recover && !ms->shutting_down) {
        pthread_cond_wait(&ms->cond, &ms->lock);
    }
    l = ms->shutting_down ? NULL : mis->recover;
    mis->recover = NULL;
    mis->recovering = l;
    pthread_mutex_unlock(&ms->lock);
    return l;
}

static void recovered(MigrationIncoming *mis, ChannelListener *l)
{
    pthread_mutex_lock(&mis->ms->lock);
    mis->recovering = NULL;
    pthread_mutex_unlock(&mis->ms->lock);
    channel_listener_free(l);
}

/*
 * The stream broke after RUN: pause, wait for migrate-recover, accept the
 * source's new connection and go on loading from it (rc).  False, with the
 * error, only when amber exits meanwhile.
 */
static bool recover(MigrationIncoming *mis, SaveVMLoader *l, Reconnected *rc, Error **errp)
{
    Error *err = *errp;

    *errp = NULL;
    for (;;) {
        ChannelListener *listener;

        if (migration_exiting(mis->ms)) {
            *errp = err;
            return false;
        }
        error_report("postcopy paused: %s", error_get_pretty(err));
        error_free(err);
        err = NULL;
        migration_link_set(&mis->cur, -1);
        postcopy_dest_pause(mis->postcopy);
        reconnected_close(rc);
        migration_set_status(mis->ms, &mis->status, MIGRATION_STATUS_POSTCOPY_PAUSED);
        listener = wait_recover(mis);
        if (!listener) {
            error_setg(errp, "amber is exiting");
            return false;
        }
        rc->ch = channel_listener_accept(listener, &err);
        if (rc->ch) {
            /* migrate-pause during the recovery breaks the new connection. */
            migration_link_set(&mis->cur, rc->ch->fd);
            migration_set_status(mis->ms, &mis->status, MIGRATION_STATUS_POSTCOPY_RECOVER);
        }
        if (rc->ch && migration_io_init(&rc->io, rc->ch->fd, mis->cancel_fd, &err) &&
            postcopy_dest_resume(mis->postcopy, rc->ch->fd, listener, &err)) {
            recovered(mis, listener);
            rc->f = migration_io_input(&rc->io, "recovered stream");
            savevm_loader_set_file(l, rc->f);
            return true;
        }
        migration_link_set(&mis->cur, -1);
        recovered(mis, listener);
        error_prepend(&err, "recovery: ");
    }
}

/*
 * A mapped-ram image: its pages are read from their places, in parallel,
 * or (postcopy-ram set here) placed on demand once the guest runs.
 */
static bool incoming_mapped(MigrationIncoming *mis, Error **errp)
{
    MigrationOptions *o = &mis->ms->opts;

    mis->lazy = migrate_postcopy_ram(o);
    ram_loader_set_map_image(mis->ram, migrate_zero_copy_restore(o));
    return ram_loader_set_mapped(mis->ram, mis->ch->fd, o->multifd_channels, mis->lazy, errp);
}

static bool load_stream(MigrationIncoming *mis, QEMUFile *f, Error **errp)
{
    SaveVMLoadOptions opts = {
        .command = postcopy_dest_command, .command_opaque = mis->postcopy,
        .require_checksum = migrate_checksum(&mis->ms->opts),
    };
    SaveVMLoader *l = savevm_loader_new(mis->r, f, &opts);
    Reconnected rc = { 0 };
    char *json = NULL;
    bool ok = savevm_loader_read_header(l, errp);

    if (ok && savevm_loader_has_capability(l, MAPPED_RAM_CAPABILITY)) {
        ok = incoming_mapped(mis, errp);
    } else if (ok && migrate_zero_copy_restore(&mis->ms->opts)) {
        error_setg(errp, "x-zero-copy-restore maps a mapped-ram image's pages, and this "
                   "stream was not saved with mapped-ram");
        ok = false;
    }
    if (ok) {
        header_read(mis);
    }
    while (ok) {
        SaveVMLoadResult res = savevm_loader_run(l, errp);

        if (res == SAVEVM_LOAD_EOF) {
            ok = savevm_loader_read_vmdesc(l, &json, errp);
            if (!ok && postcopy_dest_running(mis->postcopy)) {
                /*
                 * Every page of the main stream came before its EOF and the
                 * devices were applied at RUN: what follows only describes
                 * them, and the guest runs on without it.
                 */
                warn_report("after the end of the postcopy stream: %s",
                            error_get_pretty(*errp));
                g_clear_pointer(errp, error_free);
                ok = true;
            }
            break;
        }
        if (res == SAVEVM_LOAD_STOPPED) {
            error_setg(errp, "the stream stopped before its end (a command handler asked)");
            ok = false;
        } else if (!postcopy_dest_running(mis->postcopy)) {
            ok = false;
        } else {
            /* After RUN the guest runs here: a broken stream pauses, to be resumed. */
            ok = recover(mis, l, &rc, errp);
        }
    }
    g_free(json);
    savevm_loader_free(l);
    migration_link_set(&mis->cur, -1);
    reconnected_close(&rc);
    if (!ok || !postcopy_dest_drain(mis->postcopy, errp) ||
        !ram_loader_complete(mis->ram, errp)) {
        return false;
    }
    /* After a postcopy RUN the device state was checked and applied there. */
    return postcopy_dest_running(mis->postcopy) || machine_state_complete(mis->img, errp);
}

/* A lazy restore could not read a page: the guest waits, paused, saying why. */
static bool lazy_failed_main(Amber *s, void *data, Error **errp)
{
    return amber_vm_stop(s, RUN_STATE_PAUSED, errp);
}

/*
 * The devices are loaded and checked: the guest runs now, on RAM whose
 * pages come from the image as it touches them and behind it.
 */
static bool incoming_lazy(MigrationIncoming *mis, Error **errp)
{
    MigrationState *ms = mis->ms;
    RamBlockList *ram = machine_ram(ms->s->machine);
    const MappedRamBlock *blocks[AMBER_MAX_RAM_BLOCKS];
    LazyRestore *lr;
    Error *err = NULL;
    bool ok;

    for (int i = 0; i < ram->nblocks; i++) {
        blocks[i] = ram_loader_mapped_block(mis->ram, i);
    }
    lr = lazy_restore_new(ram, mis->ch->fd, blocks, errp);
    if (!lr) {
        return false;
    }
    /* As postcopy's background push: the pages the guest waits for are not held. */
    lazy_restore_set_bandwidth(lr, &ms->opts.max_postcopy_bandwidth);
    pthread_mutex_lock(&ms->lock);
    mis->lazy_restore = lr;
    pthread_mutex_unlock(&ms->lock);
    migration_set_status(ms, &mis->status, MIGRATION_STATUS_POSTCOPY_ACTIVE);
    if (!migration_call_main(ms, apply_main, mis, errp)) {
        return false;
    }
    lazy_restore_start(lr);
    ok = lazy_restore_wait(lr, &err);
    pthread_mutex_lock(&ms->lock);
    lazy_restore_stats(lr, &mis->lazy_final);
    __atomic_store_n(&mis->lazy_ended, true, __ATOMIC_RELEASE);
    if (!ok) {
        mis->error = g_strdup(error_get_pretty(err));
    }
    pthread_mutex_unlock(&ms->lock);
    if (!ok) {
        /*
         * Pages are missing that nothing can supply: keep them missing (no
         * vCPU ever sees a wrong page), stop the guest, stay up.  Unless
         * amber is exiting, which stopped the restore.
         */
        if (!migration_exiting(ms) && !migration_call_main(ms, lazy_failed_main, mis, NULL)) {
            warn_report("lazy restore: the guest could not be stopped");
        }
        error_propagate(errp, err);
        return false;
    }
    /* Every page is in: RAM is plain memory again. */
    pthread_mutex_lock(&ms->lock);
    mis->lazy_restore = NULL;
    pthread_mutex_unlock(&ms->lock);
    lazy_restore_free(lr);
    if (!channel_close(mis->ch, mis->cancel_fd, &err)) {
        warn_report("after a lazy restore: %s", error_get_pretty(err));
        error_free(err);
    }
    mis->ch = NULL;
    return true;
}

static bool incoming_run(MigrationIncoming *mis, Error **errp)
{
    MigrationIO io = { .saved_flags = -1 };
    QEMUFile *f;
    Error *cerr = NULL;
    bool ok;

    if (mis->listener) {
        mis->ch = channel_listener_accept(mis->listener, errp);
        if (!mis->ch) {
            return false;
        }
    }
    if (!migration_io_init(&io, mis->ch->fd, mis->cancel_fd, errp)) {
        return false;
    }
    __atomic_store_n(&mis->postcopy,
                     postcopy_dest_new(mis->ms, mis->ms->s->machine, mis->ram, mis->r,
                                       mis->ch->fd, mis->cancel_fd, &postcopy_dest_ops, mis),
                     __ATOMIC_RELEASE);
    postcopy_dest_set_listener(mis->postcopy, mis->listener);
    migration_link_set(&mis->cur, mis->ch->fd);
    f = migration_io_input(&io, mis->uri);
    ok = load_stream(mis, f, errp);
    migration_link_set(&mis->cur, -1);
    qemu_fclose(f);
    migration_io_restore(&io);
    if (!ok) {
        postcopy_dest_fail(mis->postcopy, errp);
        return false;
    }
    if (mis->lazy) {
        return incoming_lazy(mis, errp);
    }
    /* The stream is whole and checked; a failing exec reader changes nothing now. */
    if (!channel_close(mis->ch, mis->cancel_fd, &cerr)) {
        warn_report("after loading the migration stream: %s", error_get_pretty(cerr));
        error_free(cerr);
    }
    mis->ch = NULL;
    /* The return path has its own descriptor: it outlives the channel. */
    if (postcopy_dest_running(mis->postcopy)) {
        return postcopy_dest_finish(mis->postcopy, errp);
    }
    return migration_call_main(mis->ms, apply_main, mis, errp) &&
           postcopy_dest_finish(mis->postcopy, errp);
}

static gpointer incoming_thread(gpointer opaque)
{
    MigrationIncoming *mis = opaque;
    Error *err = NULL;

    if (incoming_run(mis, &err)) {
        trace(migration_incoming_done, "ok");
        migration_set_status(mis->ms, &mis->status, MIGRATION_STATUS_COMPLETED);
        return NULL;
    }
    trace(migration_incoming_done, "failed: %s", error_get_pretty(err));
    if (postcopy_dest_running(mis->postcopy)) {
        /*
         * The guest runs here on pages that exist nowhere else: stay up,
         * keep every page, and let vCPUs that wait for a missing one wait.
         * A broken stream waits for migrate-recover in the load itself; a
         * failure that ends the load (after the stream's EOF: a second
         * channel that broke, a huge page sent in part) leaves nothing to
         * read a new connection, so it is no pause to recover from.
         */
        if (!migration_exiting(mis->ms)) {
            error_report("postcopy failed and cannot be recovered: %s; the guest runs on, "
                         "and a vCPU that touches a page that never came waits for it",
                         error_get_pretty(err));
        }
        migration_set_status(mis->ms, &mis->status, MIGRATION_STATUS_FAILED);
        error_free(err);
        return NULL;
    }
    migration_set_status(mis->ms, &mis->status, MIGRATION_STATUS_FAILED);
    if (__atomic_load_n(&mis->lazy_ended, __ATOMIC_ACQUIRE)) {
        /* The guest ran: it stays, paused, and so does amber. */
        error_free(err);
        return NULL;
    }
    if (!migration_exiting(mis->ms)) {
        migration_call_main(mis->ms, fail_main, err, NULL);
    }
    error_free(err);
    return NULL;
}

/* ---- starting ------------------------------------------------------------------------- */

static int lookup_fd(void *opaque, const char *name, Error **errp)
{
    return monitor_fd_get(opaque, name, errp);
}

/* Open (file, exec, fd) or listen (unix, tcp) on the main thread: errors are replies. */
static bool incoming_open(MigrationIncoming *mis, Amber *s, const char *uri, Error **errp)
{
    ChannelAddress addr;
    bool listens;

    if (!channel_parse_uri(uri, &addr, errp)) {
        return false;
    }
    listens = addr.kind == CHANNEL_UNIX || addr.kind == CHANNEL_TCP;
    channel_address_clear(&addr);
    if (listens) {
        mis->listener = channel_listen(uri, errp);
        return mis->listener != NULL;
    }
    mis->ch = channel_open_incoming(uri, lookup_fd, s, errp);
    return mis->ch != NULL;
}

static bool incoming_start(Amber *s, MigrationIncoming *mis, const char *uri,
                           Error **errp)
{
    Machine *m = s->machine;

    mis->cancel_fd = migration_cancel_fd_new(errp);
    if (mis->cancel_fd < 0 || !incoming_open(mis, s, uri, errp)) {
        return false;
    }
    mis->uri = g_strdup(uri);
    mis->r = savevm_registry_new();
    mis->ram = ram_loader_new_memcpy(machine_ram(m));
    mis->img = machine_state_image_new(m);
    if (!ram_loader_register(mis->ram, mis->r, errp) ||
        !machine_state_register(m, mis->img, mis->r, errp)) {
        return false;
    }
    mis->started = true;
    migration_set_status(mis->ms, &mis->status, MIGRATION_STATUS_SETUP);
    mis->thread = g_thread_new("mig/dst", incoming_thread, mis);
    return true;
}

bool migration_incoming_begin(Amber *s, const char *uri, Error **errp)
{
    MigrationIncoming *mis = incoming(s);

    if (!strcmp(uri, "defer")) {
        return true;
    }
    if (!incoming_start(s, mis, uri, errp)) {
        error_prepend(errp, "load of migration failed: ");
        return false;
    }
    return true;
}

void qmp_migrate_incoming(Amber *s, const char *uri, Error **errp)
{
    MigrationIncoming *mis = incoming(s);

    if (!mis) {
        error_setg(errp, "'-incoming' was not specified on the command line");
        return;
    }
    if (mis->started) {
        error_setg(errp, "The incoming migration has already been started");
        return;
    }
    if (!strcmp(uri, "defer")) {
        error_setg(errp, "'defer' is only for the command line; give the URI to read "
                   "the stream from");
        return;
    }
    if (!incoming_start(s, mis, uri, errp)) {
        /* Nothing was loaded: a corrected URI may be tried again. */
        channel_abort(mis->ch);
        mis->ch = NULL;
        g_clear_pointer(&mis->listener, channel_listener_free);
        g_clear_pointer(&mis->r, savevm_registry_free);
        g_clear_pointer(&mis->ram, ram_loader_free);
        g_clear_pointer(&mis->img, machine_state_image_free);
        g_clear_pointer(&mis->uri, g_free);
        if (mis->cancel_fd >= 0) {
            close(mis->cancel_fd);
            mis->cancel_fd = -1;
        }
    }
}

/* ---- postcopy recovery and pause ------------------------------------------------------- */

void qmp_migrate_recover(Amber *s, const char *uri, Error **errp)
{
    MigrationIncoming *mis = incoming(s);
    ChannelListener *l;

    if (!mis || migration_incoming_status(mis->ms) != MIGRATION_STATUS_POSTCOPY_PAUSED) {
        error_setg(errp, "Migrate recover can only be run when postcopy is paused.");
        return;
    }
    /* The source connects again. */
    if (!channel_uri_reconnects(uri, "migrate-recover", errp)) {
        return;
    }
    pthread_mutex_lock(&mis->ms->lock);
    if (mis->recover || mis->recovering) {
        pthread_mutex_unlock(&mis->ms->lock);
        error_setg(errp, "a recovery is already under way");
        return;
    }
    pthread_mutex_unlock(&mis->ms->lock);
    l = channel_listen(uri, errp);
    if (!l) {
        return;
    }
    migration_set_status(mis->ms, &mis->status, MIGRATION_STATUS_POSTCOPY_RECOVER_SETUP);
    pthread_mutex_lock(&mis->ms->lock);
    mis->recover = l;
    pthread_cond_broadcast(&mis->ms->cond);
    pthread_mutex_unlock(&mis->ms->lock);
}

bool migration_incoming_pause(MigrationState *ms)
{
    int st = migration_incoming_status(ms);

    if (st != MIGRATION_STATUS_POSTCOPY_ACTIVE && st != MIGRATION_STATUS_POSTCOPY_RECOVER) {
        return false;
    }
    /*
     * As a broken link would: the load thread pauses.  So does the second
     * channel, or a wait for its end (a source that keeps it open and
     * silent) would hold the load for ever.
     */
    migration_link_shutdown(&ms->incoming->cur);
    postcopy_dest_shutdown(__atomic_load_n(&ms->incoming->postcopy, __ATOMIC_ACQUIRE));
    return true;
}

/* ---- exit ---------------------------------------------------------------------------- */

void migration_incoming_shutdown(MigrationState *ms)
{
    MigrationIncoming *mis = ms->incoming;

    if (!mis || !mis->thread) {
        return;
    }
    migration_cancel_fd_signal(mis->cancel_fd);
    /* A thread waiting in accept() wakes when the socket is shut down. */
    if (mis->listener) {
        shutdown(channel_listener_fd(mis->listener), SHUT_RDWR);
    }
    /*
     * ... and one waiting for a paused postcopy's source to reconnect, or
     * for a lazy restore to place its last page (it is freed only under
     * the lock, after the pointer is cleared).
     */
    pthread_mutex_lock(&ms->lock);
    if (mis->recovering) {
        shutdown(channel_listener_fd(mis->recovering), SHUT_RDWR);
    }
    if (mis->lazy_restore) {
        lazy_restore_stop(mis->lazy_restore);
    }
    pthread_mutex_unlock(&ms->lock);
    g_thread_join(mis->thread);
    mis->thread = NULL;
}
