/*
 * The machine life cycle with a small ring-3 guest: create, start, pause
 * (the guest really stops), resume, -S, fatal exits, the port bus,
 * requests to the main thread, run states and bad options.
 */
#include "kvm-payload.h"
#include "accel/kvm-state.h"

#define RAM_SIZE (2ULL << 20)
#define TEST_PORT 0x5a0

static char *tmpdir;
static char *kernel;

static bool skip_without_kvm(void)
{
    if (!kvm_usable()) {
        g_test_skip("/dev/kvm is not available");
        return true;
    }
    return false;
}

/* The counter does not move for a while. */
static void assert_stopped(Machine *m)
{
    uint64_t a = payload_counter(m);
    g_usleep(30000);
    g_assert_cmpuint(payload_counter(m), ==, a);
}

static void test_lifecycle(void)
{
    if (skip_without_kvm()) {
        return;
    }
    Machine *m = payload_machine(kernel, RAM_SIZE);
    g_assert_cmpstr(runstate_name(machine_runstate(m)), ==, "prelaunch");
    g_assert_cmpint(machine_ncpus(m), ==, 1);
    g_assert_nonnull(machine_cpu(m, 0));
    g_assert_null(machine_cpu(m, 1));
    assert_stopped(m);                      /* created, not started */
    g_assert_true(machine_start(m, NULL));
    g_assert_cmpstr(runstate_name(machine_runstate(m)), ==, "running");
    uint64_t v = payload_wait_above(m, 1000);
    g_assert_cmpuint(v, >, 1000);
    g_assert_cmpint(cpu_thread_id(machine_cpu(m, 0)), >, 0);
    for (int i = 0; i < 5; i++) {
        g_assert_true(machine_pause(m, NULL));
        g_assert_true(machine_pause(m, NULL));     /* idempotent */
        g_assert_true(cpu_is_paused(machine_cpu(m, 0)));
        assert_stopped(m);
        uint64_t at = payload_counter(m);
        machine_resume(m);
        g_assert_cmpuint(payload_wait_above(m, at), >, at);
    }
    machine_destroy(m);                     /* while running */
}

static void test_start_paused(void)
{
    if (skip_without_kvm()) {
        return;
    }
    MachineOptions *o = payload_options(kernel, RAM_SIZE, 1);
    o->start_paused = true;
    Machine *m = machine_create(o, NULL);
    g_assert_nonnull(m);
    payload_write_ram(m);
    payload_setup_cpu(m);
    g_assert_true(machine_start(m, NULL));
    g_assert_cmpstr(runstate_name(machine_runstate(m)), ==, "prelaunch");
    assert_stopped(m);
    g_assert_cmpuint(payload_counter(m), ==, 0);
    machine_set_runstate(m, RUN_STATE_RUNNING);
    machine_resume(m);
    g_assert_cmpuint(payload_wait_above(m, 0), >, 0);
    machine_destroy(m);
}

typedef struct TestDev {
    Machine *m;
    uint32_t reads;
    uint32_t last_write;
    unsigned writes;
} TestDev;

static uint32_t testdev_read(void *opaque, uint16_t off, unsigned size)
{
    TestDev *d = opaque;
    return ++d->reads;
}

static void testdev_write(void *opaque, uint16_t off, uint32_t val, unsigned size)
{
    TestDev *d = opaque;
    d->last_write = val;
    d->writes++;
}

static const IoOps testdev_ops = { .read = testdev_read, .write = testdev_write };

/*
 * A guest that reads the port in a loop: after every pause RAX must hold
 * the device's latest value, i.e. the IN that was in flight completed.
 */
static void test_pause_completes_io(void)
{
    if (skip_without_kvm()) {
        return;
    }
    Machine *m = payload_machine(kernel, RAM_SIZE);
    TestDev dev = { .m = m };
    g_assert_true(machine_register_io(m, TEST_PORT, 1, &testdev_ops, &dev, NULL));
    /* mov dx, port; 1: in eax, dx; mov [COUNTER], rax; jmp 1b */
    const uint8_t code[] = {
        0x66, 0xba, TEST_PORT & 0xff, TEST_PORT >> 8,
        0xed,
        0x48, 0x89, 0x04, 0x25, 0x00, 0x00, 0x02, 0x00,
        0xeb, 0xf5,
    };
    g_assert_true(machine_write_phys(m, PAYLOAD_CODE, code, sizeof(code), NULL));
    g_assert_true(machine_start(m, NULL));
    KvmVcpuState *st = g_new0(KvmVcpuState, 1);
    for (int i = 0; i < 10; i++) {
        payload_wait_above(m, payload_counter(m) + 50);
        g_assert_true(machine_pause(m, NULL));
        g_assert_true(cpu_get_state(machine_cpu(m, 0), st, NULL));
        machine_lock_devices(m);
        uint32_t reads = dev.reads;
        machine_unlock_devices(m);
        g_assert_cmpuint(reads, >, 0);
        g_assert_cmpuint((uint32_t)st->regs.rax, ==, reads);
        machine_resume(m);
    }
    g_free(st);
    machine_destroy(m);
}

/* A guest exception with no IDT is a triple fault: internal-error, exit 1. */
static void test_fatal_exit(void)
{
    if (skip_without_kvm()) {
        return;
    }
    Machine *m = payload_machine(kernel, RAM_SIZE);
    static const uint8_t ud2[] = { 0x0f, 0x0b };
    g_assert_true(machine_write_phys(m, PAYLOAD_CODE, ud2, sizeof(ud2), NULL));
    g_assert_true(machine_start(m, NULL));
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (machine_runstate(m) != RUN_STATE_INTERNAL_ERROR &&
           g_get_monotonic_time() < deadline) {
        g_usleep(1000);
    }
    g_assert_cmpstr(runstate_name(machine_runstate(m)), ==, "internal-error");
    int code = 0;
    g_assert_cmpint(machine_take_shutdown_request(m, &code), ==, SHUTDOWN_CAUSE_GUEST_PANIC);
    g_assert_cmpint(code, !=, 0);
    g_assert_true(cpu_is_paused(machine_cpu(m, 0)));
    machine_resume(m);                      /* a dead vCPU stays parked */
    g_assert_true(machine_pause(m, NULL));
    machine_destroy(m);
}

static void test_port_bus(void)
{
    if (skip_without_kvm()) {
        return;
    }
    Machine *m = payload_machine(kernel, RAM_SIZE);
    TestDev dev = { .m = m };
    Error *err = NULL;
    g_assert_true(machine_register_io(m, TEST_PORT, 4, &testdev_ops, &dev, NULL));
    g_assert_false(machine_register_io(m, TEST_PORT + 2, 4, &testdev_ops, &dev, &err));
    g_assert_nonnull(strstr(error_get_pretty(err), "overlap"));
    error_free(err);

    uint32_t v = 0x12345678;
    machine_pio(m, TEST_PORT + 1, true, &v, 4, 1);
    g_assert_cmphex(dev.last_write, ==, 0x12345678);
    uint16_t rep[3] = { 0 };
    machine_pio(m, TEST_PORT, false, rep, 2, 3);        /* rep insw */
    g_assert_cmpuint(rep[0], ==, 1);
    g_assert_cmpuint(rep[2], ==, 3);
    uint32_t none = 0;
    machine_pio(m, 0x5f0, false, &none, 4, 1);          /* nobody there */
    g_assert_cmphex(none, ==, 0xffffffff);
    machine_pio(m, 0x5f0, true, &v, 4, 1);              /* ignored */
    uint8_t mmio[4] = { 0 };
    machine_mmio(m, 0xfe000000, false, mmio, 4);
    g_assert_cmphex(mmio[3], ==, 0xff);
    machine_destroy(m);
}

static void notified(Machine *m, void *opaque)
{
    (*(int *)opaque)++;
}

static gpointer request_from_thread(gpointer m)
{
    machine_request_shutdown(m, SHUTDOWN_CAUSE_GUEST_SHUTDOWN, 3);
    machine_request_reset(m);
    return NULL;
}

static void test_requests(void)
{
    if (skip_without_kvm()) {
        return;
    }
    Machine *m = payload_machine(kernel, RAM_SIZE);
    int calls = 0;
    machine_set_request_notify(m, notified, &calls);
    g_thread_join(g_thread_new("req", request_from_thread, m));
    gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
    while (calls == 0 && g_get_monotonic_time() < deadline) {
        g_main_context_iteration(NULL, FALSE);
    }
    g_assert_cmpint(calls, >=, 1);
    int code = 0;
    g_assert_cmpint(machine_take_shutdown_request(m, &code), ==,
                    SHUTDOWN_CAUSE_GUEST_SHUTDOWN);
    g_assert_cmpint(code, ==, 3);
    g_assert_cmpint(machine_take_shutdown_request(m, &code), ==, SHUTDOWN_CAUSE_NONE);
    g_assert_true(machine_take_reset_request(m));
    g_assert_false(machine_take_reset_request(m));
    g_assert_cmpstr(shutdown_cause_name(SHUTDOWN_CAUSE_GUEST_PANIC), ==, "guest-panic");
    g_assert_cmpstr(shutdown_cause_name(SHUTDOWN_CAUSE_HOST_QMP_QUIT), ==, "host-qmp-quit");
    machine_destroy(m);
}

/* reset puts the power-on state back and reloads the image. */
static void test_reset(void)
{
    if (skip_without_kvm()) {
        return;
    }
    Machine *m = payload_machine(kernel, RAM_SIZE);
    g_assert_true(machine_start(m, NULL));
    payload_wait_above(m, 1000);
    Error *err = NULL;
    g_assert_true(machine_reset(m, &err));
    g_assert_true(machine_pause(m, NULL));
    KvmVcpuState *st = g_new0(KvmVcpuState, 1);
    g_assert_true(cpu_get_state(machine_cpu(m, 0), st, NULL));
    /* Multiboot entry: 32-bit, paging off, EAX magic; the image spins at its entry. */
    g_assert_cmphex(st->regs.rip, ==, 0x100020);
    g_assert_cmphex((uint32_t)st->regs.rax, ==, MULTIBOOT_BOOT_MAGIC);
    g_assert_cmphex(st->regs.rbx, ==, MULTIBOOT_INFO_ADDR);
    g_free(st);
    machine_destroy(m);
}

static void test_memory_backend(void)
{
    if (skip_without_kvm()) {
        return;
    }
    MachineOptions *o = payload_options(kernel, 0, 1);
    RamBackendOptions *b = g_new0(RamBackendOptions, 1);
    b->kind = RAM_BACKEND_MEMFD;
    b->id = g_strdup("mem0");
    b->size = 4ULL << 20;
    b->share = true;
    g_ptr_array_add(o->backends, b);
    o->memory_backend = g_strdup("mem0");
    Error *err = NULL;
    Machine *m = machine_create(o, &err);
    g_assert_nonnull(m);
    RAMBlock *rb = ram_block_by_name(machine_ram(m), "mem0");
    g_assert_nonnull(rb);
    g_assert_cmpint(rb->fd, >=, 0);
    g_assert_cmpuint(machine_options(m)->ram_size, ==, 4ULL << 20);
    machine_destroy(m);
}

static void expect_create_error(MachineOptions *o, const char *needle)
{
    Error *err = NULL;
    g_assert_null(machine_create(o, &err));
    g_assert_nonnull(err);
    if (!strstr(error_get_pretty(err), needle)) {
        g_error("message '%s' lacks '%s'", error_get_pretty(err), needle);
    }
    error_free(err);
}

static void test_bad_options(void)
{
    if (skip_without_kvm()) {
        return;
    }
    expect_create_error(payload_options(kernel, RAM_SIZE, 0), "invalid number of vCPUs 0");
    expect_create_error(payload_options(kernel, RAM_SIZE, 9), "invalid number of vCPUs 9");
    MachineOptions *o = payload_options(kernel, RAM_SIZE, 1);
    g_free(o->accel);
    o->accel = g_strdup("tcg");
    expect_create_error(o, "unknown accelerator 'tcg'");
    o = payload_options(kernel, RAM_SIZE, 1);
    o->memory_backend = g_strdup("nope");
    expect_create_error(o, "memory backend 'nope' not found");
    /* Failures after KVM and RAM exist: the half-built machine is freed. */
    o = payload_options("/nonexistent-amber-kernel", RAM_SIZE, 1);
    expect_create_error(o, "cannot read kernel");
    o = payload_options(kernel, 4096, 1);
    expect_create_error(o, "too small");
}

static void test_runstate_names(void)
{
    static const char *const names[] = {
        "prelaunch", "inmigrate", "running", "paused", "finish-migrate", "postmigrate",
        "internal-error", "shutdown",
    };
    g_assert_cmpint(G_N_ELEMENTS(names), ==, RUN_STATE__MAX);
    for (int i = 0; i < RUN_STATE__MAX; i++) {
        g_assert_cmpstr(runstate_name(i), ==, names[i]);
    }
    g_assert_cmpstr(runstate_name(RUN_STATE__MAX), ==, "unknown");
    g_assert_true(runstate_is_running(RUN_STATE_RUNNING));
    g_assert_false(runstate_is_running(RUN_STATE_PAUSED));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    tmpdir = g_dir_make_tmp("amber-machine-XXXXXX", NULL);
    kernel = payload_write_kernel(tmpdir);
    g_test_add_func("/machine/lifecycle", test_lifecycle);
    g_test_add_func("/machine/start-paused", test_start_paused);
    g_test_add_func("/machine/pause-completes-io", test_pause_completes_io);
    g_test_add_func("/machine/fatal-exit", test_fatal_exit);
    g_test_add_func("/machine/port-bus", test_port_bus);
    g_test_add_func("/machine/requests", test_requests);
    g_test_add_func("/machine/reset", test_reset);
    g_test_add_func("/machine/memory-backend", test_memory_backend);
    g_test_add_func("/machine/bad-options", test_bad_options);
    g_test_add_func("/machine/runstate-names", test_runstate_names);
    int r = g_test_run();
    g_unlink(kernel);
    g_rmdir(tmpdir);
    g_free(kernel);
    g_free(tmpdir);
    return r;
}
