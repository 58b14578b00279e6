/*
 * direct-io: direct_io_enable() and the DirectWriter (two aligned buffers,
 * a writer thread, the unaligned tail written without O_DIRECT at finish).
 *
 * What a user relies on: the file holds exactly the bytes of the stream,
 * whatever their split into iovecs; the fd is left without O_DIRECT; an
 * unaligned start is refused with a message and changes nothing; a write
 * error reaches the caller (and freeing the writer then does not hang).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <unistd.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "migration/direct-io.h"
#include "test-helpers.h"

#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif

static char *tmpdir;
static int file_no;

/* A new empty file in tmpdir, open for writing; its path in *path. */
static int new_file(char **path)
{
    int fd;

    *path = g_strdup_printf("%s/f%d", tmpdir, file_no++);
    fd = open(*path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    g_assert_cmpint(fd, >=, 0);
    return fd;
}

static int fd_flags(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    g_assert_cmpint(fl, >=, 0);
    return fl;
}


/* len pseudo-random bytes. */
static uint8_t *random_bytes(GRand *r, size_t len)
{
    uint8_t *p = g_malloc(len ? len : 1);

    for (size_t i = 0; i < len; i++) {
        p[i] = g_rand_int(r);
    }
    return p;
}

/*
 * Write data[0..len) through w as calls of 1..8 iovecs of 0..300 KiB each
 * (zero-length ones included), asserting each call takes all it is given.
 */
static void write_in_random_pieces(DirectWriter *w, GRand *r, const uint8_t *data,
                                   size_t len)
{
    size_t done = 0;

    while (done < len) {
        struct iovec iov[8];
        int n = g_rand_int_range(r, 1, 9);
        size_t sum = 0;

        for (int i = 0; i < n; i++) {
            size_t want = g_rand_int_range(r, 0, 300 * 1024 + 1);
            size_t piece = MIN(want, len - done - sum);     /* MIN evaluates twice */

            iov[i].iov_base = (void *)(data + done + sum);
            iov[i].iov_len = piece;
            sum += piece;
        }
        g_assert_cmpint(direct_writer_writev(w, iov, n, &error_abort), ==, (ssize_t)sum);
        done += sum;
    }
}

/* The file at path is prefix[0..plen) then data[0..len), nothing more. */
static void assert_file_is(const char *path, const uint8_t *prefix, size_t plen,
                           const uint8_t *data, size_t len)
{
    gchar *got;
    gsize got_len;

    g_assert_true(g_file_get_contents(path, &got, &got_len, NULL));
    g_assert_cmpuint(got_len, ==, plen + len);
    g_assert_true(plen == 0 || memcmp(got, prefix, plen) == 0);
    if (memcmp(got + plen, data, len) != 0) {
        for (size_t i = 0; i < len; i++) {
            if ((uint8_t)got[plen + i] != data[i]) {
                g_printerr("first difference at stream byte %zu of %zu\n", i, len);
                break;
            }
        }
        g_assert_not_reached();
    }
    g_free(got);
}

/* Switch fd (at path) to O_DIRECT and give it a writer. */
static DirectWriter *writer_on(int fd, const char *path)
{
    DirectWriter *w;

    g_assert_true(direct_io_enable(fd, path, &error_abort));
    g_assert_true(fd_flags(fd) & O_DIRECT);
    w = direct_writer_new(fd, &error_abort);
    g_assert_nonnull(w);
    return w;
}

/* enable, write len random bytes in random pieces, finish, free; check. */
static void round_trip(int fd, const char *path, const uint8_t *prefix, size_t plen,
                       size_t len, guint32 seed)
{
    GRand *r = g_rand_new_with_seed(seed);
    uint8_t *data = random_bytes(r, len);
    DirectWriter *w;

    w = writer_on(fd, path);
    write_in_random_pieces(w, r, data, len);
    g_assert_true(direct_writer_finish(w, &error_abort));
    g_assert_false(fd_flags(fd) & O_DIRECT);
    direct_writer_free(w);
    g_assert_cmpint(lseek(fd, 0, SEEK_CUR), ==, (off_t)(plen + len));
    g_assert_cmpint(close(fd), ==, 0);
    assert_file_is(path, prefix, plen, data, len);
    g_free(data);
    g_rand_free(r);
}

/* ---- tests ------------------------------------------------------------------ */

static const size_t sizes[] = {
    (5u << 20) + 12345,         /* ~5 MiB and odd bytes: the main case */
    2u << 20,                   /* exactly two buffers: nothing left at finish */
    (1u << 20) + 4096,          /* one buffer and one aligned block */
    3 * 4096,                   /* aligned, less than a buffer */
    4095,                       /* only a tail */
};

static void test_round_trip(gconstpointer opaque)
{
    size_t len = *(const size_t *)opaque;
    char *path;
    int fd = new_file(&path);

    round_trip(fd, path, NULL, 0, len, 0x5eed0000u + (guint32)len);
    g_free(path);
}

static void test_enable_alignment(void)
{
    uint8_t prefix[8192];
    Error *err = NULL;
    char *path;
    int fd = new_file(&path), fl;

    memset(prefix, 0xa5, sizeof(prefix));
    g_assert_cmpint(write(fd, prefix, 100), ==, 100);
    fl = fd_flags(fd);
    g_assert_false(direct_io_enable(fd, path, &err));
    g_assert_nonnull(strstr(error_get_pretty(err), path));
    g_assert_nonnull(strstr(error_get_pretty(err), "not at offset 100"));
    assert_error_contains(&err, "multiple of 4096");
    g_assert_cmpint(fd_flags(fd), ==, fl);
    g_assert_cmpint(lseek(fd, 0, SEEK_CUR), ==, 100);

    /* At 8192 it is taken; the stream follows what is already there. */
    g_assert_cmpint(write(fd, prefix + 100, sizeof(prefix) - 100), ==,
                    (ssize_t)sizeof(prefix) - 100);
    round_trip(fd, path, prefix, sizeof(prefix), (1u << 20) + 777, 42);
    g_free(path);
}

static void test_write_error(void)
{
    struct rlimit old, lim;
    struct sigaction ign = { .sa_handler = SIG_IGN }, old_sa;
    GRand *r = g_rand_new_with_seed(7);
    size_t len = 5u << 20, chunk = 256 << 10;
    uint8_t *data = random_bytes(r, len);
    Error *err = NULL;
    DirectWriter *w;
    bool failed = false;
    char *path;
    int fd = new_file(&path);
    struct stat st;

    g_assert_cmpint(getrlimit(RLIMIT_FSIZE, &old), ==, 0);
    if (old.rlim_max != RLIM_INFINITY && old.rlim_max < (2u << 20)) {
        g_test_skip("RLIMIT_FSIZE hard limit below 2 MiB");
        goto out;
    }
    g_assert_cmpint(sigaction(SIGXFSZ, &ign, &old_sa), ==, 0);
    lim = old;
    lim.rlim_cur = 2u << 20;
    g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &lim), ==, 0);

    w = writer_on(fd, path);
    for (size_t done = 0; done < len && !failed; done += chunk) {
        struct iovec iov = { (void *)(data + done), chunk };
        ssize_t n = direct_writer_writev(w, &iov, 1, &err);

        if (n < 0) {
            failed = true;
            assert_error_contains(&err, "File too large");
        } else {
            g_assert_null(err);
            g_assert_cmpint(n, ==, (ssize_t)chunk);
        }
    }
    /* The error, if writev did not see it, is finish's; a second look too. */
    g_assert_false(direct_writer_finish(w, &err));
    assert_error_contains(&err, "File too large");
    direct_writer_free(w);                       /* returns: no hang */

    g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &old), ==, 0);
    g_assert_cmpint(sigaction(SIGXFSZ, &old_sa, NULL), ==, 0);
    g_assert_cmpint(fstat(fd, &st), ==, 0);
    g_assert_cmpint(st.st_size, <=, 2 << 20);
out:
    close(fd);
    g_free(data);
    g_rand_free(r);
    g_free(path);
}

static void test_empty(void)
{
    char *path;
    int fd = new_file(&path);
    DirectWriter *w;
    struct stat st;

    w = writer_on(fd, path);
    g_assert_true(direct_writer_finish(w, &error_abort));
    g_assert_false(fd_flags(fd) & O_DIRECT);
    direct_writer_free(w);
    g_assert_cmpint(fstat(fd, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, 0);
    close(fd);
    g_free(path);
}

/* A writer freed without finish: staged bytes dropped, no hang, no leak. */
static void test_free_unfinished(void)
{
    GRand *r = g_rand_new_with_seed(9);
    size_t len = (2u << 20) + 100;
    uint8_t *data = random_bytes(r, len);
    struct iovec iov = { data, len };
    char *path;
    int fd = new_file(&path);
    DirectWriter *w;
    struct stat st;

    w = writer_on(fd, path);
    g_assert_cmpint(direct_writer_writev(w, &iov, 1, &error_abort), ==, (ssize_t)len);
    direct_writer_free(w);
    g_assert_cmpint(fstat(fd, &st), ==, 0);
    g_assert_cmpint(st.st_size, <=, 2 << 20);
    g_assert_cmpint(st.st_size % DIRECT_IO_ALIGN, ==, 0);
    close(fd);
    g_free(data);
    g_rand_free(r);
    g_free(path);
}

static void rm_tmpdir(void)
{
    GDir *d = g_dir_open(tmpdir, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        char *p = g_build_filename(tmpdir, name, NULL);

        g_unlink(p);
        g_free(p);
    }
    if (d) {
        g_dir_close(d);
    }
    g_rmdir(tmpdir);
}

/* True when tmpdir is on a disk file system that takes O_DIRECT. */
static bool disk_with_o_direct(void)
{
    struct statfs sfs;
    char *path;
    int fd;
    bool ok;

    g_assert_cmpint(statfs(tmpdir, &sfs), ==, 0);
    if (sfs.f_type == TMPFS_MAGIC) {
        return false;
    }
    fd = new_file(&path);
    ok = fcntl(fd, F_SETFL, fd_flags(fd) | O_DIRECT) == 0;
    close(fd);
    g_unlink(path);
    g_free(path);
    return ok;
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    /* Not /tmp: it may be tmpfs, which is no disk. */
    tmpdir = g_strdup("/var/tmp/amber-direct-io-XXXXXX");
    g_assert_nonnull(g_mkdtemp(tmpdir));
    if (!disk_with_o_direct()) {
        g_printerr("%s: not a disk file system taking O_DIRECT; skipping\n", tmpdir);
        rm_tmpdir();
        g_free(tmpdir);
        return 77;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(sizes); i++) {
        char *name = g_strdup_printf("/direct-io/round-trip/%zu", sizes[i]);

        g_test_add_data_func(name, &sizes[i], test_round_trip);
        g_free(name);
    }
    g_test_add_func("/direct-io/enable-alignment", test_enable_alignment);
    g_test_add_func("/direct-io/write-error", test_write_error);
    g_test_add_func("/direct-io/empty", test_empty);
    g_test_add_func("/direct-io/free-unfinished", test_free_unfinished);
    ret = g_test_run();
    rm_tmpdir();
    g_free(tmpdir);
    return ret;
}
