/*
 * Fault injection for the unit tests: the I/O calls amber's migration code
 * makes on a file, pipe or socket fail or come back short on cue.
 *
 * How: the test executable is linked with `-Wl,--wrap=SYMBOL` for each call
 * below (tests/unit/meson.build), so every call of it in the executable,
 * libamber's objects included, goes to __wrap_SYMBOL in faults.c, which
 * decides and then calls the real one (__real_SYMBOL).  This works the same
 * in the plain, ASan and TSan builds: the sanitizers' own interceptors are
 * what __real_SYMBOL reaches, and nothing is preloaded.  The calls made
 * inside shared libraries (GLib, libc itself) are not wrapped.
 *
 *   write, writev, pwrite64      FAULT_OP_WRITE (the stream, mapped-ram pages)
 *   read, pread64                FAULT_OP_READ  (the stream, bitmaps and pages)
 *   fsync, sync_file_range       FAULT_OP_SYNC  (a file channel's close,
 *                                               write-behind's waits)
 *
 * A unix: or tcp: stream goes through the same two calls, writev and read
 * (migration/transport/migration-io.c, on a non-blocking socket): nothing
 * in migration/ or util/ calls send, recv, sendmsg or recvmsg, so nothing
 * more is wrapped for sockets; they get their own kinds (EAGAIN, ECONNRESET,
 * EPIPE) instead.
 *
 * Only calls on a target count: a file (any descriptor of it, matched by
 * device and inode), pipe or socket the test named with faults_target_fd().
 * The eventfds, userfaultfds and pagemap the same code reads and writes are
 * never touched.
 *
 * A plan says which counted call is hit (at_call, 1-based) or, when at_call
 * is 0, the call during which the bytes moved so far would pass at_byte,
 * and what happens to it.  Everything random in a plan (short lengths)
 * derives from its seed, so a plan printed by a failing test reproduces it.
 * Where several threads make counted calls (mapped-ram writers, eager
 * loaders, a lazy restore's two threads) the count is shared, so which
 * thread meets the hit may differ between runs, not what is injected.
 */
#ifndef AMBER_TESTS_FAULTS_H
#define AMBER_TESTS_FAULTS_H

#include <stdbool.h>
#include <stdint.h>

typedef enum FaultOp {
    FAULT_OP_WRITE = 1 << 0,
    FAULT_OP_READ = 1 << 1,
    FAULT_OP_SYNC = 1 << 2,
} FaultOp;

typedef enum FaultKind {
    FAULT_COUNT,        /* nothing injected: count the calls a run makes */
    FAULT_EINTR,        /* -1/EINTR, nothing done; `times` calls in a row */
    FAULT_SHORT,        /* a read or write of 1..len-1 bytes; `times` calls */
    FAULT_ENOSPC,       /* -1/ENOSPC (a read gets EIO: no disk is full there) */
    FAULT_EIO,          /* -1/EIO */
    FAULT_HOOK,         /* call hook(), then do the call as asked */
    FAULT_EAGAIN,       /* -1/EAGAIN (a socket not ready); `times` calls in a row */
    FAULT_ECONNRESET,   /* -1/ECONNRESET: the peer reset the connection */
    FAULT_EPIPE,        /* -1/EPIPE (a read gets ECONNRESET: no read says EPIPE) */
    /*
     * Writeback of data already written failed, as the kernel reports it:
     * once, to the first call that waits for writeback on the file (fsync,
     * sync_file_range with a WAIT flag), which then returns EIO; every
     * later wait succeeds (the error's sequence has been seen).  Latched
     * at arm; at_call is not used.
     */
    FAULT_WRITEBACK,
} FaultKind;

typedef struct FaultPlan {
    uint64_t seed;
    unsigned ops;               /* FaultOp mask: the calls that count */
    FaultKind kind;
    uint64_t at_call;           /* the counted call hit, from 1; 0: at_byte */
    uint64_t at_byte;           /* at_call 0: hit the call that moves byte at_byte
                                 * (ENOSPC: the disk holds exactly this) */
    unsigned times;             /* EINTR, SHORT, EAGAIN: calls hit in a row (0 means 1) */
    bool sticky;                /* ENOSPC, EIO, ECONNRESET, EPIPE: every counted call
                                 * after fails too */
    void (*hook)(void *opaque);
    void *hook_opaque;
} FaultPlan;

/* What an armed plan saw so far. */
typedef struct FaultStats {
    uint64_t calls;             /* counted calls */
    uint64_t bytes;             /* moved by them */
    uint64_t hits;              /* calls changed by the plan */
} FaultStats;

/* Calls on fd's file (or pipe) count from now on, until faults_reset(). */
void faults_target_fd(int fd);
/* The plan takes effect for the calls that follow; the counts restart. */
void faults_arm(const FaultPlan *plan);
/* No more injection (targets stay); returns what the plan saw. */
FaultStats faults_disarm(void);
/* Disarmed, no targets. */
void faults_reset(void);

/* "write ENOSPC at call 7 sticky (seed 0x...)", for the test's messages. */
char *fault_plan_describe(const FaultPlan *plan);
const char *fault_kind_name(FaultKind kind);
/* The errno a failing kind makes a call of `ops` return (0: none). */
int fault_kind_errno(FaultKind kind, unsigned ops);

/* splitmix64: seeds from seeds, the same on every host. */
uint64_t fault_mix(uint64_t x);

#endif
