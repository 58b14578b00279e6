/* Work handed to the main loop. */
#ifndef AMBER_UTIL_MAIN_LOOP_H
#define AMBER_UTIL_MAIN_LOOP_H

#include <glib.h>

/*
 * fn(data) on the default main context soon, at G_PRIORITY_DEFAULT, as
 * often as it returns G_SOURCE_CONTINUE.  Not g_idle_add(): an idle source
 * is never dispatched while a source of higher priority is ready, and a
 * monitor client that writes without pause keeps its input ready for
 * ever; a vCPU's shutdown request or a migration thread's call would wait
 * as long.
 */
static inline guint main_loop_call_soon(GSourceFunc fn, gpointer data)
{
    return g_idle_add_full(G_PRIORITY_DEFAULT, fn, data, NULL);
}

#endif
