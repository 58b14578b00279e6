/*
 * Monitor registry: every -qmp and -monitor endpoint of one Amber context,
 * the event fan-out to QMP clients, and the descriptors passed by getfd.
 */
#include <errno.h>
#include <unistd.h>
#include <glib.h>

#include "monitor-int.h"
#include "qapi-commands.h"

MonitorSet *monitor_set(Amber *s)
{
    if (!s->monitors) {
        MonitorSet *set = g_new0(MonitorSet, 1);

        set->mons = g_ptr_array_new();
        s->monitors = set;
    }
    return s->monitors;
}

Monitor *monitor_cur(Amber *s)
{
    return s->monitors ? s->monitors->cur : NULL;
}

void monitor_puts(Monitor *mon, const char *text)
{
    g_autoptr(GString) out = g_string_sized_new(strlen(text) + 16);

    for (const char *p = text; *p; p++) {
        if (*p == '\n') {
            g_string_append_c(out, '\r');
        }
        g_string_append_c(out, *p);
    }
    chardev_write(mon->chr, out->str, out->len);
}

static void close_fd(gpointer p)
{
    close(GPOINTER_TO_INT(p));
}

static void monitor_event(void *opaque, const char *event, JsonObject *data,
                          gint64 timestamp_us)
{
    Monitor *mon = opaque;
    g_autoptr(JsonNode) node = NULL;
    JsonObject *ev, *ts;
    GString *out;

    if (mon->kind != MONITOR_QMP || !mon->negotiated ||
        !chardev_is_connected(mon->chr)) {
        return;
    }
    ev = json_object_new();
    ts = json_object_new();
    json_object_set_int_member(ts, "seconds", timestamp_us / G_USEC_PER_SEC);
    json_object_set_int_member(ts, "microseconds", timestamp_us % G_USEC_PER_SEC);
    json_object_set_object_member(ev, "timestamp", ts);
    json_object_set_string_member(ev, "event", event);
    if (data) {
        json_object_set_object_member(ev, "data", json_object_ref(data));
    }
    node = json_node_init_object(json_node_alloc(), ev);
    json_object_unref(ev);
    out = g_string_new(NULL);
    qmp_json_append(out, node);
    g_string_append(out, "\r\n");
    chardev_write(mon->chr, out->str, out->len);
    g_string_free(out, TRUE);
}

static void monitor_free(Monitor *mon)
{
    if (mon->sink_added) {
        amber_remove_event_sink(mon->s, monitor_event, mon);
    }
    if (mon->chr) {
        chardev_labels_unbind(mon->s->chardevs, mon->chr);
        chardev_set_handlers(mon->chr, NULL, NULL);
        chardev_free(mon->chr);
    }
    if (mon->kind == MONITOR_QMP) {
        monitor_qmp_destroy(mon);
    } else {
        monitor_hmp_destroy(mon);
    }
    g_hash_table_destroy(mon->fds);
    g_free(mon);
}

bool monitor_add(Amber *s, MonitorKind kind, const char *spec, const char *label,
                 Error **errp)
{
    MonitorSet *set = monitor_set(s);
    Monitor *mon = g_new0(Monitor, 1);

    mon->s = s;
    mon->kind = kind;
    mon->fds = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, close_fd);
    if (kind == MONITOR_QMP) {
        monitor_qmp_init(mon);
    } else {
        monitor_hmp_init(mon);
    }
    mon->chr = chardev_new(spec, errp);
    if (!mon->chr) {
        error_prepend(errp, "%s %s: ", kind == MONITOR_QMP ? "-qmp" : "-monitor", spec);
        monitor_free(mon);
        return false;
    }
    chardev_labels_bind(s->chardevs, mon->chr, label);
    g_ptr_array_add(set->mons, mon);
    amber_add_event_sink(s, monitor_event, mon);
    mon->sink_added = true;
    /* Last: a chardev that is already open greets from here. */
    chardev_set_handlers(mon->chr, kind == MONITOR_QMP ? &monitor_qmp_handlers
                                                       : &monitor_hmp_handlers, mon);
    return true;
}

void monitor_cleanup_all(Amber *s)
{
    MonitorSet *set = s->monitors;

    if (!set) {
        return;
    }
    for (guint i = 0; i < set->mons->len; i++) {
        monitor_free(g_ptr_array_index(set->mons, i));
    }
    g_ptr_array_free(set->mons, TRUE);
    g_free(set);
    s->monitors = NULL;
}

/* ---- getfd / closefd ---------------------------------------------------------- */

int monitor_fd_get(Amber *s, const char *name, Error **errp)
{
    MonitorSet *set = monitor_set(s);
    Monitor *order[1 + set->mons->len];
    int n = 0;

    if (set->cur) {
        order[n++] = set->cur;
    }
    for (guint i = 0; i < set->mons->len; i++) {
        if (g_ptr_array_index(set->mons, i) != set->cur) {
            order[n++] = g_ptr_array_index(set->mons, i);
        }
    }
    for (int i = 0; i < n; i++) {
        gpointer key, val;

        if (g_hash_table_lookup_extended(order[i]->fds, name, &key, &val)) {
            g_hash_table_steal(order[i]->fds, name);
            g_free(key);
            return GPOINTER_TO_INT(val);
        }
    }
    error_setg(errp, "File descriptor named '%s' has not been found", name);
    return -1;
}

void qmp_getfd(Amber *s, const char *fdname, Error **errp)
{
    Monitor *mon = monitor_cur(s);
    int fd;

    if (!mon) {
        error_setg(errp, "getfd is only available on a QMP connection");
        return;
    }
    fd = chardev_take_fd(mon->chr);
    if (fd < 0) {
        error_setg(errp, "No file descriptor supplied via SCM_RIGHTS");
        return;
    }
    if (g_ascii_isdigit(fdname[0])) {
        close(fd);
        error_setg(errp, "Parameter 'fdname' expects a name not starting with a digit");
        return;
    }
    /* Replacing closes the old descriptor (the table's value destructor). */
    g_hash_table_insert(mon->fds, g_strdup(fdname), GINT_TO_POINTER(fd));
}

void qmp_closefd(Amber *s, const char *fdname, Error **errp)
{
    Monitor *mon = monitor_cur(s);

    if (!mon || !g_hash_table_remove(mon->fds, fdname)) {
        error_setg(errp, "File descriptor named '%s' not found", fdname);
    }
}
