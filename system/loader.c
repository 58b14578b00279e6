/*
 * Multiboot v1 loader.  The image is untrusted input: every offset and
 * size is checked against the file and against guest RAM before use.
 */
#include <elf.h>
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <glib.h>

#include "machine-int.h"
#include "system/builtin-guest.h"
#include "system/loader.h"

/* The built-in guest may be absent from a partial build: then -kernel is required. */
#pragma weak amber_guest_elf
#pragma weak amber_guest_elf_size

#define MB_SEARCH_LEN 8192
#define MB_FLAG_AOUT_KLUDGE (1u << 16)
#define MB_FLAGS_KNOWN_REQUIRED 0x7u       /* page-align modules, mem info, video */

#define MBI_FLAG_MEM (1u << 0)
#define MBI_FLAG_CMDLINE (1u << 2)
#define MBI_FLAG_MODS (1u << 3)
#define MBI_FLAG_MMAP (1u << 6)
#define MBI_FLAG_LOADER_NAME (1u << 9)

/* Layout of the information area (see MULTIBOOT_INFO_ADDR). */
#define MBI_MMAP_ADDR (MULTIBOOT_INFO_ADDR + 0x100)
#define MBI_MODS_ADDR (MULTIBOOT_INFO_ADDR + 0x200)
#define MBI_NAME_ADDR (MULTIBOOT_INFO_ADDR + 0x240)
#define MBI_MODSTR_ADDR (MULTIBOOT_INFO_ADDR + 0x280)
#define MBI_CMDLINE_ADDR (MULTIBOOT_INFO_ADDR + 0x1000)

#define EBDA_START 0x9fc00u

typedef struct MbHeader {
    uint32_t magic, flags, checksum;
    uint32_t header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr;
} MbHeader;

typedef struct MbInfo {
    uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length, mmap_addr;
    uint32_t drives_length, drives_addr, config_table, boot_loader_name;
} MbInfo;

typedef struct __attribute__((packed)) MbMmapEntry {
    uint32_t size;
    uint64_t addr, len;
    uint32_t type;
} MbMmapEntry;

typedef struct MbModule {
    uint32_t mod_start, mod_end, string, reserved;
} MbModule;

typedef struct LoadState {
    RamBlockList *ram;
    uint64_t end;           /* highest guest address the image occupies */
} LoadState;

static bool find_header(const uint8_t *img, size_t len, MbHeader *h, size_t *off,
                        Error **errp)
{
    size_t limit = MIN(len, (size_t)MB_SEARCH_LEN);
    for (size_t o = 0; o + 12 <= limit; o += 4) {
        uint32_t magic;
        memcpy(&magic, img + o, 4);
        if (magic != MULTIBOOT_HEADER_MAGIC) {
            continue;
        }
        memset(h, 0, sizeof(*h));
        memcpy(h, img + o, MIN(sizeof(*h), len - o));
        if ((uint32_t)(h->magic + h->flags + h->checksum) != 0) {
            error_setg(errp, "multiboot header at offset 0x%zx has a bad checksum "
                       "(magic + flags + checksum must be 0)", o);
            return false;
        }
        *off = o;
        return true;
    }
    error_setg(errp, "not a multiboot image: no multiboot header (magic 0x%08x) in the "
               "first %d KiB", MULTIBOOT_HEADER_MAGIC, MB_SEARCH_LEN / 1024);
    return false;
}

static bool place(LoadState *ls, uint64_t gpa, const uint8_t *src, uint64_t filesz,
                  uint64_t memsz, const char *what, Error **errp)
{
    uint8_t *dst = memsz ? ram_gpa_to_hva(ls->ram, gpa, memsz) : NULL;
    if (memsz && (!dst || gpa + memsz > UINT32_MAX)) {
        error_setg(errp, "%s at 0x%" PRIx64 "+0x%" PRIx64 " is outside guest RAM", what,
                   gpa, memsz);
        return false;
    }
    if (gpa < MULTIBOOT_INFO_END && gpa + memsz > MULTIBOOT_INFO_ADDR) {
        error_setg(errp, "%s at 0x%" PRIx64 "+0x%" PRIx64 " overlaps the multiboot "
                   "information area 0x%x-0x%x", what, gpa, memsz, MULTIBOOT_INFO_ADDR,
                   MULTIBOOT_INFO_END - 1);
        return false;
    }
    if (memsz) {
        memcpy(dst, src, filesz);
        memset(dst + filesz, 0, memsz - filesz);
    }
    ls->end = MAX(ls->end, gpa + memsz);
    return true;
}

static bool load_aout_kludge(LoadState *ls, const uint8_t *img, size_t len,
                             const MbHeader *h, size_t hoff, uint32_t *entry, Error **errp)
{
    if (hoff + sizeof(*h) > len) {
        error_setg(errp, "truncated image: the multiboot address fields are cut off");
        return false;
    }
    if (h->load_addr > h->header_addr || h->header_addr - h->load_addr > hoff) {
        error_setg(errp, "invalid multiboot header: load_addr 0x%x does not fit "
                   "header_addr 0x%x at offset 0x%zx", h->load_addr, h->header_addr, hoff);
        return false;
    }
    uint64_t file_off = hoff - (h->header_addr - h->load_addr);
    uint64_t load_len = h->load_end_addr ? (uint64_t)h->load_end_addr - h->load_addr
                                         : len - file_off;
    if (h->load_end_addr && h->load_end_addr < h->load_addr) {
        error_setg(errp, "invalid multiboot header: load_end_addr below load_addr");
        return false;
    }
    if (file_off + load_len > len) {
        error_setg(errp, "truncated image: %" PRIu64 " bytes to load from offset 0x%"
                   PRIx64 " but the file has %zu", load_len, file_off, len);
        return false;
    }
    uint64_t mem_len = load_len;
    if (h->bss_end_addr) {
        if (h->bss_end_addr < h->load_addr + load_len) {
            error_setg(errp, "invalid multiboot header: bss_end_addr below the loaded image");
            return false;
        }
        mem_len = h->bss_end_addr - h->load_addr;
    }
    *entry = h->entry_addr;
    return place(ls, h->load_addr, img + file_off, load_len, mem_len, "image", errp);
}

/* e_entry is virtual; multiboot enters with paging off, so use its physical twin. */
static uint32_t entry_to_phys(const Elf32_Phdr *ph, int n, uint32_t entry)
{
    for (int i = 0; i < n; i++) {
        if (ph[i].p_type == PT_LOAD && entry >= ph[i].p_vaddr &&
            entry - ph[i].p_vaddr < ph[i].p_memsz) {
            return entry - ph[i].p_vaddr + ph[i].p_paddr;
        }
    }
    return entry;
}

static bool check_elf_header(const uint8_t *img, size_t len, Elf32_Ehdr *eh, Error **errp)
{
    if (len < EI_NIDENT || memcmp(img, ELFMAG, SELFMAG) != 0) {
        error_setg(errp, "not an ELF file and the multiboot header has no load addresses "
                   "(flag bit 16)");
        return false;
    }
    if (img[EI_CLASS] != ELFCLASS32) {
        error_setg(errp, "multiboot images must be ELF32 (this one is ELF64)");
        return false;
    }
    if (len < sizeof(*eh)) {
        error_setg(errp, "truncated ELF: %zu bytes, the ELF header needs %zu", len,
                   sizeof(*eh));
        return false;
    }
    memcpy(eh, img, sizeof(*eh));
    if (eh->e_machine != EM_386 && eh->e_machine != EM_X86_64) {
        error_setg(errp, "ELF machine %u is not x86", eh->e_machine);
        return false;
    }
    if (eh->e_phentsize != sizeof(Elf32_Phdr) || eh->e_phnum == 0) {
        error_setg(errp, "ELF has no usable program headers");
        return false;
    }
    if ((uint64_t)eh->e_phoff + (uint64_t)eh->e_phnum * sizeof(Elf32_Phdr) > len) {
        error_setg(errp, "truncated ELF: program headers end beyond the file (%zu bytes)",
                   len);
        return false;
    }
    return true;
}

static bool load_elf(LoadState *ls, const uint8_t *img, size_t len, uint32_t *entry,
                     Error **errp)
{
    Elf32_Ehdr eh;
    if (!check_elf_header(img, len, &eh, errp)) {
        return false;
    }
    g_autofree Elf32_Phdr *ph = g_new(Elf32_Phdr, eh.e_phnum);
    memcpy(ph, img + eh.e_phoff, eh.e_phnum * sizeof(Elf32_Phdr));
    int loaded = 0;
    for (int i = 0; i < eh.e_phnum; i++) {
        if (ph[i].p_type != PT_LOAD) {
            continue;
        }
        if (ph[i].p_filesz > ph[i].p_memsz) {
            error_setg(errp, "ELF segment %d: file size 0x%x exceeds memory size 0x%x", i,
                       ph[i].p_filesz, ph[i].p_memsz);
            return false;
        }
        if ((uint64_t)ph[i].p_offset + ph[i].p_filesz > len) {
            error_setg(errp, "truncated ELF: segment %d needs bytes 0x%x-0x%" PRIx64
                       " but the file has %zu", i, ph[i].p_offset,
                       (uint64_t)ph[i].p_offset + ph[i].p_filesz, len);
            return false;
        }
        g_autofree char *what = g_strdup_printf("ELF segment %d", i);
        if (!place(ls, ph[i].p_paddr, img + ph[i].p_offset, ph[i].p_filesz,
                   ph[i].p_memsz, what, errp)) {
            return false;
        }
        loaded++;
    }
    if (!loaded) {
        error_setg(errp, "ELF has no loadable (PT_LOAD) segment");
        return false;
    }
    *entry = entry_to_phys(ph, eh.e_phnum, eh.e_entry);
    return true;
}

/* The E820-style map: low RAM, the BIOS area, RAM above 1 MiB, PCI hole, high RAM. */
static uint32_t build_mmap(RamBlockList *ram, MbMmapEntry *e, uint64_t *low_end)
{
    uint64_t low = 0, high = 0;
    for (int i = 0; i < ram->nregions; i++) {
        MemRegion *r = &ram->regions[i];
        if (r->gpa < AMBER_LOWMEM_LIMIT) {
            low = MAX(low, r->gpa + r->size);
        } else {
            high += r->size;
        }
    }
    int n = 0;
    e[n++] = (MbMmapEntry) { 20, 0, EBDA_START, 1 };
    e[n++] = (MbMmapEntry) { 20, EBDA_START, 0x100000 - EBDA_START, 2 };
    if (low > 0x100000) {
        e[n++] = (MbMmapEntry) { 20, 0x100000, low - 0x100000, 1 };
    }
    e[n++] = (MbMmapEntry) { 20, AMBER_LOWMEM_LIMIT,
                             AMBER_HIGHMEM_START - AMBER_LOWMEM_LIMIT, 2 };
    if (high) {
        e[n++] = (MbMmapEntry) { 20, AMBER_HIGHMEM_START, high, 1 };
    }
    *low_end = low;
    return n;
}

static bool write_info(LoadState *ls, const MultibootInput *in, Error **errp)
{
    RamBlockList *ram = ls->ram;
    uint8_t *area = ram_gpa_to_hva(ram, MULTIBOOT_INFO_ADDR,
                                   MULTIBOOT_INFO_END - MULTIBOOT_INFO_ADDR);
    if (!area) {
        error_setg(errp, "guest RAM does not cover the multiboot information area");
        return false;
    }
    const char *cmdline = in->cmdline ? in->cmdline : "";
    size_t cmdlen = strlen(cmdline) + 1;
    if (cmdlen > MULTIBOOT_INFO_END - MBI_CMDLINE_ADDR) {
        error_setg(errp, "kernel command line too long (%zu bytes, at most %u)", cmdlen - 1,
                   MULTIBOOT_INFO_END - MBI_CMDLINE_ADDR - 1);
        return false;
    }
    memset(area, 0, MULTIBOOT_INFO_END - MULTIBOOT_INFO_ADDR);
#define AT(gpa) (area + ((gpa) - MULTIBOOT_INFO_ADDR))
    MbMmapEntry mmap[8];
    uint64_t low_end;
    uint32_t nmmap = build_mmap(ram, mmap, &low_end);
    memcpy(AT(MBI_MMAP_ADDR), mmap, nmmap * sizeof(mmap[0]));
    memcpy(AT(MBI_CMDLINE_ADDR), cmdline, cmdlen);
    g_strlcpy((char *)AT(MBI_NAME_ADDR), "amber", MBI_MODSTR_ADDR - MBI_NAME_ADDR);

    MbInfo info = {
        .flags = MBI_FLAG_MEM | MBI_FLAG_CMDLINE | MBI_FLAG_MMAP | MBI_FLAG_LOADER_NAME,
        .mem_lower = 640,
        .mem_upper = low_end > 0x100000 ? (uint32_t)((low_end - 0x100000) >> 10) : 0,
        .cmdline = MBI_CMDLINE_ADDR,
        .mmap_length = nmmap * sizeof(MbMmapEntry),
        .mmap_addr = MBI_MMAP_ADDR,
        .boot_loader_name = MBI_NAME_ADDR,
    };
    if (in->initrd) {
        /* Module 0 goes on the first page boundary after the image. */
        uint64_t start = (ls->end + 0xfff) & ~0xfffull;
        if (!place(ls, start, in->initrd, in->initrd_len, in->initrd_len, "the initrd",
                   errp)) {
            return false;
        }
        MbModule mod = {
            .mod_start = start, .mod_end = start + in->initrd_len, .string = MBI_MODSTR_ADDR,
        };
        memcpy(AT(MBI_MODS_ADDR), &mod, sizeof(mod));
        g_strlcpy((char *)AT(MBI_MODSTR_ADDR), in->initrd_name ? in->initrd_name : "",
                  MBI_CMDLINE_ADDR - MBI_MODSTR_ADDR);
        info.flags |= MBI_FLAG_MODS;
        info.mods_count = 1;
        info.mods_addr = MBI_MODS_ADDR;
    }
    memcpy(AT(MULTIBOOT_INFO_ADDR), &info, sizeof(info));
#undef AT
    return true;
}

bool multiboot_load(RamBlockList *ram, const MultibootInput *in, BootCpuState *boot,
                    Error **errp)
{
    MbHeader h;
    size_t hoff;
    if (!find_header(in->image, in->image_len, &h, &hoff, errp)) {
        return false;
    }
    uint32_t unknown = h.flags & 0xffff & ~MB_FLAGS_KNOWN_REQUIRED;
    if (unknown) {
        error_setg(errp, "multiboot header requires features amber lacks (flags 0x%x)",
                   unknown);
        return false;
    }
    LoadState ls = { .ram = ram };
    uint32_t entry;
    bool ok = (h.flags & MB_FLAG_AOUT_KLUDGE)
                  ? load_aout_kludge(&ls, in->image, in->image_len, &h, hoff, &entry, errp)
                  : load_elf(&ls, in->image, in->image_len, &entry, errp);
    if (!ok || !write_info(&ls, in, errp)) {
        return false;
    }
    if (!ram_gpa_to_hva(ram, entry, 1)) {
        error_setg(errp, "entry point 0x%x is outside guest RAM", entry);
        return false;
    }
    *boot = (BootCpuState) {
        .eip = entry, .eax = MULTIBOOT_BOOT_MAGIC, .ebx = MULTIBOOT_INFO_ADDR,
    };
    return true;
}

static bool has_word_prefix(const char *s, const char *prefix)
{
    g_auto(GStrv) words = g_strsplit_set(s, " \t", -1);
    for (int i = 0; words[i]; i++) {
        if (g_str_has_prefix(words[i], prefix)) {
            return true;
        }
    }
    return false;
}

static void append_word(GString *s, const char *key, uint32_t value)
{
    if (value && !has_word_prefix(s->str, key)) {
        g_string_append_printf(s, "%s%s%u", s->len ? " " : "", key, value);
    }
}

char *multiboot_cmdline(const char *append, uint32_t tsc_khz, uint32_t ncpus)
{
    GString *s = g_string_new(append ? append : "");
    append_word(s, "tsc_khz=", tsc_khz);
    append_word(s, "cpus=", ncpus);
    return g_string_free(s, false);
}

/* -kernel / -initrd, or the built-in guest, into m's RAM and onto its BSP. */
bool loader_load_guest(Machine *m, Error **errp)
{
    const MachineOptions *o = m->opts;
    g_autofree char *kernel = NULL, *initrd = NULL;
    gsize klen = 0, ilen = 0;
    GError *gerr = NULL;
    MultibootInput in = { 0 };

    if (o->kernel) {
        if (!g_file_get_contents(o->kernel, &kernel, &klen, &gerr)) {
            error_setg(errp, "cannot read kernel: %s", gerr->message);
            g_error_free(gerr);
            return false;
        }
        in.image = (const uint8_t *)kernel;
        in.image_len = klen;
    } else if (&amber_guest_elf_size != NULL && amber_guest_elf_size > 0) {
        in.image = amber_guest_elf;
        in.image_len = amber_guest_elf_size;
    } else {
        error_setg(errp, "this build has no built-in guest: give one with -kernel");
        return false;
    }
    if (o->initrd) {
        if (!g_file_get_contents(o->initrd, &initrd, &ilen, &gerr)) {
            error_setg(errp, "cannot read initrd: %s", gerr->message);
            g_error_free(gerr);
            return false;
        }
        in.initrd = (const uint8_t *)initrd;
        in.initrd_len = ilen;
        in.initrd_name = o->initrd;
    }
    /*
     * The built-in guest is told how many vCPUs to wait for: counting the
     * APs that answer within a quiet period undercounts on a loaded host,
     * where an AP's emulated ring-0 start-up can take longer than that.
     */
    g_autofree char *cmdline = multiboot_cmdline(o->append, m->tsc_khz,
                                                 o->kernel ? 0 : (uint32_t)m->ncpus);
    in.cmdline = cmdline;
    BootCpuState boot;
    if (!multiboot_load(&m->ram, &in, &boot, errp)) {
        error_prepend(errp, "%s: ", o->kernel ? o->kernel : "built-in guest");
        return false;
    }
    return m->accel_ops->set_boot_state(m->cpus[0]->accel, &boot, errp);
}
