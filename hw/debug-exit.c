/*
 * Debug exit port (0x501, a 32-bit register): a guest write of V ends
 * amber with exit status V, through a guest shutdown request.  Tests and
 * the built-in guest (duration= / passes=) use it to finish cleanly.
 * It has no state to migrate.
 */
#include <glib.h>

#include "system/machine.h"

#define DEBUG_EXIT_PORT 0x501
#define DEBUG_EXIT_SIZE 4

static uint32_t debug_exit_read(void *opaque, uint16_t off, unsigned size)
{
    return 0;
}

static void debug_exit_write(void *opaque, uint16_t off, uint32_t val, unsigned size)
{
    machine_request_shutdown(opaque, SHUTDOWN_CAUSE_GUEST_SHUTDOWN, (int)val);
}

static const IoOps debug_exit_ops = {
    .read = debug_exit_read,
    .write = debug_exit_write,
};

static bool debug_exit_realize(Machine *m, void **opaque, Error **errp)
{
    *opaque = m;
    return machine_register_io(m, DEBUG_EXIT_PORT, DEBUG_EXIT_SIZE, &debug_exit_ops, m,
                               errp);
}

static const DeviceInfo debug_exit_info = {
    .name = "debug-exit",
    .order = 30,
    .realize = debug_exit_realize,
};
DEVICE_REGISTER(debug_exit_info)
