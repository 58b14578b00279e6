/*
 * Postcopy, source side: the return-path reader, the switch, and the page
 * source of the postcopy phase (see postcopy.h for the phases).
 *
 * Threads: the migration thread writes the stream and owns `todo` (the
 * pages still to send, precopy's dirty bitmap with logging off).  The
 * return-path thread reads the destination's messages and queues page
 * requests; the migration thread takes the queue whole between pages, so a
 * requested page waits for at most the page being written.
 *
 * Each page goes out once after the switch: a request for a page no longer
 * in `todo` (sent already, or never written since precopy sent it, which
 * the destination places itself) is dropped.
 *
 * With postcopy-preempt a third thread (`mig/preempt`) takes the queue and
 * writes requested pages to a second connection, while the migration
 * thread pushes on the main stream: a requested page then never waits for
 * the push.  Both take pages out of `todo` under todo_lock, so each page
 * still goes out once, on one channel or the other.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "source-int.h"
#include "migration/postcopy-messages.h"
#include "qapi-commands.h"
#include "util/bitmap.h"
#include "util/cutils.h"
#include "util/stat.h"
#include "util/trace.h"

static PostcopySource *ps_of(MigrationState *ms)
{
    return ms->postcopy;
}

void postcopy_source_prepare(MigrationState *ms)
{
    PostcopySource *ps;

    if (!migrate_postcopy_ram(&ms->opts)) {
        return;
    }
    ps = g_new0(PostcopySource, 1);
    ps->ms = ms;
    ps->ram = machine_ram(ms->s->machine);
    ps->rs = ms->ram;
    /* Made here, before the thread: migrate_cancel and exit signal it from the main thread. */
    ps->rp_cancel_fd = migration_cancel_fd_new(NULL);
    ps->rp_io.fd = -1;
    pthread_mutex_init(&ps->lock, NULL);
    pthread_mutex_init(&ps->todo_lock, NULL);
    pthread_cond_init(&ps->cond, NULL);
    ps->queue = g_array_new(FALSE, FALSE, sizeof(PageRequest));
    migration_link_init(&ps->p_link);
    for (int b = 0; b < ps->ram->nblocks; b++) {
        ps->queue_max += ps->ram->blocks[b]->used_length / RAM_PAGE_SIZE;
    }
    ms->postcopy = ps;
}

void postcopy_source_free(MigrationState *ms)
{
    PostcopySource *ps = ps_of(ms);

    if (!ps) {
        return;
    }
    postcopy_source_end(ms, NULL);
    if (ps->rp_cancel_fd >= 0) {
        close(ps->rp_cancel_fd);
    }
    error_free(ps->rp_err);
    g_array_free(ps->queue, TRUE);
    savevm_vmdesc_free(ps->desc);
    g_clear_pointer(&ps->prs, ram_saver_free);
    migration_link_destroy(&ps->p_link);
    pthread_mutex_destroy(&ps->todo_lock);
    pthread_mutex_destroy(&ps->lock);
    pthread_cond_destroy(&ps->cond);
    g_free(ps);
    ms->postcopy = NULL;
}

bool postcopy_switch_requested(MigrationState *ms)
{
    return ps_of(ms) && __atomic_load_n(&ps_of(ms)->requested, __ATOMIC_ACQUIRE);
}

bool postcopy_switched(MigrationState *ms)
{
    return ps_of(ms) && __atomic_load_n(&ps_of(ms)->switched, __ATOMIC_ACQUIRE);
}

void qmp_migrate_start_postcopy(Amber *s, Error **errp)
{
    MigrationState *ms = migration_state(s);
    int st = migration_outgoing_status(ms);

    if (!migrate_postcopy_ram(&ms->opts)) {
        error_setg(errp, "Enable postcopy with migrate_set_capability before the start "
                   "of migration");
        return;
    }
    if ((st != MIGRATION_STATUS_SETUP && st != MIGRATION_STATUS_ACTIVE) || !ps_of(ms)) {
        error_setg(errp, "Postcopy must be started after migration has been started");
        return;
    }
    __atomic_store_n(&ps_of(ms)->requested, true, __ATOMIC_RELEASE);
}

/* ---- the return path ---------------------------------------------------------------- */

static void rp_finish(PostcopySource *ps, Error *err, bool cause)
{
    pthread_mutex_lock(&ps->lock);
    ps->rp_ended = true;
    if (err) {
        ps->rp_err = err;
        ps->rp_cause = cause;
        err = NULL;
    }
    pthread_cond_broadcast(&ps->cond);
    pthread_mutex_unlock(&ps->lock);
    error_free(err);
}

/*
 * One request, checked against the blocks, onto the queue.  A destination
 * asks only once the guest runs there, and for each missing page once
 * (again after a resume at most): more requests waiting than the guest has
 * pages is a peer flooding the queue, not faults.
 */
static bool rp_request(PostcopySource *ps, const RpMessage *m, int *last, Error **errp)
{
    int b = rp_request_block(ps->ram, m, last, errp);
    PageRequest req;
    bool full;

    if (b < 0) {
        return false;
    }
    if (!__atomic_load_n(&ps->switched, __ATOMIC_ACQUIRE)) {
        error_setg(errp, "a page request before the switch to postcopy");
        return false;
    }
    req = (PageRequest){ .block = b, .page = m->start / RAM_PAGE_SIZE,
                         .npages = m->length / RAM_PAGE_SIZE };
    trace(postcopy_request, "block=%d page=0x%" PRIx64 " n=%" PRIu64, b, req.page,
          req.npages);
    stat_add(&ps->requests, 1);
    pthread_mutex_lock(&ps->lock);
    full = ps->queue->len >= ps->queue_max;
    if (!full) {
        g_array_append_val(ps->queue, req);
        pthread_cond_broadcast(&ps->cond);
    }
    pthread_mutex_unlock(&ps->lock);
    if (full) {
        error_setg(errp, "%" PRIu64 " page requests are waiting, as many as the guest has "
                   "pages", ps->queue_max);
    }
    return !full;
}

static gpointer rp_thread(gpointer opaque)
{
    PostcopySource *ps = opaque;
    Error *err = NULL;
    bool cause = true;
    int last = -1;

    for (;;) {
        RpMessage m;

        if (!rp_read(ps->rp_f, &m, &err)) {
            /* A bad message is the destination's doing; EOF or a reset is the link's. */
            cause = qemu_file_get_error(ps->rp_f) == 0;
            error_prepend(&err, "return path: ");
            break;
        }
        if (m.type == MIG_RP_MSG_SHUT) {
            pthread_mutex_lock(&ps->lock);
            ps->shut = true;
            ps->shut_value = m.value;
            pthread_mutex_unlock(&ps->lock);
            if (m.value) {
                error_setg(&err, "the destination failed to load the stream (SHUT %u)",
                           m.value);
            }
            break;
        }
        if (m.type == MIG_RP_MSG_PONG) {
            trace(postcopy_pong, "value=%u", m.value);
            if (m.value == POSTCOPY_PING_ADVISED) {
                pthread_mutex_lock(&ps->lock);
                ps->advised = true;
                pthread_cond_broadcast(&ps->cond);
                pthread_mutex_unlock(&ps->lock);
            }
            continue;
        }
        if (m.type == MIG_RP_MSG_REQ_PAGES || m.type == MIG_RP_MSG_REQ_PAGES_ID) {
            if (!rp_request(ps, &m, &last, &err)) {
                error_prepend(&err, "bad message on the return path: ");
                break;
            }
            continue;
        }
        if (m.type == MIG_RP_MSG_RECV_BITMAP) {
            if (!rp_recv_bitmap(ps, ps->rp_f, m.name, &err)) {
                cause = qemu_file_get_error(ps->rp_f) == 0;
                error_prepend(&err, "bad message on the return path: ");
                break;
            }
            continue;
        }
        if (m.type == MIG_RP_MSG_RESUME_ACK) {
            rp_resume_ack(ps, m.value);
            continue;
        }
        error_setg(&err, "return path: unexpected message type %u", m.type);
        break;
    }
    if (err) {
        /* Whatever the migration thread waits on (a write, a read) must end now. */
        shutdown(ps->rp_io.fd, SHUT_RDWR);
    }
    rp_finish(ps, err, cause);
    return NULL;
}

bool rp_start(PostcopySource *ps, int stream_fd, Error **errp)
{
    /* Its own descriptor: the QEMUFiles of the two directions keep their own flags. */
    int fd = dup(stream_fd);

    if (fd < 0) {
        error_setg_errno(errp, errno, "cannot open the return path");
        return false;
    }
    if (ps->rp_cancel_fd < 0) {
        error_setg(errp, "cannot create an eventfd for the return path");
        close(fd);
        return false;
    }
    if (!migration_io_init(&ps->rp_io, fd, ps->rp_cancel_fd, errp)) {
        close(fd);
        return false;
    }
    pthread_mutex_lock(&ps->lock);
    ps->rp_ended = ps->shut = false;
    g_clear_pointer(&ps->rp_err, error_free);
    pthread_mutex_unlock(&ps->lock);
    ps->rp_f = migration_io_input(&ps->rp_io, "return path");
    ps->rp_thread = g_thread_new("mig/rp", rp_thread, ps);
    __atomic_store_n(&ps->cur_fd, stream_fd, __ATOMIC_RELEASE);
    return true;
}

void rp_stop(PostcopySource *ps)
{
    if (ps->rp_thread) {
        /* Its read ends: the connection is given up. */
        shutdown(ps->rp_io.fd, SHUT_RDWR);
        g_thread_join(ps->rp_thread);
        ps->rp_thread = NULL;
    }
    if (ps->rp_f) {
        qemu_fclose(ps->rp_f);
        ps->rp_f = NULL;
        close(ps->rp_io.fd);
        ps->rp_io.fd = -1;
    }
}

bool preempt_connect(PostcopySource *ps, const char *uri, Error **errp)
{
    ps->pch = channel_connect(uri, ps->ms->cancel_fd, errp);
    if (!ps->pch) {
        error_prepend(errp, "postcopy-preempt: second channel: ");
        return false;
    }
    return true;
}

bool postcopy_source_start(MigrationState *ms, Error **errp)
{
    PostcopySource *ps = ps_of(ms);

    if (!ps) {
        return true;
    }
    /* The destination takes the second channel once the stream advises postcopy. */
    return rp_start(ps, ms->ch->fd, errp) &&
           (!migrate_postcopy_preempt(&ms->opts) || preempt_connect(ps, ms->uri, errp));
}

void postcopy_source_cancel(MigrationState *ms)
{
    PostcopySource *ps = ps_of(ms);

    if (ps) {
        pthread_mutex_lock(&ps->lock);
        ps->cancelled = true;
        pthread_cond_broadcast(&ps->cond);
        pthread_mutex_unlock(&ps->lock);
        /* A write to a stalled second channel must end too (exit). */
        migration_cancel_fd_signal(ps->rp_cancel_fd);
    }
}

void postcopy_source_end(MigrationState *ms, Error **errp)
{
    PostcopySource *ps = ps_of(ms);

    if (!ps) {
        return;
    }
    /* Ends the return-path reader's and the preempt writer's waits. */
    migration_cancel_fd_signal(ps->rp_cancel_fd);
    stop_preempt(ps, NULL);
    if (ps->rp_thread) {
        g_thread_join(ps->rp_thread);
        ps->rp_thread = NULL;
    }
    rp_stop(ps);
    if (ps->rf) {
        qemu_fclose(ps->rf);
        ps->rf = NULL;
    }
    g_clear_pointer(&ps->rch, channel_abort);
    if (errp && *errp && ps->rp_err && ps->rp_cause) {
        error_free(*errp);
        *errp = error_copy(ps->rp_err);
    }
}

/* ---- the head -------------------------------------------------------------------------- */

bool postcopy_save_head(MigrationState *ms, SaveStateRegistry *r, QEMUFile *f,
                        Error **errp)
{
    uint8_t ping[4];

    savevm_put_header(f);
    savevm_put_configuration(f, AMBER_MACHINE_TYPE, NULL);
    /*
     * The destination opens its end and learns postcopy may come; its PONG
     * to the PING after ADVISE says it took the advice (the switch waits
     * for it: a destination that refuses fails the migration before it).
     */
    savevm_put_command(f, MIG_CMD_OPEN_RETURN_PATH, 0, NULL);
    postcopy_put_advise(f, ram_list_page_summary(machine_ram(ms->s->machine)), RAM_PAGE_SIZE);
    put_be32_at(ping, POSTCOPY_PING_ADVISED);
    savevm_put_command(f, MIG_CMD_PING, sizeof(ping), ping);
    ram_saver_set_postcopy(ms->ram, true);
    return savevm_save_setup(r, f, errp);
}

/* ---- the switch ------------------------------------------------------------------------- */

/*
 * Huge pages go whole: one with any page still to send is sent (and so
 * discarded) whole, since the destination can neither drop nor place a
 * part of one.  Before the page service starts.
 */
static void widen_todo(PostcopySource *ps)
{
    for (int b = 0; b < ps->ram->nblocks; b++) {
        ram_dirty_widen(ps->todo, b, ram_block_host_pages(ps->ram->blocks[b]));
    }
}

/* POSTCOPY_RAM_DISCARD for every run of pages still to send, 12 runs per command. */
static void send_discards(PostcopySource *ps, QEMUFile *f)
{
    for (int b = 0; b < ps->ram->nblocks; b++) {
        uint64_t np = ram_dirty_block_pages(ps->todo, b);
        PostcopyRange r[POSTCOPY_DISCARD_MAX_RANGES];
        size_t n = 0;

        for (uint64_t p = ram_dirty_next(ps->todo, b, 0); p < np;) {
            uint64_t e = ram_dirty_next_clear(ps->todo, b, p);

            r[n++] = (PostcopyRange){ p * RAM_PAGE_SIZE, (e - p) * RAM_PAGE_SIZE };
            if (n == POSTCOPY_DISCARD_MAX_RANGES) {
                postcopy_put_discard(f, ps->ram->blocks[b]->idstr, r, n);
                n = 0;
            }
            p = ram_dirty_next(ps->todo, b, e);
        }
        if (n) {
            postcopy_put_discard(f, ps->ram->blocks[b]->idstr, r, n);
        }
    }
}

/* LISTEN, the device sections (described into ps->desc) and RUN, in memory. */
static QEMUFile *build_package(PostcopySource *ps, SaveStateRegistry *r, Error **errp)
{
    QEMUFile *pf = qemu_file_new_mem_output("postcopy package");

    savevm_put_command(pf, MIG_CMD_POSTCOPY_LISTEN, 0, NULL);
    ps->desc = savevm_vmdesc_new(SAVEVM_PAGE_SIZE);
    if (!savevm_save_devices(r, pf, ps->desc, errp)) {
        qemu_fclose(pf);
        return NULL;
    }
    savevm_put_command(pf, MIG_CMD_POSTCOPY_RUN, 0, NULL);
    return pf;
}

static bool send_package(PostcopySource *ps, QEMUFile *f, QEMUFile *pf, Error **errp)
{
    size_t len;
    const uint8_t *data = qemu_file_mem_data(pf, &len);

    if (!data) {
        return qemu_file_check(pf, errp);
    }
    if (len > POSTCOPY_PACKAGED_MAX) {
        error_setg(errp, "the device state takes %zu bytes, more than a postcopy "
                   "package holds (%u)", len, POSTCOPY_PACKAGED_MAX);
        return false;
    }
    postcopy_put_packaged(f, len);
    qemu_put_buffer(f, data, len);
    qemu_fflush(f);
    return qemu_file_check(f, errp);
}

/* ---- the page source of the postcopy phase --------------------------------------------- */

/*
 * A huge page whose first page is `first`, taken whole from `todo` (under
 * todo_lock): after widen_todo() its pages are marked together
 * and leave together, so it goes out whole on one channel.  Its bits are
 * all set, so they are dropped: 2 MiB at a time, no allocation under the lock.
 */
static void take_huge_page(PostcopySource *ps, int b, uint64_t first)
{
    uint64_t unit = ram_block_host_pages(ps->ram->blocks[b]);
    unsigned long bits[BITS_TO_LONGS(512)];

    for (uint64_t off = 0; off < unit; off += 512) {
        ram_dirty_take(ps->todo, b, first + off, MIN(512, unit - off), bits, NULL);
    }
}

/* Its pages in order, with nothing between them: the destination gathers them. */
static void put_huge_page(RamSaver *rs, QEMUFile *f, const RAMBlock *rb, uint64_t first)
{
    for (uint64_t p = first; p < first + ram_block_host_pages(rb); p++) {
        ram_saver_put_guest_page(rs, f, rb, p * RAM_PAGE_SIZE, true, true);
    }
}

/* Page `page` of block b into f (records of rs), if it is still to send. */
static uint64_t send_page(PostcopySource *ps, QEMUFile *f, RamSaver *rs, int b,
                          uint64_t page)
{
    uint64_t np = ram_dirty_block_pages(ps->todo, b);
    uint64_t unit = ram_block_host_pages(ps->ram->blocks[b]);
    uint64_t start = page - page % POSTCOPY_CHUNK;
    uint64_t n = MIN(POSTCOPY_CHUNK, np - start);
    unsigned long bits;
    unsigned long me = 1UL << (page - start);

    pthread_mutex_lock(&ps->todo_lock);
    if (page >= np || !ram_dirty_test(ps->todo, b, page)) {
        pthread_mutex_unlock(&ps->todo_lock);
        /*
         * Sent already, or taken by the push and maybe still in the main
         * stream's buffer: that buffer must go out now, not at its next
         * flush (a rate-limited push holds it up to 100 ms).
         */
        __atomic_store_n(&ps->flush_main, true, __ATOMIC_RELEASE);
        pthread_mutex_lock(&ps->lock);
        pthread_cond_broadcast(&ps->cond);
        pthread_mutex_unlock(&ps->lock);
        return 0;
    }
    if (unit > 1) {
        take_huge_page(ps, b, page);
        pthread_mutex_unlock(&ps->todo_lock);
        put_huge_page(rs, f, ps->ram->blocks[b], page);
        return unit;
    }
    /* Logging is off: taking re-arms nothing and cannot fail. */
    ram_dirty_take(ps->todo, b, start, n, &bits, NULL);
    bits &= ~me;
    ram_dirty_put_back(ps->todo, b, start, n, &bits);
    pthread_mutex_unlock(&ps->todo_lock);
    /* The guest is stopped: the page cannot change until the stream has it. */
    ram_saver_put_guest_page(rs, f, ps->ram->blocks[b], page * RAM_PAGE_SIZE, true, true);
    return 1;
}

/*
 * Every queued request into f, each page alone, then a flush (after an EOS
 * on the preempt channel, which ends each burst); the push goes on from
 * the last request.
 */
static uint64_t serve_requests(PostcopySource *ps, QEMUFile *f, RamSaver *rs, bool eos)
{
    g_autoptr(GArray) q = g_array_new(FALSE, FALSE, sizeof(PageRequest));
    uint64_t sent = 0;

    pthread_mutex_lock(&ps->lock);
    if (ps->queue->len) {
        GArray *t = ps->queue;

        ps->queue = q;
        q = t;
    }
    pthread_mutex_unlock(&ps->lock);
    for (guint i = 0; i < q->len; i++) {
        const PageRequest *req = &g_array_index(q, PageRequest, i);
        /* A request is for whole host pages (checked when it came). */
        uint64_t unit = ram_block_host_pages(ps->ram->blocks[req->block]);

        for (uint64_t p = req->page; p < req->page + req->npages; p += unit) {
            sent += send_page(ps, f, rs, req->block, p);
        }
        /* Locality: what the guest touches next is most likely near. */
        pthread_mutex_lock(&ps->todo_lock);
        ps->push_block = req->block;
        ps->push_page = req->page + req->npages;
        pthread_mutex_unlock(&ps->todo_lock);
    }
    if (sent) {
        if (eos) {
            qemu_put_be64(f, RAM_SAVE_FLAG_EOS);
        }
        qemu_fflush(f);
    }
    return sent;
}

static bool requests_queued(PostcopySource *ps)
{
    bool any;

    pthread_mutex_lock(&ps->lock);
    any = ps->queue->len > 0;
    pthread_mutex_unlock(&ps->lock);
    return any;
}

/* Take the marked pages of the next chunk from the push position; false when none is left. */
static bool take_chunk(PostcopySource *ps, int *b, uint64_t *start, unsigned long *bits)
{
    bool found = false;

    pthread_mutex_lock(&ps->todo_lock);
    for (int wrapped = 0; wrapped < 2 && !found;) {
        uint64_t np, next, n, unit;

        if (ps->push_block >= ps->ram->nblocks) {
            ps->push_block = 0;
            ps->push_page = 0;
            wrapped++;
            continue;
        }
        np = ram_dirty_block_pages(ps->todo, ps->push_block);
        next = ram_dirty_next(ps->todo, ps->push_block, ps->push_page);
        if (next >= np) {
            ps->push_block++;
            ps->push_page = 0;
            continue;
        }
        *b = ps->push_block;
        unit = ram_block_host_pages(ps->ram->blocks[*b]);
        if (unit > 1) {
            /* A huge page: whole, and *bits is 0 (its pages all go). */
            *start = next - next % unit;
            take_huge_page(ps, *b, *start);
            *bits = 0;
            ps->push_page = *start + unit;
            found = true;
            continue;
        }
        *start = next - next % POSTCOPY_CHUNK;
        n = MIN(POSTCOPY_CHUNK, np - *start);
        ram_dirty_take(ps->todo, *b, *start, n, bits, NULL);
        ps->push_page = *start + n;
        found = true;
    }
    pthread_mutex_unlock(&ps->todo_lock);
    return found;
}

/* The push: the next chunk's pages on the main stream. */
static uint64_t push_chunk(PostcopySource *ps, QEMUFile *f)
{
    unsigned long bits;
    uint64_t start, count = 0;
    int b;

    if (!take_chunk(ps, &b, &start, &bits)) {
        return 0;
    }
    if (ram_block_host_pages(ps->ram->blocks[b]) > 1) {
        put_huge_page(ps->rs, f, ps->ram->blocks[b], start);
        return ram_block_host_pages(ps->ram->blocks[b]);
    }
    for (; bits; bits &= bits - 1) {
        uint64_t page = start + __builtin_ctzl(bits);

        ram_saver_put_guest_page(ps->rs, f, ps->ram->blocks[b], page * RAM_PAGE_SIZE,
                                 true, true);
        count++;
    }
    return count;
}

static int postcopy_fill(void *opaque, RamSaver *rs, QEMUFile *f, uint64_t max_pages,
                         bool final, Error **errp)
{
    PostcopySource *ps = opaque;
    uint64_t done = 0;

    for (;;) {
        /* With the preempt channel its own thread serves requests. */
        if (!ps->pf) {
            done += serve_requests(ps, f, rs, false);
        }
        if (__atomic_exchange_n(&ps->flush_main, false, __ATOMIC_ACQ_REL)) {
            qemu_fflush(f);
        }
        if (!ram_dirty_pending(ps->todo)) {
            return 1;
        }
        if (!qemu_file_check(f, errp)) {
            return -1;
        }
        if (!final && (done >= max_pages || qemu_file_rate_limit_exceeded(f))) {
            return 0;
        }
        if (ps->pf || !requests_queued(ps)) {
            done += push_chunk(ps, f);
        }
    }
}

/* ---- postcopy-preempt: the second channel ------------------------------------------- */

/* Before the guest stops: the destination took the second channel and said so. */
bool postcopy_source_ready(MigrationState *ms, Error **errp)
{
    PostcopySource *ps = ps_of(ms);
    bool ok;

    if (!ps) {
        return true;
    }
    pthread_mutex_lock(&ps->lock);
    while (!ps->advised && !ps->rp_ended && !ps->cancelled) {
        pthread_cond_wait(&ps->cond, &ps->lock);
    }
    ok = ps->advised;
    if (!ok) {
        error_setg(errp, "%s", ps->rp_err ? error_get_pretty(ps->rp_err)
                   : ps->cancelled ? "migration cancelled"
                   : "the destination did not take postcopy");
    }
    pthread_mutex_unlock(&ps->lock);
    return ok && (!ps->pch || preempt_wait_ack(ps, ms->cancel_fd, errp));
}

bool preempt_wait_ack(PostcopySource *ps, int cancel_fd, Error **errp)
{
    struct pollfd p[2];
    uint8_t ack = 0;
    int n;

    p[0] = (struct pollfd){ .fd = ps->pch->fd, .events = POLLIN };
    p[1] = (struct pollfd){ .fd = cancel_fd, .events = POLLIN };
    do {
        n = poll(p, 2, POSTCOPY_PREEMPT_WAIT_MS);
    } while (n < 0 && errno == EINTR);
    if (n > 0 && p[1].revents) {
        error_setg(errp, "migration cancelled");
        return false;
    }
    if (n <= 0 || read(ps->pch->fd, &ack, 1) != 1 || ack != POSTCOPY_PREEMPT_ACK) {
        error_setg(errp, "postcopy-preempt: the destination did not take the second "
                   "channel: set postcopy-preempt on both sides");
        return false;
    }
    if (!migration_io_init(&ps->p_io, ps->pch->fd, ps->rp_cancel_fd, errp)) {
        return false;
    }
    ps->pf = migration_io_output(&ps->p_io, "postcopy-preempt channel");
    /* query-migrate reads its counters from the main thread. */
    if (!ps->prs) {
        __atomic_store_n(&ps->prs, ram_saver_new(ps->ram), __ATOMIC_RELEASE);
    }
    ram_saver_restart(ps->prs);
    return true;
}

static gpointer preempt_thread(gpointer opaque)
{
    PostcopySource *ps = opaque;
    Error *err = NULL;

    pthread_mutex_lock(&ps->lock);
    for (;;) {
        while (!ps->queue->len && !ps->p_stop) {
            pthread_cond_wait(&ps->cond, &ps->lock);
        }
        if (!ps->queue->len) {
            break;
        }
        pthread_mutex_unlock(&ps->lock);
        serve_requests(ps, ps->pf, ps->prs, true);
        if (!qemu_file_check(ps->pf, &err)) {
            /* The migration thread must stop too: the link is gone. */
            shutdown(__atomic_load_n(&ps->cur_fd, __ATOMIC_ACQUIRE), SHUT_RDWR);
            pthread_mutex_lock(&ps->lock);
            break;
        }
        pthread_mutex_lock(&ps->lock);
    }
    pthread_mutex_unlock(&ps->lock);
    ps->p_err = err;
    return NULL;
}

void preempt_start(PostcopySource *ps)
{
    ps->p_stop = false;
    migration_link_set(&ps->p_link, ps->pch->fd);
    ps->p_thread = g_thread_new("mig/preempt", preempt_thread, ps);
}

/* Every page is out: the writer ends, the channel closes (the reader's EOF). */
bool stop_preempt(PostcopySource *ps, Error **errp)
{
    bool ok = true;

    if (ps->p_thread) {
        pthread_mutex_lock(&ps->lock);
        ps->p_stop = true;
        pthread_cond_broadcast(&ps->cond);
        pthread_mutex_unlock(&ps->lock);
        g_thread_join(ps->p_thread);
        ps->p_thread = NULL;
    }
    migration_link_set(&ps->p_link, -1);
    if (ps->p_err) {
        error_propagate(errp, ps->p_err);
        ps->p_err = NULL;
        ok = false;
    }
    if (ps->pf) {
        qemu_fflush(ps->pf);
        ok = ok && qemu_file_check(ps->pf, errp);
        qemu_fclose(ps->pf);
        ps->pf = NULL;
    }
    g_clear_pointer(&ps->pch, channel_abort);
    return ok;
}

static const RamPageSourceOps postcopy_pages = {
    .part_pages = POSTCOPY_PART_PAGES,
    .fill = postcopy_fill,
};

/* max-postcopy-bandwidth, which the user may change at any time (setting it resets the window). */
static void apply_limit(PostcopySource *ps, QEMUFile *f)
{
    uint64_t limit = __atomic_load_n(&ps->ms->opts.max_postcopy_bandwidth, __ATOMIC_RELAXED);

    if (limit != qemu_file_get_rate_limit(f)) {
        qemu_file_set_rate_limit(f, limit);
    }
}

/*
 * Between PART sections: the return path's failure ends the phase; with
 * the push over its bandwidth, wait out the limit or the next request.
 */
static bool between_parts(PostcopySource *ps, QEMUFile *f, Error **errp)
{
    int64_t delay = 0;
    bool ok;

    apply_limit(ps, f);
    if (qemu_file_rate_limit_exceeded(f)) {
        delay = qemu_file_rate_limit_delay_us(f);
    }
    pthread_mutex_lock(&ps->lock);
    if (delay > 0 && !ps->queue->len && !ps->rp_ended && !ps->cancelled &&
        !__atomic_load_n(&ps->flush_main, __ATOMIC_ACQUIRE)) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += delay / G_USEC_PER_SEC;
        ts.tv_nsec += (delay % G_USEC_PER_SEC) * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&ps->cond, &ps->lock, &ts);
    }
    ok = !ps->rp_ended;
    if (!ok) {
        error_setg(errp, "the return path closed before the end");
    }
    pthread_mutex_unlock(&ps->lock);
    return ok;
}

/* Pages until every one is out, the end of the stream, and the destination's SHUT. */
static bool wait_shut(PostcopySource *ps, Error **errp);

static bool postcopy_phase(PostcopySource *ps, SaveStateRegistry *r, QEMUFile *f,
                           Error **errp)
{
    MigrationState *ms = ps->ms;
    int ret;

    apply_limit(ps, f);
    while ((ret = migration_save_iterate(ms, r, f, false, errp)) == 0) {
        if (!between_parts(ps, f, errp)) {
            return false;
        }
    }
    /* Every page requested on the second channel is out before the main stream ends. */
    if (ret < 0 || !stop_preempt(ps, errp) || !savevm_save_complete(r, f, errp)) {
        return false;
    }
    savevm_put_eof(f);
    savevm_put_vmdesc(f, ps->desc);
    qemu_fflush(f);
    migration_publish_bytes(ms, f);
    return qemu_file_check(f, errp) && wait_shut(ps, errp);
}

/* After the last byte: the destination's SHUT says it has every page. */
static bool wait_shut(PostcopySource *ps, Error **errp)
{
    bool ok;

    pthread_mutex_lock(&ps->lock);
    while (!ps->rp_ended && !ps->cancelled) {
        pthread_cond_wait(&ps->cond, &ps->lock);
    }
    ok = ps->shut && ps->shut_value == 0;
    if (!ok && ps->rp_err) {
        error_propagate(errp, error_copy(ps->rp_err));
    } else if (!ok) {
        error_setg(errp, ps->cancelled ? "migration cancelled"
                                       : "the destination closed without confirming");
    }
    pthread_mutex_unlock(&ps->lock);
    return ok;
}

bool postcopy_complete(MigrationState *ms, SaveStateRegistry *r, QEMUFile *f,
                       MachineStateImage *img, RamDirty *todo, Error **errp)
{
    PostcopySource *ps = ps_of(ms);
    Machine *m = ms->s->machine;
    QEMUFile *pf;
    bool sent;

    __atomic_store_n(&ps->todo, todo, __ATOMIC_RELEASE);
    if (!machine_state_capture(m, img, errp) || !machine_state_register(m, img, r, errp)) {
        error_prepend(errp, "cannot read the machine state: ");
        return false;
    }
    pf = build_package(ps, r, errp);
    if (!pf) {
        return false;
    }
    widen_todo(ps);
    send_discards(ps, f);
    /* From here on a cancel is refused: the destination may run the guest. */
    if (!migration_change_status(ms, &ms->status, MIGRATION_STATUS_ACTIVE,
                                 MIGRATION_STATUS_POSTCOPY_ACTIVE)) {
        qemu_fclose(pf);
        error_setg(errp, "migration cancelled");
        return false;
    }
    __atomic_store_n(&ps->switched, true, __ATOMIC_RELEASE);
    sent = send_package(ps, f, pf, errp);
    qemu_fclose(pf);
    if (!sent) {
        return false;
    }
    /* The guest was down until here: the package is downtime, the rest postcopy. */
    __atomic_store_n(&ps->bytes_at_switch, qemu_file_transferred(f), __ATOMIC_RELAXED);
    if (ps->pf) {
        preempt_start(ps);
    }
    __atomic_store_n(&ps->switch_us, migration_now_us(), __ATOMIC_RELAXED);
    trace(postcopy_switch, "pending=%" PRIu64, ram_dirty_pending(todo));
    migration_publish_bytes(ms, f);

    ram_saver_set_source(ps->rs, &postcopy_pages, ps);
    ps->push_block = 0;
    ps->push_page = 0;
    /* Each failure pauses; each resume goes on over a new connection. */
    for (;;) {
        Error *err = NULL;

        if (postcopy_phase(ps, r, f, &err)) {
            return true;
        }
        if (!postcopy_pause_and_resume(ps, &f, err, errp)) {
            return false;
        }
    }
}

/* ---- query-migrate -------------------------------------------------------------------- */

void postcopy_source_info(MigrationState *ms, MigrationInfo *info)
{
    PostcopySource *ps = ps_of(ms);
    MigrationStats *st = info->ram;
    uint64_t at_switch;
    int64_t switch_us;
    RamDirty *todo;
    RamSaver *prs;

    if (!ps || !st) {
        return;
    }
    st->postcopy_requests = stat_get(&ps->requests);
    prs = __atomic_load_n(&ps->prs, __ATOMIC_ACQUIRE);
    if (prs) {
        RamCounters c;

        /* Pages of the second channel count as the main stream's do. */
        ram_saver_counters(prs, &c);
        st->normal += c.normal_pages;
        st->normal_bytes += c.normal_pages * RAM_PAGE_SIZE;
        st->duplicate += c.zero_pages;
    }
    if (!postcopy_switched(ms)) {
        return;
    }
    at_switch = __atomic_load_n(&ps->bytes_at_switch, __ATOMIC_RELAXED);
    switch_us = __atomic_load_n(&ps->switch_us, __ATOMIC_RELAXED);
    st->postcopy_bytes = st->transferred - MIN(st->transferred, at_switch);
    st->downtime_bytes = at_switch - MIN(at_switch, st->precopy_bytes);
    todo = __atomic_load_n(&ps->todo, __ATOMIC_ACQUIRE);
    st->remaining = todo ? ram_dirty_pending(todo) * RAM_PAGE_SIZE : 0;
    /* The guest was stopped from the stop until the destination could run it. */
    if (info->has_downtime && switch_us) {
        info->downtime = (switch_us - __atomic_load_n(&ms->stop_us, __ATOMIC_RELAXED)) /
                         1000;
    }
}
