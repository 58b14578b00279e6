/*
 * RAM blocks and their backends.
 *
 * A RAMBlock is one host mapping (named by idstr, as QEMU names them:
 * "pc.ram") that one or more guest-physical regions map.  Migration walks
 * blocks by idstr and offset, never by guest address.
 */
#ifndef AMBER_SYSTEM_RAM_H
#define AMBER_SYSTEM_RAM_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "util/error.h"

typedef enum RamBackendKind {
    RAM_BACKEND_RAM,            /* memory-backend-ram: anonymous (default) */
    RAM_BACKEND_MEMFD,          /* memory-backend-memfd */
    RAM_BACKEND_FILE,           /* memory-backend-file (hugetlbfs via mem-path) */
} RamBackendKind;

/* Whether the memory goes into a core dump of amber (MADV_DONTDUMP when off). */
typedef enum RamDump {
    RAM_DUMP_DEFAULT,           /* as the machine says (-machine dump-guest-core) */
    RAM_DUMP_ON,
    RAM_DUMP_OFF,
} RamDump;

/* One -object memory-backend-*,... */
typedef struct RamBackendOptions {
    RamBackendKind kind;
    char *id;
    uint64_t size;
    bool share;                 /* MAP_SHARED; default on for memfd, off otherwise */
    bool prealloc;
    char *mem_path;             /* file: required */
    bool hugetlb;               /* memfd: hugetlb=on */
    uint64_t hugetlbsize;       /* memfd: hugetlbsize=, a power of two; 0: the host's default */
    RamDump dump;               /* dump=on|off; unset: -machine dump-guest-core */
} RamBackendOptions;

typedef struct RAMBlock {
    char idstr[64];
    uint8_t *host;              /* start of the host mapping */
    uint64_t used_length;       /* bytes the guest sees */
    uint64_t max_length;        /* bytes mapped */
    size_t page_size;           /* host page size backing it (4 KiB or huge) */
    int fd;                     /* -1 for anonymous memory */
    uint64_t fd_offset;
    RamBackendKind kind;
    bool shared;
    bool hugetlbfs;
} RAMBlock;

/* A guest-physical region: [gpa, gpa+size) maps block->host + offset. */
typedef struct MemRegion {
    uint64_t gpa;
    uint64_t size;
    RAMBlock *block;
    uint64_t offset;
    int slot;                   /* accelerator memory slot */
} MemRegion;

/*
 * 4 KiB pages per host page of rb: 1, or 512 for 2 MiB huge pages.  What
 * must move together when a page cannot be placed in parts (postcopy).
 */
static inline uint64_t ram_block_host_pages(const RAMBlock *rb)
{
    return rb->page_size > 4096 ? rb->page_size / 4096 : 1;
}

#define AMBER_MAX_RAM_BLOCKS 8
#define AMBER_MAX_MEM_REGIONS 8

typedef struct RamBlockList {
    RAMBlock *blocks[AMBER_MAX_RAM_BLOCKS];
    int nblocks;
    MemRegion regions[AMBER_MAX_MEM_REGIONS];
    int nregions;
} RamBlockList;

/* Below-4G RAM ends here when the guest has more than this (PCI hole above). */
#define AMBER_LOWMEM_LIMIT  (3ULL << 30)
#define AMBER_HIGHMEM_START (4ULL << 30)

RAMBlock *ram_block_new(const char *idstr, const RamBackendOptions *opts, Error **errp);
void ram_block_free(RAMBlock *rb);
/* Lay out `rb` in guest-physical space: low RAM below 3 GiB, the rest at 4 GiB. */
bool ram_map_guest(RamBlockList *l, RAMBlock *rb, Error **errp);
/* Free every block of l and empty it. */
void ram_block_list_clear(RamBlockList *l);
/* "memory-backend-ram", "memory-backend-memfd", "memory-backend-file". */
const char *ram_backend_kind_name(RamBackendKind kind);
RAMBlock *ram_block_by_name(RamBlockList *l, const char *idstr);
/* The index of block idstr in l, or -1. */
int ram_block_index(const RamBlockList *l, const char *idstr);
/* Guest-physical address -> host pointer, or NULL if [gpa, gpa+len) is not all RAM. */
void *ram_gpa_to_hva(RamBlockList *l, uint64_t gpa, uint64_t len);

/* Parse "512M", "2G", "1024" (MiB when no suffix, as -m does). */
bool parse_size_mib_default(const char *s, uint64_t *out, Error **errp);
/* Parse "512M", "2G", "4096" (bytes when no suffix, as -object size= does). */
bool parse_size_bytes(const char *s, uint64_t *out, Error **errp);

#endif
