/* The built-in guest image (guest/), embedded in the amber binary. */
#ifndef AMBER_SYSTEM_BUILTIN_GUEST_H
#define AMBER_SYSTEM_BUILTIN_GUEST_H

#include <stddef.h>
#include <stdint.h>

/* The multiboot ELF32 file, byte for byte as amber-guest.elf. */
extern const uint8_t amber_guest_elf[];
extern const size_t amber_guest_elf_size;

#endif
