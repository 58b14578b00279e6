/*
 * pty chardevs: amber holds the master side of a new pseudo-terminal and
 * a user attaches to its slave (/dev/pts/N) with any terminal program or
 * `virsh console`, which finds the path in query-chardev.
 *
 * Whether anybody holds the slave open shows only as POLLHUP on the
 * master, a level that poll cannot wait for the end of, so while nobody
 * is attached a timer looks every PTY_POLL_MS.  Until then output is
 * dropped rather than left in the pty for whoever opens it later, and
 * once the slave closes its last reader the master reads EIO, which the
 * shared input path takes as the peer leaving.  A fresh pty whose slave
 * was never opened does not show POLLHUP, so the slave is opened once at
 * creation (also to put it in raw mode: no echo of the guest's output
 * back to it, no line editing of its input) and closed again.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <termios.h>
#include <unistd.h>

#include "char-internal.h"

#define PTY_POLL_MS 100

static bool slave_attached(Chardev *chr)
{
    struct pollfd pfd = { .fd = chr->pty_master, .events = POLLIN };

    return poll(&pfd, 1, 0) >= 0 && !(pfd.revents & POLLHUP);
}

static gboolean pty_poll(gpointer opaque)
{
    Chardev *chr = opaque;
    int fd;

    if (!slave_attached(chr)) {
        return G_SOURCE_CONTINUE;
    }
    /* The peer gets its own descriptor: detaching closes it, not the master. */
    fd = fcntl(chr->pty_master, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        return G_SOURCE_CONTINUE;
    }
    chr->pty_timer = 0;
    chardev_peer_arrived(chr, fd, false);
    return G_SOURCE_REMOVE;
}

void chardev_pty_peer_gone(Chardev *chr)
{
    if (chr->pty_master >= 0 && !chr->pty_timer) {
        chr->pty_timer = g_timeout_add(PTY_POLL_MS, pty_poll, chr);
    }
}

static bool make_raw(const char *path, Error **errp)
{
    int fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    struct termios t;
    bool ok;

    if (fd < 0) {
        error_setg_errno(errp, errno, "pty: cannot open its slave %s", path);
        return false;
    }
    ok = tcgetattr(fd, &t) == 0;
    if (ok) {
        cfmakeraw(&t);
        ok = tcsetattr(fd, TCSANOW, &t) == 0;
    }
    if (!ok) {
        error_setg_errno(errp, errno, "pty: cannot make %s raw", path);
    }
    close(fd);
    return ok;
}

bool chardev_pty_open(Chardev *chr, Error **errp)
{
    char path[64];

    chr->pty_master = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (chr->pty_master < 0) {
        error_setg_errno(errp, errno, "pty: cannot open a pseudo-terminal");
        return false;
    }
    if (grantpt(chr->pty_master) < 0 || unlockpt(chr->pty_master) < 0 ||
        ptsname_r(chr->pty_master, path, sizeof(path)) != 0) {
        error_setg_errno(errp, errno, "pty: cannot set up its slave");
        return false;
    }
    if (!make_raw(path, errp)) {
        return false;
    }
    chr->pty_path = g_strdup(path);
    chardev_pty_peer_gone(chr);
    return true;
}

void chardev_pty_close(Chardev *chr)
{
    if (chr->pty_timer) {
        g_source_remove(chr->pty_timer);
        chr->pty_timer = 0;
    }
    if (chr->pty_master >= 0) {
        close(chr->pty_master);
        chr->pty_master = -1;
    }
    g_free(chr->pty_path);
    chr->pty_path = NULL;
}

const char *chardev_pty_path(Chardev *chr)
{
    return chr->pty_path;
}
