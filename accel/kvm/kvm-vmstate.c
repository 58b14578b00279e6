/*
 * How the KVM accelerator's state travels in a migration stream: the
 * descriptions of KvmVcpuState ("cpu") and of the pieces of KvmVmState
 * ("kvmclock", "pic", "ioapic", "pit").  See include/accel/kvm-vmstate.h.
 *
 * Registers and tables go field by field (segments and descriptor tables
 * as nested structs) so that a stream reader shows them by name; the
 * XSAVE area, the local APIC page and the irqchip payloads are opaque to
 * us and go as buffers.  Loading checks every count and index against
 * its bound; post_load checks what spans fields.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <glib.h>

#include "accel/kvm-vmstate.h"

/*
 * The kernel's __u64/__s64 are long long, not uint64_t's long: these name
 * the kernel type so that the compile-time member checks hold.
 */
#define K_U8(f, S)          VMSTATE_SINGLE_V(f, S, __u8, VMS_TYPE_U8, 0)
#define K_U8_MAX(f, S, m)   VMSTATE_BOUNDED_V(f, S, __u8, VMS_TYPE_U8, m, 0)
#define K_U16(f, S)         VMSTATE_SINGLE_V(f, S, __u16, VMS_TYPE_U16, 0)
#define K_U32(f, S)         VMSTATE_SINGLE_V(f, S, __u32, VMS_TYPE_U32, 0)
#define K_U32_MAX(f, S, m)  VMSTATE_BOUNDED_V(f, S, __u32, VMS_TYPE_U32, m, 0)
#define K_U64(f, S)         VMSTATE_SINGLE_V(f, S, __u64, VMS_TYPE_U64, 0)
#define K_S64(f, S)         VMSTATE_SINGLE_V(f, S, __s64, VMS_TYPE_I64, 0)
#define K_U64_ARRAY(f, S, n) VMSTATE_ARRAY_V(f, S, n, __u64, VMS_TYPE_U64, 0)

/* `size` opaque bytes at member f of S, named `name`. */
#define K_BUFFER(name_, S, f, size_) {                                      \
    .name = (name_), .type = VMS_TYPE_BUFFER, .size = (size_),             \
    .offset = offsetof(S, f) + VMS_BUILD_CHECK((size_) <= sizeof(VMS_MEMBER(S, f))), \
}

G_STATIC_ASSERT(offsetof(KvmVcpuImage, st) == 0);
G_STATIC_ASSERT(sizeof(struct kvm_xsave) == KVM_VMSTATE_XSAVE_BASE);

/* ---- segments and descriptor tables ---------------------------------------- */

static const VMStateDescription vmstate_kvm_segment = {
    .name = "kvm_segment",
    .version_id = 1, .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        K_U64(base, struct kvm_segment),
        K_U32(limit, struct kvm_segment),
        K_U16(selector, struct kvm_segment),
        K_U8_MAX(type, struct kvm_segment, 15),
        K_U8_MAX(present, struct kvm_segment, 1),
        K_U8_MAX(dpl, struct kvm_segment, 3),
        K_U8_MAX(db, struct kvm_segment, 1),
        K_U8_MAX(s, struct kvm_segment, 1),
        K_U8_MAX(l, struct kvm_segment, 1),
        K_U8_MAX(g, struct kvm_segment, 1),
        K_U8_MAX(avl, struct kvm_segment, 1),
        K_U8_MAX(unusable, struct kvm_segment, 1),
        VMSTATE_END_OF_LIST()
    },
};

static const VMStateDescription vmstate_kvm_dtable = {
    .name = "kvm_dtable",
    .version_id = 1, .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        K_U64(base, struct kvm_dtable),
        K_U16(limit, struct kvm_dtable),
        VMSTATE_END_OF_LIST()
    },
};

#define SEGMENTS(S)                                                         \
    VMSTATE_STRUCT(cs, S, vmstate_kvm_segment, struct kvm_segment),         \
    VMSTATE_STRUCT(ds, S, vmstate_kvm_segment, struct kvm_segment),         \
    VMSTATE_STRUCT(es, S, vmstate_kvm_segment, struct kvm_segment),         \
    VMSTATE_STRUCT(fs, S, vmstate_kvm_segment, struct kvm_segment),         \
    VMSTATE_STRUCT(gs, S, vmstate_kvm_segment, struct kvm_segment),         \
    VMSTATE_STRUCT(ss, S, vmstate_kvm_segment, struct kvm_segment),         \
    VMSTATE_STRUCT(tr, S, vmstate_kvm_segment, struct kvm_segment),         \
    VMSTATE_STRUCT(ldt, S, vmstate_kvm_segment, struct kvm_segment),       \
    VMSTATE_STRUCT(gdt, S, vmstate_kvm_dtable, struct kvm_dtable),          \
    VMSTATE_STRUCT(idt, S, vmstate_kvm_dtable, struct kvm_dtable),          \
    K_U64(cr0, S), K_U64(cr2, S), K_U64(cr3, S), K_U64(cr4, S), K_U64(cr8, S), \
    K_U64(efer, S), K_U64(apic_base, S)

static const VMStateDescription vmstate_kvm_sregs = {
    .name = "kvm_sregs",
    .version_id = 1, .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        SEGMENTS(struct kvm_sregs),
        K_U64_ARRAY(interrupt_bitmap, struct kvm_sregs, (KVM_NR_INTERRUPTS + 63) / 64),
        VMSTATE_END_OF_LIST()
    },
};

static const VMStateDescription vmstate_kvm_sregs2 = {
    .name = "kvm_sregs2",
    .version_id = 1, .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        SEGMENTS(struct kvm_sregs2),
        K_U64(flags, struct kvm_sregs2),
        K_U64_ARRAY(pdptrs, struct kvm_sregs2, 4),
        VMSTATE_END_OF_LIST()
    },
};

/* ---- general registers, XCRs, debug registers, MSRs, CPUID ------------------ */

static const VMStateDescription vmstate_kvm_regs = {
    .name = "kvm_regs",
    .version_id = 1, .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        K_U64(rax, struct kvm_regs), K_U64(rbx, struct kvm_regs),
        K_U64(rcx, struct kvm_regs), K_U64(rdx, struct kvm_regs),
        K_U64(rsi, struct kvm_regs), K_U64(rdi, struct kvm_regs),
        K_U64(rsp, struct kvm_regs), K_U64(rbp, struct kvm_regs),
        K_U64(r8, struct kvm_regs), K_U64(r9, struct kvm_regs),
        K_U64(r10, struct kvm_regs), K_U64(r11, struct kvm_regs),
        K_U64(r12, struct kvm_regs), K_U64(r13, struct kvm_regs),
        K_U64(r14, struct kvm_regs), K_U64(r15, struct kvm_regs),
        K_U64(rip, struct kvm_regs), K_U64(rflags, struct kvm_regs),
        VMSTATE_END_OF_LIST()
    },
};

static const VMStateDescription vmstate_kvm_xcr = {
    .name = "kvm_xcr",
    .version_id = 1, .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        K_U32(xcr, struct kvm_xcr),
        K_U64(value, struct kvm_xcr),
        VMSTATE_END_OF_LIST()
    },
};

static const VMStateDescription vmstate_kvm_xcrs = {
    .name = "kvm_xcrs",
    .version_id = 1, .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        K_U32_MAX(nr_xcrs, struct kvm_xcrs, KVM_MAX_XCRS),
        K_U32(flags, struct kvm_xcrs),
        VMSTATE_STRUCT_VARRAY(xcrs, struct kvm_xcrs, nr_xcrs, vmstate_kvm_xcr,
                              struct kvm_xcr),
        VMSTATE_END_OF_LIST()
    },
};

static const VMStateDescription vmstate_kvm_debugregs = {
    .name = "kvm_debugregs",
    .version_id = 1, .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        K_U64_ARRAY(db, struct kvm_debugregs, 4),
        K_U64(dr6, struct kvm_debugregs),
        K_U64(dr7, struct kvm_debugregs),
        K_U64(flags, struct kvm_debugregs),
        VMSTATE_END_OF_LIST()
    },
};

static const VMStateDescription vmstate_kvm_msr = {
    .name = "kvm_msr_entry",
    .version_id = 1, .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        K_U32(index, struct kvm_msr_entry),
        K_U64(data, struct kvm_msr_entry),
        VMSTATE_END_OF_LIST()
    },
};

static const VMStateDescription vmstate_kvm_cpuid_entry = {
    .name = "kvm_cpuid_entry2",
    .version_id = 1, .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        K_U32(function, struct kvm_cpuid_entry2),
        K_U32(index, struct kvm_cpuid_entry2),
        K_U32(flags, struct kvm_cpuid_entry2),
        K_U32(eax, struct kvm_cpuid_entry2),
        K_U32(ebx, struct kvm_cpuid_entry2),
        K_U32(ecx, struct kvm_cpuid_entry2),
        K_U32(edx, struct kvm_cpuid_entry2),
        VMSTATE_END_OF_LIST()
    },
};

/* ---- pending events ------------------------------------------------------------ */

#define KVM_VCPUEVENT_KNOWN_FLAGS 0x3fu     /* NMI_PENDING .. TRIPLE_FAULT */

static bool kvm_events_post_load(void *opaque, int version_id, Error **errp)
{
    const struct kvm_vcpu_events *ev = opaque;

    if (ev->flags & ~KVM_VCPUEVENT_KNOWN_FLAGS) {
        error_setg(errp, "vCPU events: unknown flags 0x%x", ev->flags);
        return false;
    }
    return true;
}

#define EV struct kvm_vcpu_events
static const VMStateDescription vmstate_kvm_events = {
    .name = "kvm_vcpu_events",
    .version_id = 1, .minimum_version_id = 1,
    .post_load = kvm_events_post_load,
    .fields = (const VMStateField[]) {
        K_U8_MAX(exception.injected, EV, 1),
        K_U8_MAX(exception.nr, EV, 31),
        K_U8_MAX(exception.has_error_code, EV, 1),
        K_U8_MAX(exception.pending, EV, 1),
        K_U32(exception.error_code, EV),
        K_U8_MAX(interrupt.injected, EV, 1),
        K_U8(interrupt.nr, EV),
        K_U8_MAX(interrupt.soft, EV, 1),
        K_U8_MAX(interrupt.shadow, EV, 3),
        K_U8_MAX(nmi.injected, EV, 1),
        K_U8(nmi.pending, EV),
        K_U8_MAX(nmi.masked, EV, 1),
        K_U32(sipi_vector, EV),
        K_U32(flags, EV),
        K_U8_MAX(smi.smm, EV, 1),
        K_U8_MAX(smi.pending, EV, 1),
        K_U8_MAX(smi.smm_inside_nmi, EV, 1),
        K_U8_MAX(smi.latched_init, EV, 1),
        K_U8_MAX(triple_fault.pending, EV, 1),
        K_U8_MAX(exception_has_payload, EV, 1),
        K_U64(exception_payload, EV),
        VMSTATE_END_OF_LIST()
    },
};
#undef EV

/* ---- the vCPU ------------------------------------------------------------------- */

static bool sregs_needed(void *opaque)
{
    return !((KvmVcpuImage *)opaque)->st.has_sregs2;
}

static bool sregs2_needed(void *opaque)
{
    return ((KvmVcpuImage *)opaque)->st.has_sregs2;
}

static bool sregs_post_load(void *opaque, int version_id, Error **errp)
{
    KvmVcpuImage *img = opaque;

    if (img->st.has_sregs2) {
        error_setg(errp, "vCPU %u: has_sregs2 is set but the stream carries sregs",
                   img->index);
        return false;
    }
    img->sregs_loaded = true;
    return true;
}

static bool sregs2_post_load(void *opaque, int version_id, Error **errp)
{
    KvmVcpuImage *img = opaque;

    if (!img->st.has_sregs2) {
        error_setg(errp, "vCPU %u: has_sregs2 is clear but the stream carries sregs2",
                   img->index);
        return false;
    }
    img->sregs_loaded = true;
    return true;
}

static const VMStateDescription vmstate_kvm_cpu_sregs = {
    .name = "cpu/sregs",
    .version_id = 1, .minimum_version_id = 1,
    .needed = sregs_needed,
    .post_load = sregs_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_STRUCT(sregs, KvmVcpuState, vmstate_kvm_sregs, struct kvm_sregs),
        VMSTATE_END_OF_LIST()
    },
};

static const VMStateDescription vmstate_kvm_cpu_sregs2 = {
    .name = "cpu/sregs2",
    .version_id = 1, .minimum_version_id = 1,
    .needed = sregs2_needed,
    .post_load = sregs2_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_STRUCT(sregs2, KvmVcpuState, vmstate_kvm_sregs2, struct kvm_sregs2),
        VMSTATE_END_OF_LIST()
    },
};

/*
 * XSAVE beyond the first 4096 bytes (KVM_CAP_XSAVE2 with AMX and the
 * like): a subsection, so that a stream from a host without it has none.
 * Its length is not in the stream: it follows from xsave_size.
 */
static bool xsave_ext_needed(void *opaque)
{
    return ((KvmVcpuImage *)opaque)->st.xsave_size > KVM_VMSTATE_XSAVE_BASE;
}

static bool xsave_ext_prepare(void *opaque, Error **errp)
{
    KvmVcpuImage *img = opaque;

    if (img->st.xsave_size <= KVM_VMSTATE_XSAVE_BASE ||
        img->st.xsave_size > KVM_STATE_XSAVE_MAX) {
        error_setg(errp, "vCPU %u: XSAVE extension with an XSAVE area of %u bytes",
                   img->index, img->st.xsave_size);
        return false;
    }
    img->xsave_ext_len = img->st.xsave_size - KVM_VMSTATE_XSAVE_BASE;
    return true;
}

static bool xsave_ext_post_load(void *opaque, int version_id, Error **errp)
{
    ((KvmVcpuImage *)opaque)->xsave_ext_loaded = true;
    return true;
}

static const VMStateDescription vmstate_kvm_cpu_xsave_ext = {
    .name = "cpu/xsave-ext",
    .version_id = 1, .minimum_version_id = 1,
    .needed = xsave_ext_needed,
    .pre_save = xsave_ext_prepare,
    .pre_load = xsave_ext_prepare,
    .post_load = xsave_ext_post_load,
    .fields = (const VMStateField[]) {
        {
            .name = "xsave_ext", .type = VMS_TYPE_U8, .size = 1,
            .offset = offsetof(KvmVcpuState, xsave) + KVM_VMSTATE_XSAVE_BASE,
            .has_num_field = true,
            .num_offset = offsetof(KvmVcpuImage, xsave_ext_len),
            .num_size = sizeof(uint32_t),
            .max = KVM_STATE_XSAVE_MAX - KVM_VMSTATE_XSAVE_BASE,
        },
        VMSTATE_END_OF_LIST()
    },
};

static bool kvm_cpu_pre_save(void *opaque, Error **errp)
{
    KvmVcpuImage *img = opaque;

    if (img->st.xsave_size < KVM_VMSTATE_XSAVE_BASE ||
        img->st.xsave_size > KVM_STATE_XSAVE_MAX) {
        error_setg(errp, "vCPU %u: XSAVE area of %u bytes cannot be saved", img->index,
                   img->st.xsave_size);
        return false;
    }
    return true;
}

static bool kvm_cpu_pre_load(void *opaque, Error **errp)
{
    KvmVcpuImage *img = opaque;

    img->sregs_loaded = false;
    img->xsave_ext_loaded = false;
    return true;
}

/* xAPIC layout (KVM keeps it without KVM_CAP_X2APIC_API): ID in bits 31:24 of 0x20. */
static uint32_t lapic_id(const struct kvm_lapic_state *lapic)
{
    uint32_t reg;

    memcpy(&reg, lapic->regs + 0x20, sizeof(reg));
    return reg >> 24;
}

static bool kvm_cpu_post_load(void *opaque, int version_id, Error **errp)
{
    KvmVcpuImage *img = opaque;
    const KvmVcpuState *st = &img->st;

    if (!img->sregs_loaded) {
        error_setg(errp, "vCPU %u: the stream has no %s", img->index,
                   st->has_sregs2 ? "sregs2" : "sregs");
        return false;
    }
    if (st->xsave_size < KVM_VMSTATE_XSAVE_BASE) {
        error_setg(errp, "vCPU %u: XSAVE area of %u bytes, at least %u expected",
                   img->index, st->xsave_size, KVM_VMSTATE_XSAVE_BASE);
        return false;
    }
    if (st->xsave_size > KVM_VMSTATE_XSAVE_BASE && !img->xsave_ext_loaded) {
        error_setg(errp, "vCPU %u: XSAVE area of %u bytes but only %u in the stream",
                   img->index, st->xsave_size, KVM_VMSTATE_XSAVE_BASE);
        return false;
    }
    if (lapic_id(&st->lapic) != img->index) {
        error_setg(errp, "vCPU %u: its local APIC has ID %u; the IDs of a restored "
                   "machine must be its vCPU indexes", img->index, lapic_id(&st->lapic));
        return false;
    }
    return true;
}

#define VS KvmVcpuState
const VMStateDescription vmstate_kvm_cpu = {
    .name = "cpu",
    .version_id = 1, .minimum_version_id = 1,
    .pre_save = kvm_cpu_pre_save,
    .pre_load = kvm_cpu_pre_load,
    .post_load = kvm_cpu_post_load,
    .fields = (const VMStateField[]) {
        {
            .name = "mp_state", .type = VMS_TYPE_U32, .size = sizeof(__u32),
            .offset = offsetof(VS, mp_state.mp_state),
            .has_value_max = true, .value_max = KVM_MP_STATE_SUSPENDED,
        },
        VMSTATE_STRUCT(regs, VS, vmstate_kvm_regs, struct kvm_regs),
        VMSTATE_BOOL(has_sregs2, VS),
        VMSTATE_UINT32_BOUNDED(xsave_size, VS, KVM_STATE_XSAVE_MAX),
        K_BUFFER("xsave", VS, xsave, KVM_VMSTATE_XSAVE_BASE),
        VMSTATE_STRUCT(xcrs, VS, vmstate_kvm_xcrs, struct kvm_xcrs),
        VMSTATE_STRUCT(debugregs, VS, vmstate_kvm_debugregs, struct kvm_debugregs),
        K_BUFFER("lapic", VS, lapic, sizeof(struct kvm_lapic_state)),
        VMSTATE_UINT32_BOUNDED(nmsrs, VS, KVM_STATE_MAX_MSRS),
        VMSTATE_STRUCT_VARRAY(msrs, VS, nmsrs, vmstate_kvm_msr, struct kvm_msr_entry),
        VMSTATE_STRUCT(events, VS, vmstate_kvm_events, struct kvm_vcpu_events),
        VMSTATE_UINT32(tsc_khz, VS),
        VMSTATE_UINT32_BOUNDED(ncpuid, VS, KVM_STATE_MAX_CPUID),
        VMSTATE_STRUCT_VARRAY(cpuid, VS, ncpuid, vmstate_kvm_cpuid_entry,
                              struct kvm_cpuid_entry2),
        VMSTATE_END_OF_LIST()
    },
    .subsections = (const VMStateDescription *const[]) {
        &vmstate_kvm_cpu_sregs, &vmstate_kvm_cpu_sregs2, &vmstate_kvm_cpu_xsave_ext, NULL
    },
};
#undef VS

/* ---- VM-wide state ---------------------------------------------------------------- */

const VMStateDescription vmstate_kvm_clock = {
    .name = "kvmclock",
    .version_id = 1, .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        K_U64(clock, struct kvm_clock_data),
        K_U32(flags, struct kvm_clock_data),
        VMSTATE_END_OF_LIST()
    },
};

const VMStateDescription vmstate_kvm_pic = {
    .name = "pic",
    .version_id = 1, .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        K_BUFFER("chip", struct kvm_irqchip, chip, sizeof(struct kvm_pic_state)),
        VMSTATE_END_OF_LIST()
    },
};

const VMStateDescription vmstate_kvm_ioapic = {
    .name = "ioapic",
    .version_id = 1, .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        K_BUFFER("chip", struct kvm_irqchip, chip, sizeof(struct kvm_ioapic_state)),
        VMSTATE_END_OF_LIST()
    },
};

/* KVM marks a channel no one has programmed yet with mode 0xff. */
static bool kvm_pit_channel_post_load(void *opaque, int version_id, Error **errp)
{
    const struct kvm_pit_channel_state *c = opaque;

    if (c->mode > 5 && c->mode != 0xff) {
        error_setg(errp, "PIT channel in invalid mode %u", c->mode);
        return false;
    }
    return true;
}

#define PC struct kvm_pit_channel_state
static const VMStateDescription vmstate_kvm_pit_channel = {
    .name = "kvm_pit_channel",
    .version_id = 1, .minimum_version_id = 1,
    .post_load = kvm_pit_channel_post_load,
    .fields = (const VMStateField[]) {
        K_U32_MAX(count, PC, 0x10000),          /* a programmed 0 means 65536 */
        K_U16(latched_count, PC),
        K_U8_MAX(count_latched, PC, 3),
        K_U8_MAX(status_latched, PC, 1),
        K_U8(status, PC),
        K_U8_MAX(read_state, PC, 4),
        K_U8_MAX(write_state, PC, 4),
        K_U8(write_latch, PC),
        K_U8_MAX(rw_mode, PC, 3),
        K_U8(mode, PC),
        K_U8_MAX(bcd, PC, 1),
        K_U8_MAX(gate, PC, 1),
        K_S64(count_load_time, PC),
        VMSTATE_END_OF_LIST()
    },
};
#undef PC

const VMStateDescription vmstate_kvm_pit = {
    .name = "pit",
    .version_id = 1, .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_STRUCT_ARRAY(channels, struct kvm_pit_state2, 3, vmstate_kvm_pit_channel,
                             struct kvm_pit_channel_state),
        K_U32(flags, struct kvm_pit_state2),
        VMSTATE_END_OF_LIST()
    },
};
