/*
 * State descriptions of the KVM accelerator's state (accel/kvm-state.h),
 * as the migration stream carries them:
 *
 *   "cpu"       one section per vCPU (instance = vCPU index): KvmVcpuImage
 *   "kvmclock"  struct kvm_clock_data (clock, flags)
 *   "pic"       instances 0 (master) and 1 (slave): struct kvm_irqchip
 *   "ioapic"    struct kvm_irqchip
 *   "pit"       struct kvm_pit_state2
 *
 * The irqchip descriptions carry the chip payload only: chip_id is not in
 * the stream, the image sets it from which section it is.
 */
#ifndef AMBER_ACCEL_KVM_VMSTATE_H
#define AMBER_ACCEL_KVM_VMSTATE_H

#include <stdbool.h>
#include <stdint.h>

#include "accel/kvm-state.h"
#include "migration/vmstate.h"

/* The part of the XSAVE area every KVM has (struct kvm_xsave, KVM_GET_XSAVE). */
#define KVM_VMSTATE_XSAVE_BASE 4096

/*
 * One vCPU's state plus what its description needs around it.  st must
 * stay first: the description's field offsets are those of KvmVcpuState.
 */
typedef struct KvmVcpuImage {
    KvmVcpuState st;
    uint32_t index;             /* the vCPU (section instance) it belongs to */
    /* Scratch for save and load; not state. */
    uint32_t xsave_ext_len;     /* bytes of XSAVE beyond the first 4096 */
    bool sregs_loaded;          /* the sregs or sregs2 subsection was read */
    bool xsave_ext_loaded;
} KvmVcpuImage;

extern const VMStateDescription vmstate_kvm_cpu;
extern const VMStateDescription vmstate_kvm_clock;
extern const VMStateDescription vmstate_kvm_pic;
extern const VMStateDescription vmstate_kvm_ioapic;
extern const VMStateDescription vmstate_kvm_pit;

#endif
