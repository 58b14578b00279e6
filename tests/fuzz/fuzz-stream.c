/*
 * The incoming stream, through the loader amber runs for -incoming: QEVM
 * framing, commands, the `ram` section's records placed into RAM (two small
 * blocks), and the state descriptions of every device type and of the KVM
 * accelerator (two vCPUs, the clock and chips), up to where a machine would
 * apply them.  A stream is hostile: any bytes must end in a
 * load or an error, never a crash, a leak or a write outside the blocks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "fuzz.h"
#include "migration/ram.h"
#include "migration/savers.h"
#include "system/machine.h"
#include "../unit/test-helpers.h"

static RamBlockList *ram_list(void)
{
    static RamBlockList list;

    if (!list.nblocks) {
        RamBackendOptions o = { .kind = RAM_BACKEND_RAM, .size = 256u << 10 };

        list.blocks[0] = ram_block_new("pc.ram", &o, &error_abort);
        o.size = 64u << 10;
        list.blocks[1] = ram_block_new("pc.ram1", &o, &error_abort);
        list.nblocks = 2;
    }
    return &list;
}

/* Every device type's state description, each over a zeroed state. */
static GPtrArray *register_devices(SaveStateRegistry *r)
{
    GPtrArray *states = g_ptr_array_new_with_free_func(g_free);
    const DeviceInfo *info;

    for (int i = 0; (info = device_type_nth(i)); i++) {
        void *state;

        if (!info->vmsd) {
            continue;
        }
        state = g_malloc0(info->state_size);
        g_ptr_array_add(states, state);
        g_assert(savevm_register_vmsd(r, info->name, 0, info->vmsd, state, NULL));
    }
    return states;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    SaveStateRegistry *r = savevm_registry_new();
    RamLoader *ls = ram_loader_new_memcpy(ram_list());
    GPtrArray *states, *kvm;
    QEMUFile *f = qemu_file_new_mem_input(data, size, "fuzz");
    char *vmdesc = NULL;
    Error *err = NULL;

    g_assert(ram_loader_register(ls, r, NULL));
    states = register_devices(r);
    kvm = fuzz_register_kvm_sections(r, false);
    if (savevm_load(r, f, NULL, &vmdesc, &err)) {
        ram_loader_complete(ls, &err);
    }
    /* For triage: why an input was refused. */
    if (getenv("AMBER_FUZZ_VERBOSE")) {
        fprintf(stderr, "fuzz-stream: %s\n", err ? error_get_pretty(err) : "loaded");
    }
    error_free(err);
    g_free(vmdesc);
    qemu_fclose(f);
    g_ptr_array_unref(states);
    g_ptr_array_unref(kvm);
    ram_loader_free(ls);
    savevm_registry_free(r);
    return 0;
}

/* A whole stream of the blocks and devices above, as a stopped save writes it. */
static GBytes *stream(bool devices)
{
    SaveStateRegistry *r = savevm_registry_new();
    RamSaver *rs = ram_saver_new(ram_list());
    RamStopped *st = ram_stopped_new();
    QEMUFile *f = qemu_file_new_mem_output("seed");
    GPtrArray *states = NULL, *kvm = NULL;
    const uint8_t *bytes;
    size_t len;
    GBytes *out;

    g_assert(ram_stopped_register(st, rs, r, NULL));
    if (devices) {
        states = register_devices(r);
        kvm = fuzz_register_kvm_sections(r, true);
    }
    g_assert(test_save_stream(r, f, NULL));
    bytes = qemu_file_mem_data(f, &len);
    out = g_bytes_new(bytes, len);
    qemu_fclose(f);
    if (states) {
        g_ptr_array_unref(states);
        g_ptr_array_unref(kvm);
    }
    ram_stopped_free(st);
    ram_saver_free(rs);
    savevm_registry_free(r);
    return out;
}

bool fuzz_write_seeds(const char *dir)
{
    RamBlockList *l = ram_list();
    g_autoptr(GBytes) full = NULL, ram = NULL;
    size_t len;
    const uint8_t *p;

    /* Some pages with data, some zero, most never touched. */
    for (int b = 0; b < l->nblocks; b++) {
        for (uint64_t off = 0; off < l->blocks[b]->used_length; off += 9 * RAM_PAGE_SIZE) {
            memset(l->blocks[b]->host + off, 0x40 + b, 64);
        }
    }
    full = stream(true);
    ram = stream(false);
    p = g_bytes_get_data(full, &len);
    return fuzz_seed(dir, "stream-devices", p, len) &&
           fuzz_seed(dir, "stream-ram", g_bytes_get_data(ram, NULL), g_bytes_get_size(ram)) &&
           fuzz_seed(dir, "stream-cut", p, len / 3);
}
