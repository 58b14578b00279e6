/*
 * The migration stream: round trips, sticky errors, truncated input, peek,
 * rate-limit accounting.
 */
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <glib.h>

#include "migration/qemu-file.h"
#include "test-helpers.h"

/* A mixed stream: every put kind, a copied buffer bigger than the internal
 * buffer, and a caller-owned one. */
static void put_sample(QEMUFile *f, const uint8_t *big, size_t big_len,
                       const uint8_t *owned, size_t owned_len)
{
    qemu_put_byte(f, 0xab);
    qemu_put_be16(f, 0x1234);
    qemu_put_be32(f, 0xdeadbeef);
    qemu_put_be64(f, 0x0102030405060708ULL);
    qemu_put_buffer(f, big, big_len);
    qemu_put_buffer_nocopy(f, owned, owned_len);
    qemu_put_be32(f, 0xcafef00d);
}

static void check_sample(QEMUFile *f, const uint8_t *big, size_t big_len,
                         const uint8_t *owned, size_t owned_len)
{
    g_autofree uint8_t *b1 = g_malloc(big_len);
    g_autofree uint8_t *b2 = g_malloc(owned_len);

    g_assert_cmphex(qemu_get_byte(f, "u8"), ==, 0xab);
    g_assert_cmphex(qemu_get_be16(f, "be16"), ==, 0x1234);
    g_assert_cmphex(qemu_get_be32(f, "be32"), ==, 0xdeadbeef);
    g_assert_cmphex(qemu_get_be64(f, "be64"), ==, 0x0102030405060708ULL);
    g_assert_true(qemu_get_buffer(f, b1, big_len, "big"));
    g_assert_cmpmem(b1, big_len, big, big_len);
    g_assert_true(qemu_get_buffer(f, b2, owned_len, "owned"));
    g_assert_cmpmem(b2, owned_len, owned, owned_len);
    g_assert_cmphex(qemu_get_be32(f, "tail"), ==, 0xcafef00d);
    g_assert_cmpint(qemu_file_get_error(f), ==, 0);
    /* Nothing more: the next read is an error, not garbage. */
    g_assert_cmpint(qemu_peek_byte(f, 0), ==, -1);
}

static uint8_t *pattern(size_t len, unsigned seed)
{
    uint8_t *p = g_malloc(len);

    for (size_t i = 0; i < len; i++) {
        p[i] = (uint8_t)(i * 31 + seed + (i >> 8));
    }
    return p;
}

#define BIG_LEN (100 * 1024 + 3)
#define OWNED_LEN 5000
#define SAMPLE_LEN (1 + 2 + 4 + 8 + BIG_LEN + OWNED_LEN + 4)

static void test_mem_round_trip(void)
{
    g_autofree uint8_t *big = pattern(BIG_LEN, 1);
    g_autofree uint8_t *owned = pattern(OWNED_LEN, 2);
    QEMUFile *out = qemu_file_new_mem_output("mem");
    const uint8_t *data;
    size_t len;
    QEMUFile *in;

    put_sample(out, big, BIG_LEN, owned, OWNED_LEN);
    g_assert_cmpuint(qemu_file_transferred(out), ==, SAMPLE_LEN);
    data = qemu_file_mem_data(out, &len);
    g_assert_nonnull(data);
    g_assert_cmpuint(len, ==, SAMPLE_LEN);
    g_assert_cmpuint(qemu_file_flushed(out), ==, SAMPLE_LEN);
    /* Big-endian on the wire, as QEMU writes it. */
    g_assert_cmpmem(data, 7, ((uint8_t[]){ 0xab, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef }), 7);

    in = qemu_file_new_mem_input(data, len, "mem-in");
    check_sample(in, big, BIG_LEN, owned, OWNED_LEN);
    g_assert_cmpuint(qemu_file_pos(in), ==, SAMPLE_LEN);
    g_assert_cmpint(qemu_fclose(in), ==, 0);
    g_assert_cmpint(qemu_fclose(out), ==, 0);
}

static void test_fd_round_trip(void)
{
    g_autofree uint8_t *big = pattern(BIG_LEN, 3);
    g_autofree uint8_t *owned = pattern(OWNED_LEN, 4);
    char path[] = "/tmp/amber-qf-XXXXXX";
    int fd = mkstemp(path);
    MigrationIO io;
    QEMUFile *f;

    g_assert_cmpint(fd, >=, 0);
    unlink(path);
    f = test_fd_file(&io, fd, true, path);
    put_sample(f, big, BIG_LEN, owned, OWNED_LEN);
    g_assert_cmpint(test_fd_close(&io, f), ==, 0);
    g_assert_cmpint(lseek(fd, 0, SEEK_END), ==, SAMPLE_LEN);
    g_assert_cmpint(lseek(fd, 0, SEEK_SET), ==, 0);
    f = test_fd_file(&io, fd, false, path);
    check_sample(f, big, BIG_LEN, owned, OWNED_LEN);
    g_assert_cmpint(test_fd_close(&io, f), ==, 0);
    close(fd);
}

/* A writer that accepts a few bytes per call, then fails for good. */
typedef struct Flaky {
    GByteArray *got;
    size_t max_per_call;
    size_t fail_after;
    int calls;
} Flaky;

static ssize_t flaky_writev(void *opaque, const struct iovec *iov, int iovcnt, Error **errp)
{
    Flaky *s = opaque;
    size_t n = 0;

    s->calls++;
    if (s->got->len >= s->fail_after) {
        error_setg_errno(errp, ENOSPC, "disk full");
        return -1;
    }
    for (int i = 0; i < iovcnt && n < s->max_per_call; i++) {
        size_t take = MIN(iov[i].iov_len, s->max_per_call - n);

        g_byte_array_append(s->got, iov[i].iov_base, take);
        n += take;
    }
    return n;
}

static const QEMUFileOps flaky_ops = { .writev = flaky_writev };

static void test_short_writes(void)
{
    g_autofree uint8_t *big = pattern(BIG_LEN, 5);
    g_autofree uint8_t *owned = pattern(OWNED_LEN, 6);
    Flaky s = { .got = g_byte_array_new(), .max_per_call = 7777, .fail_after = SIZE_MAX };
    QEMUFile *f = qemu_file_new_output(&flaky_ops, &s, "short");
    QEMUFile *in;

    put_sample(f, big, BIG_LEN, owned, OWNED_LEN);
    g_assert_cmpint(qemu_fclose(f), ==, 0);
    g_assert_cmpuint(s.got->len, ==, SAMPLE_LEN);
    in = qemu_file_new_mem_input(s.got->data, s.got->len, "in");
    check_sample(in, big, BIG_LEN, owned, OWNED_LEN);
    qemu_fclose(in);
    g_byte_array_unref(s.got);
}

static void test_sticky_write_error(void)
{
    Flaky s = { .got = g_byte_array_new(), .max_per_call = SIZE_MAX, .fail_after = 1 };
    QEMUFile *f = qemu_file_new_output(&flaky_ops, &s, "flaky");
    g_autofree uint8_t *big = pattern(BIG_LEN, 7);
    Error *err = NULL;
    int calls;

    qemu_put_be32(f, 1);
    qemu_fflush(f);                         /* accepted */
    g_assert_true(qemu_file_check(f, NULL));
    qemu_put_be32(f, 2);
    qemu_fflush(f);                         /* fails: disk full */
    g_assert_cmpint(qemu_file_get_error(f), ==, -EIO);
    g_assert_false(qemu_file_check(f, &err));
    g_assert_nonnull(strstr(error_get_pretty(err), "write to flaky failed"));
    g_assert_nonnull(strstr(error_get_pretty(err), "disk full"));
    error_free(err);

    /* From now on puts are no-ops: nothing reaches the writer again. */
    calls = s.calls;
    qemu_put_buffer(f, big, BIG_LEN);
    qemu_put_be64(f, 3);
    qemu_fflush(f);
    g_assert_cmpint(s.calls, ==, calls);
    g_assert_cmpuint(s.got->len, ==, 4);
    /* A later error does not replace the first. */
    qemu_file_set_error(f, -EINVAL, "second");
    g_assert_cmpint(qemu_file_get_error(f), ==, -EIO);
    g_assert_true(qemu_file_rate_limit_exceeded(f));
    g_assert_cmpint(qemu_fclose(f), ==, -EIO);
    g_byte_array_unref(s.got);
}

/*
 * A reader that went away: EPIPE as an error of the stream, and the
 * process (which ignores SIGPIPE, as amber does) survives.
 */
static void test_broken_pipe(void)
{
    int p[2];
    MigrationIO io;
    QEMUFile *f;
    Error *err = NULL;

    g_assert_cmpint(pipe(p), ==, 0);
    close(p[0]);
    f = test_fd_file(&io, p[1], true, "pipe");
    qemu_put_be64(f, 42);
    qemu_fflush(f);
    g_assert_false(qemu_file_check(f, &err));
    g_assert_nonnull(strstr(error_get_pretty(err), "Broken pipe"));
    error_free(err);
    test_fd_close(&io, f);
    close(p[1]);
}

/* The items of a small stream, to cut at every offset. */
static const struct {
    const char *what;
    int size;
} items[] = {
    { "magic", 4 }, { "flag", 1 }, { "count", 2 }, { "offset", 8 }, { "payload", 13 },
    { "trailer", 4 },
};

static void read_items(QEMUFile *f)
{
    uint8_t buf[13];

    for (unsigned i = 0; i < G_N_ELEMENTS(items); i++) {
        switch (items[i].size) {
        case 1: qemu_get_byte(f, items[i].what); break;
        case 2: qemu_get_be16(f, items[i].what); break;
        case 4: qemu_get_be32(f, items[i].what); break;
        case 8: qemu_get_be64(f, items[i].what); break;
        default: qemu_get_buffer(f, buf, items[i].size, items[i].what); break;
        }
    }
}

static void test_truncated_every_offset(void)
{
    size_t total = 0;
    g_autofree uint8_t *full = NULL;

    for (unsigned i = 0; i < G_N_ELEMENTS(items); i++) {
        total += items[i].size;
    }
    full = pattern(total, 9);
    for (size_t cut = 0; cut <= total; cut++) {
        /* An exact-size copy: reading past it is an ASan report. */
        g_autofree uint8_t *data = g_memdup2(full, MAX(cut, 1));
        QEMUFile *f = qemu_file_new_mem_input(data, cut, "cut");
        const char *expect = NULL;
        size_t start = 0;

        for (unsigned i = 0; i < G_N_ELEMENTS(items) && !expect; i++) {
            if (start + items[i].size > cut) {
                expect = items[i].what;
            }
            start += items[i].size;
        }
        read_items(f);
        if (!expect) {
            g_assert_cmpint(qemu_file_get_error(f), ==, 0);
        } else {
            Error *err = NULL;
            g_autofree char *want = g_strdup_printf("reading %s", expect);

            g_assert_false(qemu_file_check(f, &err));
            g_assert_nonnull(strstr(error_get_pretty(err), "unexpected end of stream"));
            g_assert_nonnull(strstr(error_get_pretty(err), want));
            error_free(err);
            /* After the error, gets return zero. */
            g_assert_cmpuint(qemu_get_be32(f, "more"), ==, 0);
        }
        g_assert_cmpuint(qemu_file_pos(f), <=, cut);
        qemu_fclose(f);
    }
}

static void test_peek(void)
{
    static const uint8_t data[] = { 5, 3, 'a', 'b', 'c', 9 };
    QEMUFile *f = qemu_file_new_mem_input(data, sizeof(data), "peek");
    char name[8] = { 0 };

    g_assert_cmpint(qemu_peek_byte(f, 0), ==, 5);
    g_assert_cmpint(qemu_peek_byte(f, 1), ==, 3);
    g_assert_cmpuint(qemu_peek_buffer(f, name, 3, 2), ==, 3);
    g_assert_cmpstr(name, ==, "abc");
    g_assert_cmpuint(qemu_file_pos(f), ==, 0);           /* nothing consumed */
    g_assert_cmpuint(qemu_peek_buffer(f, name, 8, 4), ==, 2);   /* near the end */
    g_assert_cmpint(qemu_peek_byte(f, 6), ==, -1);
    g_assert_cmpint(qemu_file_get_error(f), ==, 0);      /* peeking past the end is no error */
    g_assert_cmpuint(qemu_get_byte(f, "t"), ==, 5);
    g_assert_cmpint(qemu_peek_byte(f, 0), ==, 3);
    g_assert_cmpuint(qemu_file_pos(f), ==, 1);
    g_assert_true(qemu_file_skip(f, 5, "rest"));
    g_assert_cmpint(qemu_peek_byte(f, 0), ==, -1);
    qemu_fclose(f);
}

/*
 * A memory input is read in place: from read-only pages (a write would
 * fault), longer than the file's own buffer, told and sought like a file.
 */
static void test_mem_input_in_place(void)
{
    const size_t len = 3 * 512 * 1024 / 2 + 7;
    g_autofree uint8_t *want = pattern(len, 3);
    uint8_t *ro = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    g_autofree uint8_t *got = g_malloc(len);
    Error *err = NULL;
    QEMUFile *f;

    g_assert_true(ro != MAP_FAILED);
    memcpy(ro, want, len);
    g_assert_cmpint(mprotect(ro, len, PROT_READ), ==, 0);
    f = qemu_file_new_mem_input(ro, len, "ro");

    g_assert_cmpint(qemu_file_tell(f, &error_abort), ==, 0);
    g_assert_true(qemu_get_buffer(f, got, len, "all"));
    g_assert_cmpmem(got, len, want, len);
    g_assert_cmpint(qemu_file_tell(f, &error_abort), ==, (int64_t)len);

    /* Back to the middle: what follows is read again, and pos counts it. */
    g_assert_true(qemu_file_seek(f, 600 * 1024, &error_abort));
    g_assert_cmpint(qemu_file_tell(f, &error_abort), ==, 600 * 1024);
    g_assert_cmpint(qemu_peek_byte(f, 0), ==, want[600 * 1024]);
    g_assert_cmpuint(qemu_get_be32(f, "word"), ==,
                     (uint32_t)want[600 * 1024] << 24 | (uint32_t)want[600 * 1024 + 1] << 16 |
                     (uint32_t)want[600 * 1024 + 2] << 8 | want[600 * 1024 + 3]);
    g_assert_cmpuint(qemu_file_pos(f), ==, 600 * 1024 + 4);

    /* The end is a place to seek to; past it is an error that leaves the file usable. */
    g_assert_true(qemu_file_seek(f, len, &error_abort));
    g_assert_false(qemu_file_seek(f, len + 1, &err));
    g_assert_nonnull(strstr(error_get_pretty(err), "outside the stream"));
    error_free(err);
    g_assert_cmpint(qemu_file_get_error(f), ==, 0);
    g_assert_cmpint(qemu_peek_byte(f, 0), ==, -1);

    /* Reading past the end is the usual sticky end-of-stream error. */
    g_assert_true(qemu_file_seek(f, len - 2, &error_abort));
    qemu_get_be32(f, "tail");
    g_assert_cmpint(qemu_file_get_error(f), ==, -EIO);
    g_assert_nonnull(strstr(error_get_pretty(qemu_file_error(f)), "unexpected end of stream"));
    g_assert_cmpint(qemu_fclose(f), ==, -EIO);
    g_assert_cmpmem(ro, len, want, len);
    munmap(ro, len);
}

static int64_t fake_now;

static int64_t fake_clock(void *opaque)
{
    return *(int64_t *)opaque;
}

static void test_rate_limit(void)
{
    QEMUFile *f = qemu_file_new_mem_output("rate");
    g_autofree uint8_t *buf = g_malloc0(200000);

    fake_now = 1000000;
    qemu_file_set_clock(f, fake_clock, &fake_now);
    g_assert_false(qemu_file_rate_limit_exceeded(f));       /* unlimited */
    qemu_put_buffer(f, buf, 150000);
    g_assert_false(qemu_file_rate_limit_exceeded(f));

    /* 1 MB/s: 100000 bytes per 100 ms window. */
    qemu_file_set_rate_limit(f, 1000000);
    g_assert_cmpuint(qemu_file_get_rate_limit(f), ==, 1000000);
    qemu_put_buffer(f, buf, 99999);
    g_assert_false(qemu_file_rate_limit_exceeded(f));
    g_assert_cmpint(qemu_file_rate_limit_delay_us(f), ==, 0);
    qemu_put_byte(f, 0);
    g_assert_true(qemu_file_rate_limit_exceeded(f));
    fake_now += 30000;
    g_assert_cmpint(qemu_file_rate_limit_delay_us(f), ==, 70000);
    g_assert_cmpuint(qemu_file_rate_limit_used(f), ==, 100000);
    /* A new window starts with a fresh budget. */
    fake_now += 70000;
    g_assert_false(qemu_file_rate_limit_exceeded(f));
    g_assert_cmpuint(qemu_file_rate_limit_used(f), ==, 0);
    qemu_put_buffer(f, buf, 60000);
    g_assert_false(qemu_file_rate_limit_exceeded(f));
    qemu_put_buffer_nocopy(f, buf, 60000);                 /* counted too */
    g_assert_true(qemu_file_rate_limit_exceeded(f));
    g_assert_cmpuint(qemu_file_transferred(f), ==, 150000 + 100000 + 120000);

    /*
     * 120000 in that window: 20000 too many, carried into the next one,
     * which then has 80000 left.  330000 more put in it (350000 counted) are
     * paid off by three more windows, each a wait of at most a window.
     */
    fake_now += 100000;
    g_assert_cmpuint(qemu_file_rate_limit_used(f), ==, 20000);
    g_assert_false(qemu_file_rate_limit_exceeded(f));
    qemu_put_buffer(f, buf, 80000);
    g_assert_true(qemu_file_rate_limit_exceeded(f));
    qemu_put_buffer(f, buf, 200000);
    qemu_put_buffer(f, buf, 50000);
    fake_now += 40000;
    g_assert_cmpint(qemu_file_rate_limit_delay_us(f), ==, 60000);
    for (int w = 0; w < 3; w++) {
        g_assert_true(qemu_file_rate_limit_exceeded(f));
        fake_now += qemu_file_rate_limit_delay_us(f);
    }
    g_assert_cmpint(qemu_file_rate_limit_delay_us(f), ==, 0);
    g_assert_false(qemu_file_rate_limit_exceeded(f));
    g_assert_cmpuint(qemu_file_rate_limit_used(f), ==, 50000);
    /* A quiet spell pays off what is left but leaves no credit behind. */
    fake_now += 1000000;
    g_assert_cmpuint(qemu_file_rate_limit_used(f), ==, 0);
    qemu_put_buffer(f, buf, 100000);
    g_assert_true(qemu_file_rate_limit_exceeded(f));
    g_assert_cmpint(qemu_fclose(f), ==, 0);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);       /* as amber's main does */
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/qemu-file/mem-round-trip", test_mem_round_trip);
    g_test_add_func("/qemu-file/fd-round-trip", test_fd_round_trip);
    g_test_add_func("/qemu-file/short-writes", test_short_writes);
    g_test_add_func("/qemu-file/sticky-write-error", test_sticky_write_error);
    g_test_add_func("/qemu-file/broken-pipe", test_broken_pipe);
    g_test_add_func("/qemu-file/truncated-every-offset", test_truncated_every_offset);
    g_test_add_func("/qemu-file/peek", test_peek);
    g_test_add_func("/qemu-file/mem-input-in-place", test_mem_input_in_place);
    g_test_add_func("/qemu-file/rate-limit", test_rate_limit);
    return g_test_run();
}
