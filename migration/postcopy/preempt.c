/*
 * postcopy-preempt, destination side: the second connection, which carries
 * only the pages the destination asked for, read by a thread of its own
 * and placed at once, so a requested page never waits behind the push on
 * the main stream.
 *
 * The channel holds page records as the `ram` section writes them (be64
 * offset | flags, the block's name unless CONTINUE, then 4096 bytes or one
 * 0 byte), each burst ended by EOS, until the source closes it after its
 * last page.  The stream is hostile: every record is checked against this
 * VM's blocks before anything is placed.
 *
 * The two sides agree on the channel before the switch: the destination
 * accepts it when the stream advises postcopy and answers one byte
 * (POSTCOPY_PREEMPT_ACK), which the source waits for before it stops the
 * guest.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "postcopy.h"
#include "util/trace.h"

#define RECORD_FLAGS_MASK   (RAM_PAGE_SIZE - 1)

struct PreemptReader {
    Channel *ch;
    RamUffd *uffd;
    RamUffdStage *stage;            /* this channel's huge pages gather here */
    RamBlockList *ram;
    int stream_fd;                  /* the main stream's socket: shut down on error */
    MigrationIO io;
    QEMUFile *f;
    GThread *thread;
    Error *err;                     /* the thread's: read after the join or once failed */
    bool failed;                    /* atomic, set after err */
    uint64_t pages;
};

bool preempt_accept(ChannelListener *l, int timeout_ms, Channel **ch, Error **errp)
{
    struct pollfd p = { .fd = channel_listener_fd(l), .events = POLLIN };
    uint8_t ack = POSTCOPY_PREEMPT_ACK;
    int n;

    do {
        n = poll(&p, 1, timeout_ms);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
        error_setg(errp, "postcopy-preempt is on here, but the source opened no second "
                   "channel: set it on both sides");
        return false;
    }
    *ch = channel_listener_accept(l, errp);
    if (!*ch) {
        return false;
    }
    if (write((*ch)->fd, &ack, 1) != 1) {
        error_setg_errno(errp, errno, "postcopy-preempt: cannot answer on the second channel");
        channel_abort(*ch);
        *ch = NULL;
        return false;
    }
    return true;
}

/* One record's block: named, or the previous one's (CONTINUE). */
static int record_block(PreemptReader *r, uint64_t flags, int *last, Error **errp)
{
    char name[256];
    uint8_t len;
    int b;

    if (flags & RAM_SAVE_FLAG_CONTINUE) {
        if (*last < 0) {
            error_setg(errp, "CONTINUE record with no block before it");
        }
        return *last;
    }
    len = qemu_get_byte(r->f, "block name length");
    qemu_get_buffer(r->f, name, len, "block name");
    name[len] = '\0';
    if (!qemu_file_check(r->f, errp)) {
        return -1;
    }
    b = ram_block_index(r->ram, name);
    if (len == 0 || strlen(name) != len || b < 0) {
        g_autofree char *safe = g_strescape(name, NULL);

        error_setg(errp, "record for block '%s', which this VM does not have", safe);
        return -1;
    }
    *last = b;
    return b;
}

static bool read_records(PreemptReader *r, Error **errp)
{
    int last = -1;

    /* The source's last act is to close the channel: EOF at a record is the end. */
    while (qemu_peek_byte(r->f, 0) >= 0) {
        uint64_t v = qemu_get_be64(r->f, "record");
        uint64_t flags = v & RECORD_FLAGS_MASK, addr = v & ~RECORD_FLAGS_MASK;
        uint64_t kind = flags & ~(uint64_t)RAM_SAVE_FLAG_CONTINUE;
        const RAMBlock *rb;
        int b;

        if (!qemu_file_check(r->f, errp)) {
            return false;
        }
        if (flags == RAM_SAVE_FLAG_EOS) {
            continue;
        }
        if (kind != RAM_SAVE_FLAG_PAGE && kind != RAM_SAVE_FLAG_ZERO) {
            error_setg(errp, "record with flags 0x%" PRIx64 " (only pages go here)", flags);
            return false;
        }
        b = record_block(r, flags, &last, errp);
        if (b < 0) {
            return false;
        }
        rb = r->ram->blocks[b];
        if (addr >= rb->used_length) {
            error_setg(errp, "offset 0x%" PRIx64 " is beyond block '%s' (0x%" PRIx64
                       " bytes)", addr, rb->idstr, rb->used_length);
            return false;
        }
        if (kind == RAM_SAVE_FLAG_ZERO) {
            uint8_t fill = qemu_get_byte(r->f, "zero page fill byte");

            if (qemu_file_check(r->f, NULL) && fill != 0) {
                error_setg(errp, "zero page with fill byte 0x%02x (must be 0)", fill);
                return false;
            }
        } else {
            qemu_get_buffer(r->f, ram_uffd_stage_buffer(r->stage, b, addr / RAM_PAGE_SIZE),
                            RAM_PAGE_SIZE, "page");
        }
        if (!qemu_file_check(r->f, errp) ||
            !ram_uffd_stage_page(r->stage, b, addr / RAM_PAGE_SIZE,
                                 kind == RAM_SAVE_FLAG_ZERO, errp)) {
            return false;
        }
        r->pages++;
    }
    /* The source closes the channel after whole huge pages only. */
    return qemu_file_check(r->f, errp) && ram_uffd_stage_idle(r->stage, errp);
}

static gpointer reader_thread(gpointer opaque)
{
    PreemptReader *r = opaque;

    if (!read_records(r, &r->err)) {
        error_prepend(&r->err, "postcopy-preempt channel: ");
        __atomic_store_n(&r->failed, true, __ATOMIC_RELEASE);
        /* The load thread must stop too: the guest's pages no longer all come. */
        shutdown(r->stream_fd, SHUT_RDWR);
    }
    trace(postcopy_preempt_done, "pages=%" PRIu64, r->pages);
    return NULL;
}

PreemptReader *preempt_reader_start(Channel *ch, RamUffd *uffd, RamBlockList *ram,
                                    int stream_fd, int cancel_fd, Error **errp)
{
    PreemptReader *r = g_new0(PreemptReader, 1);

    r->ch = ch;
    r->uffd = uffd;
    r->ram = ram;
    r->stream_fd = stream_fd;
    if (!migration_io_init(&r->io, ch->fd, cancel_fd, errp)) {
        g_free(r);
        return NULL;
    }
    r->f = migration_io_input(&r->io, "postcopy-preempt channel");
    r->stage = ram_uffd_stage_new(uffd, errp);
    if (!r->stage) {
        qemu_fclose(r->f);
        g_free(r);
        return NULL;
    }
    r->thread = g_thread_new("mig/preempt", reader_thread, r);
    return r;
}

bool preempt_reader_finish(PreemptReader *r, Error **errp)
{
    if (r->thread) {
        g_thread_join(r->thread);
        r->thread = NULL;
    }
    if (r->err) {
        error_propagate(errp, error_copy(r->err));
        return false;
    }
    return true;
}

void preempt_reader_shutdown(PreemptReader *r)
{
    shutdown(r->ch->fd, SHUT_RDWR);
}

bool preempt_reader_failed(PreemptReader *r, Error **errp)
{
    if (!r || !__atomic_load_n(&r->failed, __ATOMIC_ACQUIRE)) {
        return false;
    }
    error_propagate(errp, error_copy(r->err));
    return true;
}

void preempt_reader_free(PreemptReader *r)
{
    if (!r) {
        return;
    }
    /* Whoever frees it has signalled the cancel descriptor the reader waits on. */
    preempt_reader_finish(r, NULL);
    error_free(r->err);
    ram_uffd_stage_free(r->stage);
    qemu_fclose(r->f);
    channel_abort(r->ch);
    g_free(r);
}
