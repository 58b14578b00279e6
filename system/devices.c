/*
 * Device registry.  Device types register themselves from constructors
 * (DEVICE_REGISTER); the table of types is process-wide (filled before
 * main() starts, read-only after; docs/devel/architecture.md lists every
 * such table).  Instances belong to a Machine.
 */
#include <string.h>
#include <glib.h>

#include "machine-int.h"

#define MAX_DEVICE_TYPES 32

typedef struct DeviceTypeTable {
    const DeviceInfo *types[MAX_DEVICE_TYPES];
    int n;
} DeviceTypeTable;

static DeviceTypeTable device_types;

void device_register_type(const DeviceInfo *info)
{
    g_assert(device_types.n < MAX_DEVICE_TYPES);
    device_types.types[device_types.n++] = info;
}

const DeviceInfo *device_type_nth(int i)
{
    return i >= 0 && i < device_types.n ? device_types.types[i] : NULL;
}

static gint by_order(gconstpointer a, gconstpointer b)
{
    const DeviceInfo *x = *(const DeviceInfo *const *)a;
    const DeviceInfo *y = *(const DeviceInfo *const *)b;
    if (x->order != y->order) {
        return x->order < y->order ? -1 : 1;
    }
    return strcmp(x->name, y->name);
}

bool devices_realize(Machine *m, Error **errp)
{
    const DeviceInfo *sorted[MAX_DEVICE_TYPES];
    int n = device_types.n;
    memcpy(sorted, device_types.types, n * sizeof(sorted[0]));
    qsort(sorted, n, sizeof(sorted[0]), by_order);

    m->devices = g_array_new(FALSE, TRUE, sizeof(DeviceInstance));
    for (int i = 0; i < n; i++) {
        DeviceInstance d = { .info = sorted[i] };
        if (d.info->realize && !d.info->realize(m, &d.opaque, errp)) {
            error_prepend(errp, "device '%s': ", d.info->name);
            return false;
        }
        g_array_append_val(m->devices, d);
    }
    return true;
}

void devices_reset(Machine *m)
{
    if (!m->devices) {
        return;
    }
    machine_lock_devices(m);
    for (guint i = 0; i < m->devices->len; i++) {
        DeviceInstance *d = &g_array_index(m->devices, DeviceInstance, i);
        if (d->info->reset) {
            d->info->reset(d->opaque);
        }
    }
    machine_unlock_devices(m);
}

void devices_unrealize(Machine *m)
{
    if (!m->devices) {
        return;
    }
    for (guint i = m->devices->len; i-- > 0;) {
        DeviceInstance *d = &g_array_index(m->devices, DeviceInstance, i);
        if (d->info->unrealize) {
            d->info->unrealize(d->opaque);
        }
    }
    g_array_free(m->devices, TRUE);
    m->devices = NULL;
}

void *machine_find_device(Machine *m, const char *name)
{
    for (guint i = 0; m->devices && i < m->devices->len; i++) {
        DeviceInstance *d = &g_array_index(m->devices, DeviceInstance, i);
        if (strcmp(d->info->name, name) == 0) {
            return d->opaque;
        }
    }
    return NULL;
}
