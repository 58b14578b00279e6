/*
 * Write-behind (migration/write-behind.c): what a user relies on is that
 * the file holds exactly what was written, that an image past WB_START does
 * not stay in the page cache behind the writer (so saving a big VM does not
 * evict the host's cache by GiBs of dirty pages), and that the first
 * WB_START bytes are left to the cache, and that a file that is not regular
 * is left alone.
 */
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "migration/write-behind.h"

#define CHUNK (1u << 20)

/* Resident pages of [off, off+len) of the file behind fd. */
static size_t resident_pages(int fd, uint64_t off, uint64_t len)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t n = len / page, count = 0;
    unsigned char *vec = g_malloc(n);
    void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, off);

    g_assert_true(p != MAP_FAILED);
    g_assert_cmpint(mincore(p, len, vec), ==, 0);
    for (size_t i = 0; i < n; i++) {
        count += vec[i] & 1;
    }
    munmap(p, len);
    g_free(vec);
    return count;
}

static void fill(uint8_t *buf, uint64_t index)
{
    for (size_t i = 0; i < CHUNK; i += 8) {
        uint64_t v = index * CHUNK + i;

        memcpy(buf + i, &v, 8);
    }
}

/* A new file in a new directory on a disk file system (not tmpfs). */
static int open_tmp(char **dir, char **path)
{
    int fd;

    *dir = g_strdup("/var/tmp/amber-wb-XXXXXX");
    g_assert_nonnull(g_mkdtemp(*dir));
    *path = g_build_filename(*dir, "img", NULL);
    fd = open(*path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    g_assert_cmpint(fd, >=, 0);
    return fd;
}

static void remove_tmp(int fd, char *dir, char *path)
{
    close(fd);
    g_unlink(path);
    g_rmdir(dir);
    g_free(path);
    g_free(dir);
}

static void test_big_file(void)
{
    char *dir, *path;
    uint64_t total = WB_START + 256 * (uint64_t)CHUNK, i;
    uint8_t *buf = g_malloc(CHUNK), *back = g_malloc(CHUNK);
    WriteBehind wb;
    int fd;

    fd = open_tmp(&dir, &path);
    /* The stream starts at an offset, as file:PATH,offset=N does. */
    g_assert_cmpint(pwrite(fd, "head", 4, 0), ==, 4);
    g_assert_cmpint(lseek(fd, 4096, SEEK_SET), ==, 4096);
    write_behind_init(&wb, fd);
    for (i = 0; i < total / CHUNK; i++) {
        fill(buf, i);
        g_assert_cmpint(write(fd, buf, CHUNK), ==, CHUNK);
        write_behind_wrote(&wb, CHUNK);
    }
    /* Behind the writer, past WB_START + WB_LAG: written back and dropped. */
    uint64_t lo = 4096 + WB_START, hi = 4096 + total - WB_LAG - 2 * WB_WINDOW;
    size_t dropped_zone = resident_pages(fd, lo, hi - lo);
    g_assert_cmpuint(dropped_zone, <, (hi - lo) / 4096 / 10);
    g_assert_cmpint(fsync(fd), ==, 0);
    /* Every byte is there, in order, after the head. */
    g_assert_cmpint(pread(fd, back, 4, 0), ==, 4);
    g_assert_cmpmem(back, 4, "head", 4);
    for (i = 0; i < total / CHUNK; i++) {
        fill(buf, i);
        g_assert_cmpint(pread(fd, back, CHUNK, 4096 + i * CHUNK), ==, CHUNK);
        g_assert_true(memcmp(buf, back, CHUNK) == 0);
    }
    remove_tmp(fd, dir, path);
    g_free(buf);
    g_free(back);
}

/* Under WB_START nothing is dropped: a small image stays cached. */
static void test_small_file(void)
{
    char *dir, *path;
    uint8_t *buf = g_malloc0(CHUNK);
    uint64_t total = 64 * (uint64_t)CHUNK;
    WriteBehind wb;
    int fd;

    fd = open_tmp(&dir, &path);
    write_behind_init(&wb, fd);
    for (uint64_t i = 0; i < total / CHUNK; i++) {
        g_assert_cmpint(write(fd, buf, CHUNK), ==, CHUNK);
        write_behind_wrote(&wb, CHUNK);
    }
    g_assert_cmpuint(resident_pages(fd, 0, total), ==, total / 4096);
    remove_tmp(fd, dir, path);
    g_free(buf);
}

/*
 * Blocks are allocated ahead of the writer, and what was not written is
 * given back at the end: the file keeps its size and its bytes.
 */
static void test_prealloc(void)
{
    char *dir, *path;
    uint8_t *buf = g_malloc(CHUNK), *back = g_malloc(CHUNK);
    uint64_t total = 5 * (uint64_t)CHUNK;
    WriteBehind wb;
    struct stat st;
    int fd;

    fd = open_tmp(&dir, &path);
    write_behind_init(&wb, fd);
    if (wb.no_prealloc) {
        g_test_skip("this file system cannot preallocate");
        remove_tmp(fd, dir, path);
        g_free(buf);
        g_free(back);
        return;
    }
    for (uint64_t i = 0; i < total / CHUNK; i++) {
        fill(buf, i);
        g_assert_cmpint(write(fd, buf, CHUNK), ==, CHUNK);
        write_behind_wrote(&wb, CHUNK);
    }
    g_assert_cmpint(fstat(fd, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, total);
    g_assert_cmpuint((uint64_t)st.st_blocks * 512, >=, total + WB_PREALLOC / 4);
    write_behind_finish(&wb);
    g_assert_cmpint(fstat(fd, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, total);
    g_assert_cmpuint((uint64_t)st.st_blocks * 512, <, total + (1 << 20));
    for (uint64_t i = 0; i < total / CHUNK; i++) {
        fill(buf, i);
        g_assert_cmpint(pread(fd, back, CHUNK, i * CHUNK), ==, CHUNK);
        g_assert_true(memcmp(buf, back, CHUNK) == 0);
    }
    remove_tmp(fd, dir, path);
    g_free(buf);
    g_free(back);
}

/* A pipe is not a regular file: nothing to do, and nothing breaks. */
static void test_pipe(void)
{
    int p[2];
    WriteBehind wb;

    g_assert_cmpint(pipe(p), ==, 0);
    write_behind_init(&wb, p[1]);
    g_assert_cmpint(wb.fd, ==, -1);
    write_behind_wrote(&wb, WB_START + 4 * WB_LAG);
    close(p[0]);
    close(p[1]);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/write-behind/big-file", test_big_file);
    g_test_add_func("/write-behind/prealloc", test_prealloc);
    g_test_add_func("/write-behind/small-file", test_small_file);
    g_test_add_func("/write-behind/pipe", test_pipe);
    return g_test_run();
}
