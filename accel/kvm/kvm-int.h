/* KVM accelerator internals shared by the files of accel/kvm/. */
#ifndef AMBER_ACCEL_KVM_INT_H
#define AMBER_ACCEL_KVM_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <linux/kvm.h>

#include "accel/accel.h"
#include "accel/kvm-state.h"

struct AccelState {
    Machine *m;
    int kvm_fd;
    int vm_fd;
    int ncpus;
    int vcpu_mmap_size;
    int xsave2_size;            /* 0 when KVM_CAP_XSAVE2 is missing */
    bool has_sregs2;
    bool has_debugregs;
    bool has_xcrs;
    bool manual_dirty;          /* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 enabled */
    bool dirty_logging;
    struct kvm_cpuid2 *supported_cpuid;
    /* MSRs saved with the vCPU: KVM's list plus PAT and MTRRs it accepts. */
    uint32_t msr_list[KVM_STATE_MAX_MSRS];
    int nmsrs;
    bool msr_list_ready;
};

struct AccelCPU {
    AccelState *s;
    int index;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    bool has_thread;
};

/* kvm-all.c */
int kvm_vcpu_ioctl_check(AccelCPU *c, unsigned long req, void *arg);

/* kvm-cpu.c */
bool kvm_vcpu_setup(AccelCPU *c, Error **errp);
bool kvm_build_msr_list(AccelCPU *c, Error **errp);

/* kvm-state.c */
bool kvm_get_vcpu_state(AccelCPU *c, void *state, Error **errp);
bool kvm_put_vcpu_state(AccelCPU *c, const void *state, Error **errp);
bool kvm_get_vm_state(AccelState *s, void *state, Error **errp);
bool kvm_put_vm_state(AccelState *s, const void *state, Error **errp);

/* kvm-dirty.c */
bool kvm_dirty_log_start(AccelState *s, Error **errp);
bool kvm_dirty_log_sync(AccelState *s, const MemRegion *r, unsigned long *bitmap,
                        Error **errp);
bool kvm_dirty_log_clear(AccelState *s, const MemRegion *r, uint64_t first_page,
                         uint64_t npages, const unsigned long *bitmap, Error **errp);
void kvm_dirty_log_stop(AccelState *s);

#endif
