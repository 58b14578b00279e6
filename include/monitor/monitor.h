/*
 * Monitors: QMP (JSON, QEMU's wire protocol) and HMP (text, prompt
 * "(amber) ").  Each one talks over a chardev ("stdio" or
 * "unix:PATH,server=on,wait=off"); any number may exist at once.
 */
#ifndef AMBER_MONITOR_MONITOR_H
#define AMBER_MONITOR_MONITOR_H

#include <stdbool.h>
#include "util/error.h"
#include "system/amber.h"

typedef enum MonitorKind { MONITOR_QMP, MONITOR_HMP } MonitorKind;

/*
 * Create a monitor on a new chardev of `spec` and register it as an event
 * sink of s; label: that chardev's name in query-chardev.
 */
bool monitor_add(Amber *s, MonitorKind kind, const char *spec, const char *label,
                 Error **errp);
/* Close every monitor (at exit). */
void monitor_cleanup_all(Amber *s);

/*
 * Take the descriptor a QMP client passed with `getfd` under `name`
 * (for URIs such as fd:NAME).  The monitor running the current command is
 * searched first, then every other one.  The caller owns the returned fd;
 * -1 with errp set when there is none.
 */
int monitor_fd_get(Amber *s, const char *name, Error **errp);

#endif
