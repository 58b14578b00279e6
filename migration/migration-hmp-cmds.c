/*
 * HMP words for migration.  Each parses text and calls the QMP handler;
 * output follows QEMU's HMP wording.
 */
#include <inttypes.h>
#include <string.h>

#include "migration-int.h"
#include "monitor/hmp.h"
#include "qapi-commands.h"
#include "snapshot.h"

/* ---- migrate [-d] URI ---------------------------------------------------------- */

static bool migrate_finished(MigrationState *ms)
{
    int st = migration_get_status(&ms->status);

    return st != MIGRATION_STATUS_SETUP && st != MIGRATION_STATUS_ACTIVE &&
           st != MIGRATION_STATUS_CANCELLING;
}

/*
 * Without -d, QEMU's HMP waits for the end and reports a failure.  The
 * main loop keeps running meanwhile (the migration thread needs it, and
 * other monitors answer); this monitor's own input waits, as GLib does not
 * dispatch a source again while its callback runs.
 */
static void wait_for_migration(Hmp *h, MigrationState *ms)
{
    Amber *s = hmp_amber(h);
    MigrationInfo *info;

    while (!migrate_finished(ms) && !s->quit_requested) {
        g_main_context_iteration(NULL, TRUE);
    }
    info = qmp_query_migrate(s, NULL);
    if (info->has_error_desc) {
        hmp_printf(h, "Error: %s\n", info->error_desc);
    } else if (info->status == MIGRATION_STATUS_CANCELLED) {
        hmp_printf(h, "Migration cancelled\n");
    }
    qapi_free_MigrationInfo(info);
}

static void hmp_migrate(Hmp *h, int argc, char **argv)
{
    Amber *s = hmp_amber(h);
    bool detach = false;
    const char *uri = NULL;
    Error *err = NULL;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-d")) {
            detach = true;
        } else if (!uri) {
            uri = argv[i];
        } else {
            hmp_printf(h, "Usage: migrate [-d] URI\n");
            return;
        }
    }
    if (!uri) {
        hmp_printf(h, "Usage: migrate [-d] URI\n");
        return;
    }
    qmp_migrate(s, uri, true, detach, &err);
    if (hmp_handle_error(h, err) || detach) {
        return;
    }
    wait_for_migration(h, migration_state(s));
}

static void hmp_migrate_cancel(Hmp *h, int argc, char **argv)
{
    Error *err = NULL;

    qmp_migrate_cancel(hmp_amber(h), &err);
    hmp_handle_error(h, err);
}

static void hmp_migrate_incoming(Hmp *h, int argc, char **argv)
{
    Error *err = NULL;

    qmp_migrate_incoming(hmp_amber(h), argv[1], &err);
    hmp_handle_error(h, err);
}

/* ---- capabilities and parameters ------------------------------------------------- */

static void hmp_migrate_set_capability(Hmp *h, int argc, char **argv)
{
    MigrationCapabilityStatus cap = { 0 };
    MigrationCapabilityStatusList list = { .value = &cap };
    Error *err = NULL;
    int i;

    for (i = 0; i < MIGRATION_CAPABILITY__MAX; i++) {
        if (!strcmp(argv[1], MigrationCapability_str(i))) {
            break;
        }
    }
    if (i == MIGRATION_CAPABILITY__MAX) {
        hmp_printf(h, "Error: Parameter 'capability' does not accept value '%s'\n",
                   argv[1]);
        return;
    }
    if (!hmp_parse_bool(h, argv[2], "state", &cap.state)) {
        return;
    }
    cap.capability = i;
    qmp_migrate_set_capabilities(hmp_amber(h), &list, &err);
    hmp_handle_error(h, err);
}

/* One parameter to change: the rest are left out (has_* false). */
static void set_one_parameter(Hmp *h, const MigrateSetParameters *p)
{
    Error *err = NULL;

    qmp_migrate_set_parameters(hmp_amber(h), p->has_max_bandwidth, p->max_bandwidth,
                               p->has_downtime_limit, p->downtime_limit,
                               p->has_x_background_snapshot_pool_size,
                               p->x_background_snapshot_pool_size,
                               p->has_x_background_snapshot_chunk_size,
                               p->x_background_snapshot_chunk_size,
                               p->has_direct_io, p->direct_io, &err);
    hmp_handle_error(h, err);
}

static void hmp_migrate_set_parameter(Hmp *h, int argc, char **argv)
{
    MigrateSetParameters p = { 0 };
    Error *err = NULL;
    uint64_t v;

    if (!strcmp(argv[1], "downtime-limit")) {
        if (!hmp_parse_u64(h, argv[2], "downtime-limit", &v)) {
            return;
        }
        p.has_downtime_limit = true;
        p.downtime_limit = v;
        set_one_parameter(h, &p);
        return;
    }
    if (!strcmp(argv[1], "direct-io")) {
        if (!hmp_parse_bool(h, argv[2], "direct-io", &p.direct_io)) {
            return;
        }
        p.has_direct_io = true;
        set_one_parameter(h, &p);
        return;
    }
    if (strcmp(argv[1], "max-bandwidth") &&
        strcmp(argv[1], "x-background-snapshot-pool-size") &&
        strcmp(argv[1], "x-background-snapshot-chunk-size")) {
        hmp_printf(h, "Error: Invalid parameter '%s' (known: max-bandwidth, "
                   "downtime-limit, x-background-snapshot-pool-size, "
                   "x-background-snapshot-chunk-size, direct-io)\n", argv[1]);
        return;
    }
    /* As QEMU: a size, bytes unless a suffix (K, M, G...) says otherwise. */
    if (!parse_size_bytes(argv[2], &v, &err)) {
        hmp_handle_error(h, err);
        return;
    }
    if (!strcmp(argv[1], "max-bandwidth")) {
        p.has_max_bandwidth = true;
        p.max_bandwidth = v;
    } else if (!strcmp(argv[1], "x-background-snapshot-pool-size")) {
        p.has_x_background_snapshot_pool_size = true;
        p.x_background_snapshot_pool_size = v;
    } else {
        p.has_x_background_snapshot_chunk_size = true;
        p.x_background_snapshot_chunk_size = v;
    }
    set_one_parameter(h, &p);
}

static void hmp_info_migrate_capabilities(Hmp *h, int argc, char **argv)
{
    MigrationCapabilityStatusList *caps = qmp_query_migrate_capabilities(hmp_amber(h),
                                                                         NULL);

    for (MigrationCapabilityStatusList *l = caps; l; l = l->next) {
        hmp_printf(h, "%s: %s\n", MigrationCapability_str(l->value->capability),
                   l->value->state ? "on" : "off");
    }
    qapi_free_MigrationCapabilityStatusList(caps);
}

static void hmp_info_migrate_parameters(Hmp *h, int argc, char **argv)
{
    MigrationParameters *p = qmp_query_migrate_parameters(hmp_amber(h), NULL);

    hmp_printf(h, "max-bandwidth: %" PRIu64 " bytes/second%s\n", p->max_bandwidth,
               p->max_bandwidth ? "" : " (no limit)");
    hmp_printf(h, "downtime-limit: %" PRIu64 " ms\n", p->downtime_limit);
    hmp_printf(h, "x-background-snapshot-pool-size: %" PRIu64 " bytes%s\n",
               p->x_background_snapshot_pool_size,
               p->x_background_snapshot_pool_size ? "" : " (automatic)");
    hmp_printf(h, "x-background-snapshot-chunk-size: %" PRIu64 " bytes\n",
               p->x_background_snapshot_chunk_size);
    hmp_printf(h, "direct-io: %s\n", p->direct_io ? "on" : "off");
    qapi_free_MigrationParameters(p);
}

/* ---- info migrate ---------------------------------------------------------------------- */

static void print_ram(Hmp *h, const MigrationStats *r)
{
    hmp_printf(h, "transferred ram: %" PRId64 " kbytes\n", r->transferred >> 10);
    hmp_printf(h, "throughput: %0.2f mbps\n", r->mbps);
    hmp_printf(h, "remaining ram: %" PRId64 " kbytes\n", r->remaining >> 10);
    hmp_printf(h, "total ram: %" PRId64 " kbytes\n", r->total >> 10);
    hmp_printf(h, "duplicate: %" PRId64 " pages\n", r->duplicate);
    hmp_printf(h, "normal: %" PRId64 " pages\n", r->normal);
    hmp_printf(h, "normal bytes: %" PRId64 " kbytes\n", r->normal_bytes >> 10);
    hmp_printf(h, "dirty sync count: %" PRId64 "\n", r->dirty_sync_count);
    if (r->has_dirty_pages_rate) {
        hmp_printf(h, "dirty pages rate: %" PRId64 " pages\n", r->dirty_pages_rate);
    }
    hmp_printf(h, "page size: %" PRId64 " kbytes\n", r->page_size >> 10);
    hmp_printf(h, "pages-per-second: %" PRId64 "\n", r->pages_per_second);
    hmp_printf(h, "precopy ram: %" PRIu64 " kbytes\n", r->precopy_bytes >> 10);
    hmp_printf(h, "downtime ram: %" PRIu64 " kbytes\n", r->downtime_bytes >> 10);
}

static void hmp_info_migrate(Hmp *h, int argc, char **argv)
{
    MigrationInfo *info = qmp_query_migrate(hmp_amber(h), NULL);

    if (info->has_status) {
        hmp_printf(h, "Migration status: %s\n", MigrationStatus_str(info->status));
    }
    if (info->has_error_desc) {
        hmp_printf(h, "Error: %s\n", info->error_desc);
    }
    if (info->has_total_time) {
        hmp_printf(h, "total time: %" PRId64 " ms\n", info->total_time);
    }
    if (info->has_expected_downtime) {
        hmp_printf(h, "expected downtime: %" PRId64 " ms\n", info->expected_downtime);
    }
    if (info->has_downtime) {
        hmp_printf(h, "downtime: %" PRId64 " ms\n", info->downtime);
    }
    if (info->has_setup_time) {
        hmp_printf(h, "setup: %" PRId64 " ms\n", info->setup_time);
    }
    if (info->has_ram) {
        print_ram(h, info->ram);
    }
    if (info->has_x_background_snapshot) {
        bg_migration_hmp_print(h, info->x_background_snapshot);
    }
    qapi_free_MigrationInfo(info);
}

static const HmpCommand migrate_cmd = {
    .name = "migrate", .args = "[-d] URI", .min_args = 1, .max_args = 2,
    .help = "migrate to URI (-d: do not wait for the end)", .fn = hmp_migrate,
};
static const HmpCommand migrate_cancel_cmd = {
    .name = "migrate_cancel", .help = "cancel the current migration",
    .fn = hmp_migrate_cancel,
};
static const HmpCommand migrate_incoming_cmd = {
    .name = "migrate_incoming", .args = "URI", .min_args = 1, .max_args = 1,
    .help = "load the stream of a VM started with -incoming defer",
    .fn = hmp_migrate_incoming,
};
static const HmpCommand migrate_set_capability_cmd = {
    .name = "migrate_set_capability", .args = "NAME on|off", .min_args = 2, .max_args = 2,
    .help = "switch a migration capability on or off", .fn = hmp_migrate_set_capability,
};
static const HmpCommand migrate_set_parameter_cmd = {
    .name = "migrate_set_parameter", .args = "NAME VALUE", .min_args = 2, .max_args = 2,
    .help = "set a migration parameter (max-bandwidth, downtime-limit, "
            "x-background-snapshot-pool-size, x-background-snapshot-chunk-size)",
    .fn = hmp_migrate_set_parameter,
};
static const HmpCommand info_migrate_cmd = {
    .name = "migrate", .info = true, .help = "show migration status",
    .fn = hmp_info_migrate,
};
static const HmpCommand info_migrate_capabilities_cmd = {
    .name = "migrate_capabilities", .info = true,
    .help = "show current migration capabilities", .fn = hmp_info_migrate_capabilities,
};
static const HmpCommand info_migrate_parameters_cmd = {
    .name = "migrate_parameters", .info = true,
    .help = "show current migration parameters", .fn = hmp_info_migrate_parameters,
};

HMP_REGISTER(migrate_cmd)
HMP_REGISTER(migrate_cancel_cmd)
HMP_REGISTER(migrate_incoming_cmd)
HMP_REGISTER(migrate_set_capability_cmd)
HMP_REGISTER(migrate_set_parameter_cmd)
HMP_REGISTER(info_migrate_cmd)
HMP_REGISTER(info_migrate_capabilities_cmd)
HMP_REGISTER(info_migrate_parameters_cmd)
