/*
 * The process: one Amber context owns the machine, the monitors and the
 * migration state.  QMP handlers receive it as their first argument;
 * nothing reaches it through a global.
 */
#ifndef AMBER_SYSTEM_AMBER_H
#define AMBER_SYSTEM_AMBER_H

#include <stdbool.h>
#include <glib.h>
#include <pthread.h>
#include <json-glib/json-glib.h>

#include "system/machine.h"

typedef struct Amber Amber;
typedef struct MonitorSet MonitorSet;           /* monitor/monitor-int.h */
typedef struct MigrationState MigrationState;   /* migration/migration-int.h */

/* Receives every event; runs on the main thread. `data` may be NULL. */
typedef void (*AmberEventSink)(void *opaque, const char *event, JsonObject *data,
                               gint64 timestamp_us);

struct Amber {
    Machine *machine;               /* NULL before creation and for -machine none */
    bool machine_none;              /* -machine none: no guest, QMP only */
    bool kvm_allowed;               /* the accelerator list names kvm (query-kvm) */
    char *name;                     /* -name for -machine none (a machine keeps its own) */
    GPtrArray *chardevs;            /* ChardevLabel *, command-line order; NULL: none */
    char *serial_id;                /* -device isa-serial id=: COM1's /machine/peripheral name */
    GPtrArray *objects;             /* CliObject *: each -object, for /objects */
    GPtrArray *fds;                 /* CliFd *: each -add-fd, for query-fdsets */
    GMainLoop *loop;
    GPtrArray *event_sinks;         /* of AmberEventSinkEntry, see amber.c */
    pthread_mutex_t event_lock;
    GQueue pending_events;          /* events emitted off the main thread */
    guint event_source;
    int exit_code;                  /* process status once the loop ends */
    bool quit_requested;
    MonitorSet *monitors;           /* monitor/ state, opaque here */
    MigrationState *migration;      /* migration/ state, opaque here */
    GThread *main_thread;           /* the thread that runs `loop` */
};

/* A context with no machine yet, owned by the calling (main) thread. */
Amber *amber_new(void);
/* Frees the context itself; machine and monitors are torn down by the caller first. */
void amber_free(Amber *s);

/*
 * Emit an event to every sink.  Thread-safe: from another thread the event
 * is queued and delivered from the main loop (with the timestamp taken
 * here).  Takes ownership of `data` (may be NULL).
 */
void amber_emit_event(Amber *s, const char *event, JsonObject *data);
void amber_add_event_sink(Amber *s, AmberEventSink fn, void *opaque);
void amber_remove_event_sink(Amber *s, AmberEventSink fn, void *opaque);
bool amber_has_event_sink(Amber *s, AmberEventSink fn, void *opaque);

/*
 * Run-state transitions with their events, as QEMU's vm_stop / vm_start:
 * stop parks every vCPU before it returns (STOP), start resumes (RESUME).
 */
bool amber_vm_stop(Amber *s, RunState new_state, Error **errp);
bool amber_vm_start(Amber *s, Error **errp);
/*
 * -no-shutdown: a guest poweroff stops the VM in state "shutdown" with its
 * SHUTDOWN event, and amber stays for the monitor (quit, system_reset).
 */
void amber_guest_shutdown_stop(Amber *s, ShutdownCause cause);
/* SHUTDOWN event {guest, reason}; the main loop ends with exit_code. */
void amber_request_quit(Amber *s, ShutdownCause cause, int exit_code);
/* RESET event; devices and vCPUs back to power-on. */
bool amber_system_reset(Amber *s, Error **errp);
/* The same for a reset the guest asked for (i8042): RESET {guest: true, "guest-reset"}. */
bool amber_guest_reset(Amber *s, Error **errp);

#endif
