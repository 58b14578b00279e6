/*
 * The multiboot (v1) loader: an ELF32 image (or one using the a.out kludge,
 * flag bit 16) placed into guest RAM, with a multiboot information
 * structure in low memory and the initial BSP registers it implies.
 */
#ifndef AMBER_SYSTEM_LOADER_H
#define AMBER_SYSTEM_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "accel/accel.h"
#include "system/ram.h"

#define MULTIBOOT_HEADER_MAGIC 0x1BADB002u
#define MULTIBOOT_BOOT_MAGIC 0x2BADB002u
/* The multiboot information area: info, memory map, module list, strings. */
#define MULTIBOOT_INFO_ADDR 0x8000u
#define MULTIBOOT_INFO_END 0x10000u

typedef struct MultibootInput {
    const uint8_t *image;
    size_t image_len;
    const char *cmdline;            /* NULL = "" */
    const uint8_t *initrd;          /* NULL = no module */
    size_t initrd_len;
    const char *initrd_name;        /* module 0's string */
} MultibootInput;

/* Load in into ram; *boot receives the BSP's entry registers. */
bool multiboot_load(RamBlockList *ram, const MultibootInput *in, BootCpuState *boot,
                    Error **errp);

/*
 * The command line amber gives the guest: append, plus tsc_khz= and cpus=
 * (when non-zero) unless append already has them.
 */
char *multiboot_cmdline(const char *append, uint32_t tsc_khz, uint32_t ncpus);

#endif
