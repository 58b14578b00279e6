/*
 * Dirty page tracking for live migration: a small ring-3 guest writes
 * known pages; those pages, and amber's own machine_write_phys, show up
 * dirty at a sync; pages re-armed by ram_dirty_take do not (until written
 * again); pages not taken stay logged.
 */
#include <inttypes.h>

#include "kvm-payload.h"
#include "migration/dirty.h"
#include "util/bitmap.h"

#define RAM_SIZE (4ULL << 20)
#define PAGE 4096ULL

/* Pages the loop below writes, besides PAYLOAD_COUNTER. */
static const uint64_t guest_pages[] = { 0x40000, 0x45000, 0x7f000 };
/*
 * Pages the guest never touches.  (A page it only reads may show up too:
 * KVM logs a page when it maps it writable, and it does so on a read when
 * the guest's page table entry is already dirty; the code page is one.)
 */
static const uint64_t quiet_pages[] = { 0x100000, 0x150000, 0x300000 };
#define AMBER_WRITTEN 0x1a0000

static char *tmpdir;
static char *kernel;

/* inc rax; mov [each page], rax; mov [PAYLOAD_COUNTER], rax; jmp back */
static void write_loop(Machine *m)
{
    uint8_t code[64];
    size_t n = 0;

    code[n++] = 0x48, code[n++] = 0xff, code[n++] = 0xc0;
    for (size_t i = 0; i <= G_N_ELEMENTS(guest_pages); i++) {
        uint32_t a = i < G_N_ELEMENTS(guest_pages) ? guest_pages[i] : PAYLOAD_COUNTER;

        code[n++] = 0x48, code[n++] = 0x89, code[n++] = 0x04, code[n++] = 0x25;
        memcpy(&code[n], &a, 4);
        n += 4;
    }
    code[n] = 0xeb;
    code[n + 1] = (uint8_t)-(int)(n + 2);
    g_assert_true(machine_write_phys(m, PAYLOAD_CODE, code, n + 2, NULL));
}

static bool dirty(RamDirty *d, uint64_t gpa)
{
    return ram_dirty_test(d, 0, gpa / PAGE);
}

/* Take (and re-arm) every marked page, as a pass does before sending. */
static void take_all(RamDirty *d)
{
    uint64_t np = ram_dirty_block_pages(d, 0);
    unsigned long bits;

    for (uint64_t p = 0; p < np; p += BITS_PER_LONG) {
        g_assert_true(ram_dirty_take(d, 0, p, MIN(BITS_PER_LONG, np - p), &bits, NULL));
    }
    g_assert_cmpuint(ram_dirty_pending(d), ==, 0);
}

static void run_a_while(Machine *m)
{
    uint64_t at = payload_counter(m);

    machine_resume(m);
    g_assert_cmpuint(payload_wait_above(m, at + 1000), >, at + 1000);
    g_assert_true(machine_pause(m, NULL));
}

static void sync_ok(RamDirty *d, uint64_t *logged)
{
    Error *err = NULL;

    if (!ram_dirty_sync(d, logged, &err)) {
        g_error("sync: %s", error_get_pretty(err));
    }
}

static void test_dirty_log(void)
{
    Error *err = NULL;
    uint64_t logged, one = 1;
    Machine *m;
    RamDirty *d;

    if (!kvm_usable()) {
        g_test_skip("/dev/kvm is not available");
        return;
    }
    m = payload_machine(kernel, RAM_SIZE);
    write_loop(m);
    d = ram_dirty_new(m, &err);
    g_assert_null(err);
    /* Nothing sent yet: every page is to be sent. */
    g_assert_cmpuint(ram_dirty_pending(d), ==, RAM_SIZE / PAGE);
    if (!ram_dirty_start(d, &err)) {
        g_test_skip(error_get_pretty(err));
        error_free(err);
        ram_dirty_free(d);
        machine_destroy(m);
        return;
    }
    g_assert_true(ram_dirty_logging(d));
    take_all(d);                        /* the first pass */

    g_assert_true(machine_start(m, NULL));
    g_assert_true(machine_pause(m, NULL));
    run_a_while(m);
    g_assert_true(machine_write_phys(m, AMBER_WRITTEN, &one, sizeof(one), NULL));
    sync_ok(d, &logged);
    for (size_t i = 0; i < G_N_ELEMENTS(guest_pages); i++) {
        g_assert_true(dirty(d, guest_pages[i]));
    }
    g_assert_true(dirty(d, PAYLOAD_COUNTER));
    g_assert_true(dirty(d, AMBER_WRITTEN));
    for (size_t i = 0; i < G_N_ELEMENTS(quiet_pages); i++) {
        if (dirty(d, quiet_pages[i])) {
            g_error("page 0x%" PRIx64 " is dirty", quiet_pages[i]);
        }
    }
    /*
     * The guest pages, amber's page; maybe the three page-table pages (A/D
     * bits) and the code page.
     */
    g_assert_cmpuint(logged, >=, G_N_ELEMENTS(guest_pages) + 2);
    g_assert_cmpuint(logged, <=, G_N_ELEMENTS(guest_pages) + 2 + 4);
    g_assert_cmpuint(ram_dirty_pending(d), ==, logged);

    /* Re-armed and the guest paused: nothing new. */
    take_all(d);
    sync_ok(d, &logged);
    g_assert_cmpuint(logged, ==, 0);
    g_assert_cmpuint(ram_dirty_pending(d), ==, 0);

    /* Writes after the re-arm are logged again. */
    run_a_while(m);
    sync_ok(d, &logged);
    g_assert_true(dirty(d, guest_pages[0]) && dirty(d, PAYLOAD_COUNTER));

    /*
     * Only what is taken is re-armed: the chunk holding PAYLOAD_COUNTER
     * (pages 0..63) is left alone and stays logged; the next chunk is
     * re-armed and goes quiet.
     */
    {
        unsigned long bits;

        g_assert_true(ram_dirty_take(d, 0, 64, 64, &bits, NULL));
        g_assert_true(bits & (1UL << (guest_pages[0] / PAGE - 64)));
        sync_ok(d, &logged);
        g_assert_true(dirty(d, PAYLOAD_COUNTER));
        g_assert_false(dirty(d, guest_pages[0]));
        g_assert_cmpuint(logged, >=, 1);
    }

    /* Off: amber's own writes are no longer logged. */
    ram_dirty_stop(d);
    g_assert_false(ram_dirty_logging(d));
    g_assert_true(machine_write_phys(m, AMBER_WRITTEN, &one, sizeof(one), NULL));
    {
        unsigned long *tmp = bitmap_new(RAM_SIZE / PAGE);

        g_assert_cmpuint(machine_soft_dirty_take(m, 0, 0, RAM_SIZE / PAGE, tmp), ==, 0);
        bitmap_free(tmp);
    }
    /* Logging again (a second migration) starts from a clean software log. */
    g_assert_true(ram_dirty_start(d, NULL));
    ram_dirty_free(d);
    machine_destroy(m);
}

/* A machine's dirty pages, every one marked; NULL (the test skipped) without KVM. */
static RamDirty *dirty_of_new_machine(Machine **m)
{
    Error *err = NULL;
    RamDirty *d;

    if (!kvm_usable()) {
        g_test_skip("/dev/kvm is not available");
        return NULL;
    }
    *m = payload_machine(kernel, RAM_SIZE);
    d = ram_dirty_new(*m, &err);
    g_assert_null(err);
    return d;
}

/* A page given back after a take is sent later: marked again. */
static void test_put_back(void)
{
    unsigned long bits;
    Machine *m;
    RamDirty *d = dirty_of_new_machine(&m);

    if (!d) {
        return;
    }
    g_assert_true(ram_dirty_take(d, 0, 128, 64, &bits, NULL));
    g_assert_cmphex(bits, ==, ~0UL);
    g_assert_cmpuint(ram_dirty_pending(d), ==, RAM_SIZE / PAGE - 64);
    g_assert_cmpuint(ram_dirty_next(d, 0, 128), ==, 192);
    bits = 0x5;
    ram_dirty_put_back(d, 0, 128, 64, &bits);
    g_assert_cmpuint(ram_dirty_pending(d), ==, RAM_SIZE / PAGE - 62);
    g_assert_cmpuint(ram_dirty_next(d, 0, 64 + 64), ==, 128);
    g_assert_cmpuint(ram_dirty_next(d, 0, 129), ==, 130);
    g_assert_cmpuint(ram_dirty_next(d, 0, 131), ==, 192);
    ram_dirty_free(d);
    machine_destroy(m);
}

/* A huge page with any page marked is marked whole (postcopy sends it whole). */
static void test_widen(void)
{
    uint64_t np = RAM_SIZE / PAGE;
    unsigned long bits;
    Machine *m;
    RamDirty *d = dirty_of_new_machine(&m);

    if (!d) {
        return;
    }
    take_all(d);
    /* One page of the first huge page, none of the second: the first goes whole. */
    bits = 1UL << 5;
    ram_dirty_put_back(d, 0, 64, 64, &bits);
    ram_dirty_widen(d, 0, 512);
    g_assert_cmpuint(ram_dirty_pending(d), ==, 512);
    g_assert_cmpuint(ram_dirty_next(d, 0, 0), ==, 0);
    g_assert_cmpuint(ram_dirty_next_clear(d, 0, 0), ==, 512);
    g_assert_cmpuint(ram_dirty_next(d, 0, 512), ==, np);
    /* Widening again, or by 1 (4 KiB pages), changes nothing. */
    ram_dirty_widen(d, 0, 512);
    ram_dirty_widen(d, 0, 1);
    g_assert_cmpuint(ram_dirty_pending(d), ==, 512);
    ram_dirty_free(d);
    machine_destroy(m);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    tmpdir = g_dir_make_tmp("amber-dirty-XXXXXX", NULL);
    kernel = payload_write_kernel(tmpdir);
    g_test_add_func("/dirty/log", test_dirty_log);
    g_test_add_func("/dirty/put-back", test_put_back);
    g_test_add_func("/dirty/widen", test_widen);
    ret = g_test_run();
    g_unlink(kernel);
    g_rmdir(tmpdir);
    g_free(kernel);
    g_free(tmpdir);
    return ret;
}
