/*
 * Migration capabilities and parameters, with QEMU's names.
 *
 * One MigrationOptions lives in the MigrationState of an Amber context.
 * A capability may depend on the kernel or exclude another: every rule is
 * one row of the table in options.c, checked when the capabilities are
 * set and again when a migration starts (the kernel or the machine may
 * have changed in between, e.g. a feature needs the memory backend).
 */
#ifndef AMBER_MIGRATION_OPTIONS_H
#define AMBER_MIGRATION_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"
#include "qapi-types.h"

typedef struct Machine Machine;

/* Defaults: no bandwidth limit (see qapi/migration.json), QEMU's 300 ms. */
#define MIGRATE_DEFAULT_MAX_BANDWIDTH   0
#define MIGRATE_DEFAULT_DOWNTIME_LIMIT  300
/* QEMU's bound for downtime-limit: 2000 seconds, in ms. */
#define MIGRATE_MAX_DOWNTIME_LIMIT      2000000
/* Background snapshot knobs (see docs/devel/background-snapshot.md). */
#define MIGRATE_DEFAULT_BG_POOL_SIZE    0       /* automatic */
#define MIGRATE_MIN_BG_POOL_SIZE        (64ULL << 10)
#define MIGRATE_MAX_BG_POOL_SIZE        (16ULL << 30)
#define MIGRATE_DEFAULT_BG_CHUNK_SIZE   (2ULL << 20)
#define MIGRATE_MIN_BG_CHUNK_SIZE       (4ULL << 10)
#define MIGRATE_MAX_BG_CHUNK_SIZE       (2ULL << 20)

typedef struct MigrationOptions {
    bool caps[MIGRATION_CAPABILITY__MAX];
    uint64_t max_bandwidth;         /* bytes/s, 0 = unlimited */
    uint64_t downtime_limit;        /* ms */
    uint64_t bg_pool_size;          /* x-background-snapshot-pool-size, bytes */
    uint64_t bg_chunk_size;         /* x-background-snapshot-chunk-size, bytes */
    bool direct_io;                 /* direct-io: file: with O_DIRECT */
    uint64_t max_postcopy_bandwidth; /* bytes/s of the postcopy push, 0 = unlimited */
    int multifd_channels;           /* mapped-ram's writing and reading threads */
    /* QEMU's, kept and reported (options-compat.c): of hardware amber has not */
    uint64_t announce_initial, announce_max, announce_rounds, announce_step;
    bool block_incremental;
} MigrationOptions;

void migrate_options_init(MigrationOptions *o);

/*
 * QEMU 7.2's parameters and capabilities amber lists without implementing
 * them (migration/options-compat.c): the check refuses a value other than
 * the one that changes nothing, naming it; apply and fill keep and report
 * the rest.
 */
bool migrate_compat_params_check(const MigrateSetParameters *p, Error **errp);
void migrate_compat_params_apply(MigrationOptions *o, const MigrateSetParameters *p);
void migrate_compat_params_init(MigrationOptions *o);
void migrate_compat_params_fill(const MigrationOptions *o, MigrationParameters *out);
bool migrate_compat_caps_check(const bool caps[MIGRATION_CAPABILITY__MAX], Error **errp);

/*
 * Whether the capability set `caps` can be used on machine m (may be
 * NULL before the machine exists): each rule names the capability and why.
 */
bool migrate_caps_check(const bool caps[MIGRATION_CAPABILITY__MAX], Machine *m,
                        Error **errp);

static inline bool migrate_events(const MigrationOptions *o)
{
    return o->caps[MIGRATION_CAPABILITY_EVENTS];
}

static inline bool migrate_postcopy_ram(const MigrationOptions *o)
{
    return o->caps[MIGRATION_CAPABILITY_POSTCOPY_RAM];
}

static inline bool migrate_postcopy_preempt(const MigrationOptions *o)
{
    return o->caps[MIGRATION_CAPABILITY_POSTCOPY_PREEMPT];
}

static inline bool migrate_mapped_ram(const MigrationOptions *o)
{
    return o->caps[MIGRATION_CAPABILITY_MAPPED_RAM];
}

static inline bool migrate_zero_copy_restore(const MigrationOptions *o)
{
    return o->caps[MIGRATION_CAPABILITY_X_ZERO_COPY_RESTORE];
}

static inline bool migrate_checksum(const MigrationOptions *o)
{
    return o->caps[MIGRATION_CAPABILITY_X_CHECKSUM];
}

static inline bool migrate_background_snapshot(const MigrationOptions *o)
{
    return o->caps[MIGRATION_CAPABILITY_BACKGROUND_SNAPSHOT];
}

#endif
