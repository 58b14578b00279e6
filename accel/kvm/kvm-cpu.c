/* KVM vCPU setup: CPUID, the MSRs amber saves, boot MSRs and LAPIC LINT pins. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/ioctl.h>
#include <glib.h>

#include "kvm-int.h"

#define CPUID_1_ECX_TSC_DEADLINE (1u << 24)
#define CPUID_1_ECX_HYPERVISOR (1u << 31)
#define CPUID_1_EDX_HTT (1u << 28)

#define APIC_LVT_LINT0 0x350
#define APIC_LVT_LINT1 0x360
#define APIC_MODE_NMI 0x4
#define APIC_MODE_EXTINT 0x7

/* Give this vCPU its APIC id (= index) in every leaf that carries one. */
static void normalize_cpuid(struct kvm_cpuid2 *cpuid, int index, int ncpus)
{
    for (uint32_t i = 0; i < cpuid->nent; i++) {
        struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
        switch (e->function) {
        case 1:
            e->ebx = (e->ebx & 0x0000ffffu) | ((uint32_t)index << 24) |
                     ((uint32_t)MAX(ncpus, 1) << 16);
            e->ebx = (e->ebx & ~0xff00u) | (8u << 8);  /* CLFLUSH line: 64 bytes */
            e->ecx |= CPUID_1_ECX_HYPERVISOR | CPUID_1_ECX_TSC_DEADLINE;
            if (ncpus > 1) {
                e->edx |= CPUID_1_EDX_HTT;
            } else {
                e->edx &= ~CPUID_1_EDX_HTT;
            }
            break;
        case 0xb:
        case 0x1f:
            e->edx = index;     /* x2APIC id */
            break;
        default:
            break;
        }
    }
}

static bool setup_cpuid(AccelCPU *c, Error **errp)
{
    const struct kvm_cpuid2 *sup = c->s->supported_cpuid;
    size_t bytes = sizeof(*sup) + sup->nent * sizeof(sup->entries[0]);
    g_autofree struct kvm_cpuid2 *cpuid = g_memdup2(sup, bytes);
    normalize_cpuid(cpuid, c->index, c->s->ncpus);
    if (ioctl(c->fd, KVM_SET_CPUID2, cpuid) < 0) {
        error_setg_errno(errp, errno, "KVM_SET_CPUID2 failed");
        return false;
    }
    return true;
}

static bool msr_readable(AccelCPU *c, uint32_t index)
{
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e;
    } one = { .hdr.nmsrs = 1, .e.index = index };
    return ioctl(c->fd, KVM_GET_MSRS, &one) == 1;
}

static void msr_list_add(AccelCPU *c, uint32_t index)
{
    AccelState *s = c->s;
    for (int i = 0; i < s->nmsrs; i++) {
        if (s->msr_list[i] == index) {
            return;
        }
    }
    if (s->nmsrs < KVM_STATE_MAX_MSRS && msr_readable(c, index)) {
        s->msr_list[s->nmsrs++] = index;
    }
}

/*
 * KVM_GET_MSR_INDEX_LIST lacks PAT and the MTRRs; add them, and keep only
 * what this KVM lets us read back (a SET that GET refuses would break restore).
 */
bool kvm_build_msr_list(AccelCPU *c, Error **errp)
{
    AccelState *s = c->s;
    struct kvm_msr_list probe = { .nmsrs = 0 };
    if (ioctl(s->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG) {
        error_setg_errno(errp, errno, "KVM_GET_MSR_INDEX_LIST failed");
        return false;
    }
    g_autofree struct kvm_msr_list *list =
        g_malloc0(sizeof(*list) + probe.nmsrs * sizeof(uint32_t));
    list->nmsrs = probe.nmsrs;
    if (ioctl(s->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
        error_setg_errno(errp, errno, "KVM_GET_MSR_INDEX_LIST failed");
        return false;
    }
    s->nmsrs = 0;
    for (uint32_t i = 0; i < list->nmsrs; i++) {
        msr_list_add(c, list->indices[i]);
    }
    static const uint32_t extra[] = {
        0x277, 0x2ff, 0x250, 0x258, 0x259,
        0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f,
    };
    for (size_t i = 0; i < G_N_ELEMENTS(extra); i++) {
        msr_list_add(c, extra[i]);
    }
    for (uint32_t m = 0x200; m <= 0x20f; m++) {
        msr_list_add(c, m);
    }
    s->msr_list_ready = true;
    return true;
}

/* Power-on MSR values (as Firecracker's boot MSRs): fast strings, MTRRs on with WB. */
static bool setup_boot_msrs(AccelCPU *c, Error **errp)
{
    static const struct kvm_msr_entry boot[] = {
        { .index = 0x1a0, .data = 1 },                      /* MISC_ENABLE.FAST_STRING */
        { .index = 0x2ff, .data = (1u << 11) | 6 },         /* MTRRdefType: on, WB */
    };
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e[G_N_ELEMENTS(boot)];
    } msrs = { .hdr.nmsrs = G_N_ELEMENTS(boot) };
    memcpy(msrs.e, boot, sizeof(boot));
    int r = ioctl(c->fd, KVM_SET_MSRS, &msrs);
    if (r != (int)G_N_ELEMENTS(boot)) {
        error_setg(errp, "KVM_SET_MSRS refused MSR 0x%x",
                   r >= 0 && r < (int)G_N_ELEMENTS(boot) ? boot[r].index : 0);
        return false;
    }
    return true;
}

static void set_lvt_mode(struct kvm_lapic_state *l, int reg, uint32_t mode)
{
    uint32_t v;
    memcpy(&v, l->regs + reg, 4);
    v &= ~((7u << 8) | (1u << 16));     /* delivery mode, mask */
    v |= mode << 8;
    memcpy(l->regs + reg, &v, 4);
}

/* Virtual-wire mode: LINT0 takes the PIC's ExtINT, LINT1 the NMI. */
static bool setup_lapic(AccelCPU *c, Error **errp)
{
    struct kvm_lapic_state l;
    if (ioctl(c->fd, KVM_GET_LAPIC, &l) < 0) {
        error_setg_errno(errp, errno, "KVM_GET_LAPIC failed");
        return false;
    }
    set_lvt_mode(&l, APIC_LVT_LINT0, APIC_MODE_EXTINT);
    set_lvt_mode(&l, APIC_LVT_LINT1, APIC_MODE_NMI);
    if (ioctl(c->fd, KVM_SET_LAPIC, &l) < 0) {
        error_setg_errno(errp, errno, "KVM_SET_LAPIC failed");
        return false;
    }
    return true;
}

bool kvm_vcpu_setup(AccelCPU *c, Error **errp)
{
    if (!setup_cpuid(c, errp)) {
        return false;
    }
    if (!c->s->msr_list_ready && !kvm_build_msr_list(c, errp)) {
        return false;
    }
    return setup_boot_msrs(c, errp) && setup_lapic(c, errp);
}
