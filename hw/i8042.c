/*
 * i8042 keyboard controller: status and command byte for guests that
 * probe it, and the CPU reset line.  Writing 0xfe (pulse output line 0)
 * to the command port, or an output-port value with bit 0 clear, asks the
 * machine for a reset; the main loop performs it.
 */
#include <string.h>
#include <glib.h>

#include "hw/i8042.h"
#include "migration/vmstate.h"
#include "system/machine.h"

typedef struct I8042Device {
    I8042State st;
    Machine *m;
} I8042Device;

static void outq_push(I8042State *st, uint8_t byte)
{
    if (st->outq_len < I8042_OUTQ_SIZE) {
        st->outq[st->outq_len++] = byte;
    }
}

static uint8_t outq_pop(I8042State *st)
{
    if (!st->outq_len) {
        return 0;
    }
    uint8_t byte = st->outq[0];
    memmove(st->outq, st->outq + 1, --st->outq_len);
    return byte;
}

static void command(I8042Device *d, uint8_t cmd)
{
    I8042State *st = &d->st;

    switch (cmd) {
    case 0x20:                  /* read command byte */
        outq_push(st, st->cmd_byte);
        break;
    case 0x60:                  /* write command byte: data follows */
    case 0xd1:                  /* write output port: data follows */
        st->pending_cmd = cmd;
        break;
    case 0xa7: st->cmd_byte |= 0x20; break;     /* disable aux */
    case 0xa8: st->cmd_byte &= ~0x20; break;    /* enable aux */
    case 0xad: st->cmd_byte |= 0x10; break;     /* disable keyboard */
    case 0xae: st->cmd_byte &= ~0x10; break;    /* enable keyboard */
    case 0xaa:                  /* controller self-test */
        st->status |= I8042_STR_SYSFLAG;
        outq_push(st, 0x55);
        break;
    case 0xab:                  /* keyboard interface test: no error */
        outq_push(st, 0x00);
        break;
    case 0xd0:                  /* read output port: reset line high, A20 on */
        outq_push(st, 0x03);
        break;
    default:
        /* 0xf0-0xff pulse output lines low; line 0 is the CPU reset. */
        if ((cmd & 0xf0) == 0xf0 && !(cmd & 0x01)) {
            machine_request_reset(d->m);
        }
        break;
    }
}

static void data_write(I8042Device *d, uint8_t val)
{
    I8042State *st = &d->st;
    uint8_t cmd = st->pending_cmd;

    st->pending_cmd = 0;
    if (cmd == 0x60) {
        st->cmd_byte = val;
    } else if (cmd == 0xd1) {
        if (!(val & 0x01)) {
            machine_request_reset(d->m);
        }
    } else {
        outq_push(st, 0xfa);    /* keyboard command: acknowledge it */
    }
}

static uint32_t data_read(void *opaque, uint16_t off, unsigned size)
{
    I8042Device *d = opaque;

    return outq_pop(&d->st);
}

static void data_io_write(void *opaque, uint16_t off, uint32_t val, unsigned size)
{
    I8042Device *d = opaque;

    d->st.status &= ~I8042_STR_CMDDAT;
    data_write(d, val);
}

static uint32_t status_read(void *opaque, uint16_t off, unsigned size)
{
    I8042Device *d = opaque;

    return d->st.status | (d->st.outq_len ? I8042_STR_OBF : 0);
}

static void cmd_io_write(void *opaque, uint16_t off, uint32_t val, unsigned size)
{
    I8042Device *d = opaque;

    d->st.status |= I8042_STR_CMDDAT;
    command(d, val);
}

static const IoOps data_ops = { .read = data_read, .write = data_io_write };
static const IoOps cmd_ops = { .read = status_read, .write = cmd_io_write };

static void i8042_reset(void *opaque)
{
    I8042Device *d = opaque;

    memset(&d->st, 0, sizeof(d->st));
    d->st.status = I8042_STR_SYSFLAG;
    d->st.cmd_byte = 0x30;      /* keyboard and aux disabled until the guest enables them */
}

static bool i8042_realize(Machine *m, void **opaque, Error **errp)
{
    I8042Device *d = g_new0(I8042Device, 1);

    d->m = m;
    i8042_reset(d);
    /* Two one-port ranges: 0x61-0x63 belong to the in-kernel PIT and others. */
    if (!machine_register_io(m, I8042_DATA_PORT, 1, &data_ops, d, errp) ||
        !machine_register_io(m, I8042_CMD_PORT, 1, &cmd_ops, d, errp)) {
        g_free(d);
        return false;
    }
    *opaque = d;
    return true;
}

static void i8042_unrealize(void *opaque)
{
    g_free(opaque);
}

/* A command waiting for its data byte can only be one that takes one. */
static bool i8042_state_check(const I8042State *st, Error **errp)
{
    if (st->pending_cmd != 0 && st->pending_cmd != 0x60 && st->pending_cmd != 0xd1) {
        error_setg(errp, "i8042: invalid pending command 0x%02x", st->pending_cmd);
        return false;
    }
    return true;
}

static bool i8042_post_load(void *opaque, int version_id, Error **errp)
{
    return i8042_state_check(opaque, errp);
}

const VMStateDescription vmstate_i8042 = {
    .name = "i8042",
    .version_id = 1,
    .minimum_version_id = 1,
    .post_load = i8042_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT8(status, I8042State),
        VMSTATE_UINT8(cmd_byte, I8042State),
        VMSTATE_UINT8(pending_cmd, I8042State),
        VMSTATE_UINT8_BOUNDED(outq_len, I8042State, I8042_OUTQ_SIZE),
        VMSTATE_BUFFER(outq, I8042State),
        VMSTATE_END_OF_LIST()
    },
};

static void i8042_get_state(void *opaque, void *state)
{
    I8042Device *d = opaque;

    memcpy(state, &d->st, sizeof(d->st));
}

static bool i8042_put_state(void *opaque, const void *state, Error **errp)
{
    I8042Device *d = opaque;

    if (!i8042_state_check(state, errp)) {
        return false;
    }
    memcpy(&d->st, state, sizeof(d->st));
    return true;
}

static const DeviceInfo i8042_info = {
    .name = "i8042",
    .order = 20,
    .realize = i8042_realize,
    .reset = i8042_reset,
    .unrealize = i8042_unrealize,
    .vmsd = &vmstate_i8042,
    .state_size = sizeof(I8042State),
    .get_state = i8042_get_state,
    .put_state = i8042_put_state,
};
DEVICE_REGISTER(i8042_info)
