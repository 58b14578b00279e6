/*
 * i8042 keyboard controller, reduced to what a PC guest probes and the
 * reset line (0xfe to port 0x64 resets the machine, as Linux's reboot=k).
 * No keyboard or mouse is attached, and it raises no interrupts.
 */
#ifndef AMBER_HW_I8042_H
#define AMBER_HW_I8042_H

#include <stdint.h>

#include "migration/vmstate.h"

#define I8042_DATA_PORT 0x60
#define I8042_CMD_PORT  0x64

#define I8042_STR_OBF     0x01  /* output buffer full */
#define I8042_STR_SYSFLAG 0x04  /* self-test passed */
#define I8042_STR_CMDDAT  0x08  /* last write was a command */

#define I8042_OUTQ_SIZE 4

/* Migratable state. */
typedef struct I8042State {
    uint8_t status;
    uint8_t cmd_byte;           /* controller configuration byte */
    uint8_t pending_cmd;        /* command waiting for its data byte, or 0 */
    uint8_t outq[I8042_OUTQ_SIZE];
    uint8_t outq_len;
} I8042State;

/* Migration: describes an I8042State. */
extern const VMStateDescription vmstate_i8042;

#endif
