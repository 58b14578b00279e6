/*
 * A tiny hand-built guest for the machine tests: 64-bit code at CPL3 (the
 * only fast mode on PVM hosts; ring 0 is emulated) that counts in RAX and
 * stores the count at PAYLOAD_COUNTER.  The machine is created through
 * machine_create with a minimal multiboot image as -kernel; the test then
 * writes the payload and puts the vCPU straight into long mode, ring 3.
 */
#ifndef AMBER_TESTS_KVM_PAYLOAD_H
#define AMBER_TESTS_KVM_PAYLOAD_H

#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "../../accel/kvm/kvm-int.h"
#include "../../system/machine-int.h"
#include "system/loader.h"
#include "system/machine.h"

#define PAYLOAD_CODE 0x10000
#define PAYLOAD_COUNTER 0x20000
#define PAYLOAD_STACK 0x30000
#define PAYLOAD_PML4 0x1000
#define PAYLOAD_GDT 0x500

static inline bool kvm_usable(void)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    close(fd);
    return true;
}

/* A multiboot image using the a.out kludge: header, then "1: jmp 1b". */
static inline GByteArray *payload_multiboot_image(void)
{
    uint32_t h[8] = {
        MULTIBOOT_HEADER_MAGIC, 1u << 16, 0, 0x100000, 0x100000, 0, 0, 0x100020,
    };
    h[2] = -(h[0] + h[1]);
    GByteArray *img = g_byte_array_new();
    g_byte_array_append(img, (const guint8 *)h, sizeof(h));
    static const uint8_t spin[] = { 0xeb, 0xfe };
    g_byte_array_append(img, spin, sizeof(spin));
    return img;
}

static inline char *payload_write_kernel(const char *dir)
{
    char *path = g_build_filename(dir, "payload.elf", NULL);
    g_autoptr(GByteArray) img = payload_multiboot_image();
    g_assert_true(g_file_set_contents(path, (const char *)img->data, img->len, NULL));
    return path;
}

static inline MachineOptions *payload_options(const char *kernel, uint64_t ram, int smp)
{
    MachineOptions *o = g_new0(MachineOptions, 1);
    o->ram_size = ram;
    o->smp = smp;
    o->accel = g_strdup("kvm");
    o->kernel = g_strdup(kernel);
    o->serial = g_strdup("null");
    o->backends = g_ptr_array_new();
    return o;
}

static inline void payload_write_ram(Machine *m)
{
    /* inc rax; mov [PAYLOAD_COUNTER], rax; jmp back */
    static const uint8_t code[] = {
        0x48, 0xff, 0xc0,
        0x48, 0x89, 0x04, 0x25, 0x00, 0x00, 0x02, 0x00,
        0xeb, 0xf3,
    };
    uint64_t pml4[1] = { 0x2000 | 7 }, pdpt[1] = { 0x3000 | 7 };
    uint64_t pd[1] = { 0x0 | 0x87 };          /* one 2 MiB user page */
    uint64_t gdt[5] = {
        0, 0x00af9b000000ffffULL, 0x00cf93000000ffffULL,
        0x00cff3000000ffffULL, 0x00affb000000ffffULL,
    };
    uint64_t zero = 0;
    g_assert_true(machine_write_phys(m, PAYLOAD_CODE, code, sizeof(code), NULL));
    g_assert_true(machine_write_phys(m, PAYLOAD_PML4, pml4, sizeof(pml4), NULL));
    g_assert_true(machine_write_phys(m, 0x2000, pdpt, sizeof(pdpt), NULL));
    g_assert_true(machine_write_phys(m, 0x3000, pd, sizeof(pd), NULL));
    g_assert_true(machine_write_phys(m, PAYLOAD_GDT, gdt, sizeof(gdt), NULL));
    g_assert_true(machine_write_phys(m, PAYLOAD_COUNTER, &zero, sizeof(zero), NULL));
}

static inline void payload_segment(struct kvm_segment *s, uint16_t sel, uint8_t type, int l)
{
    *s = (struct kvm_segment) {
        .limit = 0xffffffff, .selector = sel, .type = type, .present = 1, .dpl = 3,
        .db = !l, .s = 1, .l = l, .g = 1,
    };
}

/* Long mode, CPL3, IOPL3, interrupts off, RIP at the payload. */
static inline void payload_setup_cpu(Machine *m)
{
    AccelCPU *c = m->cpus[0]->accel;
    struct kvm_sregs sregs;
    g_assert_cmpint(ioctl(c->fd, KVM_GET_SREGS, &sregs), ==, 0);
    payload_segment(&sregs.cs, 0x23, 0xb, 1);
    payload_segment(&sregs.ds, 0x1b, 0x3, 0);
    sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
    sregs.gdt.base = PAYLOAD_GDT;
    sregs.gdt.limit = 5 * 8 - 1;
    sregs.cr3 = PAYLOAD_PML4;
    sregs.cr4 = 0x20;                   /* PAE */
    sregs.cr0 = 0x80000011;             /* PG | ET | PE */
    sregs.efer = 0x500;                 /* LME | LMA */
    g_assert_cmpint(ioctl(c->fd, KVM_SET_SREGS, &sregs), ==, 0);
    struct kvm_regs regs = {
        .rip = PAYLOAD_CODE, .rsp = PAYLOAD_STACK, .rflags = 0x3002,
    };
    g_assert_cmpint(ioctl(c->fd, KVM_SET_REGS, &regs), ==, 0);
}

static inline Machine *payload_machine(const char *kernel, uint64_t ram)
{
    Error *err = NULL;
    Machine *m = machine_create(payload_options(kernel, ram, 1), &err);
    if (!m) {
        g_printerr("machine_create: %s\n", error_get_pretty(err));
        error_free(err);
    }
    g_assert_nonnull(m);
    payload_write_ram(m);
    payload_setup_cpu(m);
    return m;
}

static inline uint64_t payload_counter(Machine *m)
{
    volatile uint64_t *p = machine_gpa_to_hva(m, PAYLOAD_COUNTER, 8);
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* Wait (up to 10 s) until the counter passes `above`; returns its value. */
static inline uint64_t payload_wait_above(Machine *m, uint64_t above)
{
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    uint64_t v;
    while ((v = payload_counter(m)) <= above && g_get_monotonic_time() < deadline) {
        g_usleep(1000);
    }
    return v;
}

#endif
