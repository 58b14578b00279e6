/*
 * HMP words for migration.  Each parses text and calls the QMP handler;
 * output follows QEMU's HMP wording.  Only the public interface of
 * migration/ is used: what HMP shows is what QMP replies.
 */
#include <inttypes.h>
#include <stddef.h>
#include <string.h>

#include "migration/migration.h"
#include "monitor/hmp.h"
#include "qapi-commands.h"
#include "system/ram.h"

/* ---- migrate [-d] URI ---------------------------------------------------------- */

/*
 * Without -d, HMP waits for the end and reports a failure, as QEMU's does.
 * The wait runs the main loop (the migration thread needs it for its
 * stop and start, and other monitors answer meanwhile) rather than
 * returning and printing later: the line may have come through QMP's
 * human-monitor-command, whose reply carries this output and is sent when
 * the command returns, so there is no later.  This monitor's own input
 * waits, as GLib does not dispatch a source again while its callback runs,
 * and a `quit` from another monitor ends the wait.
 */
static void wait_for_migration(Hmp *h, MigrationState *ms)
{
    Amber *s = hmp_amber(h);
    MigrationInfo *info;

    /* A paused postcopy waits for the user, who needs this monitor back. */
    while (migration_outgoing_running(ms) &&
           migration_outgoing_status(ms) != MIGRATION_STATUS_POSTCOPY_PAUSED &&
           !s->quit_requested) {
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
    bool detach = false, resume = false;
    const char *uri = NULL;
    Error *err = NULL;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-d")) {
            detach = true;
        } else if (!strcmp(argv[i], "-r")) {
            resume = true;
        } else if (!uri) {
            uri = argv[i];
        } else {
            hmp_printf(h, "Usage: migrate [-d] [-r] URI\n");
            return;
        }
    }
    if (!uri) {
        hmp_printf(h, "Usage: migrate [-d] [-r] URI\n");
        return;
    }
    qmp_migrate(s, uri, false, false, false, false, true, detach, true, resume, &err);
    /* A resume goes on in the background, as the migration it resumes. */
    if (hmp_handle_error(h, err) || detach || resume) {
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

static void hmp_migrate_start_postcopy(Hmp *h, int argc, char **argv)
{
    Error *err = NULL;

    qmp_migrate_start_postcopy(hmp_amber(h), &err);
    hmp_handle_error(h, err);
}

static void hmp_migrate_recover(Hmp *h, int argc, char **argv)
{
    Error *err = NULL;

    qmp_migrate_recover(hmp_amber(h), argv[1], &err);
    hmp_handle_error(h, err);
}

static void hmp_migrate_pause(Hmp *h, int argc, char **argv)
{
    Error *err = NULL;

    qmp_migrate_pause(hmp_amber(h), &err);
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
        g_autoptr(GString) names = g_string_new(NULL);

        for (i = 0; i < MIGRATION_CAPABILITY__MAX; i++) {
            g_string_append_printf(names, "%s%s", i ? ", " : "", MigrationCapability_str(i));
        }
        hmp_printf(h, "Error: Parameter 'capability' does not accept value '%s' (the "
                   "capabilities: %s)\n", argv[1], names->str);
        return;
    }
    if (!hmp_parse_bool(h, argv[2], "state", &cap.state)) {
        return;
    }
    cap.capability = i;
    qmp_migrate_set_capabilities(hmp_amber(h), &list, &err);
    hmp_handle_error(h, err);
}

/*
 * The parameters HMP knows, each once: the name, how its value is typed,
 * where it goes in MigrateSetParameters and comes from in
 * MigrationParameters, and how `info migrate_parameters` shows it.
 */
typedef enum HmpParamKind {
    HMP_PARAM_SIZE,         /* bytes, with a suffix (K, M, G...) as QEMU takes */
    HMP_PARAM_NUMBER,       /* a plain number */
    HMP_PARAM_BOOL,
    HMP_PARAM_STR,
    HMP_PARAM_COMPRESSION,  /* a MultiFDCompression */
} HmpParamKind;

typedef struct HmpParam {
    const char *name;
    HmpParamKind kind;
    size_t has_off, set_off;    /* in MigrateSetParameters */
    size_t get_off;             /* in MigrationParameters */
    const char *unit;           /* after the value; NULL for a bool */
    const char *zero_note;      /* after the unit when the value is 0, or NULL */
} HmpParam;

#define HMP_PARAM(name_, field, kind_, unit_, zero_note_)                       \
    { .name = name_, .kind = kind_,                                             \
      .has_off = offsetof(MigrateSetParameters, has_##field),                   \
      .set_off = offsetof(MigrateSetParameters, field),                         \
      .get_off = offsetof(MigrationParameters, field),                          \
      .unit = unit_, .zero_note = zero_note_ }

static const HmpParam hmp_params[] = {
    HMP_PARAM("max-bandwidth", max_bandwidth, HMP_PARAM_SIZE, "bytes/second",
              "(no limit)"),
    HMP_PARAM("downtime-limit", downtime_limit, HMP_PARAM_NUMBER, "ms", NULL),
    HMP_PARAM("x-background-snapshot-pool-size", x_background_snapshot_pool_size,
              HMP_PARAM_SIZE, "bytes", "(automatic)"),
    HMP_PARAM("x-background-snapshot-chunk-size", x_background_snapshot_chunk_size,
              HMP_PARAM_SIZE, "bytes", NULL),
    HMP_PARAM("direct-io", direct_io, HMP_PARAM_BOOL, NULL, NULL),
    HMP_PARAM("max-postcopy-bandwidth", max_postcopy_bandwidth, HMP_PARAM_SIZE,
              "bytes/second", "(no limit)"),
    HMP_PARAM("multifd-channels", multifd_channels, HMP_PARAM_NUMBER, NULL, NULL),
    /* QEMU's, which amber keeps (announce-*, block-incremental) or only lists. */
    HMP_PARAM("announce-initial", announce_initial, HMP_PARAM_NUMBER, "ms", NULL),
    HMP_PARAM("announce-max", announce_max, HMP_PARAM_NUMBER, "ms", NULL),
    HMP_PARAM("announce-rounds", announce_rounds, HMP_PARAM_NUMBER, NULL, NULL),
    HMP_PARAM("announce-step", announce_step, HMP_PARAM_NUMBER, "ms", NULL),
    HMP_PARAM("block-incremental", block_incremental, HMP_PARAM_BOOL, NULL, NULL),
    HMP_PARAM("compress-level", compress_level, HMP_PARAM_NUMBER, NULL, NULL),
    HMP_PARAM("compress-threads", compress_threads, HMP_PARAM_NUMBER, NULL, NULL),
    HMP_PARAM("compress-wait-thread", compress_wait_thread, HMP_PARAM_BOOL, NULL, NULL),
    HMP_PARAM("decompress-threads", decompress_threads, HMP_PARAM_NUMBER, NULL, NULL),
    HMP_PARAM("throttle-trigger-threshold", throttle_trigger_threshold, HMP_PARAM_NUMBER,
              NULL, NULL),
    HMP_PARAM("cpu-throttle-initial", cpu_throttle_initial, HMP_PARAM_NUMBER, NULL, NULL),
    HMP_PARAM("cpu-throttle-increment", cpu_throttle_increment, HMP_PARAM_NUMBER, NULL,
              NULL),
    HMP_PARAM("cpu-throttle-tailslow", cpu_throttle_tailslow, HMP_PARAM_BOOL, NULL, NULL),
    HMP_PARAM("max-cpu-throttle", max_cpu_throttle, HMP_PARAM_NUMBER, NULL, NULL),
    HMP_PARAM("tls-creds", tls_creds, HMP_PARAM_STR, NULL, NULL),
    HMP_PARAM("tls-hostname", tls_hostname, HMP_PARAM_STR, NULL, NULL),
    HMP_PARAM("tls-authz", tls_authz, HMP_PARAM_STR, NULL, NULL),
    HMP_PARAM("x-checkpoint-delay", x_checkpoint_delay, HMP_PARAM_NUMBER, "ms", NULL),
    HMP_PARAM("xbzrle-cache-size", xbzrle_cache_size, HMP_PARAM_SIZE, "bytes", NULL),
    HMP_PARAM("multifd-compression", multifd_compression, HMP_PARAM_COMPRESSION, NULL,
              NULL),
    HMP_PARAM("multifd-zlib-level", multifd_zlib_level, HMP_PARAM_NUMBER, NULL, NULL),
    HMP_PARAM("multifd-zstd-level", multifd_zstd_level, HMP_PARAM_NUMBER, NULL, NULL),
};

static const HmpParam *find_param(const char *name)
{
    for (size_t i = 0; i < G_N_ELEMENTS(hmp_params); i++) {
        if (!strcmp(hmp_params[i].name, name)) {
            return &hmp_params[i];
        }
    }
    return NULL;
}

/* "max-bandwidth, downtime-limit, ...": for the message about an unknown name. */
static char *param_names(void)
{
    GString *s = g_string_new(NULL);

    for (size_t i = 0; i < G_N_ELEMENTS(hmp_params); i++) {
        g_string_append_printf(s, "%s%s", i ? ", " : "", hmp_params[i].name);
    }
    return g_string_free(s, FALSE);
}

/* Parse word as the parameter's value into p (its has_ flag set). */
static bool parse_param(Hmp *h, const HmpParam *hp, const char *word,
                        MigrateSetParameters *p)
{
    char *base = (char *)p;
    Error *err = NULL;
    uint64_t v;

    switch (hp->kind) {
    case HMP_PARAM_BOOL:
        if (!hmp_parse_bool(h, word, hp->name, (bool *)(base + hp->set_off))) {
            return false;
        }
        break;
    case HMP_PARAM_NUMBER:
        if (!hmp_parse_u64(h, word, hp->name, &v)) {
            return false;
        }
        *(uint64_t *)(base + hp->set_off) = v;
        break;
    case HMP_PARAM_SIZE:
        if (!parse_size_bytes(word, &v, &err)) {
            hmp_handle_error(h, err);
            return false;
        }
        *(uint64_t *)(base + hp->set_off) = v;
        break;
    case HMP_PARAM_STR:
        /* The caller's word outlives the call that reads it. */
        *(const char **)(base + hp->set_off) = word;
        break;
    case HMP_PARAM_COMPRESSION:
        for (v = 0; v < MULTI_FD_COMPRESSION__MAX; v++) {
            if (!strcmp(word, MultiFDCompression_str(v))) {
                break;
            }
        }
        if (v == MULTI_FD_COMPRESSION__MAX) {
            hmp_printf(h, "Error: '%s' is not a multifd compression (none, zlib, zstd)\n",
                       word);
            return false;
        }
        *(MultiFDCompression *)(base + hp->set_off) = v;
        break;
    }
    *(bool *)(base + hp->has_off) = true;
    return true;
}

static void hmp_migrate_set_parameter(Hmp *h, int argc, char **argv)
{
    const HmpParam *hp = find_param(argv[1]);
    MigrateSetParameters p = { 0 };
    Error *err = NULL;

    if (!hp) {
        g_autofree char *known = param_names();

        hmp_printf(h, "Error: Invalid parameter '%s' (known: %s)\n", argv[1], known);
        return;
    }
    if (!parse_param(h, hp, argv[2], &p)) {
        return;
    }
    qmp_migrate_set_parameters(hmp_amber(h), &p, &err);
    hmp_handle_error(h, err);
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
    const char *base = (const char *)p;

    for (size_t i = 0; i < G_N_ELEMENTS(hmp_params); i++) {
        const HmpParam *hp = &hmp_params[i];
        uint64_t v;

        if (hp->kind == HMP_PARAM_BOOL) {
            hmp_printf(h, "%s: %s\n", hp->name,
                       *(const bool *)(base + hp->get_off) ? "on" : "off");
            continue;
        }
        if (hp->kind == HMP_PARAM_STR) {
            hmp_printf(h, "%s: '%s'\n", hp->name, *(char *const *)(base + hp->get_off));
            continue;
        }
        if (hp->kind == HMP_PARAM_COMPRESSION) {
            hmp_printf(h, "%s: %s\n", hp->name,
                       MultiFDCompression_str(*(const MultiFDCompression *)(base +
                                                                             hp->get_off)));
            continue;
        }
        v = *(const uint64_t *)(base + hp->get_off);
        hmp_printf(h, "%s: %" PRIu64 "%s%s%s%s\n", hp->name, v, hp->unit ? " " : "",
                   hp->unit ? hp->unit : "",
                   !v && hp->zero_note ? " " : "", !v && hp->zero_note ? hp->zero_note : "");
    }
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
    if (r->dirty_pages_rate) {
        hmp_printf(h, "dirty pages rate: %" PRId64 " pages\n", r->dirty_pages_rate);
    }
    hmp_printf(h, "page size: %" PRId64 " kbytes\n", r->page_size >> 10);
    hmp_printf(h, "pages-per-second: %" PRId64 "\n", r->pages_per_second);
    hmp_printf(h, "precopy ram: %" PRIu64 " kbytes\n", r->precopy_bytes >> 10);
    hmp_printf(h, "downtime ram: %" PRIu64 " kbytes\n", r->downtime_bytes >> 10);
    hmp_printf(h, "postcopy request count: %" PRId64 "\n", r->postcopy_requests);
    hmp_printf(h, "postcopy ram: %" PRIu64 " kbytes\n", r->postcopy_bytes >> 10);
}

static void print_background_snapshot(Hmp *h, const BackgroundSnapshotStats *st)
{
    hmp_printf(h, "background snapshot pause: %" PRIu64 " us (write-protect %" PRIu64
               " us, %s)\n", st->pause_us, st->write_protect_us,
               st->wp_unpopulated ? "wp-unpopulated" : "populated pages only");
    hmp_printf(h, "write faults: %" PRIu64 " (%" PRIu64 " pages copied by faults)\n",
               st->write_faults, st->fault_pages);
    hmp_printf(h, "pages skipped (never populated): %" PRIu64 "\n", st->pages_skipped);
    hmp_printf(h, "huge pages restored: %" PRIu64 "\n", st->huge_pages_restored);
    hmp_printf(h, "copy pool: %" PRIu64 " of %" PRIu64 " kbytes at most\n",
               st->pool_high_water_bytes >> 10, st->pool_size >> 10);
    hmp_printf(h, "vCPU stalls: %" PRIu64 ", p50 %" PRIu64 " us, p99 %" PRIu64
               " us, max %" PRIu64 " us\n", st->stalls, st->stall_p50_us,
               st->stall_p99_us, st->stall_max_us);
    hmp_printf(h, "stall histogram (log2 us):");
    for (const uint64List *l = st->stall_histogram; l; l = l->next) {
        hmp_printf(h, " %" PRIu64, l->value);
    }
    hmp_printf(h, "\n");
}

/* A postcopy destination's waits (capability postcopy-blocktime). */
static void print_blocktime(Hmp *h, const MigrationInfo *info)
{
    hmp_printf(h, "Postcopy Blocktime (ms): %" PRIu64 "\n", info->postcopy_blocktime);
    hmp_printf(h, "Postcopy vCPU Blocktime (ms):");
    for (const uint32List *l = info->postcopy_vcpu_blocktime; l; l = l->next) {
        hmp_printf(h, " %" PRIu64, l->value);
    }
    hmp_printf(h, "\nPostcopy Latency (ns): %" PRIu64 "\n", info->postcopy_latency);
    hmp_printf(h, "Postcopy Latency Distribution (log2 us):");
    for (const uint64List *l = info->postcopy_latency_dist; l; l = l->next) {
        hmp_printf(h, " %" PRIu64, l->value);
    }
    hmp_printf(h, "\n");
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
        print_background_snapshot(h, info->x_background_snapshot);
    }
    if (info->has_postcopy_blocktime) {
        print_blocktime(h, info);
    }
    qapi_free_MigrationInfo(info);
}

static const HmpCommand migrate_cmd = {
    .name = "migrate", .args = "[-d] [-r] URI", .min_args = 1, .max_args = 3,
    .help = "migrate to URI (-d: do not wait for the end; -r: resume a paused postcopy)",
    .fn = hmp_migrate,
};
static const HmpCommand migrate_cancel_cmd = {
    .name = "migrate_cancel", .help = "cancel the current migration",
    .fn = hmp_migrate_cancel,
};
static const HmpCommand migrate_start_postcopy_cmd = {
    .name = "migrate_start_postcopy",
    .help = "switch the migration in progress to postcopy (capability postcopy-ram)",
    .fn = hmp_migrate_start_postcopy,
};
static const HmpCommand migrate_recover_cmd = {
    .name = "migrate_recover", .args = "URI", .min_args = 1, .max_args = 1,
    .help = "listen on URI for the source of a paused postcopy to reconnect",
    .fn = hmp_migrate_recover,
};
static const HmpCommand migrate_pause_cmd = {
    .name = "migrate_pause", .help = "break off a postcopy as a broken link would",
    .fn = hmp_migrate_pause,
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
    .help = "set a migration parameter (the names and values: info migrate_parameters; "
            "a wrong name lists them)",
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
HMP_REGISTER(migrate_start_postcopy_cmd)
HMP_REGISTER(migrate_recover_cmd)
HMP_REGISTER(migrate_pause_cmd)
HMP_REGISTER(migrate_incoming_cmd)
HMP_REGISTER(migrate_set_capability_cmd)
HMP_REGISTER(migrate_set_parameter_cmd)
HMP_REGISTER(info_migrate_cmd)
HMP_REGISTER(info_migrate_capabilities_cmd)
HMP_REGISTER(info_migrate_parameters_cmd)
