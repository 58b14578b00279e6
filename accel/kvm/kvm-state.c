/*
 * Full vCPU and VM state get/put for KVM.
 *
 * Get runs on the vCPU's own thread while it is parked outside KVM_RUN with
 * any I/O exit completed.  Put follows the order KVM's API requires:
 * CPUID before anything CPUID-dependent, REGS before EVENTS (SET_REGS drops
 * pending exceptions), SREGS before LAPIC (apic_base), LAPIC before MSRs
 * (TSC_DEADLINE needs the timer mode), TSC before TSC_DEADLINE, EVENTS last.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/ioctl.h>
#include <glib.h>

#include "kvm-int.h"

#define VCPU_IOCTL(c, req, arg, what)                                         \
    do {                                                                       \
        if (kvm_vcpu_ioctl_check((c), (req), (arg)) < 0) {                    \
            error_setg_errno(errp, errno, "vCPU %d: %s failed", (c)->index, (what)); \
            return false;                                                      \
        }                                                                      \
    } while (0)

typedef struct MsrBuf {
    struct kvm_msrs hdr;
    struct kvm_msr_entry e[KVM_STATE_MAX_MSRS];
} MsrBuf;

static bool get_cpuid(AccelCPU *c, KvmVcpuState *st, Error **errp)
{
    g_autofree struct kvm_cpuid2 *cpuid =
        g_malloc0(sizeof(*cpuid) + KVM_STATE_MAX_CPUID * sizeof(cpuid->entries[0]));
    cpuid->nent = KVM_STATE_MAX_CPUID;
    VCPU_IOCTL(c, KVM_GET_CPUID2, cpuid, "KVM_GET_CPUID2");
    uint32_t n = cpuid->nent;
    static const struct kvm_cpuid_entry2 zero;
    while (n > 0 && memcmp(&cpuid->entries[n - 1], &zero, sizeof(zero)) == 0) {
        n--;
    }
    st->ncpuid = n;
    memcpy(st->cpuid, cpuid->entries, n * sizeof(st->cpuid[0]));
    return true;
}

static bool get_msrs(AccelCPU *c, KvmVcpuState *st, Error **errp)
{
    AccelState *s = c->s;
    g_autofree MsrBuf *buf = g_new0(MsrBuf, 1);
    buf->hdr.nmsrs = s->nmsrs;
    for (int i = 0; i < s->nmsrs; i++) {
        buf->e[i].index = s->msr_list[i];
    }
    int r = ioctl(c->fd, KVM_GET_MSRS, buf);
    if (r != s->nmsrs) {
        if (r < 0) {
            error_setg_errno(errp, errno, "vCPU %d: KVM_GET_MSRS failed", c->index);
        } else {
            error_setg(errp, "vCPU %d: KVM_GET_MSRS could not read MSR 0x%x", c->index,
                       s->msr_list[r]);
        }
        return false;
    }
    st->nmsrs = s->nmsrs;
    memcpy(st->msrs, buf->e, s->nmsrs * sizeof(st->msrs[0]));

    /*
     * A zero TSC_DEADLINE restored as zero can leave the guest without a
     * timer interrupt forever; the current TSC fires at once instead.
     */
    uint64_t tsc = 0;
    for (uint32_t i = 0; i < st->nmsrs; i++) {
        if (st->msrs[i].index == MSR_IA32_TSC_NR) {
            tsc = st->msrs[i].data;
        }
    }
    for (uint32_t i = 0; i < st->nmsrs; i++) {
        if (st->msrs[i].index == MSR_IA32_TSC_DEADLINE_NR && st->msrs[i].data == 0) {
            st->msrs[i].data = tsc;
        }
    }
    return true;
}

static bool get_xsave(AccelCPU *c, KvmVcpuState *st, Error **errp)
{
    if (c->s->xsave2_size > 0) {
        st->xsave_size = c->s->xsave2_size;
        VCPU_IOCTL(c, KVM_GET_XSAVE2, st->xsave, "KVM_GET_XSAVE2");
    } else {
        st->xsave_size = sizeof(struct kvm_xsave);
        VCPU_IOCTL(c, KVM_GET_XSAVE, st->xsave, "KVM_GET_XSAVE");
    }
    return true;
}

bool kvm_get_vcpu_state(AccelCPU *c, void *state, Error **errp)
{
    KvmVcpuState *st = state;
    memset(st, 0, sizeof(*st));
    /* MP state first: reading it lets KVM process pending INIT/SIPI. */
    VCPU_IOCTL(c, KVM_GET_MP_STATE, &st->mp_state, "KVM_GET_MP_STATE");
    VCPU_IOCTL(c, KVM_GET_REGS, &st->regs, "KVM_GET_REGS");
    st->has_sregs2 = c->s->has_sregs2;
    if (st->has_sregs2) {
        VCPU_IOCTL(c, KVM_GET_SREGS2, &st->sregs2, "KVM_GET_SREGS2");
    } else {
        VCPU_IOCTL(c, KVM_GET_SREGS, &st->sregs, "KVM_GET_SREGS");
    }
    if (!get_xsave(c, st, errp)) {
        return false;
    }
    if (c->s->has_xcrs) {
        VCPU_IOCTL(c, KVM_GET_XCRS, &st->xcrs, "KVM_GET_XCRS");
    }
    if (c->s->has_debugregs) {
        VCPU_IOCTL(c, KVM_GET_DEBUGREGS, &st->debugregs, "KVM_GET_DEBUGREGS");
    }
    VCPU_IOCTL(c, KVM_GET_LAPIC, &st->lapic, "KVM_GET_LAPIC");
    int khz = ioctl(c->fd, KVM_GET_TSC_KHZ, 0);
    st->tsc_khz = khz > 0 ? (uint32_t)khz : 0;
    if (!get_cpuid(c, st, errp) || !get_msrs(c, st, errp)) {
        return false;
    }
    /* Events last: nothing after this may change what is pending. */
    VCPU_IOCTL(c, KVM_GET_VCPU_EVENTS, &st->events, "KVM_GET_VCPU_EVENTS");
    return true;
}

static bool put_cpuid(AccelCPU *c, const KvmVcpuState *st, Error **errp)
{
    if (st->ncpuid > KVM_STATE_MAX_CPUID) {
        error_setg(errp, "vCPU %d: %u CPUID entries, at most %d", c->index, st->ncpuid,
                   KVM_STATE_MAX_CPUID);
        return false;
    }
    g_autofree struct kvm_cpuid2 *cpuid =
        g_malloc0(sizeof(*cpuid) + st->ncpuid * sizeof(cpuid->entries[0]));
    cpuid->nent = st->ncpuid;
    memcpy(cpuid->entries, st->cpuid, st->ncpuid * sizeof(st->cpuid[0]));
    VCPU_IOCTL(c, KVM_SET_CPUID2, cpuid,
               "KVM_SET_CPUID2 (a vCPU that has run only accepts the CPUID it has)");
    return true;
}

static bool set_msr_chunk(AccelCPU *c, const struct kvm_msr_entry *e, uint32_t n,
                          Error **errp)
{
    if (n == 0) {
        return true;
    }
    g_autofree MsrBuf *buf = g_new0(MsrBuf, 1);
    buf->hdr.nmsrs = n;
    memcpy(buf->e, e, n * sizeof(e[0]));
    int r = ioctl(c->fd, KVM_SET_MSRS, buf);
    if (r < 0) {
        error_setg_errno(errp, errno, "vCPU %d: KVM_SET_MSRS failed", c->index);
        return false;
    }
    if ((uint32_t)r != n) {
        error_setg(errp, "vCPU %d: KVM refused MSR 0x%x = 0x%" PRIx64, c->index,
                   e[r].index, (uint64_t)e[r].data);
        return false;
    }
    return true;
}

/* TSC_DEADLINE in its own chunk after everything else, so after IA32_TSC. */
static bool put_msrs(AccelCPU *c, const KvmVcpuState *st, Error **errp)
{
    if (st->nmsrs > KVM_STATE_MAX_MSRS) {
        error_setg(errp, "vCPU %d: %u MSRs, at most %d", c->index, st->nmsrs,
                   KVM_STATE_MAX_MSRS);
        return false;
    }
    struct kvm_msr_entry first[KVM_STATE_MAX_MSRS], last[KVM_STATE_MAX_MSRS];
    uint32_t nfirst = 0, nlast = 0;
    for (uint32_t i = 0; i < st->nmsrs; i++) {
        if (st->msrs[i].index == MSR_IA32_TSC_DEADLINE_NR) {
            last[nlast++] = st->msrs[i];
        } else {
            first[nfirst++] = st->msrs[i];
        }
    }
    return set_msr_chunk(c, first, nfirst, errp) && set_msr_chunk(c, last, nlast, errp);
}

bool kvm_put_vcpu_state(AccelCPU *c, const void *state, Error **errp)
{
    const KvmVcpuState *st = state;
    if (!put_cpuid(c, st, errp)) {
        return false;
    }
    VCPU_IOCTL(c, KVM_SET_MP_STATE, (void *)&st->mp_state, "KVM_SET_MP_STATE");
    VCPU_IOCTL(c, KVM_SET_REGS, (void *)&st->regs, "KVM_SET_REGS");
    if (st->has_sregs2) {
        if (!c->s->has_sregs2) {
            error_setg(errp, "vCPU %d: the saved state needs KVM_SET_SREGS2, which this "
                       "KVM lacks", c->index);
            return false;
        }
        VCPU_IOCTL(c, KVM_SET_SREGS2, (void *)&st->sregs2, "KVM_SET_SREGS2");
    } else {
        VCPU_IOCTL(c, KVM_SET_SREGS, (void *)&st->sregs, "KVM_SET_SREGS");
    }
    if (st->xsave_size > KVM_STATE_XSAVE_MAX ||
        (c->s->xsave2_size > 0 && st->xsave_size > (uint32_t)c->s->xsave2_size)) {
        error_setg(errp, "vCPU %d: saved XSAVE area of %u bytes does not fit this host",
                   c->index, st->xsave_size);
        return false;
    }
    VCPU_IOCTL(c, KVM_SET_XSAVE, (void *)st->xsave, "KVM_SET_XSAVE");
    if (c->s->has_xcrs) {
        VCPU_IOCTL(c, KVM_SET_XCRS, (void *)&st->xcrs, "KVM_SET_XCRS");
    }
    if (c->s->has_debugregs) {
        VCPU_IOCTL(c, KVM_SET_DEBUGREGS, (void *)&st->debugregs, "KVM_SET_DEBUGREGS");
    }
    VCPU_IOCTL(c, KVM_SET_LAPIC, (void *)&st->lapic, "KVM_SET_LAPIC");
    if (!put_msrs(c, st, errp)) {
        return false;
    }
    VCPU_IOCTL(c, KVM_SET_VCPU_EVENTS, (void *)&st->events, "KVM_SET_VCPU_EVENTS");
    return true;
}

#define VM_IOCTL(s, req, arg, what)                                           \
    do {                                                                       \
        if (ioctl((s)->vm_fd, (req), (arg)) < 0) {                             \
            error_setg_errno(errp, errno, "%s failed", (what));               \
            return false;                                                      \
        }                                                                      \
    } while (0)

bool kvm_get_vm_state(AccelState *s, void *state, Error **errp)
{
    KvmVmState *st = state;
    memset(st, 0, sizeof(*st));
    VM_IOCTL(s, KVM_GET_CLOCK, &st->clock, "KVM_GET_CLOCK");
    st->pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
    st->pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
    st->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
    VM_IOCTL(s, KVM_GET_IRQCHIP, &st->pic_master, "KVM_GET_IRQCHIP (PIC master)");
    VM_IOCTL(s, KVM_GET_IRQCHIP, &st->pic_slave, "KVM_GET_IRQCHIP (PIC slave)");
    VM_IOCTL(s, KVM_GET_IRQCHIP, &st->ioapic, "KVM_GET_IRQCHIP (IOAPIC)");
    VM_IOCTL(s, KVM_GET_PIT2, &st->pit, "KVM_GET_PIT2");
    return true;
}

bool kvm_put_vm_state(AccelState *s, const void *state, Error **errp)
{
    const KvmVmState *st = state;
    if (st->pic_master.chip_id != KVM_IRQCHIP_PIC_MASTER ||
        st->pic_slave.chip_id != KVM_IRQCHIP_PIC_SLAVE ||
        st->ioapic.chip_id != KVM_IRQCHIP_IOAPIC) {
        error_setg(errp, "invalid irqchip ids in the saved VM state");
        return false;
    }
    VM_IOCTL(s, KVM_SET_PIT2, (void *)&st->pit, "KVM_SET_PIT2");
    /* flags 0: the clock continues from the saved nanoseconds. */
    struct kvm_clock_data clock = { .clock = st->clock.clock };
    VM_IOCTL(s, KVM_SET_CLOCK, &clock, "KVM_SET_CLOCK");
    VM_IOCTL(s, KVM_SET_IRQCHIP, (void *)&st->pic_master, "KVM_SET_IRQCHIP (PIC master)");
    VM_IOCTL(s, KVM_SET_IRQCHIP, (void *)&st->pic_slave, "KVM_SET_IRQCHIP (PIC slave)");
    VM_IOCTL(s, KVM_SET_IRQCHIP, (void *)&st->ioapic, "KVM_SET_IRQCHIP (IOAPIC)");
    return true;
}
