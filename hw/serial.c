/*
 * 8250/16550A UART on COM1.
 *
 * Transmission is instantaneous: a byte written to THR goes straight to
 * the chardev (or, in loopback, into the receive FIFO), so THRE and TEMT
 * are always set.  The interrupt line is level-style, recomputed after
 * every access and driven only when it changes, so a guest that reads IIR
 * in its handler and writes THR again sees a fresh edge on the PIC.
 */
#include <string.h>
#include <glib.h>

#include "hw/serial.h"
#include "migration/vmstate.h"

struct SerialDevice {
    SerialState st;
    Machine *m;
    Chardev *chr;
    SerialIrqFn irq;
    void *irq_opaque;
};

static unsigned rx_capacity(const SerialState *st)
{
    /* Without FCR.ENABLE the 8250 holds a single received byte. */
    return (st->fcr & UART_FCR_ENABLE) ? SERIAL_FIFO_SIZE : 1;
}

static void rx_clear(SerialState *st)
{
    st->rx_head = st->rx_count = 0;
    st->lsr &= ~UART_LSR_DR;
}

static void rx_push(SerialState *st, uint8_t byte)
{
    if (st->rx_count >= rx_capacity(st)) {
        st->lsr |= UART_LSR_OE;
        return;
    }
    st->rx_fifo[(st->rx_head + st->rx_count) % SERIAL_FIFO_SIZE] = byte;
    st->rx_count++;
    st->lsr |= UART_LSR_DR;
}

static uint8_t rx_pop(SerialState *st)
{
    if (!st->rx_count) {
        return 0;
    }
    uint8_t byte = st->rx_fifo[st->rx_head];
    st->rx_head = (st->rx_head + 1) % SERIAL_FIFO_SIZE;
    if (--st->rx_count == 0) {
        st->lsr &= ~UART_LSR_DR;
    }
    return byte;
}

/* Highest-priority pending interrupt, as IIR reports it. */
static uint8_t compute_iir(const SerialState *st)
{
    uint8_t iir = UART_IIR_NO_INT;

    if ((st->ier & UART_IER_RLSI) && (st->lsr & UART_LSR_OE)) {
        iir = UART_IIR_RLSI;
    } else if ((st->ier & UART_IER_RDI) && (st->lsr & UART_LSR_DR)) {
        iir = UART_IIR_RDI;
    } else if ((st->ier & UART_IER_THRI) && st->thr_ipending) {
        iir = UART_IIR_THRI;
    } else if ((st->ier & UART_IER_MSI) && (st->msr & 0x0f)) {
        iir = UART_IIR_MSI;
    }
    if (st->fcr & UART_FCR_ENABLE) {
        iir |= UART_IIR_FIFO;
    }
    return iir;
}

static void update_irq(SerialDevice *s)
{
    uint8_t level = !(compute_iir(&s->st) & UART_IIR_NO_INT);

    if (level != s->st.irq_level) {
        s->st.irq_level = level;
        if (s->irq) {
            s->irq(s->irq_opaque, level);
        }
    }
}

/* Modem status: fixed "cable connected" lines, or MCR fed back in loopback. */
static void update_msr(SerialState *st)
{
    uint8_t lines = UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS;

    if (st->mcr & UART_MCR_LOOP) {
        lines = ((st->mcr & UART_MCR_RTS) ? UART_MSR_CTS : 0) |
                ((st->mcr & UART_MCR_DTR) ? UART_MSR_DSR : 0) |
                ((st->mcr & UART_MCR_OUT1) ? UART_MSR_RI : 0) |
                ((st->mcr & UART_MCR_OUT2) ? UART_MSR_DCD : 0);
    }
    uint8_t changed = (st->msr ^ lines) & 0xf0;
    uint8_t delta = ((changed & UART_MSR_CTS) ? 0x01 : 0) |
                    ((changed & UART_MSR_DSR) ? 0x02 : 0) |
                    ((changed & st->msr & UART_MSR_RI) ? 0x04 : 0) |   /* trailing edge */
                    ((changed & UART_MSR_DCD) ? 0x08 : 0);
    st->msr = lines | (st->msr & 0x0f) | delta;
}

static void transmit(SerialDevice *s, uint8_t byte)
{
    if (s->st.mcr & UART_MCR_LOOP) {
        rx_push(&s->st, byte);
    } else if (s->chr) {
        chardev_write(s->chr, &byte, 1);
    }
    s->st.lsr |= UART_LSR_THRE | UART_LSR_TEMT;
    s->st.thr_ipending = 1;
}

static void write_fcr(SerialState *st, uint8_t val)
{
    if (((val ^ st->fcr) & UART_FCR_ENABLE) || (val & UART_FCR_CLEAR_RX)) {
        rx_clear(st);
    }
    st->fcr = val & 0xc9;       /* enable, DMA mode, trigger level; clear bits self-reset */
}

static void write_byte(SerialDevice *s, uint16_t off, uint8_t val)
{
    SerialState *st = &s->st;
    bool dlab = st->lcr & UART_LCR_DLAB;

    switch (off) {
    case UART_THR:
        if (dlab) {
            st->dll = val;
        } else {
            transmit(s, val);
        }
        break;
    case UART_IER:
        if (dlab) {
            st->dlm = val;
            break;
        }
        /* Enabling THRI while the transmitter is empty raises it at once. */
        if (!(st->ier & UART_IER_THRI) && (val & UART_IER_THRI) &&
            (st->lsr & UART_LSR_THRE)) {
            st->thr_ipending = 1;
        }
        st->ier = val & 0x0f;
        break;
    case UART_FCR:
        write_fcr(st, val);
        break;
    case UART_LCR:
        st->lcr = val;
        break;
    case UART_MCR:
        st->mcr = val & 0x1f;
        update_msr(st);
        break;
    case UART_SCR:
        st->scr = val;
        break;
    default:                    /* LSR and MSR are read-only */
        break;
    }
}

static uint8_t read_byte(SerialDevice *s, uint16_t off)
{
    SerialState *st = &s->st;
    bool dlab = st->lcr & UART_LCR_DLAB;
    uint8_t val = 0;

    switch (off) {
    case UART_RBR:
        return dlab ? st->dll : rx_pop(st);
    case UART_IER:
        return dlab ? st->dlm : st->ier;
    case UART_IIR:
        val = compute_iir(st);
        /* Reading IIR acknowledges a THRE interrupt (and only that one). */
        if ((val & 0x0f) == UART_IIR_THRI) {
            st->thr_ipending = 0;
        }
        return val;
    case UART_LCR:
        return st->lcr;
    case UART_MCR:
        return st->mcr;
    case UART_LSR:
        val = st->lsr;
        st->lsr &= ~UART_LSR_OE;
        return val;
    case UART_MSR:
        val = st->msr;
        st->msr &= 0xf0;
        return val;
    case UART_SCR:
        return st->scr;
    }
    return 0;
}

/* Wider accesses are split into byte accesses, as the ISA bus does. */
static uint32_t serial_io_read(void *opaque, uint16_t off, unsigned size)
{
    SerialDevice *s = opaque;
    uint32_t val = 0;

    for (unsigned i = 0; i < size && off + i < SERIAL_NR_PORTS; i++) {
        val |= (uint32_t)read_byte(s, off + i) << (8 * i);
    }
    update_irq(s);
    return val;
}

static void serial_io_write(void *opaque, uint16_t off, uint32_t val, unsigned size)
{
    SerialDevice *s = opaque;

    for (unsigned i = 0; i < size && off + i < SERIAL_NR_PORTS; i++) {
        write_byte(s, off + i, val >> (8 * i));
    }
    update_irq(s);
}

const IoOps serial_io_ops = {
    .read = serial_io_read,
    .write = serial_io_write,
};

void serial_receive(SerialDevice *s, const uint8_t *buf, size_t len)
{
    /* In loopback the receiver is cut off from the outside. */
    if (!(s->st.mcr & UART_MCR_LOOP)) {
        for (size_t i = 0; i < len; i++) {
            rx_push(&s->st, buf[i]);
        }
    }
    update_irq(s);
}

static void chr_read(void *opaque, const uint8_t *buf, size_t len)
{
    SerialDevice *s = opaque;

    if (s->m) {
        machine_lock_devices(s->m);
    }
    serial_receive(s, buf, len);
    if (s->m) {
        machine_unlock_devices(s->m);
    }
}

void serial_reset(SerialDevice *s)
{
    SerialState *st = &s->st;
    uint8_t level = st->irq_level;

    memset(st, 0, sizeof(*st));
    st->mcr = UART_MCR_OUT2;
    st->lsr = UART_LSR_THRE | UART_LSR_TEMT;
    st->msr = UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS;
    st->dll = 0x0c;             /* 9600 baud */
    st->irq_level = level;
    update_irq(s);
}

SerialDevice *serial_new(Machine *m, Chardev *chr, SerialIrqFn irq, void *irq_opaque)
{
    SerialDevice *s = g_new0(SerialDevice, 1);
    static const ChardevHandlers handlers = { .read = chr_read };

    s->m = m;
    s->chr = chr;
    s->irq = irq;
    s->irq_opaque = irq_opaque;
    serial_reset(s);
    if (chr) {
        chardev_set_handlers(chr, &handlers, s);
    }
    return s;
}

void serial_free(SerialDevice *s)
{
    if (s) {
        chardev_free(s->chr);
        g_free(s);
    }
}

Chardev *serial_chardev(SerialDevice *s)
{
    return s->chr;
}

SerialState *serial_state(SerialDevice *s)
{
    return &s->st;
}

/* ---- migration ------------------------------------------------------------------ */

/* What a saved state must satisfy beyond each field's own range. */
static bool serial_state_check(const SerialState *st, Error **errp)
{
    if (st->fcr & ~0xc9) {
        error_setg(errp, "serial: invalid FCR value 0x%02x", st->fcr);
        return false;
    }
    if (st->rx_head >= SERIAL_FIFO_SIZE || st->rx_count > rx_capacity(st)) {
        error_setg(errp, "serial: receive FIFO of %u bytes at %u does not fit a FIFO of "
                   "%u bytes (FCR 0x%02x)", st->rx_count, st->rx_head, rx_capacity(st),
                   st->fcr);
        return false;
    }
    if (!(st->lsr & UART_LSR_DR) != !st->rx_count) {
        error_setg(errp, "serial: LSR data-ready bit disagrees with %u received bytes",
                   st->rx_count);
        return false;
    }
    return true;
}

static bool serial_post_load(void *opaque, int version_id, Error **errp)
{
    return serial_state_check(opaque, errp);
}

const VMStateDescription vmstate_serial = {
    .name = "serial",
    .version_id = 1,
    .minimum_version_id = 1,
    .post_load = serial_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT8_BOUNDED(ier, SerialState, 0x0f),
        VMSTATE_UINT8(fcr, SerialState),
        VMSTATE_UINT8(lcr, SerialState),
        VMSTATE_UINT8_BOUNDED(mcr, SerialState, 0x1f),
        VMSTATE_UINT8(lsr, SerialState),
        VMSTATE_UINT8(msr, SerialState),
        VMSTATE_UINT8(scr, SerialState),
        VMSTATE_UINT8(dll, SerialState),
        VMSTATE_UINT8(dlm, SerialState),
        VMSTATE_UINT8_BOUNDED(thr_ipending, SerialState, 1),
        VMSTATE_UINT8_BOUNDED(irq_level, SerialState, 1),
        VMSTATE_UINT8_BOUNDED(rx_head, SerialState, SERIAL_FIFO_SIZE - 1),
        VMSTATE_UINT8_BOUNDED(rx_count, SerialState, SERIAL_FIFO_SIZE),
        VMSTATE_BUFFER(rx_fifo, SerialState),
        VMSTATE_END_OF_LIST()
    },
};

void serial_get_state(SerialDevice *s, SerialState *state)
{
    *state = s->st;
}

/*
 * The saved line level is driven again whatever the device believes the
 * line is: a restored interrupt controller does not know the level of its
 * input lines, and a level-triggered line left unasserted there would
 * lose the interrupt the guest is waiting for.
 */
bool serial_put_state(SerialDevice *s, const SerialState *state, Error **errp)
{
    if (!serial_state_check(state, errp)) {
        return false;
    }
    s->st = *state;
    if (s->irq) {
        s->irq(s->irq_opaque, s->st.irq_level);
    }
    return true;
}

/* ---- the machine's COM1 ------------------------------------------------------ */

static void com1_set_irq(void *opaque, int level)
{
    machine_set_irq(opaque, SERIAL_COM1_IRQ, level);
}

static bool serial_realize(Machine *m, void **opaque, Error **errp)
{
    const char *spec = machine_options(m)->serial;
    Chardev *chr;
    SerialDevice *s;

    spec = spec ? spec : "null";
    chr = chardev_new(spec, errp);
    if (!chr) {
        error_prepend(errp, "-serial %s: ", spec);
        return false;
    }
    s = serial_new(m, chr, com1_set_irq, m);
    if (!machine_register_io(m, SERIAL_COM1_BASE, SERIAL_NR_PORTS, &serial_io_ops, s,
                             errp)) {
        serial_free(s);
        return false;
    }
    *opaque = s;
    return true;
}

static void serial_reset_cb(void *opaque)
{
    serial_reset(opaque);
}

static void serial_unrealize(void *opaque)
{
    serial_free(opaque);
}

static void serial_get_state_cb(void *opaque, void *state)
{
    serial_get_state(opaque, state);
}

static bool serial_put_state_cb(void *opaque, const void *state, Error **errp)
{
    return serial_put_state(opaque, state, errp);
}

static const DeviceInfo serial_info = {
    .name = "serial",
    .order = 10,
    .realize = serial_realize,
    .reset = serial_reset_cb,
    .unrealize = serial_unrealize,
    .vmsd = &vmstate_serial,
    .state_size = sizeof(SerialState),
    .get_state = serial_get_state_cb,
    .put_state = serial_put_state_cb,
};
DEVICE_REGISTER(serial_info)
