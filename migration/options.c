/*
 * Migration capabilities and parameters: QMP handlers and their checks.
 *
 * Every compatibility rule of a capability is one row of cap_rules[]:
 * what it needs (a kernel feature, a memory backend) and which other
 * capabilities it excludes.  The same check runs when capabilities are
 * set and again when a migration starts.  `events` needs nothing;
 * background-snapshot needs userfaultfd write-protect on every RAM block;
 * postcopy-ram needs missing-page faults on every RAM block (checked on
 * both sides: the destination is built like the source).  The two exclude
 * each other: a background snapshot never stops the source, a postcopy
 * switch does.  x-zero-copy-restore excludes postcopy-ram: a restore of a
 * mapped-ram image either maps its pages or faults them in.
 */
#include <inttypes.h>

#include "migration-int.h"
#include "qapi-commands.h"
#include "migration/mapped-ram.h"
#include "savers/background.h"
#include "util/uffd.h"

typedef struct CapRule {
    MigrationCapability cap;
    /* Capabilities that cannot be on together with cap. */
    const MigrationCapability *excludes;
    size_t nexcludes;
    /* A capability cap needs on too, or MIGRATION_CAPABILITY__MAX. */
    MigrationCapability requires;
    /* What cap needs from the host or machine (m may be NULL); NULL: nothing. */
    bool (*usable)(Machine *m, Error **errp);
} CapRule;

static bool postcopy_usable(Machine *m, Error **errp)
{
    return !m || ram_uffd_usable(machine_ram(m), errp);
}

/* The faulting thread's id, to tell vCPUs apart. */
static bool blocktime_usable(Machine *m, Error **errp)
{
    uint64_t have;

    return uffd_query_features(&have, errp) &&
           uffd_check_features(UFFD_FEATURE_THREAD_ID, have, "postcopy-blocktime", errp);
}

static const MigrationCapability excl_postcopy[] = { MIGRATION_CAPABILITY_POSTCOPY_RAM };
static const MigrationCapability excl_bg[] = { MIGRATION_CAPABILITY_BACKGROUND_SNAPSHOT };

static const CapRule cap_rules[] = {
    { .cap = MIGRATION_CAPABILITY_EVENTS, .requires = MIGRATION_CAPABILITY__MAX },
    { .cap = MIGRATION_CAPABILITY_BACKGROUND_SNAPSHOT, .usable = bg_migration_usable,
      .excludes = excl_postcopy, .nexcludes = G_N_ELEMENTS(excl_postcopy),
      .requires = MIGRATION_CAPABILITY__MAX },
    { .cap = MIGRATION_CAPABILITY_POSTCOPY_RAM, .usable = postcopy_usable,
      .excludes = excl_bg, .nexcludes = G_N_ELEMENTS(excl_bg),
      .requires = MIGRATION_CAPABILITY__MAX },
    { .cap = MIGRATION_CAPABILITY_POSTCOPY_BLOCKTIME, .usable = blocktime_usable,
      .requires = MIGRATION_CAPABILITY__MAX },
    { .cap = MIGRATION_CAPABILITY_POSTCOPY_PREEMPT,
      .requires = MIGRATION_CAPABILITY_POSTCOPY_RAM },
    { .cap = MIGRATION_CAPABILITY_MAPPED_RAM, .requires = MIGRATION_CAPABILITY__MAX },
    { .cap = MIGRATION_CAPABILITY_X_ZERO_COPY_RESTORE,
      .excludes = excl_postcopy, .nexcludes = G_N_ELEMENTS(excl_postcopy),
      .requires = MIGRATION_CAPABILITY__MAX },
    /* With postcopy-ram only a source cannot have it (checked by migrate). */
    { .cap = MIGRATION_CAPABILITY_X_CHECKSUM, .requires = MIGRATION_CAPABILITY__MAX },
};

void migrate_options_init(MigrationOptions *o)
{
    *o = (MigrationOptions){
        .max_bandwidth = MIGRATE_DEFAULT_MAX_BANDWIDTH,
        .downtime_limit = MIGRATE_DEFAULT_DOWNTIME_LIMIT,
        .bg_pool_size = MIGRATE_DEFAULT_BG_POOL_SIZE,
        .multifd_channels = MAPPED_RAM_DEFAULT_THREADS,
        .bg_chunk_size = MIGRATE_DEFAULT_BG_CHUNK_SIZE,
    };
    migrate_compat_params_init(o);
}

bool migrate_caps_check(const bool caps[MIGRATION_CAPABILITY__MAX], Machine *m,
                        Error **errp)
{
    if (!migrate_compat_caps_check(caps, errp)) {
        return false;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(cap_rules); i++) {
        const CapRule *r = &cap_rules[i];

        if (!caps[r->cap]) {
            continue;
        }
        for (size_t j = 0; j < r->nexcludes; j++) {
            if (caps[r->excludes[j]]) {
                error_setg(errp, "Capability '%s' cannot be used with '%s'",
                           MigrationCapability_str(r->cap),
                           MigrationCapability_str(r->excludes[j]));
                return false;
            }
        }
        if (r->requires != MIGRATION_CAPABILITY__MAX && !caps[r->requires]) {
            error_setg(errp, "Capability '%s' needs '%s'", MigrationCapability_str(r->cap),
                       MigrationCapability_str(r->requires));
            return false;
        }
        if (r->usable && !r->usable(m, errp)) {
            error_prepend(errp, "Capability '%s' is not usable: ",
                          MigrationCapability_str(r->cap));
            return false;
        }
    }
    return true;
}

/* ---- capabilities ------------------------------------------------------------ */

void qmp_migrate_set_capabilities(Amber *s, MigrationCapabilityStatusList *capabilities,
                                  Error **errp)
{
    MigrationState *ms = migration_state(s);
    bool caps[MIGRATION_CAPABILITY__MAX];
    int in = migration_incoming_status(ms);

    /*
     * A destination still waiting for its stream (`-incoming tcp:...`,
     * status setup) takes them, as QEMU's does: the load reads them only
     * once the stream's header is in.
     */
    if (migration_outgoing_running(ms) ||
        (migration_incoming_running(ms) && in != MIGRATION_STATUS_SETUP)) {
        error_setg(errp, "There's a migration process in progress");
        return;
    }
    memcpy(caps, ms->opts.caps, sizeof(caps));
    for (MigrationCapabilityStatusList *l = capabilities; l; l = l->next) {
        caps[l->value->capability] = l->value->state;
    }
    /* All or nothing: the new set is checked whole before it replaces the old. */
    if (!migrate_caps_check(caps, s->machine, errp)) {
        return;
    }
    memcpy(ms->opts.caps, caps, sizeof(caps));
}

MigrationCapabilityStatusList *qmp_query_migrate_capabilities(Amber *s, Error **errp)
{
    MigrationState *ms = migration_state(s);
    MigrationCapabilityStatusList *head = NULL, **tail = &head;

    for (int i = 0; i < MIGRATION_CAPABILITY__MAX; i++) {
        MigrationCapabilityStatus *c = g_new0(MigrationCapabilityStatus, 1);

        c->capability = i;
        c->state = ms->opts.caps[i];
        *tail = g_new0(MigrationCapabilityStatusList, 1);
        (*tail)->value = c;
        tail = &(*tail)->next;
    }
    return head;
}

/* ---- parameters -------------------------------------------------------------- */

void qmp_migrate_set_parameters(Amber *s, const MigrateSetParameters *p, Error **errp)
{
    MigrationState *ms = migration_state(s);

    /* Check everything before changing anything. */
    if (p->has_downtime_limit && p->downtime_limit > MIGRATE_MAX_DOWNTIME_LIMIT) {
        error_setg(errp, "Parameter 'downtime-limit' expects an integer in the range of "
                   "0 to %d milliseconds", MIGRATE_MAX_DOWNTIME_LIMIT);
        return;
    }
    if (p->has_max_bandwidth && p->max_bandwidth > INT64_MAX) {
        error_setg(errp, "Parameter 'max-bandwidth' expects an integer in the range of "
                   "0 to %" PRId64 " bytes/second", INT64_MAX);
        return;
    }
    if (p->has_max_postcopy_bandwidth && p->max_postcopy_bandwidth > INT64_MAX) {
        error_setg(errp, "Parameter 'max-postcopy-bandwidth' expects an integer in the "
                   "range of 0 to %" PRId64 " bytes/second", INT64_MAX);
        return;
    }
    if (p->has_multifd_channels &&
        (p->multifd_channels < 1 || p->multifd_channels > MAPPED_RAM_MAX_THREADS)) {
        error_setg(errp, "Parameter 'multifd-channels' expects a value between 1 and %d",
                   MAPPED_RAM_MAX_THREADS);
        return;
    }
    if (!bg_migration_check_params(
            p->has_x_background_snapshot_pool_size ? &p->x_background_snapshot_pool_size
                                                   : NULL,
            p->has_x_background_snapshot_chunk_size ? &p->x_background_snapshot_chunk_size
                                                    : NULL,
            errp) ||
        !migrate_compat_params_check(p, errp)) {
        return;
    }
    migrate_compat_params_apply(&ms->opts, p);
    if (p->has_x_background_snapshot_pool_size) {
        ms->opts.bg_pool_size = p->x_background_snapshot_pool_size;
    }
    if (p->has_x_background_snapshot_chunk_size) {
        ms->opts.bg_chunk_size = p->x_background_snapshot_chunk_size;
    }
    if (p->has_downtime_limit) {
        ms->opts.downtime_limit = p->downtime_limit;
    }
    if (p->has_direct_io) {
        ms->opts.direct_io = p->direct_io;
    }
    if (p->has_multifd_channels) {
        ms->opts.multifd_channels = p->multifd_channels;
    }
    if (p->has_max_postcopy_bandwidth) {
        /* Read by the postcopy phase as it starts and before each wait. */
        __atomic_store_n(&ms->opts.max_postcopy_bandwidth, p->max_postcopy_bandwidth,
                         __ATOMIC_RELAXED);
    }
    if (p->has_max_bandwidth) {
        /* A running migration reads it before each wait (migration_apply_rate_limit). */
        __atomic_store_n(&ms->opts.max_bandwidth, p->max_bandwidth, __ATOMIC_RELAXED);
    }
}

MigrationParameters *qmp_query_migrate_parameters(Amber *s, Error **errp)
{
    MigrationState *ms = migration_state(s);
    MigrationParameters *p = g_new0(MigrationParameters, 1);

    p->max_bandwidth = ms->opts.max_bandwidth;
    p->downtime_limit = ms->opts.downtime_limit;
    p->x_background_snapshot_pool_size = ms->opts.bg_pool_size;
    p->x_background_snapshot_chunk_size = ms->opts.bg_chunk_size;
    p->direct_io = ms->opts.direct_io;
    p->max_postcopy_bandwidth = ms->opts.max_postcopy_bandwidth;
    p->multifd_channels = ms->opts.multifd_channels;
    migrate_compat_params_fill(&ms->opts, p);
    return p;
}
