/*
 * The migration threads' descriptor I/O: a QEMUFile over the channel's fd
 * with blocking semantics, where every wait also watches a cancel eventfd,
 * so a cancel (or exit) ends a write to a stalled pipe or a read from a
 * silent peer at once.  Writes go through direct-io when it is on, and
 * tell write-behind what they wrote otherwise.
 *
 * A reader that went away makes a write fail with EPIPE: the process
 * ignores SIGPIPE (system/vl.c), so nothing here has to catch it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <glib.h>

#include "migration/migration-io.h"

int migration_cancel_fd_new(Error **errp)
{
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

    if (fd < 0) {
        error_setg_errno(errp, errno, "cannot create an eventfd");
    }
    return fd;
}

void migration_cancel_fd_signal(int fd)
{
    uint64_t one = 1;

    if (fd >= 0 && write(fd, &one, sizeof(one)) < 0) {
        /* Already signalled enough to overflow: still readable. */
    }
}

void migration_link_init(MigrationLink *l)
{
    pthread_mutex_init(&l->lock, NULL);
    l->fd = -1;
}

void migration_link_destroy(MigrationLink *l)
{
    pthread_mutex_destroy(&l->lock);
}

void migration_link_set(MigrationLink *l, int fd)
{
    pthread_mutex_lock(&l->lock);
    l->fd = fd;
    pthread_mutex_unlock(&l->lock);
}

void migration_link_shutdown(MigrationLink *l)
{
    pthread_mutex_lock(&l->lock);
    if (l->fd >= 0) {
        shutdown(l->fd, SHUT_RDWR);
    }
    pthread_mutex_unlock(&l->lock);
}

bool migration_io_init(MigrationIO *io, int fd, int cancel_fd, Error **errp)
{
    io->wb = (WriteBehind){ .fd = -1 };
    io->direct = NULL;
    io->fd = fd;
    io->cancel_fd = cancel_fd;
    io->saved_flags = fcntl(fd, F_GETFL);
    if (io->saved_flags < 0 || fcntl(fd, F_SETFL, io->saved_flags | O_NONBLOCK) < 0) {
        error_setg_errno(errp, errno, "cannot make the migration descriptor non-blocking");
        return false;
    }
    return true;
}

void migration_io_restore(MigrationIO *io)
{
    if (io->saved_flags >= 0) {
        fcntl(io->fd, F_SETFL, io->saved_flags);
    }
}

/* Wait until fd is ready for `events`; false when cancelled or poll fails. */
static bool io_wait(MigrationIO *io, short events, Error **errp)
{
    struct pollfd p[2] = {
        { .fd = io->fd, .events = events },
        { .fd = io->cancel_fd, .events = POLLIN },
    };

    for (;;) {
        int n = poll(p, 2, -1);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            error_setg_errno(errp, errno, "poll failed");
            return false;
        }
        if (p[1].revents) {
            error_setg(errp, "migration cancelled");
            return false;
        }
        return true;        /* ready, or an error the next call reports */
    }
}

/*
 * After a failed read or write: true to try again (interrupted, or the
 * non-blocking fd became ready), false with errp set (an error, or cancel).
 */
static bool io_retry(MigrationIO *io, short events, Error **errp)
{
    if (errno == EINTR) {
        return true;
    }
    if (errno != EAGAIN) {
        error_setg(errp, "%s", g_strerror(errno));
        return false;
    }
    return io_wait(io, events, errp);
}

static ssize_t io_writev(void *opaque, const struct iovec *iov, int iovcnt, Error **errp)
{
    MigrationIO *io = opaque;

    if (io->direct) {
        return direct_writer_writev(io->direct, iov, iovcnt, errp);
    }
    for (;;) {
        ssize_t n = writev(io->fd, iov, MIN(iovcnt, IOV_MAX));

        if (n >= 0) {
            write_behind_wrote(&io->wb, n);
            if (io->wb.err) {
                error_setg(errp, "writing back to the disk failed: %s",
                           g_strerror(io->wb.err));
                return -1;
            }
            return n;
        }
        if (!io_retry(io, POLLOUT, errp)) {
            return n;
        }
    }
}

static ssize_t io_read(void *opaque, uint8_t *buf, size_t len, Error **errp)
{
    MigrationIO *io = opaque;

    for (;;) {
        ssize_t n = read(io->fd, buf, len);

        if (n >= 0 || !io_retry(io, POLLIN, errp)) {
            return n;
        }
    }
}

static int64_t io_seek(void *opaque, int64_t offset, int whence, Error **errp)
{
    MigrationIO *io = opaque;
    off_t at;

    if (io->direct) {
        error_setg(errp, "a stream written with direct-io cannot seek");
        return -1;
    }
    at = lseek(io->fd, offset, whence);
    if (at < 0) {
        error_setg_errno(errp, errno, "cannot seek in the migration file");
    }
    return at;
}

static const QEMUFileOps io_ops = {
    .writev = io_writev,
    .read = io_read,
    .seek = io_seek,
};

QEMUFile *migration_io_output(MigrationIO *io, const char *name)
{
    return qemu_file_new_output(&io_ops, io, name);
}

QEMUFile *migration_io_input(MigrationIO *io, const char *name)
{
    return qemu_file_new_input(&io_ops, io, name);
}
