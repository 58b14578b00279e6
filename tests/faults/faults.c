/*
 * The wrapped I/O calls and the plan that decides their fate (faults.h).
 *
 * The injector is one file-scope instance: the wrapped calls come from code
 * that passes no context down to them, and the linker gives each symbol
 * one wrapper.  A mutex orders the decisions of concurrent callers; the
 * real call runs outside it, so a hit in one thread never holds up I/O in
 * another.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <glib.h>

#include "faults.h"

#define MAX_TARGETS 8

typedef struct FaultTarget {
    dev_t dev;
    ino_t ino;
} FaultTarget;

typedef struct FaultInjector {
    int armed;                  /* atomic: the fast path when 0 */
    pthread_mutex_t lock;       /* everything below */
    FaultPlan plan;
    FaultTarget targets[MAX_TARGETS];
    int ntargets;
    FaultStats st;
    uint64_t first_hit;         /* the call number of the first hit, 0: none yet */
    bool full;                  /* ENOSPC by bytes: the disk is full */
    bool wb_err;                /* FAULT_WRITEBACK: not yet reported */
} FaultInjector;

static FaultInjector fi = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* What one call is to do. */
typedef struct FaultAction {
    int err;                    /* fail with this errno, doing nothing */
    size_t len;                 /* else move at most this many bytes */
    bool hook;
    bool counted;               /* the bytes moved are added to the stats */
} FaultAction;

ssize_t __real_write(int fd, const void *buf, size_t len);
ssize_t __real_writev(int fd, const struct iovec *iov, int iovcnt);
ssize_t __real_pwrite64(int fd, const void *buf, size_t len, off_t off);
ssize_t __real_read(int fd, void *buf, size_t len);
ssize_t __real_pread64(int fd, void *buf, size_t len, off_t off);
int __real_fsync(int fd);
int __real_sync_file_range(int fd, off_t off, off_t len, unsigned int flags);

ssize_t __wrap_write(int fd, const void *buf, size_t len);
ssize_t __wrap_writev(int fd, const struct iovec *iov, int iovcnt);
ssize_t __wrap_pwrite64(int fd, const void *buf, size_t len, off_t off);
ssize_t __wrap_read(int fd, void *buf, size_t len);
ssize_t __wrap_pread64(int fd, void *buf, size_t len, off_t off);
int __wrap_fsync(int fd);
int __wrap_sync_file_range(int fd, off_t off, off_t len, unsigned int flags);

uint64_t fault_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

const char *fault_kind_name(FaultKind kind)
{
    static const char *const names[] = {
        [FAULT_COUNT] = "none", [FAULT_EINTR] = "EINTR", [FAULT_SHORT] = "short",
        [FAULT_ENOSPC] = "ENOSPC", [FAULT_EIO] = "EIO", [FAULT_HOOK] = "hook",
        [FAULT_WRITEBACK] = "writeback EIO", [FAULT_EAGAIN] = "EAGAIN",
        [FAULT_ECONNRESET] = "ECONNRESET", [FAULT_EPIPE] = "EPIPE",
    };
    return names[kind];
}

int fault_kind_errno(FaultKind kind, unsigned ops)
{
    switch (kind) {
    case FAULT_ENOSPC:
        return ops & (FAULT_OP_WRITE | FAULT_OP_SYNC) ? ENOSPC : EIO;
    case FAULT_EIO:
    case FAULT_WRITEBACK:
        return EIO;
    case FAULT_ECONNRESET:
        return ECONNRESET;
    case FAULT_EPIPE:
        return ops & FAULT_OP_WRITE ? EPIPE : ECONNRESET;
    default:
        return 0;
    }
}

char *fault_plan_describe(const FaultPlan *p)
{
    g_autofree char *where = p->at_call ?
        g_strdup_printf("call %" PRIu64, p->at_call) :
        g_strdup_printf("byte %" PRIu64, p->at_byte);

    return g_strdup_printf("%s%s%s %s at %s%s x%u (seed 0x%016" PRIx64 ")",
                           p->ops & FAULT_OP_WRITE ? "write" : "",
                           p->ops & FAULT_OP_READ ? "read" : "",
                           p->ops & FAULT_OP_SYNC ? "+fsync" : "",
                           fault_kind_name(p->kind), where,
                           p->sticky ? " sticky" : "", MAX(p->times, 1), p->seed);
}

/* ---- arming ------------------------------------------------------------------------- */

void faults_target_fd(int fd)
{
    struct stat st;

    g_assert_cmpint(fstat(fd, &st), ==, 0);
    pthread_mutex_lock(&fi.lock);
    g_assert_cmpint(fi.ntargets, <, MAX_TARGETS);
    fi.targets[fi.ntargets++] = (FaultTarget){ st.st_dev, st.st_ino };
    pthread_mutex_unlock(&fi.lock);
}

void faults_arm(const FaultPlan *plan)
{
    pthread_mutex_lock(&fi.lock);
    fi.plan = *plan;
    fi.st = (FaultStats){ 0 };
    fi.first_hit = 0;
    fi.full = false;
    fi.wb_err = plan->kind == FAULT_WRITEBACK;
    pthread_mutex_unlock(&fi.lock);
    __atomic_store_n(&fi.armed, 1, __ATOMIC_RELEASE);
}

FaultStats faults_disarm(void)
{
    FaultStats st;

    __atomic_store_n(&fi.armed, 0, __ATOMIC_RELEASE);
    pthread_mutex_lock(&fi.lock);
    st = fi.st;
    pthread_mutex_unlock(&fi.lock);
    return st;
}

void faults_reset(void)
{
    faults_disarm();
    pthread_mutex_lock(&fi.lock);
    fi.ntargets = 0;
    pthread_mutex_unlock(&fi.lock);
}

/* ---- deciding ----------------------------------------------------------------------- */

static bool is_target(int fd)
{
    struct stat st;

    if (fstat(fd, &st) < 0) {
        return false;
    }
    for (int i = 0; i < fi.ntargets; i++) {
        if (fi.targets[i].dev == st.st_dev && fi.targets[i].ino == st.st_ino) {
            return true;
        }
    }
    return false;
}

/* The length a short call moves: 1..len-1, from the seed and the call number. */
static size_t short_len(uint64_t call, size_t len)
{
    return 1 + fault_mix(fi.plan.seed ^ call) % (len - 1);
}

/* Whether the plan's trigger fires at this call (numbered n) of len bytes. */
static bool triggered(uint64_t n, size_t len)
{
    const FaultPlan *p = &fi.plan;

    if (p->at_call) {
        return n == p->at_call;
    }
    return fi.st.bytes + len > p->at_byte;
}

/* Under fi.lock: the fate of counted call n of len bytes. */
static void decide(uint64_t n, size_t len, unsigned op, FaultAction *a)
{
    const FaultPlan *p = &fi.plan;
    unsigned times = MAX(p->times, 1);

    if (!fi.first_hit && triggered(n, len)) {
        fi.first_hit = n;
    }
    if (!fi.first_hit || p->kind == FAULT_COUNT) {
        return;
    }
    switch (p->kind) {
    case FAULT_EINTR:
    case FAULT_EAGAIN:
        if (n - fi.first_hit < times) {
            a->err = p->kind == FAULT_EINTR ? EINTR : EAGAIN;
        }
        break;
    case FAULT_SHORT:
        if (n - fi.first_hit < times && len > 1 && op != FAULT_OP_SYNC) {
            a->len = short_len(n, len);
        }
        break;
    case FAULT_ENOSPC:
    case FAULT_EIO:
    case FAULT_ECONNRESET:
    case FAULT_EPIPE:
        if (!p->at_call && p->kind == FAULT_ENOSPC) {
            /* A disk of at_byte bytes: the write that fills it is short, every later one fails. */
            if (!fi.full) {
                fi.full = true;
                if (op == FAULT_OP_WRITE && p->at_byte > fi.st.bytes) {
                    a->len = p->at_byte - fi.st.bytes;
                    break;
                }
            }
            a->err = fault_kind_errno(p->kind, op);
            break;
        }
        if (n == fi.first_hit || p->sticky) {
            a->err = fault_kind_errno(p->kind, op);
        }
        break;
    case FAULT_HOOK:
        a->hook = n == fi.first_hit;
        break;
    default:
        break;
    }
}

/*
 * The fate of a call of op on fd asking for len bytes: *a says whether to
 * fail it, shorten it or run the hook first.  False: not counted, do it as
 * asked.
 */
static bool fault_enter_wait(int fd, unsigned op, size_t len, bool waits, FaultAction *a)
{
    uint64_t n;

    *a = (FaultAction){ .len = len };
    if (!__atomic_load_n(&fi.armed, __ATOMIC_ACQUIRE)) {
        return false;
    }
    pthread_mutex_lock(&fi.lock);
    if (!(fi.plan.ops & op) || !is_target(fd)) {
        pthread_mutex_unlock(&fi.lock);
        return false;
    }
    n = ++fi.st.calls;
    if (fi.plan.kind == FAULT_WRITEBACK) {
        if (waits && fi.wb_err) {
            fi.wb_err = false;
            a->err = EIO;
        }
    } else {
        decide(n, len, op, a);
    }
    if (a->err || a->len != len || a->hook) {
        fi.st.hits++;
    }
    a->counted = true;
    pthread_mutex_unlock(&fi.lock);
    if (a->hook && fi.plan.hook) {
        fi.plan.hook(fi.plan.hook_opaque);
    }
    return true;
}

static ssize_t fault_exit(const FaultAction *a, ssize_t ret)
{
    if (a->counted && ret > 0) {
        pthread_mutex_lock(&fi.lock);
        fi.st.bytes += ret;
        pthread_mutex_unlock(&fi.lock);
    }
    return ret;
}

static bool fault_enter(int fd, unsigned op, size_t len, FaultAction *a)
{
    return fault_enter_wait(fd, op, len, op == FAULT_OP_SYNC, a);
}

/* ---- the wrappers ------------------------------------------------------------------- */

ssize_t __wrap_write(int fd, const void *buf, size_t len)
{
    FaultAction a;

    if (!fault_enter(fd, FAULT_OP_WRITE, len, &a)) {
        return __real_write(fd, buf, len);
    }
    if (a.err) {
        errno = a.err;
        return -1;
    }
    return fault_exit(&a, __real_write(fd, buf, a.len));
}

static size_t iov_bytes(const struct iovec *iov, int iovcnt)
{
    size_t n = 0;

    for (int i = 0; i < iovcnt; i++) {
        n += iov[i].iov_len;
    }
    return n;
}

ssize_t __wrap_writev(int fd, const struct iovec *iov, int iovcnt)
{
    size_t len = iovcnt > 0 ? iov_bytes(iov, iovcnt) : 0;
    struct iovec *cut;
    FaultAction a;
    size_t left;
    int n = 0;
    ssize_t ret;

    if (!fault_enter(fd, FAULT_OP_WRITE, len, &a)) {
        return __real_writev(fd, iov, iovcnt);
    }
    if (a.err) {
        errno = a.err;
        return -1;
    }
    if (a.len == len) {
        return fault_exit(&a, __real_writev(fd, iov, iovcnt));
    }
    /* A short writev: the same vectors, cut after a.len bytes. */
    cut = g_new(struct iovec, iovcnt);
    for (left = a.len; left; n++) {
        cut[n] = iov[n];
        cut[n].iov_len = MIN(cut[n].iov_len, left);
        left -= cut[n].iov_len;
    }
    ret = __real_writev(fd, cut, n);
    g_free(cut);
    return fault_exit(&a, ret);
}

ssize_t __wrap_pwrite64(int fd, const void *buf, size_t len, off_t off)
{
    FaultAction a;

    if (!fault_enter(fd, FAULT_OP_WRITE, len, &a)) {
        return __real_pwrite64(fd, buf, len, off);
    }
    if (a.err) {
        errno = a.err;
        return -1;
    }
    return fault_exit(&a, __real_pwrite64(fd, buf, a.len, off));
}

ssize_t __wrap_read(int fd, void *buf, size_t len)
{
    FaultAction a;

    if (!fault_enter(fd, FAULT_OP_READ, len, &a)) {
        return __real_read(fd, buf, len);
    }
    if (a.err) {
        errno = a.err;
        return -1;
    }
    return fault_exit(&a, __real_read(fd, buf, a.len));
}

ssize_t __wrap_pread64(int fd, void *buf, size_t len, off_t off)
{
    FaultAction a;

    if (!fault_enter(fd, FAULT_OP_READ, len, &a)) {
        return __real_pread64(fd, buf, len, off);
    }
    if (a.err) {
        errno = a.err;
        return -1;
    }
    return fault_exit(&a, __real_pread64(fd, buf, a.len, off));
}

int __wrap_fsync(int fd)
{
    FaultAction a;

    if (!fault_enter(fd, FAULT_OP_SYNC, 0, &a)) {
        return __real_fsync(fd);
    }
    if (a.err) {
        errno = a.err;
        return -1;
    }
    return __real_fsync(fd);
}

int __wrap_sync_file_range(int fd, off_t off, off_t len, unsigned int flags)
{
    bool waits = flags & (SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WAIT_AFTER);
    FaultAction a;

    if (!fault_enter_wait(fd, FAULT_OP_SYNC, 0, waits, &a)) {
        return __real_sync_file_range(fd, off, len, flags);
    }
    if (a.err) {
        errno = a.err;
        return -1;
    }
    return __real_sync_file_range(fd, off, len, flags);
}
