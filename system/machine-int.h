/* Machine internals shared by machine.c, cpus.c, devices.c, ioport.c, loader.c. */
#ifndef AMBER_SYSTEM_MACHINE_INT_H
#define AMBER_SYSTEM_MACHINE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <glib.h>

#include "accel/accel.h"
#include "system/machine.h"

#define AMBER_MAX_IO_REGIONS 64

typedef enum CpuRunState {
    CPU_STATE_CREATED,      /* thread not started yet */
    CPU_STATE_RUNNING,      /* in or about to enter the guest */
    CPU_STATE_PAUSED,       /* parked outside KVM_RUN, I/O completed */
    CPU_STATE_STOPPED,      /* fatal exit or thread gone; never runs again */
} CpuRunState;

struct CPUState {
    Machine *m;
    int index;
    AccelCPU *accel;
    pthread_t thread;
    bool thread_started;
    int tid;
    /* Under m->cpu_lock: */
    CpuRunState state;
    bool want_run;
    bool quit;
    bool stopped_for_good;              /* fatal exit: resume leaves it parked */
    void (*work_fn)(CPUState *cpu, void *data);
    void *work_data;
    bool work_pending;
};

typedef struct IoRegion {
    uint16_t base;
    uint16_t len;
    const IoOps *ops;
    void *opaque;
} IoRegion;

typedef struct DeviceInstance {
    const DeviceInfo *info;
    void *opaque;
} DeviceInstance;

struct Machine {
    MachineOptions *opts;
    const AccelOps *accel_ops;
    AccelState *accel;
    RamBlockList ram;
    int ncpus;
    CPUState *cpus[AMBER_MAX_CPUS];
    uint32_t tsc_khz;

    pthread_mutex_t dev_lock;
    IoRegion io[AMBER_MAX_IO_REGIONS];
    int nio;
    GArray *devices;                    /* of DeviceInstance, realize order */

    pthread_mutex_t cpu_lock;
    pthread_cond_t cpu_cond;
    bool started;
    int runstate;                       /* RunState, atomic */

    pthread_mutex_t req_lock;
    ShutdownCause shutdown_req;
    int shutdown_exit_code;
    bool reset_req;
    MachineRequestNotify notify;
    void *notify_opaque;
    guint notify_source;

    /* Power-on state captured at creation, put back by machine_reset. */
    void *reset_vcpu_state[AMBER_MAX_CPUS];
    void *reset_vm_state;

    /* dirty-log.c: amber's own writes to RAM, per block; on is atomic. */
    unsigned long *soft_dirty[AMBER_MAX_RAM_BLOCKS];
    int soft_dirty_on;
};

/* cpus.c */
bool cpus_create(Machine *m, Error **errp);
bool cpus_start(Machine *m, Error **errp);
void cpus_pause(Machine *m);
void cpus_resume(Machine *m);
void cpus_destroy(Machine *m);

/* devices.c */
bool devices_realize(Machine *m, Error **errp);
void devices_reset(Machine *m);
void devices_unrealize(Machine *m);

/* dirty-log.c */
void machine_soft_dirty_free(Machine *m);

/* loader.c */
bool loader_load_guest(Machine *m, Error **errp);

#endif
