/*
 * The 8250 UART driven through its port handlers, as a guest would,
 * with a recording IRQ line and a file chardev for output.
 */
#include <string.h>
#include <unistd.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "hw/serial.h"

typedef struct IrqLine {
    int level;
    int changes;
} IrqLine;

static void irq_record(void *opaque, int level)
{
    IrqLine *l = opaque;
    g_assert_cmpint(level, !=, l->level);   /* driven only on a change */
    l->level = level;
    l->changes++;
}

typedef struct Fixture {
    SerialDevice *s;
    IrqLine irq;
    char *path;
} Fixture;

static void setup(Fixture *f, gconstpointer data)
{
    int fd = g_file_open_tmp("amber-serial-XXXXXX", &f->path, NULL);
    g_autofree char *spec = g_strdup_printf("file:%s", f->path);

    close(fd);
    memset(&f->irq, 0, sizeof(f->irq));
    f->s = serial_new(NULL, chardev_new(spec, &error_abort), irq_record, &f->irq);
}

static void teardown(Fixture *f, gconstpointer data)
{
    serial_free(f->s);
    g_unlink(f->path);
    g_free(f->path);
}

static uint8_t rd(Fixture *f, uint16_t off)
{
    return serial_io_ops.read(f->s, off, 1);
}

static void wr(Fixture *f, uint16_t off, uint8_t val)
{
    serial_io_ops.write(f->s, off, val, 1);
}

static char *output(Fixture *f)
{
    char *contents = NULL;
    g_assert_true(g_file_get_contents(f->path, &contents, NULL, NULL));
    return contents;
}

static void test_power_on(Fixture *f, gconstpointer data)
{
    g_assert_cmphex(rd(f, UART_IER), ==, 0);
    g_assert_cmphex(rd(f, UART_IIR), ==, UART_IIR_NO_INT);
    g_assert_cmphex(rd(f, UART_LSR), ==, UART_LSR_THRE | UART_LSR_TEMT);
    g_assert_cmphex(rd(f, UART_MSR) & 0xf0, ==, UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS);
    g_assert_cmpint(f->irq.level, ==, 0);
}

static void test_output_reaches_chardev(Fixture *f, gconstpointer data)
{
    const char *msg = "hello, serial\n";
    g_autofree char *out = NULL;

    for (const char *p = msg; *p; p++) {
        g_assert_true(rd(f, UART_LSR) & UART_LSR_THRE);    /* as a polling driver does */
        wr(f, UART_THR, *p);
    }
    out = output(f);
    g_assert_cmpstr(out, ==, msg);
}

static void test_dlab(Fixture *f, gconstpointer data)
{
    g_autofree char *out = NULL;

    wr(f, UART_IER, UART_IER_RDI);
    wr(f, UART_LCR, UART_LCR_DLAB | 0x03);
    wr(f, UART_DLL, 0x01);              /* 115200 baud */
    wr(f, UART_DLM, 0x02);
    g_assert_cmphex(rd(f, UART_DLL), ==, 0x01);
    g_assert_cmphex(rd(f, UART_DLM), ==, 0x02);
    g_assert_cmphex(rd(f, UART_LCR), ==, UART_LCR_DLAB | 0x03);
    wr(f, UART_LCR, 0x03);
    /* The same offsets are IER and RBR/THR again, untouched by the divisor. */
    g_assert_cmphex(rd(f, UART_IER), ==, UART_IER_RDI);
    g_assert_cmphex(serial_state(f->s)->dll, ==, 0x01);
    g_assert_cmphex(serial_state(f->s)->dlm, ==, 0x02);
    out = output(f);
    g_assert_cmpstr(out, ==, "");       /* the DLL write was not output */
}

static void test_scratch_and_fifo_bits(Fixture *f, gconstpointer data)
{
    wr(f, UART_SCR, 0x5a);
    g_assert_cmphex(rd(f, UART_SCR), ==, 0x5a);
    wr(f, UART_FCR, UART_FCR_ENABLE | UART_FCR_CLEAR_RX | UART_FCR_CLEAR_TX);
    g_assert_cmphex(rd(f, UART_IIR) & UART_IIR_FIFO, ==, UART_IIR_FIFO);
    wr(f, UART_FCR, 0);
    g_assert_cmphex(rd(f, UART_IIR) & UART_IIR_FIFO, ==, 0);
}

static void test_receive(Fixture *f, gconstpointer data)
{
    wr(f, UART_FCR, UART_FCR_ENABLE);
    serial_receive(f->s, (const uint8_t *)"abc", 3);
    g_assert_true(rd(f, UART_LSR) & UART_LSR_DR);
    g_assert_cmpint(f->irq.level, ==, 0);           /* RDI not enabled */
    wr(f, UART_IER, UART_IER_RDI);
    g_assert_cmpint(f->irq.level, ==, 1);
    g_assert_cmphex(rd(f, UART_IIR), ==, UART_IIR_FIFO | UART_IIR_RDI);
    g_assert_cmphex(rd(f, UART_RBR), ==, 'a');
    g_assert_cmphex(rd(f, UART_RBR), ==, 'b');
    g_assert_cmpint(f->irq.level, ==, 1);
    g_assert_cmphex(rd(f, UART_RBR), ==, 'c');
    g_assert_false(rd(f, UART_LSR) & UART_LSR_DR);
    g_assert_cmpint(f->irq.level, ==, 0);
}

static void test_overrun(Fixture *f, gconstpointer data)
{
    uint8_t many[SERIAL_FIFO_SIZE + 4];

    memset(many, 'x', sizeof(many));
    wr(f, UART_FCR, UART_FCR_ENABLE);
    serial_receive(f->s, many, sizeof(many));
    uint8_t lsr = rd(f, UART_LSR);
    g_assert_true(lsr & UART_LSR_OE);
    g_assert_false(rd(f, UART_LSR) & UART_LSR_OE);  /* cleared by the read */
    for (int i = 0; i < SERIAL_FIFO_SIZE; i++) {
        g_assert_true(rd(f, UART_LSR) & UART_LSR_DR);
        rd(f, UART_RBR);
    }
    g_assert_false(rd(f, UART_LSR) & UART_LSR_DR);
}

static void test_loopback(Fixture *f, gconstpointer data)
{
    g_autofree char *out = NULL;

    wr(f, UART_MCR, UART_MCR_LOOP | UART_MCR_RTS | UART_MCR_OUT2);
    g_assert_cmphex(rd(f, UART_MSR) & 0xf0, ==, UART_MSR_CTS | UART_MSR_DCD);
    wr(f, UART_THR, 'Z');
    g_assert_true(rd(f, UART_LSR) & UART_LSR_DR);
    g_assert_cmphex(rd(f, UART_RBR), ==, 'Z');
    serial_receive(f->s, (const uint8_t *)"q", 1);   /* outside input is cut off */
    g_assert_false(rd(f, UART_LSR) & UART_LSR_DR);
    wr(f, UART_MCR, UART_MCR_OUT2);
    wr(f, UART_THR, 'Y');
    out = output(f);
    g_assert_cmpstr(out, ==, "Y");
}

static void test_thre_irq(Fixture *f, gconstpointer data)
{
    /* Enabling THRI with the transmitter empty raises the line at once. */
    wr(f, UART_IER, UART_IER_THRI);
    g_assert_cmpint(f->irq.level, ==, 1);
    g_assert_cmpint(f->irq.changes, ==, 1);
    /* Reading IIR acknowledges it ... */
    g_assert_cmphex(rd(f, UART_IIR), ==, UART_IIR_THRI);
    g_assert_cmpint(f->irq.level, ==, 0);
    g_assert_cmphex(rd(f, UART_IIR), ==, UART_IIR_NO_INT);
    /* ... and the next byte sent re-arms it: a fresh edge. */
    wr(f, UART_THR, 'a');
    g_assert_cmpint(f->irq.level, ==, 1);
    g_assert_cmpint(f->irq.changes, ==, 3);
    wr(f, UART_THR, 'b');                        /* still pending: no change */
    g_assert_cmpint(f->irq.changes, ==, 3);
    wr(f, UART_IER, 0);
    g_assert_cmpint(f->irq.level, ==, 0);
    g_assert_cmpint(f->irq.changes, ==, 4);
}

static void test_irq_priority(Fixture *f, gconstpointer data)
{
    wr(f, UART_IER, UART_IER_THRI | UART_IER_RDI | UART_IER_RLSI);
    serial_receive(f->s, (const uint8_t *)"12", 2);  /* FIFO off: one byte, overrun */
    g_assert_cmphex(rd(f, UART_IIR), ==, UART_IIR_RLSI);
    rd(f, UART_LSR);
    g_assert_cmphex(rd(f, UART_IIR), ==, UART_IIR_RDI);
    g_assert_cmphex(rd(f, UART_RBR), ==, '1');
    g_assert_cmphex(rd(f, UART_IIR), ==, UART_IIR_THRI);
    g_assert_cmpint(f->irq.level, ==, 0);
}

static void test_reset(Fixture *f, gconstpointer data)
{
    wr(f, UART_IER, UART_IER_THRI);
    wr(f, UART_SCR, 0x11);
    wr(f, UART_LCR, 0x83);
    g_assert_cmpint(f->irq.level, ==, 1);
    serial_reset(f->s);
    g_assert_cmpint(f->irq.level, ==, 0);
    g_assert_cmphex(rd(f, UART_LCR), ==, 0);
    g_assert_cmphex(rd(f, UART_SCR), ==, 0);
    g_assert_cmphex(rd(f, UART_IER), ==, 0);
}

static void test_wide_access(Fixture *f, gconstpointer data)
{
    /* A 2-byte write at LCR sets LCR and MCR, as two byte accesses. */
    serial_io_ops.write(f->s, UART_LCR, 0x0b03, 2);
    g_assert_cmphex(rd(f, UART_LCR), ==, 0x03);
    g_assert_cmphex(rd(f, UART_MCR), ==, 0x0b);
    /* Accesses past the last register are ignored rather than overrun. */
    serial_io_ops.write(f->s, UART_SCR, 0xffffff42, 4);
    g_assert_cmphex(rd(f, UART_SCR), ==, 0x42);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define ADD(name, fn) g_test_add("/serial/" name, Fixture, NULL, setup, fn, teardown)
    ADD("power-on", test_power_on);
    ADD("output", test_output_reaches_chardev);
    ADD("dlab", test_dlab);
    ADD("scratch-fifo", test_scratch_and_fifo_bits);
    ADD("receive", test_receive);
    ADD("overrun", test_overrun);
    ADD("loopback", test_loopback);
    ADD("thre-irq", test_thre_irq);
    ADD("irq-priority", test_irq_priority);
    ADD("reset", test_reset);
    ADD("wide-access", test_wide_access);
    return g_test_run();
}
