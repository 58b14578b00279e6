/*
 * 8250/16550A UART (COM1: ports 0x3f8-0x3ff, IRQ 4).
 *
 * SerialState is everything a migration has to carry; the rest of the
 * device (chardev, IRQ wiring) is rebuilt from the command line.
 */
#ifndef AMBER_HW_SERIAL_H
#define AMBER_HW_SERIAL_H

#include <stdint.h>
#include <stddef.h>

#include "chardev/char.h"
#include "migration/vmstate.h"
#include "system/machine.h"

#define SERIAL_COM1_BASE 0x3f8
#define SERIAL_COM1_IRQ  4
#define SERIAL_NR_PORTS  8
#define SERIAL_FIFO_SIZE 16

/* Register offsets */
enum {
    UART_RBR = 0, UART_THR = 0, UART_DLL = 0,
    UART_IER = 1, UART_DLM = 1,
    UART_IIR = 2, UART_FCR = 2,
    UART_LCR = 3, UART_MCR = 4, UART_LSR = 5, UART_MSR = 6, UART_SCR = 7,
};

#define UART_IER_RDI   0x01     /* receive data available */
#define UART_IER_THRI  0x02     /* transmit holding register empty */
#define UART_IER_RLSI  0x04     /* receiver line status */
#define UART_IER_MSI   0x08     /* modem status */

#define UART_IIR_NO_INT 0x01
#define UART_IIR_MSI    0x00
#define UART_IIR_THRI   0x02
#define UART_IIR_RDI    0x04
#define UART_IIR_RLSI   0x06
#define UART_IIR_FIFO   0xc0    /* FIFOs enabled (16550A) */

#define UART_FCR_ENABLE   0x01
#define UART_FCR_CLEAR_RX 0x02
#define UART_FCR_CLEAR_TX 0x04

#define UART_LCR_DLAB  0x80

#define UART_MCR_DTR   0x01
#define UART_MCR_RTS   0x02
#define UART_MCR_OUT1  0x04
#define UART_MCR_OUT2  0x08
#define UART_MCR_LOOP  0x10

#define UART_LSR_DR    0x01
#define UART_LSR_OE    0x02
#define UART_LSR_THRE  0x20
#define UART_LSR_TEMT  0x40

#define UART_MSR_CTS   0x10
#define UART_MSR_DSR   0x20
#define UART_MSR_RI    0x40
#define UART_MSR_DCD   0x80

/* Migratable state: plain registers and the receive FIFO. */
typedef struct SerialState {
    uint8_t ier, fcr, lcr, mcr, lsr, msr, scr;
    uint8_t dll, dlm;
    uint8_t thr_ipending;       /* THRE interrupt armed until IIR is read or THR written */
    uint8_t irq_level;          /* level last driven on the line */
    uint8_t rx_fifo[SERIAL_FIFO_SIZE];
    uint8_t rx_head, rx_count;
} SerialState;

typedef struct SerialDevice SerialDevice;
typedef void (*SerialIrqFn)(void *opaque, int level);

/*
 * A UART that writes to chr (owned by the device from here on; NULL
 * drops output) and drives its interrupt line through irq().  m may be
 * NULL (unit tests); with a machine, input from the chardev takes the
 * machine's device lock.
 */
SerialDevice *serial_new(Machine *m, Chardev *chr, SerialIrqFn irq, void *irq_opaque);
void serial_free(SerialDevice *s);
void serial_reset(SerialDevice *s);
SerialState *serial_state(SerialDevice *s);
/* The chardev COM1 talks through (owned by s). */
Chardev *serial_chardev(SerialDevice *s);
/* Bytes from the outside world into the receive FIFO; caller holds the device lock. */
void serial_receive(SerialDevice *s, const uint8_t *buf, size_t len);

/*
 * Migration: vmstate_serial describes a SerialState.  put checks the
 * state, loads it and drives the interrupt line at its saved level.
 * Caller holds the device lock.
 */
extern const VMStateDescription vmstate_serial;
void serial_get_state(SerialDevice *s, SerialState *state);
bool serial_put_state(SerialDevice *s, const SerialState *state, Error **errp);

/* Port handlers; opaque is the SerialDevice, offsets relative to the base. */
extern const IoOps serial_io_ops;

#endif
