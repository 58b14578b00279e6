/*
 * The port I/O bus and unassigned MMIO.  Device callbacks run on the vCPU
 * thread with the device lock held.  Accesses nobody claims behave like an
 * empty ISA bus: reads return all-ones, writes vanish.
 */
#include <inttypes.h>
#include <string.h>
#include <glib.h>

#include "machine-int.h"
#include "util/trace.h"

bool machine_register_io(Machine *m, uint16_t base, uint16_t len, const IoOps *ops,
                         void *opaque, Error **errp)
{
    if (len == 0 || (uint32_t)base + len > 0x10000) {
        error_setg(errp, "invalid I/O port range 0x%x+%u", base, len);
        return false;
    }
    pthread_mutex_lock(&m->dev_lock);
    for (int i = 0; i < m->nio; i++) {
        IoRegion *r = &m->io[i];
        if (base < r->base + r->len && r->base < base + len) {
            pthread_mutex_unlock(&m->dev_lock);
            error_setg(errp, "I/O ports 0x%x-0x%x overlap 0x%x-0x%x, already in use",
                       base, base + len - 1, r->base, r->base + r->len - 1);
            return false;
        }
    }
    if (m->nio >= AMBER_MAX_IO_REGIONS) {
        pthread_mutex_unlock(&m->dev_lock);
        error_setg(errp, "too many I/O port ranges (at most %d)", AMBER_MAX_IO_REGIONS);
        return false;
    }
    m->io[m->nio++] = (IoRegion) { .base = base, .len = len, .ops = ops, .opaque = opaque };
    pthread_mutex_unlock(&m->dev_lock);
    return true;
}

void machine_lock_devices(Machine *m)
{
    pthread_mutex_lock(&m->dev_lock);
}

void machine_unlock_devices(Machine *m)
{
    pthread_mutex_unlock(&m->dev_lock);
}

static const IoRegion *find_io(Machine *m, uint16_t port)
{
    for (int i = 0; i < m->nio; i++) {
        if (port >= m->io[i].base && port - m->io[i].base < m->io[i].len) {
            return &m->io[i];
        }
    }
    return NULL;
}

static void pio_one(Machine *m, uint16_t port, bool is_write, uint8_t *data, unsigned size)
{
    const IoRegion *r = find_io(m, port);
    uint32_t val = 0;
    if (!r) {
        trace(ioport_unassigned, "%s port=0x%x size=%u", is_write ? "write" : "read",
              port, size);
        if (!is_write) {
            memset(data, 0xff, size);
        }
        return;
    }
    uint16_t off = port - r->base;
    if (is_write) {
        memcpy(&val, data, MIN(size, sizeof(val)));
        if (r->ops->write) {
            r->ops->write(r->opaque, off, val, size);
        }
    } else {
        val = r->ops->read ? r->ops->read(r->opaque, off, size) : 0xffffffffu;
        memcpy(data, &val, MIN(size, sizeof(val)));
    }
}

void machine_pio(Machine *m, uint16_t port, bool is_write, void *data, unsigned size,
                 unsigned count)
{
    uint8_t *p = data;
    pthread_mutex_lock(&m->dev_lock);
    for (unsigned i = 0; i < count; i++) {
        pio_one(m, port, is_write, p + (size_t)i * size, size);
    }
    pthread_mutex_unlock(&m->dev_lock);
}

void machine_mmio(Machine *m, uint64_t addr, bool is_write, uint8_t *data, unsigned len)
{
    trace(mmio_unassigned, "%s addr=0x%" PRIx64 " len=%u", is_write ? "write" : "read",
          addr, len);
    if (!is_write) {
        memset(data, 0xff, len);
    }
}

void machine_set_irq(Machine *m, int gsi, int level)
{
    if (gsi < 0 || gsi > 23 || !m->accel) {
        return;
    }
    m->accel_ops->set_irq(m->accel, gsi, level);
}
