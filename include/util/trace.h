/*
 * Trace points: off by default, enabled by name or glob (-trace kvm_*).
 *
 *     trace(kvm_run_exit, "vcpu=%d reason=%u", cpu->index, run->exit_reason);
 *
 * Each call site owns a static TraceEvent record placed in the
 * "amber_trace_events" section, so every trace point linked into the binary
 * is known before it first runs (-trace help lists them, patterns match
 * them).  When the event is off, a site costs one load and one branch that
 * is predicted not taken; the arguments are not evaluated.
 *
 * Event names are C identifiers, by convention <area>_<what>
 * (kvm_*, migration_*, uffd_*).  Several sites may share a name; they are
 * switched on and off together.
 */
#ifndef AMBER_UTIL_TRACE_H
#define AMBER_UTIL_TRACE_H

#include <stdbool.h>
#include <stdio.h>

#include "util/error.h"

typedef struct TraceEvent {
    const char *name;
    const char *file;
    int line;
    bool enabled;       /* read with a relaxed atomic load at the site */
} TraceEvent;

#define TRACE_SECTION "amber_trace_events"

#define trace(name, ...)                                                    \
    do {                                                                    \
        static TraceEvent trace_ev_ = { #name, __FILE__, __LINE__, false }; \
        static TraceEvent *const trace_ev_ptr_                              \
            __attribute__((used, section(TRACE_SECTION))) = &trace_ev_;     \
        (void)trace_ev_ptr_;                                                \
        if (__builtin_expect(                                               \
                __atomic_load_n(&trace_ev_.enabled, __ATOMIC_RELAXED), 0)) {\
            trace_emit(&trace_ev_, __VA_ARGS__);                            \
        }                                                                   \
    } while (0)

/* Write one line for ev: "<time us> <tid> <name> <message>" to the log. */
void trace_emit(const TraceEvent *ev, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Enable the events matching pattern (a glob on the name, as fnmatch(3)).
 * "enable=PATTERN" is accepted as QEMU spells it; "-PATTERN" disables.
 * A plain name (no glob characters) that matches no event is an error,
 * so typos do not pass silently.  "help" is not handled here: the caller
 * prints trace_list() instead.
 */
bool trace_enable(const char *pattern, Error **errp);
/* Turn every event off (for tests and "trace off" commands). */
void trace_disable_all(void);
/* Whether any event with this exact name is enabled. */
bool trace_event_enabled(const char *name);
/* Whether some trace point with this exact name exists in the binary. */
bool trace_event_exists(const char *name);
/* Print the known event names, sorted, one per line. */
void trace_list(FILE *f);

#endif
