/* Monitor internals shared by monitor.c, qmp.c, hmp.c and the handlers. */
#ifndef AMBER_MONITOR_MONITOR_INT_H
#define AMBER_MONITOR_MONITOR_INT_H

#include <glib.h>
#include <json-glib/json-glib.h>

#include "chardev/char.h"
#include "monitor/json-stream.h"
#include "monitor/monitor.h"

typedef struct Monitor {
    Amber *s;
    MonitorKind kind;
    Chardev *chr;
    bool in_read;               /* inside the chardev read handler */
    bool closed_in_read;        /* the peer left while we were reading */
    GHashTable *fds;            /* getfd name -> fd (GINT_TO_POINTER) */
    bool sink_added;
    bool greeted;               /* greeting/banner sent on this connection */

    /* QMP */
    JsonStream stream;
    bool negotiated;

    /* HMP */
    GString *line;
    bool line_too_long;
    bool last_was_cr;
} Monitor;

/* Amber.monitors */
typedef struct MonitorSet {
    GPtrArray *mons;            /* of Monitor * */
    Monitor *cur;               /* the monitor running a command, or NULL */
} MonitorSet;

MonitorSet *monitor_set(Amber *s);
Monitor *monitor_cur(Amber *s);
/* Write text, turning "\n" into "\r\n" as QEMU's monitors do. */
void monitor_puts(Monitor *mon, const char *text);

/* qmp.c */
void monitor_qmp_init(Monitor *mon);
void monitor_qmp_destroy(Monitor *mon);
extern const ChardevHandlers monitor_qmp_handlers;
/*
 * Run one request (a parsed JSON value) and return the reply, or NULL
 * when nothing is to be sent.  Needs no chardev: the unit tests call it.
 * *negotiated says whether the connection left capabilities mode; a
 * successful qmp_capabilities sets it.
 */
JsonNode *qmp_dispatch(Amber *s, JsonNode *request, bool *negotiated);
JsonNode *qmp_error_reply(Error *err, JsonNode *id);

/* hmp.c */
void monitor_hmp_init(Monitor *mon);
void monitor_hmp_destroy(Monitor *mon);
extern const ChardevHandlers monitor_hmp_handlers;

#endif
