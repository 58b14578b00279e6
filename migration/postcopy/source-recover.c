/*
 * Postcopy, source side: pause after a broken connection, and resume.
 *
 * After the switch the guest may run on the destination, so a failure of
 * the connection (or of the peer, or `migrate-pause`) never ends the
 * migration: the migration thread tears the connection down, the status
 * becomes postcopy-paused, and it waits for `migrate` with resume=true.
 * Then, over a new connection, as QEMU does:
 *
 *   postcopy-recover-setup   connect (and the second channel with preempt)
 *   postcopy-recover         RECV_BITMAP for each block; the destination
 *                            answers with the pages it holds; every page it
 *                            lacks is to send again, whatever went before
 *                            (pages in flight at the break included)
 *                            POSTCOPY_RESUME, answered by RESUME_ACK
 *   postcopy-active          the page service goes on in the new stream;
 *                            the destination asks again for every page its
 *                            vCPUs still wait on, and those go first
 *
 * A failure during recovery pauses again; any number of pauses may come.
 */
#include <inttypes.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "source-int.h"
#include "migration/postcopy-messages.h"
#include "qapi-commands.h"
#include "util/bitmap.h"

/* query-migrate's error-desc while paused. */
static void set_error(MigrationState *ms, Error *err)
{
    pthread_mutex_lock(&ms->lock);
    error_free(ms->error);
    ms->error = err;
    pthread_mutex_unlock(&ms->lock);
}

/*
 * Tear the connection down and say why; the guest's pages all stay here.
 * orig: the migration's first stream, which its thread closes at the end.
 */
static void pause_migration(PostcopySource *ps, QEMUFile *orig, Error *err)
{
    MigrationState *ms = ps->ms;

    /* A writer blocked on a destination that does not read must not hold the pause. */
    migration_link_shutdown(&ps->p_link);
    stop_preempt(ps, NULL);
    rp_stop(ps);
    /* The destination's bad message is the cause, not the write it broke. */
    if (ps->rp_err && ps->rp_cause) {
        error_free(err);
        err = error_copy(ps->rp_err);
    }
    if (!err) {
        error_setg(&err, "the connection failed");
    }
    error_report("postcopy paused: %s", error_get_pretty(err));
    set_error(ms, err);
    /* What went out on a stream given up stays counted in `transferred`. */
    if (ps->rf) {
        __atomic_add_fetch(&ms->bytes_base, qemu_file_transferred(ps->rf), __ATOMIC_RELAXED);
        qemu_fclose(ps->rf);
        ps->rf = NULL;
    } else if (!ps->orig_counted) {
        __atomic_add_fetch(&ms->bytes_base, qemu_file_transferred(orig), __ATOMIC_RELAXED);
        ps->orig_counted = true;
    }
    g_clear_pointer(&ps->rch, channel_abort);
    pthread_mutex_lock(&ps->lock);
    /* Requests that came before the break are asked again after it. */
    g_array_set_size(ps->queue, 0);
    ps->bitmaps_due = 0;
    ps->resume_acked = false;
    pthread_mutex_unlock(&ps->lock);
    migration_set_status(ms, &ms->status, MIGRATION_STATUS_POSTCOPY_PAUSED);
}

/* The URI of `migrate` with resume, or NULL on exit. */
static char *wait_resume(PostcopySource *ps)
{
    char *uri;

    pthread_mutex_lock(&ps->lock);
    while (!ps->resume_uri && !ps->cancelled) {
        pthread_cond_wait(&ps->cond, &ps->lock);
    }
    uri = ps->resume_uri;
    ps->resume_uri = NULL;
    pthread_mutex_unlock(&ps->lock);
    return uri;
}

/* Wait until *flag says done (bitmaps all in, the ack came) or the return path ends. */
static bool wait_for(PostcopySource *ps, bool (*done)(PostcopySource *ps), const char *what,
                     Error **errp)
{
    bool ok;

    pthread_mutex_lock(&ps->lock);
    while (!done(ps) && !ps->rp_ended && !ps->cancelled) {
        pthread_cond_wait(&ps->cond, &ps->lock);
    }
    ok = done(ps);
    if (!ok) {
        error_setg(errp, "recovery: %s", ps->rp_err ? error_get_pretty(ps->rp_err)
                   : ps->cancelled ? "migration cancelled"
                   : what);
    }
    pthread_mutex_unlock(&ps->lock);
    return ok;
}

static bool bitmaps_in(PostcopySource *ps)
{
    return ps->bitmaps_due == 0;
}

static bool acked(PostcopySource *ps)
{
    return ps->resume_acked;
}

static bool resume(PostcopySource *ps, const char *uri, Error **errp)
{
    MigrationState *ms = ps->ms;

    migration_set_status(ms, &ms->status, MIGRATION_STATUS_POSTCOPY_RECOVER_SETUP);
    ps->rch = channel_connect(uri, ms->cancel_fd, errp);
    if (!ps->rch || !migration_io_init(&ps->r_io, ps->rch->fd, ms->cancel_fd, errp)) {
        return false;
    }
    ps->rf = migration_io_output(&ps->r_io, uri);
    if (!rp_start(ps, ps->rch->fd, errp) ||
        (migrate_postcopy_preempt(&ms->opts) && !preempt_connect(ps, uri, errp))) {
        return false;
    }
    migration_set_status(ms, &ms->status, MIGRATION_STATUS_POSTCOPY_RECOVER);
    ram_saver_restart(ps->rs);
    pthread_mutex_lock(&ps->lock);
    ps->bitmaps_due = ps->ram->nblocks;
    pthread_mutex_unlock(&ps->lock);
    for (int b = 0; b < ps->ram->nblocks; b++) {
        const char *name = ps->ram->blocks[b]->idstr;
        uint8_t payload[256];
        size_t len = strlen(name);

        payload[0] = len;
        memcpy(payload + 1, name, len);
        savevm_put_command(ps->rf, MIG_CMD_RECV_BITMAP, len + 1, payload);
    }
    qemu_fflush(ps->rf);
    if (!qemu_file_check(ps->rf, errp) ||
        !wait_for(ps, bitmaps_in, "the destination closed before it said which pages "
                  "it holds", errp)) {
        return false;
    }
    savevm_put_command(ps->rf, MIG_CMD_POSTCOPY_RESUME, 0, NULL);
    qemu_fflush(ps->rf);
    if (!qemu_file_check(ps->rf, errp) ||
        !wait_for(ps, acked, "the destination closed before it acknowledged the resume",
                  errp)) {
        return false;
    }
    if (ps->pch) {
        if (!preempt_wait_ack(ps, ms->cancel_fd, errp)) {
            return false;
        }
        preempt_start(ps);
    }
    migration_set_status(ms, &ms->status, MIGRATION_STATUS_POSTCOPY_ACTIVE);
    return true;
}

bool postcopy_pause_and_resume(PostcopySource *ps, QEMUFile **f, Error *err, Error **errp)
{
    MigrationState *ms = ps->ms;

    for (;;) {
        char *uri;
        bool ok;

        /* Exit (migration_shutdown) during the postcopy phase: nothing to resume. */
        if (migration_cancelled(ms, NULL)) {
            error_propagate(errp, err);
            return false;
        }
        pause_migration(ps, *f, err);
        uri = wait_resume(ps);
        if (!uri) {
            error_setg(errp, "amber is exiting");
            return false;
        }
        err = NULL;
        ok = resume(ps, uri, &err);
        g_free(uri);
        if (ok) {
            *f = ps->rf;
            return true;
        }
        /* A failed recovery pauses again (and closes what it opened). */
    }
}

/* ---- the return path's part -------------------------------------------------------------- */

bool rp_recv_bitmap(PostcopySource *ps, QEMUFile *f, const char *name, Error **errp)
{
    g_autofree uint64_t *words = NULL;
    g_autofree unsigned long *have = NULL;
    const RAMBlock *rb = NULL;
    uint64_t npages, want, size, ending;
    int b;

    b = ram_block_index(ps->ram, name);
    rb = b < 0 ? NULL : ps->ram->blocks[b];
    if (!rb) {
        g_autofree char *safe = g_strescape(name, NULL);

        error_setg(errp, "RECV_BITMAP for block '%s', which does not exist", safe);
        return false;
    }
    pthread_mutex_lock(&ps->lock);
    if (ps->bitmaps_due <= 0) {
        pthread_mutex_unlock(&ps->lock);
        error_setg(errp, "RECV_BITMAP for block '%s' that was not asked for", rb->idstr);
        return false;
    }
    pthread_mutex_unlock(&ps->lock);
    npages = rb->used_length / RAM_PAGE_SIZE;
    /* QEMU's layout: bytes for the bits, rounded up to whole 64-bit words. */
    want = (npages + 63) / 64 * 8;
    size = qemu_get_be64(f, "received bitmap size");
    if (!qemu_file_check(f, errp)) {
        return false;
    }
    if (size != want) {
        error_setg(errp, "RECV_BITMAP of block '%s' has %" PRIu64 " bytes, expected %"
                   PRIu64 " for its %" PRIu64 " pages", rb->idstr, size, want, npages);
        return false;
    }
    words = g_malloc(size);
    qemu_get_buffer(f, words, size, "received bitmap");
    ending = qemu_get_be64(f, "received bitmap end marker");
    if (!qemu_file_check(f, errp)) {
        return false;
    }
    if (ending != POSTCOPY_RECV_BITMAP_ENDING) {
        error_setg(errp, "RECV_BITMAP of block '%s' ends with 0x%" PRIx64 ", not the "
                   "marker 0x%" PRIx64, rb->idstr, ending, POSTCOPY_RECV_BITMAP_ENDING);
        return false;
    }
    /* Little-endian 64-bit words on the wire. */
    have = bitmap_new(npages);
    for (uint64_t i = 0; i < size / 8 && i < BITS_TO_LONGS(npages); i++) {
        have[i] = GUINT64_FROM_LE(words[i]);
    }
    pthread_mutex_lock(&ps->todo_lock);
    ram_dirty_mark_missing(ps->todo, b, have);
    /* A huge page the destination holds in part is sent again whole. */
    ram_dirty_widen(ps->todo, b, ram_block_host_pages(ps->ram->blocks[b]));
    pthread_mutex_unlock(&ps->todo_lock);
    pthread_mutex_lock(&ps->lock);
    ps->bitmaps_due--;
    pthread_cond_broadcast(&ps->cond);
    pthread_mutex_unlock(&ps->lock);
    return true;
}

void rp_resume_ack(PostcopySource *ps, uint32_t value)
{
    pthread_mutex_lock(&ps->lock);
    ps->resume_acked = true;
    pthread_cond_broadcast(&ps->cond);
    pthread_mutex_unlock(&ps->lock);
}

/* ---- commands ------------------------------------------------------------------------- */

void postcopy_source_resume(MigrationState *ms, const char *uri, Error **errp)
{
    PostcopySource *ps = ms->postcopy;

    if (!ps || migration_outgoing_status(ms) != MIGRATION_STATUS_POSTCOPY_PAUSED) {
        error_setg(errp, "Cannot resume if there is no paused migration");
        return;
    }
    /* It connects again to where the destination listens. */
    if (!channel_uri_reconnects(uri, "resume", errp)) {
        return;
    }
    pthread_mutex_lock(&ps->lock);
    if (ps->resume_uri) {
        error_setg(errp, "a resume is already under way");
    } else {
        ps->resume_uri = g_strdup(uri);
        pthread_cond_broadcast(&ps->cond);
    }
    pthread_mutex_unlock(&ps->lock);
}

bool postcopy_source_pause(MigrationState *ms, Error **errp)
{
    PostcopySource *ps = ms->postcopy;
    int st = migration_outgoing_status(ms);

    if (!ps || (st != MIGRATION_STATUS_POSTCOPY_ACTIVE &&
                st != MIGRATION_STATUS_POSTCOPY_RECOVER)) {
        return false;
    }
    /*
     * As a broken link would: the migration thread pauses.  Its second
     * channel goes too, or a writer stuck on it would hold the pause up.
     */
    shutdown(__atomic_load_n(&ps->cur_fd, __ATOMIC_ACQUIRE), SHUT_RDWR);
    migration_link_shutdown(&ps->p_link);
    return true;
}
