/*
 * hostprobe: what this host charges for the memory and the file writes a
 * snapshot needs, cold and warm, so that a benchmark can say which state
 * its figures were taken in (tests/bench/host.py runs it).
 *
 *   hostprobe --mib N [--idle S] DIR
 *
 * Cold: after S seconds in which the memory just freed sat unused (a host
 * that reports free pages hands them back to its hypervisor meanwhile);
 * warm: right after the same work.  Measured, each cold then warm:
 *   first touch   mmap N MiB of anonymous memory and write one byte per
 *                 4 KiB page (the kernel allocates and zeroes each);
 *   cache write   write a new N MiB file through the page cache in 1 MiB
 *                 writes (the time write() takes: what a saver waits for),
 *                 then the fdatasync that puts it on the device;
 *   direct write  the same with O_DIRECT (each write done on the device).
 * The memory is touched and freed once before anything is timed, so that
 * the first cold figure is not the process's own start.  Prints one JSON
 * object, seconds and GiB/s.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE        4096
#define CHUNK       (1u << 20)

typedef struct Probe {
    size_t bytes;
    unsigned idle_s;
    char *dir;
} Probe;

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "hostprobe: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* Seconds to map and first-touch p->bytes; the memory is freed again. */
static double touch(const Probe *p)
{
    double t0 = now_s(), t;
    uint8_t *m = mmap(NULL, p->bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (m == MAP_FAILED) {
        die("mmap");
    }
    for (size_t i = 0; i < p->bytes; i += PAGE) {
        m[i] = 1;
    }
    t = now_s() - t0;
    munmap(m, p->bytes);
    return t;
}

/*
 * A new file of p->bytes in 1 MiB writes (O_DIRECT when direct): seconds
 * for the writes, and *sync_s for the fdatasync after them.  Removed after.
 */
static double write_file(const Probe *p, int direct, double *sync_s)
{
    char path[4096];
    void *buf;
    double t0, t;
    int fd;

    snprintf(path, sizeof(path), "%s/hostprobe-%d.tmp", p->dir, (int)getpid());
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | (direct ? O_DIRECT : 0), 0600);
    if (fd < 0) {
        die(path);
    }
    if (posix_memalign(&buf, PAGE, CHUNK)) {
        die("posix_memalign");
    }
    memset(buf, 0x5a, CHUNK);
    t0 = now_s();
    for (size_t done = 0; done < p->bytes; done += CHUNK) {
        if (write(fd, buf, CHUNK) != CHUNK) {
            die("write");
        }
    }
    t = now_s() - t0;
    t0 = now_s();
    if (fdatasync(fd) < 0) {
        die("fdatasync");
    }
    *sync_s = now_s() - t0;
    close(fd);
    unlink(path);
    free(buf);
    return t;
}

static double gib_s(const Probe *p, double s)
{
    return s > 0 ? p->bytes / (double)(1u << 30) / s : 0;
}

int main(int argc, char **argv)
{
    Probe p = { 0 };
    double touch_cold, touch_warm, cw_cold, cw_warm, cs_cold, cs_warm, dw, ds;
    char *end;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mib") && i + 1 < argc) {
            p.bytes = strtoull(argv[++i], &end, 10) << 20;
        } else if (!strcmp(argv[i], "--idle") && i + 1 < argc) {
            p.idle_s = strtoul(argv[++i], &end, 10);
        } else if (argv[i][0] != '-' && !p.dir) {
            p.dir = argv[i];
        } else {
            p.dir = NULL;
            break;
        }
    }
    if (!p.bytes || !p.dir) {
        fprintf(stderr, "usage: hostprobe --mib N [--idle S] DIR\n");
        return 2;
    }
    touch(&p);
    sleep(p.idle_s);
    touch_cold = touch(&p);
    touch_warm = touch(&p);
    sleep(p.idle_s);
    cw_cold = write_file(&p, 0, &cs_cold);
    cw_warm = write_file(&p, 0, &cs_warm);
    dw = write_file(&p, 1, &ds);
    printf("{\"mib\": %zu, \"idle_s\": %u, "
           "\"touch_cold_s_per_gib\": %.3f, \"touch_warm_s_per_gib\": %.3f, "
           "\"cache_write_cold_gib_s\": %.2f, \"cache_write_warm_gib_s\": %.2f, "
           "\"cache_sync_cold_s\": %.3f, \"cache_sync_warm_s\": %.3f, "
           "\"direct_write_gib_s\": %.2f, \"direct_sync_s\": %.3f}\n",
           p.bytes >> 20, p.idle_s,
           touch_cold / (p.bytes / (double)(1u << 30)),
           touch_warm / (p.bytes / (double)(1u << 30)),
           gib_s(&p, cw_cold), gib_s(&p, cw_warm), cs_cold, cs_warm, gib_s(&p, dw), ds);
    return 0;
}
