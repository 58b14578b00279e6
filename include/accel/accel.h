/*
 * Accelerator interface: what the machine core needs from the thing that
 * runs guest code.  KVM is the only implementation; the table keeps the
 * machine core free of KVM ioctls so that another one could follow.
 *
 * Threads: init_vm, map_region, create_vcpu and the VM-level calls run on
 * the main thread; run, get/put of vCPU state run on the vCPU's own thread
 * (or on the creating thread before the vCPU thread exists); kick may be
 * called from any thread.
 */
#ifndef AMBER_ACCEL_ACCEL_H
#define AMBER_ACCEL_ACCEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "system/ram.h"

typedef struct Machine Machine;
typedef struct AccelState AccelState;   /* one per VM */
typedef struct AccelCPU AccelCPU;       /* one per vCPU */

typedef enum AccelRunResult {
    ACCEL_RUN_KICKED,   /* kicked out of the guest; pending I/O is complete */
    ACCEL_RUN_STOP,     /* the guest asked for a shutdown or reset: park */
    ACCEL_RUN_FATAL,    /* the vCPU cannot continue (message already printed) */
} AccelRunResult;

/* Register state the loader asks for (multiboot: 32-bit flat, paging off). */
typedef struct BootCpuState {
    uint32_t eip;
    uint32_t eax;
    uint32_t ebx;
} BootCpuState;

typedef struct AccelOps {
    const char *name;
    /* Size of the opaque vCPU / VM state buffers used by get/put below. */
    size_t vcpu_state_size;
    size_t vm_state_size;

    AccelState *(*init_vm)(Machine *m, int ncpus, Error **errp);
    void (*destroy_vm)(AccelState *s);
    bool (*map_region)(AccelState *s, MemRegion *r, Error **errp);
    AccelCPU *(*create_vcpu)(AccelState *s, int index, Error **errp);
    void (*destroy_vcpu)(AccelCPU *c);
    /* Called first on the vCPU thread (kick targets this thread). */
    void (*vcpu_thread_init)(AccelCPU *c);
    /* Run guest code until kicked or something needs the vCPU thread. */
    AccelRunResult (*run)(AccelCPU *c);
    void (*kick)(AccelCPU *c);
    bool (*set_boot_state)(AccelCPU *c, const BootCpuState *b, Error **errp);
    /* Guest TSC frequency in kHz, 0 when unknown. */
    uint32_t (*tsc_khz)(AccelState *s);
    void (*set_irq)(AccelState *s, int gsi, int level);

    bool (*get_vcpu_state)(AccelCPU *c, void *state, Error **errp);
    bool (*put_vcpu_state)(AccelCPU *c, const void *state, Error **errp);
    bool (*get_vm_state)(AccelState *s, void *state, Error **errp);
    bool (*put_vm_state)(AccelState *s, const void *state, Error **errp);

    /*
     * Dirty logging of guest writes, one bit per 4 KiB page of a region.
     * sync fills bitmap (region->size / 4096 bits) without clearing;
     * clear re-arms [first_page, first_page + npages) (multiples of 64).
     */
    bool (*dirty_log_start)(AccelState *s, Error **errp);
    bool (*dirty_log_sync)(AccelState *s, const MemRegion *r, unsigned long *bitmap,
                           Error **errp);
    bool (*dirty_log_clear)(AccelState *s, const MemRegion *r, uint64_t first_page,
                            uint64_t npages, const unsigned long *bitmap, Error **errp);
    void (*dirty_log_stop)(AccelState *s);
} AccelOps;

/* The accelerator called `name` ("kvm"), or NULL. */
const AccelOps *accel_find(const char *name);
extern const AccelOps kvm_accel_ops;

/*
 * The port bus, implemented by the machine (system/ioport.c): one access of
 * `count` items of `size` bytes each at data (count > 1 for rep ins/outs).
 */
void machine_pio(Machine *m, uint16_t port, bool is_write, void *data, unsigned size,
                 unsigned count);
/* An access to guest-physical space that is not RAM. */
void machine_mmio(Machine *m, uint64_t addr, bool is_write, uint8_t *data, unsigned len);

#endif
