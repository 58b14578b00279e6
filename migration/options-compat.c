/*
 * QEMU 7.2's migration parameters and capabilities that amber lists but
 * does not implement, so that a QEMU client (libvirt) finds every member
 * QEMU's schema has and can set each to the value that changes nothing.
 *
 * Two kinds of parameter:
 *  - vacuous: they govern hardware amber's machine does not have (the
 *    announce-* timers of network cards, block-incremental of disks); any
 *    value QEMU takes is kept and reported, and honoured by there being
 *    nothing to do;
 *  - neutral: features amber does not have (compression, TLS, throttling,
 *    COLO, xbzrle); only QEMU's default is accepted, any other value is
 *    refused naming the parameter and the value.
 * Capabilities likewise: the block-device ones are vacuous, the rest are
 * accepted off and refused on.
 */
#include <inttypes.h>
#include <stddef.h>
#include <string.h>

#include "migration-int.h"
#include "qapi-commands.h"

typedef enum CompatKind { COMPAT_NUM, COMPAT_BOOL, COMPAT_STR, COMPAT_ENUM } CompatKind;

typedef struct NeutralParam {
    const char *name;
    CompatKind kind;
    size_t has_off, set_off;        /* in MigrateSetParameters */
    size_t get_off;                 /* in MigrationParameters */
    uint64_t num;                   /* QEMU's default: number, bool or enum value */
    const char *str;                /* ... or string */
} NeutralParam;

#define NEUTRAL(name_, field, kind_, num_, str_)                                \
    { .name = name_, .kind = kind_,                                             \
      .has_off = offsetof(MigrateSetParameters, has_##field),                   \
      .set_off = offsetof(MigrateSetParameters, field),                         \
      .get_off = offsetof(MigrationParameters, field), .num = num_, .str = str_ }

static const NeutralParam neutral[] = {
    NEUTRAL("compress-level", compress_level, COMPAT_NUM, 1, NULL),
    NEUTRAL("compress-threads", compress_threads, COMPAT_NUM, 8, NULL),
    NEUTRAL("compress-wait-thread", compress_wait_thread, COMPAT_BOOL, true, NULL),
    NEUTRAL("decompress-threads", decompress_threads, COMPAT_NUM, 2, NULL),
    NEUTRAL("throttle-trigger-threshold", throttle_trigger_threshold, COMPAT_NUM, 50, NULL),
    NEUTRAL("cpu-throttle-initial", cpu_throttle_initial, COMPAT_NUM, 20, NULL),
    NEUTRAL("cpu-throttle-increment", cpu_throttle_increment, COMPAT_NUM, 10, NULL),
    NEUTRAL("cpu-throttle-tailslow", cpu_throttle_tailslow, COMPAT_BOOL, false, NULL),
    NEUTRAL("tls-creds", tls_creds, COMPAT_STR, 0, ""),
    NEUTRAL("tls-hostname", tls_hostname, COMPAT_STR, 0, ""),
    NEUTRAL("tls-authz", tls_authz, COMPAT_STR, 0, ""),
    NEUTRAL("x-checkpoint-delay", x_checkpoint_delay, COMPAT_NUM, 20000, NULL),
    NEUTRAL("xbzrle-cache-size", xbzrle_cache_size, COMPAT_NUM, 64 << 20, NULL),
    NEUTRAL("max-cpu-throttle", max_cpu_throttle, COMPAT_NUM, 99, NULL),
    NEUTRAL("multifd-compression", multifd_compression, COMPAT_ENUM,
            MULTI_FD_COMPRESSION_NONE, NULL),
    NEUTRAL("multifd-zlib-level", multifd_zlib_level, COMPAT_NUM, 1, NULL),
    NEUTRAL("multifd-zstd-level", multifd_zstd_level, COMPAT_NUM, 1, NULL),
};

/* The value as QMP would show it, for messages. */
static char *value_text(const NeutralParam *np, const void *p, bool deflt)
{
    const char *base = p;

    switch (np->kind) {
    case COMPAT_NUM:
        return g_strdup_printf("%" PRIu64,
                               deflt ? np->num : *(const uint64_t *)(base + np->set_off));
    case COMPAT_BOOL:
        if (deflt) {
            return g_strdup(np->num ? "true" : "false");
        }
        return g_strdup(*(const bool *)(base + np->set_off) ? "true" : "false");
    case COMPAT_STR:
        return g_strdup_printf("'%s'", deflt ? np->str : *(char *const *)(base + np->set_off));
    case COMPAT_ENUM:
        return g_strdup(MultiFDCompression_str(deflt ? (int)np->num
                                               : *(const int *)(base + np->set_off)));
    }
    g_assert_not_reached();
}

static bool is_default(const NeutralParam *np, const MigrateSetParameters *p)
{
    const char *base = (const char *)p;

    switch (np->kind) {
    case COMPAT_NUM:
        return *(const uint64_t *)(base + np->set_off) == np->num;
    case COMPAT_BOOL:
        return *(const bool *)(base + np->set_off) == (bool)np->num;
    case COMPAT_STR:
        return !strcmp(*(char *const *)(base + np->set_off), np->str);
    case COMPAT_ENUM:
        return *(const int *)(base + np->set_off) == (int)np->num;
    }
    g_assert_not_reached();
}

/* A vacuous parameter's range, as QEMU checks it. */
static bool check_range(bool has, uint64_t v, uint64_t min, uint64_t max, const char *name,
                        Error **errp)
{
    if (has && (v < min || v > max)) {
        error_setg(errp, "Parameter '%s' expects an integer in the range of %" PRIu64 " to %"
                   PRIu64, name, min, max);
        return false;
    }
    return true;
}

bool migrate_compat_params_check(const MigrateSetParameters *p, Error **errp)
{
    for (size_t i = 0; i < G_N_ELEMENTS(neutral); i++) {
        const NeutralParam *np = &neutral[i];

        if (*(const bool *)((const char *)p + np->has_off) && !is_default(np, p)) {
            g_autofree char *got = value_text(np, p, false);
            g_autofree char *want = value_text(np, p, true);

            error_setg(errp, "Parameter '%s' cannot be %s: amber does not implement it "
                       "(only QEMU's default, %s, is accepted)", np->name, got, want);
            return false;
        }
    }
    return check_range(p->has_announce_initial, p->announce_initial, 0, 100000,
                       "announce-initial", errp) &&
           check_range(p->has_announce_max, p->announce_max, 0, 100000, "announce-max",
                       errp) &&
           check_range(p->has_announce_rounds, p->announce_rounds, 0, 1000,
                       "announce-rounds", errp) &&
           check_range(p->has_announce_step, p->announce_step, 1, 10000, "announce-step",
                       errp);
}

void migrate_compat_params_apply(MigrationOptions *o, const MigrateSetParameters *p)
{
    if (p->has_announce_initial) {
        o->announce_initial = p->announce_initial;
    }
    if (p->has_announce_max) {
        o->announce_max = p->announce_max;
    }
    if (p->has_announce_rounds) {
        o->announce_rounds = p->announce_rounds;
    }
    if (p->has_announce_step) {
        o->announce_step = p->announce_step;
    }
    if (p->has_block_incremental) {
        o->block_incremental = p->block_incremental;
    }
}

void migrate_compat_params_init(MigrationOptions *o)
{
    o->announce_initial = 50;
    o->announce_max = 550;
    o->announce_rounds = 5;
    o->announce_step = 100;
    o->block_incremental = false;
}

void migrate_compat_params_fill(const MigrationOptions *o, MigrationParameters *out)
{
    char *base = (char *)out;

    for (size_t i = 0; i < G_N_ELEMENTS(neutral); i++) {
        const NeutralParam *np = &neutral[i];

        switch (np->kind) {
        case COMPAT_NUM:
            *(uint64_t *)(base + np->get_off) = np->num;
            break;
        case COMPAT_BOOL:
            *(bool *)(base + np->get_off) = np->num;
            break;
        case COMPAT_STR:
            *(char **)(base + np->get_off) = g_strdup(np->str);
            break;
        case COMPAT_ENUM:
            *(int *)(base + np->get_off) = np->num;
            break;
        }
    }
    out->announce_initial = o->announce_initial;
    out->announce_max = o->announce_max;
    out->announce_rounds = o->announce_rounds;
    out->announce_step = o->announce_step;
    out->block_incremental = o->block_incremental;
}

/* ---- capabilities ------------------------------------------------------------------ */

/*
 * What amber does not do; listed, and accepted off, for QEMU's clients.
 * (zero-blocks, block, dirty-bitmaps and late-block-activate are of disks,
 * which amber's machine has none of: either way there is nothing to do.)
 */
static const MigrationCapability missing_caps[] = {
    MIGRATION_CAPABILITY_XBZRLE, MIGRATION_CAPABILITY_RDMA_PIN_ALL,
    MIGRATION_CAPABILITY_AUTO_CONVERGE, MIGRATION_CAPABILITY_COMPRESS,
    MIGRATION_CAPABILITY_X_COLO, MIGRATION_CAPABILITY_RELEASE_RAM,
    MIGRATION_CAPABILITY_RETURN_PATH, MIGRATION_CAPABILITY_PAUSE_BEFORE_SWITCHOVER,
    MIGRATION_CAPABILITY_MULTIFD, MIGRATION_CAPABILITY_X_IGNORE_SHARED,
    MIGRATION_CAPABILITY_VALIDATE_UUID, MIGRATION_CAPABILITY_ZERO_COPY_SEND,
};

bool migrate_compat_caps_check(const bool caps[MIGRATION_CAPABILITY__MAX], Error **errp)
{
    for (size_t i = 0; i < G_N_ELEMENTS(missing_caps); i++) {
        if (caps[missing_caps[i]]) {
            error_setg(errp, "Capability '%s' is not supported by amber (it is listed, and "
                       "accepted off, for QEMU's clients)",
                       MigrationCapability_str(missing_caps[i]));
            return false;
        }
    }
    return true;
}
