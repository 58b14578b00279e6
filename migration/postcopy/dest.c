/*
 * Postcopy, destination side: the stream's postcopy commands, the return
 * path, and the fault thread that turns missing pages into requests.
 *
 * Until LISTEN the load is a precopy load: pages are written into RAM no
 * vCPU runs on.  Each POSTCOPY_RAM_DISCARD drops the pages the guest wrote
 * after they were sent (MADV_DONTNEED, or a hole punched in a memfd) and
 * forgets them in the loader.  LISTEN registers every block for missing-
 * page faults and switches the loader to UFFDIO_COPY; RUN, after the
 * device sections of the package, applies the device state and starts the
 * guest.  The load thread then goes on reading the stream: it is the
 * listen thread.
 *
 * A fault on a page precopy gave and no discard took back means the page
 * was never written here: it was a zero page, placed on the spot.  Any
 * other faulting page is asked for once (REQ_PAGES); the stream brings it.
 *
 * The return path is the stream's socket in the other direction, written
 * by the load thread (PONG, SHUT) and the fault thread (requests) under
 * one lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "postcopy.h"
#include "migration/postcopy-messages.h"
#include "util/bitmap.h"
#include "util/cutils.h"
#include "util/stat.h"
#include "util/trace.h"
#include "util/uffd.h"

#define FAULT_BATCH 16

struct PostcopyDest {
    MigrationState *ms;
    Machine *m;
    RamBlockList *ram;
    RamLoader *loader;
    SaveStateRegistry *r;
    int fd;                         /* the stream's descriptor */
    int cancel_fd;                  /* the incoming side's: ends return-path waits */
    const PostcopyDestOps *ops;
    void *opaque;

    /* the return path */
    pthread_mutex_t rp_lock;
    MigrationIO rp_io;
    QEMUFile *rp_f;
    int rp_last_block;              /* block of the last request, for REQ_PAGES */
    bool rp_broken;

    bool advised, listening;        /* load thread */
    bool recovering;                /* load thread: reconnected, RESUME not yet come */
    bool running;                   /* atomic */
    RamUffd *uffd;
    unsigned long *held[AMBER_MAX_RAM_BLOCKS];      /* precopy's, not discarded */
    unsigned long *requested[AMBER_MAX_RAM_BLOCKS]; /* atomic bits */
    GThread *fault_thread;
    int fault_stop_fd;
    PostcopyBlocktime *blocktime;   /* with postcopy-blocktime, from LISTEN */

    /* postcopy-preempt */
    ChannelListener *listener;      /* not ours */
    Channel *preempt_ch;            /* accepted at ADVISE, the reader's from LISTEN */
    PreemptReader *preempt;
    MigrationLink preempt_link;     /* the reader's socket: postcopy_dest_shutdown() */

    uint64_t requests, zero_placed;                 /* atomics */
};

static void close_return_path(PostcopyDest *pd);

PostcopyDest *postcopy_dest_new(MigrationState *ms, Machine *m, RamLoader *ram,
                                SaveStateRegistry *r, int fd, int cancel_fd,
                                const PostcopyDestOps *ops, void *opaque)
{
    PostcopyDest *pd = g_new0(PostcopyDest, 1);

    pd->ms = ms;
    pd->m = m;
    pd->ram = machine_ram(m);
    pd->loader = ram;
    pd->r = r;
    pd->fd = fd;
    pd->cancel_fd = cancel_fd;
    pd->ops = ops;
    pd->opaque = opaque;
    pd->rp_io.fd = -1;
    pd->rp_last_block = -1;
    pd->fault_stop_fd = -1;
    pthread_mutex_init(&pd->rp_lock, NULL);
    migration_link_init(&pd->preempt_link);
    return pd;
}

void postcopy_dest_shutdown(PostcopyDest *pd)
{
    if (pd) {
        migration_link_shutdown(&pd->preempt_link);
    }
}

static void stop_fault_thread(PostcopyDest *pd)
{
    if (pd->fault_thread) {
        migration_cancel_fd_signal(pd->fault_stop_fd);
        g_thread_join(pd->fault_thread);
        pd->fault_thread = NULL;
    }
}

void postcopy_dest_free(PostcopyDest *pd)
{
    if (!pd) {
        return;
    }
    stop_fault_thread(pd);
    migration_link_set(&pd->preempt_link, -1);
    preempt_reader_free(pd->preempt);
    channel_abort(pd->preempt_ch);
    /* Unregistering wakes any vCPU still waiting: the process is ending. */
    ram_uffd_free(pd->uffd);
    postcopy_blocktime_free(pd->blocktime);
    for (int i = 0; i < AMBER_MAX_RAM_BLOCKS; i++) {
        bitmap_free(pd->held[i]);
        bitmap_free(pd->requested[i]);
    }
    if (pd->fault_stop_fd >= 0) {
        close(pd->fault_stop_fd);
    }
    close_return_path(pd);
    pthread_mutex_destroy(&pd->rp_lock);
    migration_link_destroy(&pd->preempt_link);
    g_free(pd);
}

void postcopy_dest_set_listener(PostcopyDest *pd, ChannelListener *l)
{
    pd->listener = l;
}

bool postcopy_dest_drain(PostcopyDest *pd, Error **errp)
{
    return !pd || !pd->preempt || preempt_reader_finish(pd->preempt, errp);
}

bool postcopy_dest_pages_missing(PostcopyDest *pd)
{
    /* Registered from LISTEN until finish() has every page: read once the load ended. */
    return pd && postcopy_dest_running(pd) && pd->uffd;
}

bool postcopy_dest_running(PostcopyDest *pd)
{
    return pd && __atomic_load_n(&pd->running, __ATOMIC_ACQUIRE);
}

/* ---- the return path ----------------------------------------------------------------- */

static bool open_return_path(PostcopyDest *pd, Error **errp)
{
    struct stat st;
    int fd;

    if (pd->rp_f) {
        error_setg(errp, "the return path is already open");
        return false;
    }
    pd->rp_last_block = -1;
    if (fstat(pd->fd, &st) < 0 || !S_ISSOCK(st.st_mode)) {
        error_setg(errp, "the stream asks for a return path, but it does not come "
                   "over a socket");
        return false;
    }
    fd = dup(pd->fd);
    if (fd < 0) {
        error_setg_errno(errp, errno, "cannot open the return path");
        return false;
    }
    if (!migration_io_init(&pd->rp_io, fd, pd->cancel_fd, errp)) {
        close(fd);
        return false;
    }
    pthread_mutex_lock(&pd->rp_lock);
    pd->rp_f = migration_io_output(&pd->rp_io, "return path");
    pd->rp_broken = false;
    pthread_mutex_unlock(&pd->rp_lock);
    return true;
}

static void close_return_path(PostcopyDest *pd)
{
    pthread_mutex_lock(&pd->rp_lock);
    if (pd->rp_f) {
        qemu_fclose(pd->rp_f);
        close(pd->rp_io.fd);
        pd->rp_f = NULL;
    }
    pthread_mutex_unlock(&pd->rp_lock);
}

/* Run `put` on the return path and flush; a broken path stays broken. */
static bool rp_send_value(PostcopyDest *pd, uint16_t type, uint32_t value)
{
    bool ok;

    pthread_mutex_lock(&pd->rp_lock);
    if (pd->rp_f && !pd->rp_broken) {
        rp_put_value(pd->rp_f, type, value);
        qemu_fflush(pd->rp_f);
        pd->rp_broken = qemu_file_get_error(pd->rp_f) != 0;
    }
    ok = pd->rp_f && !pd->rp_broken;
    pthread_mutex_unlock(&pd->rp_lock);
    return ok;
}

/* Ask for the host page that starts at page `page` (a huge page whole). */
static void rp_request_page(PostcopyDest *pd, int b, uint64_t page)
{
    pthread_mutex_lock(&pd->rp_lock);
    if (pd->rp_f && !pd->rp_broken) {
        const RAMBlock *rb = pd->ram->blocks[b];
        const char *name = b == pd->rp_last_block ? NULL : rb->idstr;

        rp_put_req_pages(pd->rp_f, name, page * RAM_PAGE_SIZE,
                         ram_block_host_pages(rb) * RAM_PAGE_SIZE);
        qemu_fflush(pd->rp_f);
        pd->rp_broken = qemu_file_get_error(pd->rp_f) != 0;
        pd->rp_last_block = b;
    }
    pthread_mutex_unlock(&pd->rp_lock);
}

/* ---- faults ---------------------------------------------------------------------------- */

static uint64_t page_key(int b, uint64_t page)
{
    return (uint64_t)b << 56 | page;
}

/* The placement's hook: a page came; whoever waited for it is counted. */
static void page_placed(void *opaque, int b, uint64_t page)
{
    PostcopyDest *pd = opaque;

    if (test_bit_atomic(page, pd->requested[b])) {
        postcopy_blocktime_placed(pd->blocktime, page_key(b, page));
    }
}

static void handle_fault(PostcopyDest *pd, uint64_t addr, int tid)
{
    Error *err = NULL;
    uint64_t page, unit;
    int b;

    if (!ram_uffd_find(pd->uffd, addr, &b, &page)) {
        warn_report("postcopy: fault at 0x%" PRIx64 " outside guest RAM", addr);
        return;
    }
    /* On huge pages everything below is about the whole huge page. */
    unit = ram_block_host_pages(pd->ram->blocks[b]);
    page -= page % unit;
    if (ram_uffd_placed(pd->uffd, b, page)) {
        return;         /* placed since the fault was raised, which woke it */
    }
    if (bitmap_count_range(pd->held[b], page, unit) == unit) {
        /* Precopy gave it and it was never written here: a zero page. */
        if (ram_uffd_place_range(pd->uffd, b, page, unit, NULL, &err) < 0) {
            warn_report("postcopy: %s", error_get_pretty(err));
            error_free(err);
        }
        stat_add(&pd->zero_placed, unit);
        return;
    }
    if (pd->blocktime) {
        postcopy_blocktime_fault(pd->blocktime, page_key(b, page), tid);
    }
    if (!test_and_set_bit_atomic(page, pd->requested[b])) {
        trace(postcopy_fault_request, "block=%d page=0x%" PRIx64, b, page);
        stat_add(&pd->requests, 1);
        rp_request_page(pd, b, page);
    }
    /* Placed meanwhile, maybe before the hook could see the request: settle it. */
    if (pd->blocktime && ram_uffd_placed(pd->uffd, b, page)) {
        postcopy_blocktime_placed(pd->blocktime, page_key(b, page));
    }
}

static gpointer fault_thread(gpointer opaque)
{
    PostcopyDest *pd = opaque;

    for (;;) {
        struct uffd_msg msgs[FAULT_BATCH];
        Error *err = NULL;
        int n = uffd_wait_faults(ram_uffd_fd(pd->uffd), pd->fault_stop_fd, msgs, FAULT_BATCH,
                                 &err);

        if (n == UFFD_WAIT_STOPPED) {
            return NULL;
        }
        if (n < 0) {
            warn_report("postcopy: %s", error_get_pretty(err));
            error_free(err);
            return NULL;
        }
        for (int i = 0; i < n; i++) {
            handle_fault(pd, msgs[i].arg.pagefault.address, msgs[i].arg.pagefault.feat.ptid);
        }
    }
}

/* ---- commands ------------------------------------------------------------------------- */

static bool handle_advise(PostcopyDest *pd, const uint8_t *data, uint16_t len,
                          Error **errp)
{
    uint64_t summary, target;

    /* Once per migration: a second would take (and leak) another preempt channel. */
    if (pd->advised) {
        error_setg(errp, "POSTCOPY_ADVISE twice");
        return false;
    }
    if (!postcopy_parse_advise(data, len, &summary, &target, errp)) {
        return false;
    }
    if (!migrate_postcopy_ram(migration_options(pd->ms))) {
        error_setg(errp, "the source may switch to postcopy, but capability "
                   "'postcopy-ram' is off here: set it on both sides");
        return false;
    }
    if (target != RAM_PAGE_SIZE || summary != ram_list_page_summary(pd->ram)) {
        error_setg(errp, "page sizes of the source (target %" PRIu64 ", host summary 0x%"
                   PRIx64 ") are not this machine's (%llu, 0x%" PRIx64 "): postcopy needs "
                   "the same huge pages on both sides", target, summary, RAM_PAGE_SIZE,
                   ram_list_page_summary(pd->ram));
        return false;
    }
    if (!pd->rp_f) {
        error_setg(errp, "postcopy needs the return path, which the stream did not open");
        return false;
    }
    if (!ram_uffd_usable(pd->ram, errp)) {
        return false;
    }
    if (migrate_postcopy_preempt(migration_options(pd->ms))) {
        if (!pd->listener) {
            error_setg(errp, "postcopy-preempt needs an -incoming unix: or tcp: address, "
                       "to which the source opens its second channel");
            return false;
        }
        /* The source connected it right after the main one. */
        if (!preempt_accept(pd->listener, POSTCOPY_PREEMPT_WAIT_MS, &pd->preempt_ch, errp)) {
            return false;
        }
    }
    pd->advised = true;
    /* The block list that follows names each huge-page block's page size. */
    ram_loader_set_postcopy(pd->loader);
    return true;
}

/* Drop [start, start + len) of block b: its next access faults. */
static bool discard_range(PostcopyDest *pd, int b, const PostcopyRange *r, Error **errp)
{
    const RAMBlock *rb = pd->ram->blocks[b];
    uint64_t ps = ram_block_host_pages(rb) * RAM_PAGE_SIZE;
    int ret;

    /* A huge page is dropped whole or not at all (its rest would read as zeros). */
    if (r->start % ps || r->length % ps || !r->length ||
        r->start > rb->used_length || r->length > rb->used_length - r->start) {
        error_setg(errp, "POSTCOPY_RAM_DISCARD: range 0x%" PRIx64 "+0x%" PRIx64 " is not "
                   "aligned to the 0x%" PRIx64 "-byte pages inside block '%s' (0x%" PRIx64
                   " bytes)", r->start, r->length, ps, rb->idstr, rb->used_length);
        return false;
    }
    if (rb->fd >= 0) {
        ret = fallocate(rb->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                        rb->fd_offset + r->start, r->length);
    } else {
        ret = madvise(rb->host + r->start, r->length, MADV_DONTNEED);
    }
    if (ret < 0) {
        error_setg_errno(errp, errno, "cannot drop pages of block '%s'", rb->idstr);
        return false;
    }
    ram_loader_discard(pd->loader, b, r->start / RAM_PAGE_SIZE, r->length / RAM_PAGE_SIZE);
    return true;
}

static bool handle_discard(PostcopyDest *pd, const uint8_t *data, uint16_t len,
                           Error **errp)
{
    PostcopyRange ranges[POSTCOPY_DISCARD_MAX_RANGES];
    char name[256];
    size_t n;
    int b;

    if (!pd->advised || pd->listening) {
        error_setg(errp, "POSTCOPY_RAM_DISCARD %s", pd->listening ? "after LISTEN"
                                                                  : "without POSTCOPY_ADVISE");
        return false;
    }
    if (!postcopy_parse_discard(data, len, name, ranges, &n, errp)) {
        return false;
    }
    b = ram_block_index(pd->ram, name);
    if (b < 0 || !ram_loader_received(pd->loader, b)) {
        g_autofree char *safe = g_strescape(name, NULL);

        error_setg(errp, "POSTCOPY_RAM_DISCARD: block '%s' is not in the stream's "
                   "block list", safe);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!discard_range(pd, b, &ranges[i], errp)) {
            return false;
        }
    }
    return true;
}

static bool handle_listen(PostcopyDest *pd, Error **errp)
{
    const RamPlacementOps *ops;
    void *opaque;

    if (!pd->advised || pd->listening) {
        error_setg(errp, "POSTCOPY_LISTEN %s", pd->listening ? "twice"
                                                             : "without POSTCOPY_ADVISE");
        return false;
    }
    for (int b = 0; b < pd->ram->nblocks; b++) {
        const unsigned long *got = ram_loader_received(pd->loader, b);
        uint64_t np = pd->ram->blocks[b]->used_length / RAM_PAGE_SIZE;

        if (!got) {
            error_setg(errp, "POSTCOPY_LISTEN before the RAM block list");
            return false;
        }
        pd->held[b] = bitmap_new(np);
        memcpy(pd->held[b], got, BITS_TO_LONGS(np) * sizeof(unsigned long));
        pd->requested[b] = bitmap_new(np);
    }
    pd->fault_stop_fd = migration_cancel_fd_new(errp);
    if (pd->fault_stop_fd < 0) {
        return false;
    }
    if (migration_options(pd->ms)->caps[MIGRATION_CAPABILITY_POSTCOPY_BLOCKTIME]) {
        /* query-migrate reads it from the main thread. */
        __atomic_store_n(&pd->blocktime, postcopy_blocktime_new(pd->m), __ATOMIC_RELEASE);
    }
    pd->uffd = ram_uffd_new_features(pd->ram, pd->blocktime ? UFFD_FEATURE_THREAD_ID : 0,
                                     errp);
    if (!pd->uffd) {
        return false;
    }
    if (pd->blocktime) {
        ram_uffd_set_placed_hook(pd->uffd, page_placed, pd);
    }
    ram_uffd_placement(pd->uffd, &ops, &opaque);
    ram_loader_set_placement(pd->loader, ops, opaque);
    if (pd->preempt_ch) {
        int fd = pd->preempt_ch->fd;

        pd->preempt = preempt_reader_start(pd->preempt_ch, pd->uffd, pd->ram, pd->fd,
                                           pd->cancel_fd, errp);
        if (!pd->preempt) {
            return false;
        }
        pd->preempt_ch = NULL;
        migration_link_set(&pd->preempt_link, fd);
    }
    pd->fault_thread = g_thread_new("mig/fault", fault_thread, pd);
    pd->listening = true;
    pd->ops->listening(pd->opaque);
    return true;
}

static int package_command(void *opaque, QEMUFile *f, uint16_t cmd, const uint8_t *data,
                           uint16_t len, Error **errp)
{
    PostcopyDest *pd = opaque;

    if ((cmd == MIG_CMD_POSTCOPY_LISTEN || cmd == MIG_CMD_POSTCOPY_RUN) && len) {
        error_setg(errp, "%u bytes of payload (expected none)", len);
        return -1;
    }
    switch (cmd) {
    case MIG_CMD_POSTCOPY_LISTEN:
        return handle_listen(pd, errp) ? 0 : -1;
    case MIG_CMD_POSTCOPY_RUN:
        if (!pd->listening) {
            error_setg(errp, "POSTCOPY_RUN before POSTCOPY_LISTEN");
            return -1;
        }
        if (!pd->ops->run(pd->opaque, errp)) {
            return -1;
        }
        __atomic_store_n(&pd->running, true, __ATOMIC_RELEASE);
        return 1;       /* the rest of the package, if any, is not read */
    case MIG_CMD_PING:
        return postcopy_dest_command(pd, f, cmd, data, len, errp);
    default:
        error_setg(errp, "not allowed inside PACKAGED");
        return -1;
    }
}

static bool handle_packaged(PostcopyDest *pd, QEMUFile *f, const uint8_t *data,
                            uint16_t len, Error **errp)
{
    SaveVMLoadOptions opts = { .command = package_command, .command_opaque = pd };
    g_autofree uint8_t *blob = NULL;
    SaveVMLoadResult res;
    SaveVMLoader *l;
    QEMUFile *pf;
    uint32_t size;

    if (!pd->advised || pd->listening) {
        error_setg(errp, "PACKAGED %s", pd->listening ? "twice" : "without POSTCOPY_ADVISE");
        return false;
    }
    if (!postcopy_parse_packaged(data, len, &size, errp)) {
        return false;
    }
    blob = g_malloc(size ? size : 1);
    if (!qemu_get_buffer(f, blob, size, "PACKAGED contents")) {
        qemu_file_check(f, errp);
        error_prepend(errp, "PACKAGED length %u runs past the stream: ", size);
        return false;
    }
    pf = qemu_file_new_mem_input(blob, size, "postcopy package");
    l = savevm_loader_new(pd->r, pf, &opts);
    res = savevm_loader_run(l, errp);
    savevm_loader_free(l);
    /* Read to its last byte and no RUN: say so first. */
    if (res == SAVEVM_LOAD_EOF) {
        error_setg(errp, "it ends without POSTCOPY_RUN");
    } else if (res == SAVEVM_LOAD_ERROR && qemu_file_pos(pf) == size) {
        error_prepend(errp, "it ends without POSTCOPY_RUN: ");
    }
    qemu_fclose(pf);
    if (res != SAVEVM_LOAD_STOPPED) {
        error_prepend(errp, "in the package: ");
        return false;
    }
    return true;
}

/* ---- recovery ---------------------------------------------------------------------- */

/* RECV_BITMAP: which pages of a block are here, as little-endian 64-bit words. */
static bool send_recv_bitmap(PostcopyDest *pd, const uint8_t *data, uint16_t len,
                             Error **errp)
{
    g_autofree uint64_t *words = NULL;
    char name[256];
    uint64_t npages, size;
    int b;

    if (!pd->recovering) {
        error_setg(errp, "RECV_BITMAP outside a recovery");
        return false;
    }
    if (len < 1 || data[0] != len - 1) {
        error_setg(errp, "block name of %u bytes in %u bytes of payload", len ? data[0] : 0,
                   len);
        return false;
    }
    memcpy(name, data + 1, len - 1);
    name[len - 1] = '\0';
    b = ram_block_index(pd->ram, name);
    if (b < 0 || strlen(name) != (size_t)len - 1) {
        g_autofree char *safe = g_strescape(name, NULL);

        error_setg(errp, "block '%s' does not exist", safe);
        return false;
    }
    npages = pd->ram->blocks[b]->used_length / RAM_PAGE_SIZE;
    size = (npages + 63) / 64 * 8;      /* bytes for the bits, whole 64-bit words */
    words = g_malloc0(size);
    /* Here: what precopy gave and no discard took back, and what was placed since. */
    for (uint64_t p = 0; p < npages; p++) {
        if (test_bit(p, pd->held[b]) || ram_uffd_placed(pd->uffd, b, p)) {
            words[p / 64] |= 1ULL << (p % 64);
        }
    }
    for (uint64_t i = 0; i < size / 8; i++) {
        words[i] = GUINT64_TO_LE(words[i]);
    }
    pthread_mutex_lock(&pd->rp_lock);
    if (pd->rp_f && !pd->rp_broken) {
        rp_put_recv_bitmap(pd->rp_f, pd->ram->blocks[b]->idstr);
        qemu_put_be64(pd->rp_f, size);
        qemu_put_buffer(pd->rp_f, words, size);
        qemu_put_be64(pd->rp_f, POSTCOPY_RECV_BITMAP_ENDING);
        qemu_fflush(pd->rp_f);
        pd->rp_broken = qemu_file_get_error(pd->rp_f) != 0;
    }
    pthread_mutex_unlock(&pd->rp_lock);
    return true;
}

/* POSTCOPY_RESUME: acknowledge, then ask again for every page a thread waits on. */
static bool handle_resume(PostcopyDest *pd, Error **errp)
{
    if (!pd->recovering) {
        error_setg(errp, "POSTCOPY_RESUME outside a recovery");
        return false;
    }
    pd->recovering = false;
    pd->ops->resumed(pd->opaque);
    rp_send_value(pd, MIG_RP_MSG_RESUME_ACK, 1);
    for (int b = 0; b < pd->ram->nblocks; b++) {
        uint64_t npages = pd->ram->blocks[b]->used_length / RAM_PAGE_SIZE;

        for (uint64_t p = find_next_bit(pd->requested[b], npages, 0); p < npages;
             p = find_next_bit(pd->requested[b], npages, p + 1)) {
            if (!ram_uffd_placed(pd->uffd, b, p)) {
                rp_request_page(pd, b, p);
            }
        }
    }
    return true;
}

void postcopy_dest_pause(PostcopyDest *pd)
{
    close_return_path(pd);
    if (pd->preempt) {
        /* Its reader waits on a connection given up. */
        migration_link_set(&pd->preempt_link, -1);
        preempt_reader_shutdown(pd->preempt);
        g_clear_pointer(&pd->preempt, preempt_reader_free);
    }
}

bool postcopy_dest_resume(PostcopyDest *pd, int fd, ChannelListener *l, Error **errp)
{
    pd->fd = fd;
    /* A huge page the broken stream brought in part comes again whole. */
    ram_uffd_reset_stage(pd->uffd);
    if (!open_return_path(pd, errp)) {
        return false;
    }
    if (migrate_postcopy_preempt(migration_options(pd->ms))) {
        Channel *ch;

        if (!preempt_accept(l, POSTCOPY_PREEMPT_WAIT_MS, &ch, errp)) {
            return false;
        }
        int fd = ch->fd;

        pd->preempt = preempt_reader_start(ch, pd->uffd, pd->ram, pd->fd, pd->cancel_fd,
                                           errp);
        if (!pd->preempt) {
            channel_abort(ch);
            return false;
        }
        migration_link_set(&pd->preempt_link, fd);
    }
    pd->recovering = true;
    return true;
}

int postcopy_dest_command(void *opaque, QEMUFile *f, uint16_t cmd, const uint8_t *data,
                          uint16_t len, Error **errp)
{
    PostcopyDest *pd = opaque;
    bool ok;

    switch (cmd) {
    case MIG_CMD_OPEN_RETURN_PATH:
        ok = !len && open_return_path(pd, errp);
        break;
    case MIG_CMD_PING:
        if (len != 4) {
            error_setg(errp, "length %u (expected 4)", len);
            return -1;
        }
        if (!pd->rp_f) {
            error_setg(errp, "PING without a return path to answer on");
            return -1;
        }
        /* An answer that cannot go out is the return path's failure, seen later. */
        rp_send_value(pd, MIG_RP_MSG_PONG, be32_at(data));
        return 0;
    case MIG_CMD_POSTCOPY_ADVISE:
        ok = handle_advise(pd, data, len, errp);
        break;
    case MIG_CMD_POSTCOPY_RAM_DISCARD:
        ok = handle_discard(pd, data, len, errp);
        break;
    case MIG_CMD_PACKAGED:
        ok = handle_packaged(pd, f, data, len, errp);
        break;
    case MIG_CMD_SWITCHOVER_START:
        ok = len == 0;
        break;
    case MIG_CMD_RECV_BITMAP:
        ok = send_recv_bitmap(pd, data, len, errp);
        break;
    case MIG_CMD_POSTCOPY_RESUME:
        ok = !len && handle_resume(pd, errp);
        break;
    default:
        error_setg(errp, "not allowed here");
        return -1;
    }
    if (!ok && errp && !*errp) {
        error_setg(errp, "%u bytes of payload (expected none)", len);
    }
    return ok ? 0 : -1;
}

/* ---- the end ------------------------------------------------------------------------- */

bool postcopy_dest_finish(PostcopyDest *pd, Error **errp)
{
    if (pd->listening) {
        uint64_t copies, zeros, already;

        stop_fault_thread(pd);
        ram_uffd_stats(pd->uffd, &copies, &zeros, &already);
        trace(postcopy_dest_done, "copies=%" PRIu64 " zeros=%" PRIu64 " already=%" PRIu64
              " requests=%" PRIu64, copies, zeros, already, stat_get(&pd->requests));
        /* Every page is here: RAM is plain memory again. */
        g_clear_pointer(&pd->uffd, ram_uffd_free);
    }
    /* A source that opened the return path waits for this. */
    if (pd->rp_f && !rp_send_value(pd, MIG_RP_MSG_SHUT, 0) && pd->listening) {
        warn_report("postcopy: the source did not hear that the load completed");
    }
    return true;
}

void postcopy_dest_info(PostcopyDest *pd, MigrationInfo *info)
{
    PostcopyBlocktime *bt = pd ? __atomic_load_n(&pd->blocktime, __ATOMIC_ACQUIRE) : NULL;

    if (bt) {
        postcopy_blocktime_info(bt, info);
    }
}

void postcopy_dest_fail(PostcopyDest *pd, Error **err)
{
    Error *cause = NULL;

    if (pd && preempt_reader_failed(pd->preempt, &cause)) {
        error_free(*err);
        *err = cause;
    }
    if (pd && pd->rp_f) {
        rp_send_value(pd, MIG_RP_MSG_SHUT, 1);
    }
}
