/*
 * The accelerator's sections, as a machine on KVM registers them for a
 * save or a load (system/machine-state.c): "cpu" for vCPUs 0 and 1,
 * "kvmclock", "pic" 0 and 1, "ioapic", "pit".  Their descriptions are the
 * largest of a stream's device state: counted arrays (MSRs, CPUID
 * entries, XCRs), subsections (sregs or sregs2, the XSAVE beyond 4 KiB
 * whose length follows from a field loaded before it) and bounded
 * values.  None of them needs KVM to load: they fill plain structs and
 * check them, and only machine_state_apply() hands them to KVM.
 */
#include <string.h>

#include <glib.h>

#include "accel/kvm-vmstate.h"
#include "fuzz.h"

#define FUZZ_VCPUS 2

/* A plausible vCPU for the seeds: each vCPU takes the other sregs flavour and XSAVE size. */
static void fill_vcpu(KvmVcpuImage *ci)
{
    KvmVcpuState *st = &ci->st;
    uint32_t v = ci->index;

    st->mp_state.mp_state = KVM_MP_STATE_RUNNABLE;
    st->regs.rip = 0x400000 + v;
    st->regs.rflags = 0x2;
    st->has_sregs2 = v & 1;
    st->sregs.cs.selector = st->sregs2.cs.selector = 0x33;
    st->sregs.cr0 = st->sregs2.cr0 = 0x80050033;
    st->sregs2.pdptrs[2] = 0x1000;
    st->xsave_size = KVM_VMSTATE_XSAVE_BASE + (v & 1) * 2048;
    for (uint32_t i = 0; i < st->xsave_size; i += 61) {
        st->xsave[i] = (uint8_t)(i + v);
    }
    st->xcrs.nr_xcrs = 1;
    st->xcrs.xcrs[0].value = 7;
    st->lapic.regs[0x23] = (uint8_t)v;          /* APIC ID in bits 31:24 of 0x20 */
    st->nmsrs = 3;
    st->msrs[0].index = MSR_IA32_TSC_NR;
    st->msrs[0].data = 123456789;
    st->msrs[1].index = 0xc0000080;             /* EFER */
    st->msrs[1].data = 0xd01;
    st->msrs[2].index = MSR_IA32_TSC_DEADLINE_NR;
    st->events.interrupt.nr = 0x30;
    st->tsc_khz = 2000000;
    st->ncpuid = 2;
    st->cpuid[0].function = 0;
    st->cpuid[0].eax = 0xd;
    st->cpuid[1].function = 0xd;
    st->cpuid[1].index = 1;
}

static void fill_pit(struct kvm_pit_state2 *pit)
{
    for (int i = 0; i < 3; i++) {
        pit->channels[i].mode = i ? 0xff : 2;   /* 0xff: never programmed */
        pit->channels[i].count = 0x10000;
        pit->channels[i].gate = 1;
    }
}

static void *add(GPtrArray *states, SaveStateRegistry *r, const char *idstr,
                 uint32_t instance, const VMStateDescription *vmsd, size_t size)
{
    void *state = g_malloc0(size);

    g_ptr_array_add(states, state);
    g_assert(savevm_register_vmsd(r, idstr, instance, vmsd, state, NULL));
    return state;
}

GPtrArray *fuzz_register_kvm_sections(SaveStateRegistry *r, bool seed)
{
    GPtrArray *states = g_ptr_array_new_with_free_func(g_free);
    struct kvm_clock_data *clock;
    struct kvm_irqchip *chip;

    for (uint32_t v = 0; v < FUZZ_VCPUS; v++) {
        KvmVcpuImage *ci = add(states, r, "cpu", v, &vmstate_kvm_cpu, sizeof(*ci));

        ci->index = v;
        if (seed) {
            fill_vcpu(ci);
        }
    }
    clock = add(states, r, "kvmclock", 0, &vmstate_kvm_clock, sizeof(*clock));
    for (uint32_t i = 0; i < 2; i++) {
        chip = add(states, r, "pic", i, &vmstate_kvm_pic, sizeof(*chip));
        chip->chip_id = i;
    }
    chip = add(states, r, "ioapic", 0, &vmstate_kvm_ioapic, sizeof(*chip));
    chip->chip_id = KVM_IRQCHIP_IOAPIC;
    if (seed) {
        clock->clock = 987654321;
        fill_pit(add(states, r, "pit", 0, &vmstate_kvm_pit, sizeof(struct kvm_pit_state2)));
    } else {
        add(states, r, "pit", 0, &vmstate_kvm_pit, sizeof(struct kvm_pit_state2));
    }
    return states;
}
