/*
 * The peer process of a socket migration and the test's handle on it
 * (peer.h).
 *
 * The process is the test executable again, so it needs no helper binary
 * and is built with the same sanitizers.  Its descriptors are fixed by
 * number: 3 the listening socket (a receiver), 4 the command pipe (a
 * receiver), 5 the answer pipe.  It ignores SIGPIPE: a write to a
 * connection amber dropped fails, and the peer exits quietly.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <glib.h>

#include "migration/channel.h"
#include "peer.h"
#include "util/cutils.h"

#define FD_LISTEN   3
#define FD_CTL      4
#define FD_ACK      5
#define CHUNK       (64u << 10)

#define CMD_RESET       'r'
#define CMD_SHUTDOWN    's'
#define ACK_DONE        'd'     /* shut down; a sender: its cut is sent */

extern char **environ;

const char *peer_end_name(PeerEnd end)
{
    static const char *const names[] = {
        [PEER_END_NONE] = "stays", [PEER_END_KILL] = "SIGKILLed",
        [PEER_END_RESET] = "resets", [PEER_END_SHUTDOWN] = "shuts down",
    };
    return names[end];
}

/* ---- the peer process ----------------------------------------------------------------- */

static void answer(void)
{
    char c = ACK_DONE;

    if (write(FD_ACK, &c, 1) != 1) {
        _exit(5);
    }
}

/* The connection goes away with a reset: the unread and unsent bytes are dropped. */
__attribute__((noreturn)) static void reset_and_exit(int s)
{
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };

    setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(s);
    _exit(0);
}

/* Shut the connection down both ways, say so, and stay until the test closes ctl (if any). */
__attribute__((noreturn)) static void shutdown_and_stay(int s, int ctl)
{
    char c;

    shutdown(s, SHUT_RDWR);
    answer();
    while (ctl >= 0 && read(ctl, &c, 1) != 0) {
        /* EOF: the test reaps us */
    }
    _exit(0);
}

/* Carry out the test's command, which ends the process; returns when the pipe closed. */
static void obey(int s)
{
    char c;

    if (read(FD_CTL, &c, 1) <= 0) {
        return;
    }
    if (c == CMD_RESET) {
        reset_and_exit(s);
    }
    shutdown_and_stay(s, FD_CTL);
}

static void receiver(const char *path)
{
    int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    uint8_t *buf = g_malloc(CHUNK);
    bool ctl_open = true;
    int s;

    do {
        s = accept4(FD_LISTEN, NULL, NULL, SOCK_CLOEXEC);
    } while (s < 0 && errno == EINTR);
    if (out < 0 || s < 0) {
        _exit(3);
    }
    close(FD_LISTEN);
    answer();                           /* accepted: the test may end us now */
    for (;;) {
        struct pollfd pf[2] = { { .fd = s, .events = POLLIN },
                                { .fd = ctl_open ? FD_CTL : -1, .events = POLLIN } };
        ssize_t n;

        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            _exit(8);
        }
        /* A command first: the test waits for it.  Its pipe closed: just drain. */
        if (pf[1].revents) {
            obey(s);
            ctl_open = false;
        }
        if (!pf[0].revents) {
            continue;
        }
        n = read(s, buf, CHUNK);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            _exit(n < 0 ? 2 : 0);       /* amber's end closed (or reset) the connection */
        }
        if (!write_full(out, buf, n)) {
            _exit(6);
        }
    }
}

static void sender(const char *uri, const char *path, uint64_t cut, PeerEnd end)
{
    Error *err = NULL;
    Channel *ch = channel_open_outgoing(uri, NULL, NULL, &err);
    int in = open(path, O_RDONLY | O_CLOEXEC);
    uint8_t *buf = g_malloc(CHUNK);

    if (!ch || in < 0) {
        _exit(3);
    }
    for (uint64_t sent = 0; sent < cut;) {
        ssize_t n = read(in, buf, MIN(CHUNK, cut - sent));

        if (n <= 0) {
            _exit(3);
        }
        if (!write_full(ch->fd, buf, n)) {
            _exit(PEER_EXIT_DROPPED);   /* the loader gave up: it closed its end */
        }
        sent += n;
    }
    switch (end) {
    case PEER_END_KILL:
        answer();
        for (;;) {
            pause();
        }
    case PEER_END_RESET:
        reset_and_exit(ch->fd);
    case PEER_END_SHUTDOWN:
        shutdown_and_stay(ch->fd, -1);
    default:
        close(ch->fd);
        _exit(0);
    }
}

void peer_main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc == 2 && !strcmp(argv[0], "receive")) {
        receiver(argv[1]);
    } else if (argc == 5 && !strcmp(argv[0], "send")) {
        sender(argv[1], argv[2], g_ascii_strtoull(argv[3], NULL, 10), atoi(argv[4]));
    }
    _exit(7);
}

/* ---- the test's side ---------------------------------------------------------------------- */

/* A copy of fd above the numbers the child's are moved to. */
static int high_dup(int fd)
{
    int h = fcntl(fd, F_DUPFD_CLOEXEC, 16);

    g_assert_cmpint(h, >=, 0);
    return h;
}

/* Start the peer: listen_fd (unless -1) its FD_LISTEN, new pipes its FD_CTL (if asked), FD_ACK. */
static void spawn(Peer *p, char **argv, int listen_fd, bool with_ctl)
{
    int ctl[2] = { -1, -1 }, ack[2], src[3];
    posix_spawn_file_actions_t fa;
    int err;

    g_assert_cmpint(pipe2(ack, O_CLOEXEC), ==, 0);
    if (with_ctl) {
        g_assert_cmpint(pipe2(ctl, O_CLOEXEC), ==, 0);
    }
    /* Sources out of the way first: a dup2 to 3 must not overwrite one of them. */
    src[0] = listen_fd >= 0 ? high_dup(listen_fd) : -1;
    src[1] = with_ctl ? high_dup(ctl[0]) : -1;
    src[2] = high_dup(ack[1]);
    posix_spawn_file_actions_init(&fa);
    for (int i = 0; i < 3; i++) {
        if (src[i] >= 0) {
            posix_spawn_file_actions_adddup2(&fa, src[i], FD_LISTEN + i);
        }
    }
    err = posix_spawn(&p->pid, "/proc/self/exe", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (err) {
        g_error("cannot start the peer process: %s", g_strerror(err));
    }
    for (int i = 0; i < 3; i++) {
        if (src[i] >= 0) {
            close(src[i]);
        }
    }
    if (with_ctl) {
        close(ctl[0]);
    }
    close(ack[1]);
    p->ctl = ctl[1];
    p->ack = ack[0];
    p->status = 0;
}

void peer_receive(Peer *p, int listen_fd, const char *path)
{
    char *argv[] = { "fault-peer", PEER_ARG, "receive", (char *)path, NULL };

    spawn(p, argv, listen_fd, true);
}

void peer_send(Peer *p, const char *uri, const char *path, uint64_t cut, PeerEnd end)
{
    g_autofree char *cut_s = g_strdup_printf("%" PRIu64, cut);
    g_autofree char *end_s = g_strdup_printf("%d", end);
    char *argv[] = { "fault-peer", PEER_ARG, "send", (char *)uri, (char *)path, cut_s, end_s,
                     NULL };

    spawn(p, argv, -1, false);
}

static void reap(Peer *p)
{
    pid_t r;

    do {
        r = waitpid(p->pid, &p->status, 0);
    } while (r < 0 && errno == EINTR);
    g_assert_cmpint(r, ==, p->pid);
    p->pid = -1;
}

/* The peer's answer; false when it exited instead. */
static bool await_answer(Peer *p)
{
    char c;
    ssize_t n;

    do {
        n = read(p->ack, &c, 1);
    } while (n < 0 && errno == EINTR);
    return n == 1 && c == ACK_DONE;
}

void peer_end_now(Peer *p, PeerEnd how)
{
    char c = how == PEER_END_RESET ? CMD_RESET : CMD_SHUTDOWN;

    g_assert_cmpint(p->pid, >, 0);
    /*
     * Not before it has accepted: a connection still in the backlog of the
     * test's listener would take amber's writes until its buffer filled.
     */
    if (!await_answer(p)) {
        g_error("the peer exited before accepting the connection");
    }
    if (how == PEER_END_KILL) {
        g_assert_cmpint(kill(p->pid, SIGKILL), ==, 0);
        reap(p);
        return;
    }
    g_assert_cmpint(write(p->ctl, &c, 1), ==, 1);
    if (how == PEER_END_RESET) {
        reap(p);
    } else if (!await_answer(p)) {
        g_error("the peer did not shut its connection down");
    }
}

void peer_kill_at_cut(Peer *p)
{
    if (await_answer(p)) {
        g_assert_cmpint(kill(p->pid, SIGKILL), ==, 0);
    }
    reap(p);
}

int peer_reap(Peer *p)
{
    if (p->ctl >= 0) {
        close(p->ctl);
        p->ctl = -1;
    }
    if (p->pid > 0) {
        reap(p);
    }
    close(p->ack);
    p->ack = -1;
    return p->status;
}

bool peer_was_killed(const Peer *p)
{
    return p->pid < 0 && WIFSIGNALED(p->status) && WTERMSIG(p->status) == SIGKILL;
}
