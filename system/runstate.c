/* Run-state names, spelled as QEMU's query-status spells them. */
#include "system/runstate.h"

static const char *const runstate_names[RUN_STATE__MAX] = {
    [RUN_STATE_PRELAUNCH] = "prelaunch",
    [RUN_STATE_INMIGRATE] = "inmigrate",
    [RUN_STATE_RUNNING] = "running",
    [RUN_STATE_PAUSED] = "paused",
    [RUN_STATE_FINISH_MIGRATE] = "finish-migrate",
    [RUN_STATE_POSTMIGRATE] = "postmigrate",
    [RUN_STATE_INTERNAL_ERROR] = "internal-error",
    [RUN_STATE_SHUTDOWN] = "shutdown",
};

const char *runstate_name(RunState s)
{
    if ((unsigned)s >= RUN_STATE__MAX || !runstate_names[s]) {
        return "unknown";
    }
    return runstate_names[s];
}
