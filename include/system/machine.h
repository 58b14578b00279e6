/*
 * The machine: one context that owns RAM, vCPUs, devices and run state.
 *
 * There is no global "current machine": everything that needs the machine
 * is handed a Machine * (devices get it at realize time, monitors at
 * creation, migration per MigrationState).
 *
 * Threads: the main thread runs the GLib main loop (monitors, chardevs,
 * requests from vCPUs); every vCPU has its own thread.  Functions marked
 * "main thread" must only be called there.
 */
#ifndef AMBER_SYSTEM_MACHINE_H
#define AMBER_SYSTEM_MACHINE_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <pthread.h>
#include <glib.h>

#include "util/error.h"
#include "system/ram.h"
#include "system/runstate.h"

#define AMBER_MAX_CPUS 8

/*
 * amber's one machine type under the names QEMU's clients use for a PC
 * (query-machines lists it; -machine takes either name).  It is not a full
 * i440fx board: no PCI bus, no ACPI, no USB; devices amber lacks are refused.
 */
#define AMBER_MACHINE_NAME "pc-i440fx-7.2"
#define AMBER_MACHINE_ALIAS "pc"

typedef struct Machine Machine;
typedef struct CPUState CPUState;
typedef struct AccelOps AccelOps;
typedef struct Chardev Chardev;

/* What the command line (or a test) asks for; owned by the Machine. */
typedef struct MachineOptions {
    uint64_t ram_size;          /* -m, bytes */
    int smp;                    /* -smp, 1..AMBER_MAX_CPUS */
    char *accel;                /* "kvm" */
    char *kernel;               /* -kernel, NULL = built-in guest */
    char *append;               /* -append */
    char *initrd;               /* -initrd */
    char *name;                 /* -name */
    char *memory_backend;       /* -machine memory-backend=ID */
    GPtrArray *backends;        /* of RamBackendOptions *, from -object */
    bool start_paused;          /* -S */
    bool no_guest_core;         /* -machine dump-guest-core=off */
    char *serial;               /* -serial spec for COM1, default "null" */
} MachineOptions;

/* ---- port I/O bus ------------------------------------------------------ */

typedef struct IoOps {
    /* off is relative to the registered base; size is 1, 2 or 4. */
    uint32_t (*read)(void *opaque, uint16_t off, unsigned size);
    void (*write)(void *opaque, uint16_t off, uint32_t val, unsigned size);
} IoOps;

/*
 * Device callbacks run on the vCPU thread that did the access, with the
 * machine's device lock held: devices need no lock of their own against
 * each other or against the main loop, which takes the same lock
 * (machine_lock_devices) before touching device state.
 */
bool machine_register_io(Machine *m, uint16_t base, uint16_t len,
                         const IoOps *ops, void *opaque, Error **errp);
void machine_lock_devices(Machine *m);
void machine_unlock_devices(Machine *m);

/* Drive an interrupt line of the in-kernel irqchip (GSI 0..23). */
void machine_set_irq(Machine *m, int gsi, int level);

/* ---- devices ------------------------------------------------------------ */

/*
 * A device type registers itself from its own file with
 * DEVICE_REGISTER(info); machine_create() realizes every registered type
 * in ascending `order`.  The per-machine instance lives in `opaque`.
 */
typedef struct DeviceInfo {
    const char *name;           /* "serial", "i8042", "debug-exit" */
    int order;
    /* Create the device's state for m; *opaque receives it. */
    bool (*realize)(Machine *m, void **opaque, Error **errp);
    void (*reset)(void *opaque);            /* system_reset */
    void (*unrealize)(void *opaque);
    /*
     * Migratable state, for devices that have any (all NULL otherwise):
     * vmsd describes a plain struct of state_size bytes; get_state copies
     * the device's state into one, put_state loads one back (checking it)
     * and re-drives the device's interrupt line from it.  Both are called
     * with the machine's device lock held; put_state after the accelerator's
     * interrupt controllers have been restored.
     */
    const struct VMStateDescription *vmsd;
    size_t state_size;
    void (*get_state)(void *opaque, void *state);
    bool (*put_state)(void *opaque, const void *state, Error **errp);
} DeviceInfo;

void device_register_type(const DeviceInfo *info);
/* The registered device types in registration order; NULL past the last. */
const DeviceInfo *device_type_nth(int i);
#define DEVICE_REGISTER(info)                                            \
    static void __attribute__((constructor)) register_##info(void)      \
    {                                                                    \
        device_register_type(&(info));                                   \
    }
/* The instance of a realized device type, or NULL. */
void *machine_find_device(Machine *m, const char *name);

/* ---- life cycle --------------------------------------------------------- */

typedef enum ShutdownCause {
    SHUTDOWN_CAUSE_NONE,
    SHUTDOWN_CAUSE_HOST_QMP_QUIT,       /* "host-qmp-quit" */
    SHUTDOWN_CAUSE_HOST_SIGNAL,         /* "host-signal" */
    SHUTDOWN_CAUSE_GUEST_SHUTDOWN,      /* "guest-shutdown": debug-exit port */
    SHUTDOWN_CAUSE_GUEST_RESET,         /* "guest-reset": i8042 0xfe */
    SHUTDOWN_CAUSE_GUEST_PANIC,         /* "guest-panic": triple fault, emulation failure */
} ShutdownCause;
const char *shutdown_cause_name(ShutdownCause cause);

/*
 * Build the VM: accelerator, RAM, vCPUs (created, not running), devices,
 * and the guest image loaded (opts->kernel or the built-in guest).
 * Main thread.  Takes ownership of opts.
 */
Machine *machine_create(MachineOptions *opts, Error **errp);
/* Start the vCPU threads; runstate becomes running (or stays prelaunch/paused). */
bool machine_start(Machine *m, Error **errp);
/* Stop everything and free; safe on a half-built machine. */
void machine_destroy(Machine *m);

/*
 * Pause: returns only once every vCPU is parked outside KVM_RUN with any
 * pending I/O completed (so its state may be read).  Resume restarts them.
 * Both are idempotent and may be called from any non-vCPU thread.
 */
bool machine_pause(Machine *m, Error **errp);
void machine_resume(Machine *m);
/* Reset devices and vCPUs to power-on and reload the guest image. */
bool machine_reset(Machine *m, Error **errp);

/*
 * Requests from vCPU threads (debug-exit, i8042 reset, fatal exits) are
 * queued here and handled on the main thread, which calls the notifier
 * that vl.c installs.  exit_code is the process exit status amber should
 * end with for a guest shutdown.
 */
void machine_request_shutdown(Machine *m, ShutdownCause cause, int exit_code);
void machine_request_reset(Machine *m);
typedef void (*MachineRequestNotify)(Machine *m, void *opaque);
void machine_set_request_notify(Machine *m, MachineRequestNotify fn, void *opaque);
/* Main thread: take a pending request (cause NONE when there is none). */
ShutdownCause machine_take_shutdown_request(Machine *m, int *exit_code);
bool machine_take_reset_request(Machine *m);

/* ---- accessors ------------------------------------------------------------ */

RunState machine_runstate(Machine *m);
/* Change state and emit nothing: the caller (monitor) emits events. */
void machine_set_runstate(Machine *m, RunState s);
int machine_ncpus(Machine *m);
CPUState *machine_cpu(Machine *m, int index);
const MachineOptions *machine_options(Machine *m);
RamBlockList *machine_ram(Machine *m);

/* Guest-physical access for devices, the loader and pmemsave. */
void *machine_gpa_to_hva(Machine *m, uint64_t gpa, uint64_t len);
bool machine_read_phys(Machine *m, uint64_t gpa, void *buf, uint64_t len, Error **errp);
bool machine_write_phys(Machine *m, uint64_t gpa, const void *buf, uint64_t len, Error **errp);

/*
 * Dirty log of the writes amber makes itself into guest RAM (the
 * accelerator logs only the guest's): machine_write_phys and the image
 * reload of a reset mark pages while the log is on, one bit per 4 KiB
 * page of each RAM block.  A live migration merges it with the
 * accelerator's log (system/dirty-log.c).  Any thread.
 */
void machine_soft_dirty_start(Machine *m);
void machine_soft_dirty_stop(Machine *m);
/* Mark [gpa, gpa + len); nothing while the log is off. */
void machine_mark_dirty(Machine *m, uint64_t gpa, uint64_t len);
void machine_mark_all_dirty(Machine *m);
/*
 * Take and clear the bits of pages [start, start + nr) of RAM block number
 * `block` into dst (bit i is page start + i; start a multiple of
 * BITS_PER_LONG).  Returns how many were set.
 */
size_t machine_soft_dirty_take(Machine *m, int block, size_t start, size_t nr,
                               unsigned long *dst);

/* ---- vCPUs and accelerator state ------------------------------------------- */

typedef struct AccelState AccelState;

/* Free options not handed to machine_create (machine_create takes ownership). */
void machine_options_free(MachineOptions *opts);
void ram_backend_options_free(RamBackendOptions *o);

int cpu_index(CPUState *cpu);
/* Host thread id of the vCPU thread (query-cpus-fast), 0 before start. */
int cpu_thread_id(CPUState *cpu);
/* True while the vCPU is outside the guest (paused, not started or stopped). */
bool cpu_is_paused(CPUState *cpu);
/*
 * Run fn on the vCPU's own thread while it is parked outside KVM_RUN (a
 * running vCPU is kicked out for the call, then continues) and wait for it.
 * Before machine_start, fn runs on the calling thread.  Not from a device
 * callback (the vCPU might be the caller's own).
 */
void cpu_run_on(CPUState *cpu, void (*fn)(CPUState *cpu, void *data), void *data);
/*
 * Full accelerator state of one vCPU (for kvm: KvmVcpuState from
 * accel/kvm-state.h, machine_accel_ops(m)->vcpu_state_size bytes), read or
 * written on the vCPU's thread.  Pause the machine first for a consistent
 * snapshot.
 */
bool cpu_get_state(CPUState *cpu, void *state, Error **errp);
bool cpu_put_state(CPUState *cpu, const void *state, Error **errp);
/* VM-wide accelerator state (for kvm: KvmVmState): clock, irqchips, PIT. */
bool machine_get_vm_state(Machine *m, void *state, Error **errp);
bool machine_put_vm_state(Machine *m, const void *state, Error **errp);
const AccelOps *machine_accel_ops(Machine *m);
AccelState *machine_accel(Machine *m);
/* The guest TSC frequency in kHz as KVM reports it (0 if unknown). */
uint32_t machine_tsc_khz(Machine *m);

#endif
