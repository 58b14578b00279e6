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

/* Create a monitor on `spec` and register it as an event sink of s. */
bool monitor_add(Amber *s, MonitorKind kind, const char *spec, Error **errp);
/* Close every monitor (at exit). */
void monitor_cleanup_all(Amber *s);

#endif
