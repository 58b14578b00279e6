/* Run state of the VM, named on the wire as QEMU names it (query-status). */
#ifndef AMBER_SYSTEM_RUNSTATE_H
#define AMBER_SYSTEM_RUNSTATE_H

#include <stdbool.h>

typedef enum RunState {
    RUN_STATE_PRELAUNCH,        /* "prelaunch": -S, before the first cont */
    RUN_STATE_INMIGRATE,        /* "inmigrate": -incoming, waiting for the stream */
    RUN_STATE_RUNNING,          /* "running" */
    RUN_STATE_PAUSED,           /* "paused": stop */
    RUN_STATE_FINISH_MIGRATE,   /* "finish-migrate": paused for the final part of a migration */
    RUN_STATE_POSTMIGRATE,      /* "postmigrate": paused after an outgoing migration */
    RUN_STATE_INTERNAL_ERROR,   /* "internal-error": KVM reported a fatal exit */
    RUN_STATE_SHUTDOWN,         /* "shutdown" */
    RUN_STATE__MAX,
} RunState;

const char *runstate_name(RunState s);
/* vCPUs execute guest code only in RUN_STATE_RUNNING. */
static inline bool runstate_is_running(RunState s) { return s == RUN_STATE_RUNNING; }

#endif
