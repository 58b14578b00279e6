/*
 * COM1 output and the debug-exit port, from ring 3 (IOPL=3).
 *
 * Lines are formatted into a buffer first and sent under a spinlock, so
 * lines from different vCPUs never interleave; the transmitter is polled
 * (LSR bit 5) before every byte as a real 8250 needs.
 */
#include "guest.h"

#define UART_THR 0
#define UART_IER 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define LSR_THRE 0x20

void con_init(void)
{
    outb(COM1_PORT + UART_IER, 0x00);   /* no interrupts: we poll */
    outb(COM1_PORT + UART_LCR, 0x80);   /* DLAB: 115200 baud */
    outb(COM1_PORT + UART_THR, 0x01);
    outb(COM1_PORT + UART_IER, 0x00);
    outb(COM1_PORT + UART_LCR, 0x03);   /* 8N1 */
    outb(COM1_PORT + UART_FCR, 0x07);
    outb(COM1_PORT + UART_MCR, 0x03);
}

static void put_byte(char ch)
{
    /* Bounded: a UART that never reports THRE must not hang the guest. */
    for (int i = 0; i < 100000; i++) {
        if (inb(COM1_PORT + UART_LSR) & LSR_THRE) {
            break;
        }
        cpu_relax();
    }
    outb(COM1_PORT + UART_THR, (uint8_t)ch);
}

void line_str(struct line *l, const char *s)
{
    while (*s && l->len < sizeof(l->buf) - 2) {
        l->buf[l->len++] = *s++;
    }
}

void line_u64(struct line *l, uint64_t v)
{
    char tmp[21];
    int n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n > 0 && l->len < sizeof(l->buf) - 2) {
        l->buf[l->len++] = tmp[--n];
    }
}

void line_hex(struct line *l, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";

    line_str(l, "0x");
    for (int shift = 60; shift >= 0; shift -= 4) {
        if (l->len < sizeof(l->buf) - 2) {
            l->buf[l->len++] = digits[(v >> shift) & 0xf];
        }
    }
}

void con_put_line_unlocked(const struct line *l)
{
    for (size_t i = 0; i < l->len; i++) {
        put_byte(l->buf[i]);
    }
    put_byte('\n');
}

void con_put_line(const struct line *l)
{
    while (__atomic_exchange_n(&G.com_lock, 1, __ATOMIC_ACQUIRE)) {
        while (G.com_lock) {
            cpu_relax();
        }
    }
    con_put_line_unlocked(l);
    __atomic_store_n(&G.com_lock, 0, __ATOMIC_RELEASE);
}

void con_print(const char *s)
{
    struct line l = { .len = 0 };

    line_str(&l, s);
    con_put_line(&l);
}

void guest_exit(uint32_t code)
{
    /*
     * Wait (bounded) for a line another vCPU is printing, so the run does
     * not end in the middle of it; the lock is never released.
     */
    for (int i = 0; i < 10000000; i++) {
        if (!__atomic_exchange_n(&G.com_lock, 1, __ATOMIC_ACQUIRE)) {
            break;
        }
        cpu_relax();
    }
    outl(DEBUG_EXIT_PORT, code);
    /* Without a debug-exit device the write is ignored: stay put quietly. */
    for (;;) {
        cpu_relax();
    }
}
