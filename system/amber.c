/*
 * The process context: events to their sinks, and the run-state
 * transitions that come with an event (stop/start, quit, reset).
 *
 * Events carry no wire format here: a sink (a QMP monitor, a test) gets
 * the name, a JsonObject and the time the event happened, and renders it
 * as it likes.  Events raised off the main thread are queued and handed
 * out from the main loop, in order, with the timestamp of when they were
 * raised.
 */
#include <string.h>

#include "system/amber.h"
#include "util/trace.h"
#include "util/main-loop.h"

typedef struct AmberEventSinkEntry {
    AmberEventSink fn;
    void *opaque;
} AmberEventSinkEntry;

typedef struct PendingEvent {
    char *name;
    JsonObject *data;
    gint64 timestamp_us;
} PendingEvent;

Amber *amber_new(void)
{
    Amber *s = g_new0(Amber, 1);

    s->event_sinks = g_ptr_array_new_with_free_func(g_free);
    pthread_mutex_init(&s->event_lock, NULL);
    g_queue_init(&s->pending_events);
    s->main_thread = g_thread_self();
    s->loop = g_main_loop_new(NULL, FALSE);
    return s;
}

static void pending_event_free(gpointer p)
{
    PendingEvent *ev = p;

    g_free(ev->name);
    if (ev->data) {
        json_object_unref(ev->data);
    }
    g_free(ev);
}

void amber_free(Amber *s)
{
    if (!s) {
        return;
    }
    pthread_mutex_lock(&s->event_lock);
    if (s->event_source) {
        g_source_remove(s->event_source);
        s->event_source = 0;
    }
    g_queue_clear_full(&s->pending_events, pending_event_free);
    pthread_mutex_unlock(&s->event_lock);
    pthread_mutex_destroy(&s->event_lock);
    g_ptr_array_unref(s->event_sinks);
    g_main_loop_unref(s->loop);
    g_free(s->name);
    if (s->chardevs) {
        g_ptr_array_unref(s->chardevs);
    }
    g_free(s->serial_id);
    if (s->fds) {
        g_ptr_array_unref(s->fds);
    }
    if (s->objects) {
        g_ptr_array_unref(s->objects);
    }
    g_free(s);
}

/* ---- events -------------------------------------------------------------------- */

static void deliver(Amber *s, const char *name, JsonObject *data, gint64 ts)
{
    trace(amber_event, "%s", name);
    /* A copy of the list: a sink may remove itself (a monitor closing). */
    g_autoptr(GPtrArray) sinks = g_ptr_array_new_with_free_func(g_free);

    for (guint i = 0; i < s->event_sinks->len; i++) {
        g_ptr_array_add(sinks, g_memdup2(s->event_sinks->pdata[i],
                                         sizeof(AmberEventSinkEntry)));
    }
    for (guint i = 0; i < sinks->len; i++) {
        AmberEventSinkEntry *e = sinks->pdata[i];
        if (amber_has_event_sink(s, e->fn, e->opaque)) {
            e->fn(e->opaque, name, data, ts);
        }
    }
}

static gboolean deliver_pending(gpointer opaque)
{
    Amber *s = opaque;
    GQueue q = G_QUEUE_INIT;

    pthread_mutex_lock(&s->event_lock);
    s->event_source = 0;
    q = s->pending_events;
    g_queue_init(&s->pending_events);
    pthread_mutex_unlock(&s->event_lock);

    for (GList *l = q.head; l; l = l->next) {
        PendingEvent *ev = l->data;
        deliver(s, ev->name, ev->data, ev->timestamp_us);
    }
    g_queue_clear_full(&q, pending_event_free);
    return G_SOURCE_REMOVE;
}

void amber_emit_event(Amber *s, const char *event, JsonObject *data)
{
    gint64 ts = g_get_real_time();

    if (g_thread_self() == s->main_thread) {
        pthread_mutex_lock(&s->event_lock);
        bool queued = !g_queue_is_empty(&s->pending_events);
        pthread_mutex_unlock(&s->event_lock);
        if (!queued) {
            deliver(s, event, data, ts);
            if (data) {
                json_object_unref(data);
            }
            return;
        }
        /* Earlier events from other threads are still queued: keep the order. */
    }
    PendingEvent *ev = g_new0(PendingEvent, 1);
    ev->name = g_strdup(event);
    ev->data = data;
    ev->timestamp_us = ts;
    pthread_mutex_lock(&s->event_lock);
    g_queue_push_tail(&s->pending_events, ev);
    if (!s->event_source) {
        s->event_source = main_loop_call_soon(deliver_pending, s);
    }
    pthread_mutex_unlock(&s->event_lock);
}

void amber_add_event_sink(Amber *s, AmberEventSink fn, void *opaque)
{
    AmberEventSinkEntry *e = g_new0(AmberEventSinkEntry, 1);

    e->fn = fn;
    e->opaque = opaque;
    g_ptr_array_add(s->event_sinks, e);
}

void amber_remove_event_sink(Amber *s, AmberEventSink fn, void *opaque)
{
    for (guint i = 0; i < s->event_sinks->len; i++) {
        AmberEventSinkEntry *e = s->event_sinks->pdata[i];
        if (e->fn == fn && e->opaque == opaque) {
            g_ptr_array_remove_index(s->event_sinks, i);
            return;
        }
    }
}

bool amber_has_event_sink(Amber *s, AmberEventSink fn, void *opaque)
{
    for (guint i = 0; i < s->event_sinks->len; i++) {
        AmberEventSinkEntry *e = s->event_sinks->pdata[i];
        if (e->fn == fn && e->opaque == opaque) {
            return true;
        }
    }
    return false;
}

/* ---- run state ----------------------------------------------------------------------- */

bool amber_vm_stop(Amber *s, RunState new_state, Error **errp)
{
    Machine *m = s->machine;

    if (!runstate_is_running(machine_runstate(m))) {
        machine_set_runstate(m, new_state);     /* already stopped: no event */
        return true;
    }
    if (!machine_pause(m, errp)) {
        return false;
    }
    machine_set_runstate(m, new_state);
    amber_emit_event(s, "STOP", NULL);
    return true;
}

bool amber_vm_start(Amber *s, Error **errp)
{
    Machine *m = s->machine;
    RunState rs = machine_runstate(m);

    if (runstate_is_running(rs)) {
        return true;
    }
    if (rs == RUN_STATE_INTERNAL_ERROR || rs == RUN_STATE_SHUTDOWN) {
        error_setg(errp, "Resetting the Virtual Machine is required");
        return false;
    }
    machine_set_runstate(m, RUN_STATE_RUNNING);
    machine_resume(m);
    amber_emit_event(s, "RESUME", NULL);
    return true;
}

static bool cause_is_guest(ShutdownCause cause)
{
    return cause == SHUTDOWN_CAUSE_GUEST_SHUTDOWN || cause == SHUTDOWN_CAUSE_GUEST_RESET ||
           cause == SHUTDOWN_CAUSE_GUEST_PANIC;
}

static JsonObject *cause_data(bool guest, const char *reason)
{
    JsonObject *data = json_object_new();

    json_object_set_boolean_member(data, "guest", guest);
    json_object_set_string_member(data, "reason", reason);
    return data;
}

void amber_request_quit(Amber *s, ShutdownCause cause, int exit_code)
{
    if (s->quit_requested) {
        return;                 /* the first reason wins, as does its exit code */
    }
    s->quit_requested = true;
    s->exit_code = exit_code;
    amber_emit_event(s, "SHUTDOWN",
                     cause_data(cause_is_guest(cause), shutdown_cause_name(cause)));
    g_main_loop_quit(s->loop);
}

void amber_guest_shutdown_stop(Amber *s, ShutdownCause cause)
{
    Error *err = NULL;

    amber_emit_event(s, "SHUTDOWN",
                     cause_data(cause_is_guest(cause), shutdown_cause_name(cause)));
    if (!amber_vm_stop(s, RUN_STATE_SHUTDOWN, &err)) {
        error_prepend(&err, "cannot stop the VM after the guest's poweroff: ");
        error_report_err(err);
        amber_request_quit(s, SHUTDOWN_CAUSE_GUEST_PANIC, 1);
    }
}

static bool system_reset(Amber *s, bool guest, const char *reason, Error **errp)
{
    if (!machine_reset(s->machine, errp)) {
        return false;
    }
    /* As QEMU: a reset after a guest poweroff (-no-shutdown) makes it startable. */
    if (machine_runstate(s->machine) == RUN_STATE_SHUTDOWN) {
        machine_set_runstate(s->machine, RUN_STATE_PAUSED);
    }
    amber_emit_event(s, "RESET", cause_data(guest, reason));
    return true;
}

bool amber_system_reset(Amber *s, Error **errp)
{
    return system_reset(s, false, "host-qmp-system-reset", errp);
}

bool amber_guest_reset(Amber *s, Error **errp)
{
    return system_reset(s, true, shutdown_cause_name(SHUTDOWN_CAUSE_GUEST_RESET), errp);
}
