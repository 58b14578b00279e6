/*
 * Ring-3 entry of every vCPU, the exception report, and the few libc
 * functions the compiler may call on its own.
 */
#include "guest.h"

/*
 * The one piece of state shared by the vCPUs.  It is a global because the
 * APs come up through the boot path with nothing but their index; each
 * vCPU's own state (struct cpu) is passed down from here on.
 */
struct guest G;

void guest_cpu_main(uint32_t index);
void guest_exception(const uint64_t *frame);

void guest_cpu_main(uint32_t index)
{
    if (index == 0) {
        bsp_setup();            /* returns with G.go set */
    } else {
        ap_checkin(index);      /* returns once vCPU 0 says go */
    }
    run_workload(&G.cpu[index]);
}

static uint64_t read_cr2(void)
{
    uint64_t v;
    __asm__ volatile("mov %%cr2, %0" : "=r"(v));
    return v;
}

/*
 * Ring 0, on the vCPU's own stack: there is nothing to recover, so say
 * what happened (without the COM1 lock: its holder may be the one that
 * faulted) and end the run with EXIT_FAULT.
 */
void guest_exception(const uint64_t *frame)
{
    volatile uint32_t *lapic_id = (volatile uint32_t *)(LAPIC_BASE + 0x20);
    struct line l = { .len = 0 };

    line_str(&l, "amber-guest: exception ");
    line_u64(&l, frame[0]);
    line_str(&l, " error ");
    line_hex(&l, frame[1]);
    line_str(&l, " rip ");
    line_hex(&l, frame[2]);
    line_str(&l, " rflags ");
    line_hex(&l, frame[4]);
    line_str(&l, " rsp ");
    line_hex(&l, frame[5]);
    line_str(&l, " cr2 ");
    line_hex(&l, read_cr2());
    line_str(&l, " apic ");
    line_u64(&l, *lapic_id >> 24);
    con_put_line_unlocked(&l);
    outl(DEBUG_EXIT_PORT, EXIT_FAULT);
}

void *memset(void *d, int c, size_t n)
{
    uint8_t *p = d;

    while (n--) {
        *p++ = (uint8_t)c;
    }
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    uint8_t *p = d;
    const uint8_t *q = s;

    while (n--) {
        *p++ = *q++;
    }
    return d;
}

size_t strlen(const char *s)
{
    size_t n = 0;

    while (s[n]) {
        n++;
    }
    return n;
}
