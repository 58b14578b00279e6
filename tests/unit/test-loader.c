/* The multiboot loader: good images (ELF and a.out kludge) and each bad one. */
#include <elf.h>
#include <string.h>
#include <glib.h>

#include "system/loader.h"

#define MIB (1ULL << 20)
#define LOAD_ADDR 0x100000u
#define HDR_OFF 0x60u           /* multiboot header offset in the file */
#define SEG_OFF 0x40u           /* the segment starts right after ehdr + phdr */

typedef struct Image {
    GByteArray *b;
    Elf32_Ehdr *eh;
    Elf32_Phdr *ph;
    uint32_t *mb;
} Image;

/* An ELF32 with one PT_LOAD (file bytes from SEG_OFF, 4 KiB of bss after). */
static Image make_elf(void)
{
    Image im = { .b = g_byte_array_sized_new(0x200) };
    g_byte_array_set_size(im.b, 0x200);
    memset(im.b->data, 0x90, im.b->len);
    im.eh = (Elf32_Ehdr *)im.b->data;
    memset(im.eh, 0, sizeof(*im.eh));
    memcpy(im.eh->e_ident, ELFMAG, SELFMAG);
    im.eh->e_ident[EI_CLASS] = ELFCLASS32;
    im.eh->e_ident[EI_DATA] = ELFDATA2LSB;
    im.eh->e_ident[EI_VERSION] = EV_CURRENT;
    im.eh->e_type = ET_EXEC;
    im.eh->e_machine = EM_386;
    im.eh->e_version = EV_CURRENT;
    im.eh->e_entry = LOAD_ADDR + 0x100;
    im.eh->e_phoff = sizeof(Elf32_Ehdr);
    im.eh->e_ehsize = sizeof(Elf32_Ehdr);
    im.eh->e_phentsize = sizeof(Elf32_Phdr);
    im.eh->e_phnum = 1;
    im.ph = (Elf32_Phdr *)(im.b->data + im.eh->e_phoff);
    *im.ph = (Elf32_Phdr) {
        .p_type = PT_LOAD, .p_offset = SEG_OFF, .p_vaddr = LOAD_ADDR, .p_paddr = LOAD_ADDR,
        .p_filesz = im.b->len - SEG_OFF, .p_memsz = im.b->len - SEG_OFF + 4096,
        .p_flags = PF_R | PF_X,
    };
    im.mb = (uint32_t *)(im.b->data + HDR_OFF);
    im.mb[0] = MULTIBOOT_HEADER_MAGIC;
    im.mb[1] = 0x3;             /* page-align modules, memory info */
    im.mb[2] = -(im.mb[0] + im.mb[1]);
    return im;
}

static RamBlockList *new_ram(uint64_t size)
{
    RamBackendOptions o = { .kind = RAM_BACKEND_RAM, .size = size };
    RamBlockList *l = g_new0(RamBlockList, 1);
    RAMBlock *rb = ram_block_new("pc.ram", &o, NULL);
    g_assert_nonnull(rb);
    memset(rb->host, 0xff, size);       /* so a missed bss clear shows */
    g_assert_true(ram_map_guest(l, rb, NULL));
    return l;
}

static void free_ram(RamBlockList *l)
{
    ram_block_list_clear(l);
    g_free(l);
}

static void *gpa(RamBlockList *l, uint64_t addr)
{
    void *p = ram_gpa_to_hva(l, addr, 1);
    g_assert_nonnull(p);
    return p;
}

static uint32_t rd32(RamBlockList *l, uint64_t addr)
{
    uint32_t v;
    memcpy(&v, gpa(l, addr), 4);
    return v;
}

static void test_good_elf(void)
{
    Image im = make_elf();
    RamBlockList *ram = new_ram(16 * MIB);
    static const uint8_t initrd[] = "module-zero-bytes";
    MultibootInput in = {
        .image = im.b->data, .image_len = im.b->len, .cmdline = "workload=idle",
        .initrd = initrd, .initrd_len = sizeof(initrd), .initrd_name = "initrd.img",
    };
    BootCpuState boot;
    Error *err = NULL;
    if (!multiboot_load(ram, &in, &boot, &err)) {
        g_error("%s", error_get_pretty(err));
    }
    g_assert_cmphex(boot.eip, ==, LOAD_ADDR + 0x100);
    g_assert_cmphex(boot.eax, ==, MULTIBOOT_BOOT_MAGIC);
    g_assert_cmphex(boot.ebx, ==, MULTIBOOT_INFO_ADDR);
    /* The segment's file bytes, then a zeroed bss. */
    g_assert_cmpmem(gpa(ram, LOAD_ADDR), 16, im.b->data + SEG_OFF, 16);
    uint8_t *bss = gpa(ram, LOAD_ADDR + im.ph->p_filesz);
    for (int i = 0; i < 4096; i++) {
        g_assert_cmpuint(bss[i], ==, 0);
    }

    uint64_t info = boot.ebx;
    uint32_t flags = rd32(ram, info);
    g_assert_cmphex(flags & 0x24d, ==, 0x24d);  /* mem, cmdline, mods, mmap, name */
    g_assert_cmpuint(rd32(ram, info + 4), ==, 640);
    g_assert_cmpuint(rd32(ram, info + 8), ==, (16 * MIB - MIB) / 1024);
    g_assert_cmpstr(gpa(ram, rd32(ram, info + 16)), ==, "workload=idle");
    g_assert_cmpstr(gpa(ram, rd32(ram, info + 64)), ==, "amber");
    /* Module 0: the initrd on a page boundary after the image. */
    g_assert_cmpuint(rd32(ram, info + 20), ==, 1);
    uint32_t mods = rd32(ram, info + 24);
    uint32_t mstart = rd32(ram, mods), mend = rd32(ram, mods + 4);
    g_assert_cmpuint(mstart % 4096, ==, 0);
    g_assert_cmpuint(mstart, >=, LOAD_ADDR + im.ph->p_memsz);
    g_assert_cmpuint(mend - mstart, ==, sizeof(initrd));
    g_assert_cmpmem(gpa(ram, mstart), sizeof(initrd), initrd, sizeof(initrd));
    g_assert_cmpstr(gpa(ram, rd32(ram, mods + 8)), ==, "initrd.img");
    /* Memory map: RAM, reserved below 1 MiB, RAM above, PCI hole. */
    uint32_t mlen = rd32(ram, info + 44), maddr = rd32(ram, info + 48);
    g_assert_cmpuint(mlen, ==, 4 * 24);
    uint64_t base, len;
    memcpy(&base, gpa(ram, maddr + 24 * 2 + 4), 8);
    memcpy(&len, gpa(ram, maddr + 24 * 2 + 12), 8);
    g_assert_cmphex(base, ==, MIB);
    g_assert_cmphex(len, ==, 15 * MIB);
    g_assert_cmpuint(rd32(ram, maddr + 24 * 2 + 20), ==, 1);
    g_assert_cmpuint(rd32(ram, maddr + 24 * 1 + 20), ==, 2);
    g_byte_array_unref(im.b);
    free_ram(ram);
}

static void test_aout_kludge(void)
{
    Image im = make_elf();
    /* Not an ELF any more: the header gives the addresses (flag bit 16). */
    memset(im.b->data, 0, 4);
    im.mb[1] = 1u << 16;
    im.mb[2] = -(im.mb[0] + im.mb[1]);
    im.mb[3] = 0x200000 + HDR_OFF;      /* header_addr */
    im.mb[4] = 0x200000;                /* load_addr: file offset 0 */
    im.mb[5] = 0;                       /* load the whole file */
    im.mb[6] = 0x200000 + 0x1000;       /* bss up to here */
    im.mb[7] = 0x200010;                /* entry */
    RamBlockList *ram = new_ram(16 * MIB);
    MultibootInput in = { .image = im.b->data, .image_len = im.b->len };
    BootCpuState boot;
    g_assert_true(multiboot_load(ram, &in, &boot, NULL));
    g_assert_cmphex(boot.eip, ==, 0x200010);
    g_assert_cmpmem(gpa(ram, 0x200000 + HDR_OFF), 4, &im.mb[0], 4);
    g_assert_cmpuint(*(uint8_t *)gpa(ram, 0x200000 + im.b->len), ==, 0);
    g_byte_array_unref(im.b);
    free_ram(ram);
}

static void expect_fail(Image *im, size_t len, uint64_t ram_size, const char *needle)
{
    RamBlockList *ram = new_ram(ram_size);
    MultibootInput in = { .image = im->b->data, .image_len = len };
    BootCpuState boot;
    Error *err = NULL;
    g_assert_false(multiboot_load(ram, &in, &boot, &err));
    g_assert_nonnull(err);
    if (!strstr(error_get_pretty(err), needle)) {
        g_error("message '%s' lacks '%s'", error_get_pretty(err), needle);
    }
    error_free(err);
    free_ram(ram);
}

static void test_bad_magic(void)
{
    Image im = make_elf();
    im.mb[0] = 0x12345678;
    expect_fail(&im, im.b->len, 16 * MIB, "not a multiboot image: no multiboot header");
    g_byte_array_unref(im.b);
}

static void test_bad_checksum(void)
{
    Image im = make_elf();
    im.mb[2] += 1;
    expect_fail(&im, im.b->len, 16 * MIB, "has a bad checksum");
    g_byte_array_unref(im.b);
}

static void test_truncated(void)
{
    Image im = make_elf();
    expect_fail(&im, 0x100, 16 * MIB, "truncated ELF: segment 0");
    im.eh->e_phoff = 0x1f0;
    expect_fail(&im, im.b->len, 16 * MIB, "truncated ELF: program headers");
    g_byte_array_unref(im.b);
}

static void test_segment_outside_ram(void)
{
    Image im = make_elf();
    im.ph->p_paddr = 64 * MIB;
    expect_fail(&im, im.b->len, 16 * MIB, "ELF segment 0 at 0x4000000+0x11c0 is outside "
                "guest RAM");
    /* Partly outside: the bss runs off the end of RAM. */
    im.ph->p_paddr = 16 * MIB - 0x200;
    expect_fail(&im, im.b->len, 16 * MIB, "is outside guest RAM");
    g_byte_array_unref(im.b);
}

static void test_elf64_and_flags(void)
{
    Image im = make_elf();
    im.b->data[EI_CLASS] = ELFCLASS64;
    expect_fail(&im, im.b->len, 16 * MIB, "multiboot images must be ELF32");
    im.b->data[EI_CLASS] = ELFCLASS32;
    im.mb[1] = 0x10;            /* a required feature amber does not have */
    im.mb[2] = -(im.mb[0] + im.mb[1]);
    expect_fail(&im, im.b->len, 16 * MIB, "requires features amber lacks");
    g_byte_array_unref(im.b);
}

static void test_cmdline(void)
{
    g_autofree char *a = multiboot_cmdline("workload=wave", 2100000, 0);
    g_assert_cmpstr(a, ==, "workload=wave tsc_khz=2100000");
    g_autofree char *b = multiboot_cmdline("tsc_khz=1000 seed=3", 2100000, 0);
    g_assert_cmpstr(b, ==, "tsc_khz=1000 seed=3");
    g_autofree char *c = multiboot_cmdline(NULL, 2100000, 0);
    g_assert_cmpstr(c, ==, "tsc_khz=2100000");
    g_autofree char *d = multiboot_cmdline("seed=1", 2100000, 4);
    g_assert_cmpstr(d, ==, "seed=1 tsc_khz=2100000 cpus=4");
    g_autofree char *e = multiboot_cmdline("cpus=2", 0, 4);
    g_assert_cmpstr(e, ==, "cpus=2");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/loader/good-elf", test_good_elf);
    g_test_add_func("/loader/aout-kludge", test_aout_kludge);
    g_test_add_func("/loader/bad-magic", test_bad_magic);
    g_test_add_func("/loader/bad-checksum", test_bad_checksum);
    g_test_add_func("/loader/truncated", test_truncated);
    g_test_add_func("/loader/segment-outside-ram", test_segment_outside_ram);
    g_test_add_func("/loader/elf64-and-flags", test_elf64_and_flags);
    g_test_add_func("/loader/cmdline", test_cmdline);
    return g_test_run();
}
