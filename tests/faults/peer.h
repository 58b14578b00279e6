/*
 * The other end of a unix: or tcp: migration in the fault tests: a process
 * of its own, so that it can die as a destination or a source does
 * (SIGKILL, a reset connection, a shutdown) while amber's code in the test
 * process meets it.
 *
 * The peer is the test executable started again (/proc/self/exe
 * PEER_ARG ...): main() hands such a run to peer_main() before anything
 * else, so it shares no state with the test.  Nothing is armed in it; its
 * wrapped calls go straight through.
 *
 *   receiver   accepts one connection on a listening socket the test made
 *              (amber connects to it, channel_open_outgoing() in a save)
 *              and writes what it reads to a file, until end of stream or
 *              until peer_end_now()
 *   sender     connects to a URI the test listens on (channel_open_outgoing,
 *              as a source does) and sends a file's first `cut` bytes, then
 *              ends as asked: closes (the whole file), is SIGKILLed by the
 *              test, resets or shuts the connection down
 *
 * Who calls what: the test spawns, then at most one peer_end_now() (from
 * any thread, e.g. a fault hook in the saving thread) or one
 * peer_kill_at_cut(), then peer_reap().  A Peer is not shared beyond that.
 */
#ifndef AMBER_TESTS_PEER_H
#define AMBER_TESTS_PEER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define PEER_ARG "--fault-peer"
/*
 * A sender's exit status when amber's end went away before its cut (a
 * load that failed early).  Any status but this and 0 means the peer
 * itself failed.
 */
#define PEER_EXIT_DROPPED 4

typedef enum PeerEnd {
    PEER_END_NONE,          /* to the stream's end */
    PEER_END_KILL,          /* SIGKILLed by the test, mid-stream */
    PEER_END_RESET,         /* closes with SO_LINGER 0: on TCP a reset */
    PEER_END_SHUTDOWN,      /* shutdown(SHUT_RDWR); a receiver stays until reaped */
} PeerEnd;

typedef struct Peer {
    pid_t pid;              /* -1 once reaped */
    int ctl;                /* commands to a receiver, -1: closed */
    int ack;                /* its answers: accepted, shut down; a sender's: cut sent */
    int status;             /* wait status, once reaped */
} Peer;

const char *peer_end_name(PeerEnd end);

/* A receiver of the connection that arrives on listen_fd, writing it to path. */
void peer_receive(Peer *p, int listen_fd, const char *path);
/*
 * A sender to uri of path's first cut bytes (the whole file for
 * PEER_END_NONE), then `end`.  For PEER_END_KILL it waits at the cut for
 * peer_kill_at_cut().
 */
void peer_send(Peer *p, const char *uri, const char *path, uint64_t cut, PeerEnd end);

/*
 * A receiver ends now, as `how` says, and this returns once it has: killed
 * and reaped, reset and exited, or shut down (it then waits to be reaped).
 */
void peer_end_now(Peer *p, PeerEnd how);
/*
 * A PEER_END_KILL sender: wait until it has sent its cut, then SIGKILL and
 * reap it.  Blocks; a test runs it beside the load, in a thread.
 */
void peer_kill_at_cut(Peer *p);
/* Let it finish (a shut-down receiver is told to go) and reap it; its wait status. */
int peer_reap(Peer *p);
/* Whether the reaped peer was SIGKILLed. */
bool peer_was_killed(const Peer *p);

/* The peer process: argv after PEER_ARG.  Never returns. */
void peer_main(int argc, char **argv) __attribute__((noreturn));

#endif
