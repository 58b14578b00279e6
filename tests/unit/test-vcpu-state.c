/*
 * Full vCPU + VM state round trips with a counting ring-3 guest: the state
 * saved while paused, put into a new VM (with a copy of RAM) or back into
 * the same VM, must make the guest continue from the saved count.
 */
#include "kvm-payload.h"
#include "accel/kvm-state.h"

#define RAM_SIZE (2ULL << 20)

typedef struct Snapshot {
    KvmVcpuState *cpu;
    KvmVmState vm;
    uint8_t *ram;
    uint64_t counter;
} Snapshot;

static char *tmpdir;
static char *kernel;

static void snapshot_take(Machine *m, Snapshot *s)
{
    Error *err = NULL;
    s->cpu = g_new0(KvmVcpuState, 1);
    g_assert_true(cpu_get_state(machine_cpu(m, 0), s->cpu, &err));
    g_assert_true(machine_get_vm_state(m, &s->vm, &err));
    s->ram = g_memdup2(machine_gpa_to_hva(m, 0, RAM_SIZE), RAM_SIZE);
    s->counter = payload_counter(m);
}

static void snapshot_restore(Machine *m, const Snapshot *s)
{
    Error *err = NULL;
    memcpy(machine_gpa_to_hva(m, 0, RAM_SIZE), s->ram, RAM_SIZE);
    if (!cpu_put_state(machine_cpu(m, 0), s->cpu, &err) ||
        !machine_put_vm_state(m, &s->vm, &err)) {
        g_error("restore: %s", error_get_pretty(err));
    }
}

static void snapshot_free(Snapshot *s)
{
    g_free(s->cpu);
    g_free(s->ram);
}

/*
 * Make the guest jump its count to `base`: a count that a guest restarted
 * from a wrong RAX could never reach during the test.
 */
static void set_count_base(Machine *m, uint64_t base)
{
    KvmVcpuState *st = g_new0(KvmVcpuState, 1);
    g_assert_true(cpu_get_state(machine_cpu(m, 0), st, NULL));
    st->regs.rax = base;
    g_assert_true(cpu_put_state(machine_cpu(m, 0), st, NULL));
    g_free(st);
}

static bool skip_without_kvm(void)
{
    if (!kvm_usable()) {
        g_test_skip("/dev/kvm is not available");
        return true;
    }
    return false;
}

/* The saved state has what a restore needs: MSRs incl. TSC, CPUID, XSAVE. */
static void test_state_contents(void)
{
    if (skip_without_kvm()) {
        return;
    }
    Machine *m = payload_machine(kernel, RAM_SIZE);
    g_assert_true(machine_start(m, NULL));
    payload_wait_above(m, 1000);
    g_assert_true(machine_pause(m, NULL));
    Snapshot s;
    snapshot_take(m, &s);
    g_assert_cmpuint(s.cpu->regs.rip, >=, PAYLOAD_CODE);
    g_assert_cmpuint(s.cpu->regs.rip, <, PAYLOAD_CODE + 13);
    g_assert_cmpuint(s.cpu->mp_state.mp_state, ==, KVM_MP_STATE_RUNNABLE);
    g_assert_cmpuint(s.cpu->ncpuid, >, 0);
    g_assert_cmpuint(s.cpu->xsave_size, >=, 4096);
    bool tsc = false, pat = false;
    for (uint32_t i = 0; i < s.cpu->nmsrs; i++) {
        tsc |= s.cpu->msrs[i].index == MSR_IA32_TSC_NR && s.cpu->msrs[i].data != 0;
        pat |= s.cpu->msrs[i].index == 0x277;
        if (s.cpu->msrs[i].index == MSR_IA32_TSC_DEADLINE_NR) {
            g_assert_cmpuint(s.cpu->msrs[i].data, !=, 0);  /* 0 replaced by the TSC */
        }
    }
    g_assert_true(tsc);
    g_assert_true(pat);
    /* RAX is the count the guest last stored (or one ahead of it). */
    g_assert_cmpuint(s.cpu->regs.rax - s.counter, <=, 1);
    g_assert_cmpuint(s.vm.ioapic.chip_id, ==, KVM_IRQCHIP_IOAPIC);
    snapshot_free(&s);
    machine_destroy(m);
}

#define BIG (1ULL << 40)

static void test_restore_new_vm(void)
{
    if (skip_without_kvm()) {
        return;
    }
    Machine *a = payload_machine(kernel, RAM_SIZE);
    g_assert_true(machine_start(a, NULL));
    payload_wait_above(a, 1000);
    g_assert_true(machine_pause(a, NULL));
    set_count_base(a, BIG);     /* state put back into the same, paused VM */
    machine_resume(a);
    payload_wait_above(a, BIG + 100000);
    g_assert_true(machine_pause(a, NULL));
    Snapshot s;
    snapshot_take(a, &s);
    g_assert_cmpuint(s.counter, >, BIG + 100000);
    machine_destroy(a);

    /* A new VM in the same process: same layout, the saved RAM and state. */
    Machine *b = payload_machine(kernel, RAM_SIZE);
    snapshot_restore(b, &s);
    g_assert_cmpuint(payload_counter(b), ==, s.counter);
    g_assert_true(machine_start(b, NULL));
    uint64_t last = s.counter;
    for (int i = 0; i < 20; i++) {
        uint64_t v = payload_wait_above(b, last);
        g_assert_cmpuint(v, >, last);       /* it goes on, never back */
        last = v;
    }
    g_assert_true(machine_pause(b, NULL));
    KvmVcpuState *st = g_new0(KvmVcpuState, 1);
    g_assert_true(cpu_get_state(machine_cpu(b, 0), st, NULL));
    g_assert_cmpuint(st->regs.rax, >, s.counter);
    g_assert_cmpuint(st->regs.rax - payload_counter(b), <=, 1);
    g_free(st);
    machine_destroy(b);
    snapshot_free(&s);
}

static void test_restore_same_vm(void)
{
    if (skip_without_kvm()) {
        return;
    }
    Machine *m = payload_machine(kernel, RAM_SIZE);
    g_assert_true(machine_start(m, NULL));
    payload_wait_above(m, 10000);
    g_assert_true(machine_pause(m, NULL));
    Snapshot s;
    snapshot_take(m, &s);
    g_assert_cmpuint(s.counter, <, BIG);
    set_count_base(m, BIG);
    machine_resume(m);
    g_assert_cmpuint(payload_wait_above(m, BIG), >, BIG);
    g_assert_true(machine_pause(m, NULL));

    snapshot_restore(m, &s);
    g_assert_cmpuint(payload_counter(m), ==, s.counter);
    machine_resume(m);
    uint64_t v = payload_wait_above(m, s.counter);
    g_assert_true(machine_pause(m, NULL));
    v = payload_counter(m);
    /* Continued from the restored count, not from the later one. */
    g_assert_cmpuint(v, >, s.counter);
    g_assert_cmpuint(v, <, BIG);
    machine_destroy(m);
    snapshot_free(&s);
}

/* A state put is refused with a message when it is malformed. */
static void test_put_rejects_bad_state(void)
{
    if (skip_without_kvm()) {
        return;
    }
    Machine *m = payload_machine(kernel, RAM_SIZE);
    KvmVcpuState *st = g_new0(KvmVcpuState, 1);
    Error *err = NULL;
    g_assert_true(cpu_get_state(machine_cpu(m, 0), st, &err));
    st->nmsrs = KVM_STATE_MAX_MSRS + 1;
    g_assert_false(cpu_put_state(machine_cpu(m, 0), st, &err));
    g_assert_nonnull(strstr(error_get_pretty(err), "MSRs"));
    error_free(err);
    err = NULL;
    KvmVmState vm;
    g_assert_true(machine_get_vm_state(m, &vm, NULL));
    vm.ioapic.chip_id = 7;
    g_assert_false(machine_put_vm_state(m, &vm, &err));
    g_assert_nonnull(strstr(error_get_pretty(err), "irqchip"));
    error_free(err);
    g_free(st);
    machine_destroy(m);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    tmpdir = g_dir_make_tmp("amber-vcpu-XXXXXX", NULL);
    kernel = payload_write_kernel(tmpdir);
    g_test_add_func("/vcpu-state/contents", test_state_contents);
    g_test_add_func("/vcpu-state/restore-new-vm", test_restore_new_vm);
    g_test_add_func("/vcpu-state/restore-same-vm", test_restore_same_vm);
    g_test_add_func("/vcpu-state/put-rejects-bad-state", test_put_rejects_bad_state);
    int r = g_test_run();
    g_unlink(kernel);
    g_rmdir(tmpdir);
    g_free(kernel);
    g_free(tmpdir);
    return r;
}
