/*
 * The complete KVM state of one vCPU and of the VM, as plain structs the
 * save/restore code serialises field by field.  Filled by get on the
 * vCPU's own thread while it is parked outside KVM_RUN (see cpu_run_on);
 * put applies them in the order KVM's API documentation requires.
 */
#ifndef AMBER_ACCEL_KVM_STATE_H
#define AMBER_ACCEL_KVM_STATE_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/kvm.h>

#define KVM_STATE_MAX_MSRS 128
#define KVM_STATE_MAX_CPUID 256
#define KVM_STATE_XSAVE_MAX 16384

#define MSR_IA32_TSC_NR 0x10
#define MSR_IA32_TSC_DEADLINE_NR 0x6e0

typedef struct KvmVcpuState {
    struct kvm_mp_state mp_state;
    struct kvm_regs regs;
    /* One of sregs2 (KVM_CAP_SREGS2) or sregs, as has_sregs2 says. */
    bool has_sregs2;
    struct kvm_sregs sregs;
    struct kvm_sregs2 sregs2;
    uint32_t xsave_size;                    /* bytes of xsave in use */
    uint8_t xsave[KVM_STATE_XSAVE_MAX];     /* struct kvm_xsave layout */
    struct kvm_xcrs xcrs;
    struct kvm_debugregs debugregs;
    struct kvm_lapic_state lapic;
    uint32_t nmsrs;
    struct kvm_msr_entry msrs[KVM_STATE_MAX_MSRS];
    struct kvm_vcpu_events events;
    uint32_t tsc_khz;                       /* 0: KVM could not say */
    uint32_t ncpuid;
    struct kvm_cpuid_entry2 cpuid[KVM_STATE_MAX_CPUID];
} KvmVcpuState;

typedef struct KvmVmState {
    struct kvm_clock_data clock;
    struct kvm_irqchip pic_master;          /* chip_id 0 */
    struct kvm_irqchip pic_slave;           /* chip_id 1 */
    struct kvm_irqchip ioapic;              /* chip_id 2 */
    struct kvm_pit_state2 pit;
} KvmVmState;

#endif
