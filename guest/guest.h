/*
 * The built-in guest: layout constants and the structures a RAM dump is
 * checked against.  docs/guest.md describes the same layout for readers
 * outside this tree; keep the two in step.
 *
 * Shared by the assembler entry (entry.S) and the C code, which runs in
 * ring 3 except for the boot path and the exception handler.
 */
#ifndef AMBER_GUEST_H
#define AMBER_GUEST_H

#define GUEST_LOAD_ADDR     0x100000    /* image start (multiboot header) */
#define GUEST_RECORDS_ADDR  0x101000    /* header + per-vCPU progress records */
#define GUEST_RECORDS_SIZE  0x3000
#define GUEST_TRAMPOLINE    0x8000      /* AP real-mode entry (SIPI vector 8) */
#define GUEST_MAX_VCPUS     32
#define GUEST_MAX_GIB       64          /* identity map covers at most this */

#define GUEST_KSTACK_SHIFT  12          /* ring-0 stack per vCPU: 4 KiB */
#define GUEST_USTACK_SHIFT  14          /* ring-3 stack per vCPU: 16 KiB */

#define SEL_KCODE32     0x08
#define SEL_KDATA       0x10
#define SEL_KCODE64     0x18
#define SEL_UDATA       0x20
#define SEL_UCODE64     0x28
#define SEL_TSS0        0x30            /* 16 bytes per vCPU */

#define DEBUG_EXIT_PORT 0x501
#define COM1_PORT       0x3f8
#define LAPIC_BASE      0xfee00000

/* Exit codes written to DEBUG_EXIT_PORT. */
#define EXIT_OK         0
#define EXIT_BAD_PARAM  2
#define EXIT_FAULT      3

#ifndef __ASSEMBLER__
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PAGE_SIZE       4096u
#define PAGE_WORDS      (PAGE_SIZE / 8)

/* "AMBRGST1" and "AMBRVCPU" read as little-endian 64-bit words. */
#define GUEST_HEADER_MAGIC  0x3154534752424d41ull
#define GUEST_RECORD_MAGIC  0x5550435652424d41ull
#define GUEST_LAYOUT_VERSION 1

enum {
    WORKLOAD_WAVE = 1,
    WORKLOAD_RANDOM = 2,
    WORKLOAD_IDLE = 3,
};

/* At GUEST_RECORDS_ADDR; magic is written last, once everything is set. */
struct guest_header {
    uint64_t magic;
    uint32_t version;
    uint32_t ncpus;
    uint32_t workload;
    uint32_t page_size;
    uint64_t ws_pages;          /* ncpus * part_pages */
    uint64_t part_pages;        /* pages per vCPU partition */
    uint64_t tsc_khz;
    uint64_t seed;
    uint64_t ram_bytes;         /* usable RAM (type 1) the guest was given */
    uint8_t pad[256 - 64];
};

#define GUEST_MAX_SEGS  12

struct guest_seg {
    uint64_t addr;              /* guest-physical, page aligned */
    uint64_t npages;
};

/*
 * One per vCPU at GUEST_RECORDS_ADDR + 256 * (1 + vcpu).  pos and pass
 * form one little-endian 64-bit word (pos low, pass high) that is only
 * ever written by a single 64-bit store, so a snapshot sees both from the
 * same instant.
 */
struct guest_record {
    uint64_t magic;
    uint32_t pos;
    uint32_t pass;
    uint32_t vcpu;
    uint32_t nseg;
    uint64_t npages;            /* sum of seg[].npages */
    uint64_t reserved[4];
    struct guest_seg seg[GUEST_MAX_SEGS];
};

_Static_assert(sizeof(struct guest_header) == 256, "header size");
_Static_assert(sizeof(struct guest_record) == 256, "record size");
_Static_assert(256 * (1 + GUEST_MAX_VCPUS) <= GUEST_RECORDS_SIZE, "records fit");

/* Page stamp: pass (32) | vcpu (8) | page index in the partition (24). */
#define STAMP_INDEX_BITS 24
static inline uint64_t page_stamp(uint32_t pass, uint32_t vcpu, uint64_t index)
{
    return ((uint64_t)pass << 32) | ((uint64_t)(vcpu & 0xff) << 24) |
           (index & ((1u << STAMP_INDEX_BITS) - 1));
}

/* ---- what the boot code leaves for C (entry.S) ---- */
extern uint64_t boot_mbi;               /* multiboot info, physical */
extern uint32_t mapped_gib;             /* identity map covers [0, mapped_gib GiB) */
extern volatile uint32_t ap_next;       /* next AP index; see setup.c */
extern const char ap_tramp_start[], ap_tramp_end[];
extern char _image_start[], _end[];

/* ---- parameters and per-vCPU state ---- */
struct params {
    uint32_t workload;
    uint64_t rate;              /* pages/s per vCPU, 0 = uncapped */
    uint64_t ws_mib;            /* 0 = all free RAM */
    uint64_t report_ms;
    uint64_t seed;
    uint64_t tsc_khz;           /* 0 = calibrate */
    uint64_t passes;            /* 0 = forever */
    uint64_t duration_ms;       /* 0 = forever */
    uint64_t cpus;              /* vCPUs to wait for; 0 = count who answers */
};

#define HIST_BUCKETS 496

struct cpu {
    uint32_t index;
    struct guest_record *rec;
    uint64_t last;              /* rdtsc at the end of the previous batch */
    uint64_t interval_start;
    uint64_t next_report;
    uint64_t writes;            /* page writes in this interval */
    uint64_t samples;
    uint64_t max_cycles;
    uint64_t next_check;        /* min(next_report, end of duration=) */
    uint64_t next_write;        /* rate cap: earliest rdtsc for the next batch */
    uint32_t hist[HIST_BUCKETS];
} __attribute__((aligned(64)));

struct guest {
    struct params p;
    uint32_t ncpus;
    uint64_t report_cycles;
    uint64_t end_tsc;           /* duration=: 0 = none */
    uint64_t cycles_per_page;   /* rate cap, 0 = none */
    uint64_t batch;             /* pages written between two rdtsc */
    volatile uint32_t go;
    volatile uint32_t checked_in;
    volatile uint32_t done;
    volatile uint32_t com_lock;
    struct cpu cpu[GUEST_MAX_VCPUS];
};

extern struct guest G;

/* ---- helpers ---- */
static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outl(uint16_t port, uint32_t v)
{
    __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}
static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}
static inline void cpu_relax(void)
{
    __asm__ volatile("pause" ::: "memory");
}
static inline void barrier(void)
{
    __asm__ volatile("" ::: "memory");
}

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
size_t strlen(const char *s);

/* console.c */
struct line {
    char buf[160];
    size_t len;
};
void con_init(void);
void line_str(struct line *l, const char *s);
void line_u64(struct line *l, uint64_t v);
void line_hex(struct line *l, uint64_t v);
void con_put_line(const struct line *l);          /* takes the COM1 lock */
void con_put_line_unlocked(const struct line *l); /* exception path */
void con_print(const char *s);                    /* one line, locked */
void __attribute__((noreturn)) guest_exit(uint32_t code);

/* setup.c (vCPU 0, ring 3) */
void bsp_setup(void);
void ap_checkin(uint32_t index);

/* workload.c */
void workload_prepare(void);
void __attribute__((noreturn)) run_workload(struct cpu *c);
uint64_t cycles_to_us(uint64_t cycles);
uint64_t ms_to_cycles(uint64_t ms);
#endif /* __ASSEMBLER__ */
#endif
