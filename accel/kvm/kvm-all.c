/*
 * The KVM accelerator: the VM, its memory slots, vCPU creation and the run
 * loop.  State get/put lives in kvm-state.c, CPUID/MSR/LAPIC setup in
 * kvm-cpu.c, dirty logging in kvm-dirty.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <glib.h>

#include "kvm-int.h"
#include "system/machine.h"
#include "util/trace.h"

#define KVM_TSS_ADDR 0xfffbd000ULL
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000ULL
/* The kick signal; its handler does nothing, it only interrupts KVM_RUN. */
#define SIG_KICK SIGUSR1

static void kick_handler(int sig)
{
}

/* Without SA_RESTART, so a signalled KVM_RUN returns EINTR. */
static void install_kick_handler(void)
{
    struct sigaction sa = { .sa_handler = kick_handler };
    sigemptyset(&sa.sa_mask);
    sigaction(SIG_KICK, &sa, NULL);
}

int kvm_vcpu_ioctl_check(AccelCPU *c, unsigned long req, void *arg)
{
    int r;
    do {
        r = ioctl(c->fd, req, arg);
    } while (r < 0 && errno == EINTR);
    return r;
}

static int vm_check_cap(AccelState *s, int cap)
{
    int r = ioctl(s->vm_fd, KVM_CHECK_EXTENSION, cap);
    return r < 0 ? 0 : r;
}

static bool require_cap(AccelState *s, int cap, const char *name, Error **errp)
{
    if (vm_check_cap(s, cap) <= 0) {
        error_set(errp, ERROR_CLASS_KVM_MISSING_CAP,
                  "KVM lacks %s, which amber needs", name);
        return false;
    }
    return true;
}

/* KVM_GET_SUPPORTED_CPUID: start at 256 entries and grow while KVM says E2BIG. */
static struct kvm_cpuid2 *get_supported_cpuid(int kvm_fd, Error **errp)
{
    for (int n = 256; n <= 4096; n *= 2) {
        struct kvm_cpuid2 *c = g_malloc0(sizeof(*c) + n * sizeof(c->entries[0]));
        c->nent = n;
        if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
            return c;
        }
        int err = errno;
        g_free(c);
        if (err != E2BIG) {
            error_setg_errno(errp, err, "KVM_GET_SUPPORTED_CPUID failed");
            return NULL;
        }
    }
    error_setg(errp, "KVM_GET_SUPPORTED_CPUID: too many entries");
    return NULL;
}

static bool open_kvm(AccelState *s, Error **errp)
{
    s->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (s->kvm_fd < 0) {
        error_setg_errno(errp, errno, "cannot open /dev/kvm (is KVM enabled and are you "
                         "allowed to use it?)");
        return false;
    }
    int v = ioctl(s->kvm_fd, KVM_GET_API_VERSION, 0);
    if (v < 0) {
        error_setg_errno(errp, errno, "/dev/kvm is not a KVM device");
        return false;
    }
    if (v != KVM_API_VERSION) {
        error_setg(errp, "KVM API version %d is not the supported %d", v, KVM_API_VERSION);
        return false;
    }
    s->vcpu_mmap_size = ioctl(s->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (s->vcpu_mmap_size < (int)sizeof(struct kvm_run)) {
        error_setg_errno(errp, errno, "KVM_GET_VCPU_MMAP_SIZE failed");
        return false;
    }
    s->vm_fd = ioctl(s->kvm_fd, KVM_CREATE_VM, 0);
    if (s->vm_fd < 0) {
        error_setg_errno(errp, errno, "KVM_CREATE_VM failed");
        return false;
    }
    return true;
}

/* Everything that must exist before the first vCPU. */
static bool setup_vm(AccelState *s, Error **errp)
{
    if (!require_cap(s, KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP", errp) ||
        !require_cap(s, KVM_CAP_PIT2, "KVM_CAP_PIT2", errp) ||
        !require_cap(s, KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT", errp) ||
        !require_cap(s, KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY", errp)) {
        return false;
    }
    if (ioctl(s->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_ADDR) < 0) {
        error_setg_errno(errp, errno, "KVM_SET_TSS_ADDR failed");
        return false;
    }
    uint64_t idmap = KVM_IDENTITY_MAP_ADDR;
    if (vm_check_cap(s, KVM_CAP_SET_IDENTITY_MAP_ADDR) &&
        ioctl(s->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0) {
        error_setg_errno(errp, errno, "KVM_SET_IDENTITY_MAP_ADDR failed");
        return false;
    }
    if (ioctl(s->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
        error_setg_errno(errp, errno, "KVM_CREATE_IRQCHIP failed");
        return false;
    }
    struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
    if (ioctl(s->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
        error_setg_errno(errp, errno, "KVM_CREATE_PIT2 failed");
        return false;
    }
    s->xsave2_size = vm_check_cap(s, KVM_CAP_XSAVE2);
    s->has_sregs2 = vm_check_cap(s, KVM_CAP_SREGS2) > 0;
    s->has_debugregs = vm_check_cap(s, KVM_CAP_DEBUGREGS) > 0;
    s->has_xcrs = vm_check_cap(s, KVM_CAP_XCRS) > 0;
    if (s->xsave2_size > KVM_STATE_XSAVE_MAX) {
        error_setg(errp, "KVM's XSAVE area (%d bytes) is larger than amber supports (%d)",
                   s->xsave2_size, KVM_STATE_XSAVE_MAX);
        return false;
    }
    s->supported_cpuid = get_supported_cpuid(s->kvm_fd, errp);
    return s->supported_cpuid != NULL;
}

static void kvm_destroy_vm(AccelState *s)
{
    if (!s) {
        return;
    }
    if (s->vm_fd >= 0) {
        close(s->vm_fd);
    }
    if (s->kvm_fd >= 0) {
        close(s->kvm_fd);
    }
    g_free(s->supported_cpuid);
    g_free(s);
}

static AccelState *kvm_init_vm(Machine *m, int ncpus, Error **errp)
{
    AccelState *s = g_new0(AccelState, 1);
    s->m = m;
    s->kvm_fd = s->vm_fd = -1;
    s->ncpus = ncpus;
    if (!open_kvm(s, errp) || !setup_vm(s, errp)) {
        kvm_destroy_vm(s);
        return NULL;
    }
    install_kick_handler();
    return s;
}

static bool kvm_map_region(AccelState *s, MemRegion *r, Error **errp)
{
    static const int max_slots = 32;
    int slot = 0;
    RamBlockList *l = machine_ram(s->m);
    for (int i = 0; l && i < l->nregions; i++) {
        if (&l->regions[i] != r && l->regions[i].slot >= slot) {
            slot = l->regions[i].slot + 1;
        }
    }
    if (slot >= max_slots) {
        error_setg(errp, "no free KVM memory slot");
        return false;
    }
    struct kvm_userspace_memory_region mr = {
        .slot = slot,
        .guest_phys_addr = r->gpa,
        .memory_size = r->size,
        .userspace_addr = (uintptr_t)(r->block->host + r->offset),
    };
    if (ioctl(s->vm_fd, KVM_SET_USER_MEMORY_REGION, &mr) < 0) {
        error_setg_errno(errp, errno, "cannot map guest RAM at 0x%" PRIx64 " (%" PRIu64
                         " bytes) into KVM", r->gpa, r->size);
        return false;
    }
    r->slot = slot;
    return true;
}

static void kvm_destroy_vcpu(AccelCPU *c)
{
    if (!c) {
        return;
    }
    if (c->run) {
        munmap(c->run, c->s->vcpu_mmap_size);
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
    g_free(c);
}

static AccelCPU *kvm_create_vcpu(AccelState *s, int index, Error **errp)
{
    AccelCPU *c = g_new0(AccelCPU, 1);
    c->s = s;
    c->index = index;
    c->fd = ioctl(s->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
    if (c->fd < 0) {
        error_setg_errno(errp, errno, "KVM_CREATE_VCPU %d failed", index);
        g_free(c);
        return NULL;
    }
    c->run = mmap(NULL, s->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
    if (c->run == MAP_FAILED) {
        c->run = NULL;
        error_setg_errno(errp, errno, "cannot map the kvm_run area of vCPU %d", index);
        kvm_destroy_vcpu(c);
        return NULL;
    }
    if (!kvm_vcpu_setup(c, errp)) {
        error_prepend(errp, "vCPU %d: ", index);
        kvm_destroy_vcpu(c);
        return NULL;
    }
    return c;
}

static void kvm_vcpu_thread_init(AccelCPU *c)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIG_KICK);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    c->thread = pthread_self();
    __atomic_store_n(&c->has_thread, true, __ATOMIC_RELEASE);
}

/*
 * Set immediate_exit first: if the vCPU thread is between its checks and
 * KVM_RUN, KVM returns EINTR at once; the signal covers a thread already
 * inside KVM_RUN (including one asleep in a userfaultfd fault).
 */
static void kvm_kick(AccelCPU *c)
{
    __atomic_store_n(&c->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&c->has_thread, __ATOMIC_ACQUIRE)) {
        pthread_kill(c->thread, SIG_KICK);
    }
}

static uint64_t vcpu_rip(AccelCPU *c)
{
    struct kvm_regs regs;
    return ioctl(c->fd, KVM_GET_REGS, &regs) == 0 ? regs.rip : 0;
}

static void handle_io(AccelCPU *c)
{
    struct kvm_run *run = c->run;
    machine_pio(c->s->m, run->io.port, run->io.direction == KVM_EXIT_IO_OUT,
                (uint8_t *)run + run->io.data_offset, run->io.size, run->io.count);
}

static void handle_mmio(AccelCPU *c)
{
    struct kvm_run *run = c->run;
    unsigned len = MIN(run->mmio.len, sizeof(run->mmio.data));
    machine_mmio(c->s->m, run->mmio.phys_addr, run->mmio.is_write, run->mmio.data, len);
}

static AccelRunResult handle_system_event(AccelCPU *c)
{
    switch (c->run->system_event.type) {
    case KVM_SYSTEM_EVENT_RESET:
        machine_request_reset(c->s->m);
        break;
    default:
        machine_request_shutdown(c->s->m, SHUTDOWN_CAUSE_GUEST_SHUTDOWN, 0);
        break;
    }
    return ACCEL_RUN_STOP;
}

static AccelRunResult fatal_exit(AccelCPU *c, const char *what)
{
    struct kvm_run *run = c->run;
    uint64_t rip = vcpu_rip(c);
    switch (run->exit_reason) {
    case KVM_EXIT_INTERNAL_ERROR:
        error_report("vCPU %d: %s (suberror %u) at RIP 0x%" PRIx64, c->index, what,
                     run->internal.suberror, rip);
        break;
    case KVM_EXIT_FAIL_ENTRY:
        error_report("vCPU %d: %s (hardware reason 0x%llx) at RIP 0x%" PRIx64, c->index,
                     what, (unsigned long long)run->fail_entry.hardware_entry_failure_reason,
                     rip);
        break;
    case KVM_EXIT_SHUTDOWN:
        error_report("vCPU %d: %s at RIP 0x%" PRIx64, c->index, what, rip);
        break;
    default:
        error_report("vCPU %d: %s (exit reason %u) at RIP 0x%" PRIx64, c->index, what,
                     run->exit_reason, rip);
        break;
    }
    return ACCEL_RUN_FATAL;
}

/* Enter the guest until a kick; every exit is handled in this one switch. */
static AccelRunResult kvm_run(AccelCPU *c)
{
    struct kvm_run *run = c->run;
    for (;;) {
        if (ioctl(c->fd, KVM_RUN, 0) < 0) {
            int err = errno;
            if (err == EINTR || err == EAGAIN) {
                __atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
                return ACCEL_RUN_KICKED;
            }
            error_report("vCPU %d: KVM_RUN failed: %s at RIP 0x%" PRIx64, c->index,
                         strerror(err), vcpu_rip(c));
            return ACCEL_RUN_FATAL;
        }
        trace(kvm_run_exit, "vcpu=%d reason=%u", c->index, run->exit_reason);
        switch (run->exit_reason) {
        case KVM_EXIT_IO:
            handle_io(c);
            break;
        case KVM_EXIT_MMIO:
            handle_mmio(c);
            break;
        case KVM_EXIT_HLT:
            /* Only without an in-kernel irqchip, which amber always has. */
            break;
        case KVM_EXIT_IRQ_WINDOW_OPEN:
        case KVM_EXIT_INTR:
            break;
        case KVM_EXIT_SYSTEM_EVENT:
            return handle_system_event(c);
        case KVM_EXIT_SHUTDOWN:
            return fatal_exit(c, "guest triple fault (KVM_EXIT_SHUTDOWN)");
        case KVM_EXIT_INTERNAL_ERROR:
            return fatal_exit(c, "KVM internal error (KVM_EXIT_INTERNAL_ERROR)");
        case KVM_EXIT_FAIL_ENTRY:
            return fatal_exit(c, "KVM could not enter the guest (KVM_EXIT_FAIL_ENTRY)");
        default:
            return fatal_exit(c, "unexpected KVM exit");
        }
    }
}

static void set_flat_segment(struct kvm_segment *seg, uint16_t sel, uint8_t type)
{
    *seg = (struct kvm_segment) {
        .base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
        .present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1,
    };
}

/* Multiboot entry state: 32-bit protected mode, flat segments, paging and IF off. */
static bool kvm_set_boot_state(AccelCPU *c, const BootCpuState *b, Error **errp)
{
    struct kvm_sregs sregs;
    if (kvm_vcpu_ioctl_check(c, KVM_GET_SREGS, &sregs) < 0) {
        error_setg_errno(errp, errno, "KVM_GET_SREGS failed");
        return false;
    }
    set_flat_segment(&sregs.cs, 0x10, 0xb);
    set_flat_segment(&sregs.ds, 0x18, 0x3);
    sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
    sregs.cr0 = 0x11;       /* PE | ET */
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
    struct kvm_regs regs = {
        .rip = b->eip, .rax = b->eax, .rbx = b->ebx, .rflags = 0x2,
    };
    if (kvm_vcpu_ioctl_check(c, KVM_SET_SREGS, &sregs) < 0) {
        error_setg_errno(errp, errno, "KVM_SET_SREGS failed");
        return false;
    }
    if (kvm_vcpu_ioctl_check(c, KVM_SET_REGS, &regs) < 0) {
        error_setg_errno(errp, errno, "KVM_SET_REGS failed");
        return false;
    }
    struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };
    if (kvm_vcpu_ioctl_check(c, KVM_SET_MP_STATE, &mp) < 0) {
        error_setg_errno(errp, errno, "KVM_SET_MP_STATE failed");
        return false;
    }
    return true;
}

static uint32_t kvm_tsc_khz(AccelState *s)
{
    int r = -1;
    if (vm_check_cap(s, KVM_CAP_GET_TSC_KHZ)) {
        r = ioctl(s->vm_fd, KVM_GET_TSC_KHZ, 0);
    }
    return r > 0 ? (uint32_t)r : 0;
}

static void kvm_set_irq(AccelState *s, int gsi, int level)
{
    struct kvm_irq_level irq = { .irq = gsi, .level = level };
    if (ioctl(s->vm_fd, KVM_IRQ_LINE, &irq) < 0) {
        warn_report("KVM_IRQ_LINE %d=%d failed: %s", gsi, level, strerror(errno));
    }
}

const AccelOps kvm_accel_ops = {
    .name = "kvm",
    .vcpu_state_size = sizeof(KvmVcpuState),
    .vm_state_size = sizeof(KvmVmState),
    .init_vm = kvm_init_vm,
    .destroy_vm = kvm_destroy_vm,
    .map_region = kvm_map_region,
    .create_vcpu = kvm_create_vcpu,
    .destroy_vcpu = kvm_destroy_vcpu,
    .vcpu_thread_init = kvm_vcpu_thread_init,
    .run = kvm_run,
    .kick = kvm_kick,
    .set_boot_state = kvm_set_boot_state,
    .tsc_khz = kvm_tsc_khz,
    .set_irq = kvm_set_irq,
    .get_vcpu_state = kvm_get_vcpu_state,
    .put_vcpu_state = kvm_put_vcpu_state,
    .get_vm_state = kvm_get_vm_state,
    .put_vm_state = kvm_put_vm_state,
    .dirty_log_start = kvm_dirty_log_start,
    .dirty_log_sync = kvm_dirty_log_sync,
    .dirty_log_clear = kvm_dirty_log_clear,
    .dirty_log_stop = kvm_dirty_log_stop,
};

const AccelOps *accel_find(const char *name)
{
    if (!name || strcmp(name, "kvm") == 0) {
        return &kvm_accel_ops;
    }
    return NULL;
}
