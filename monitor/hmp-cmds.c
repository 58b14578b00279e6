/*
 * The HMP commands of the monitor and run control.  Each parses words and
 * calls the QMP handler; output follows QEMU's HMP wording.
 */
#include <inttypes.h>

#include "monitor/hmp.h"
#include "qapi-commands.h"

static void hmp_stop(Hmp *h, int argc, char **argv)
{
    Error *err = NULL;

    qmp_stop(hmp_amber(h), &err);
    hmp_handle_error(h, err);
}

static void hmp_cont(Hmp *h, int argc, char **argv)
{
    Error *err = NULL;

    qmp_cont(hmp_amber(h), &err);
    hmp_handle_error(h, err);
}

static void hmp_quit(Hmp *h, int argc, char **argv)
{
    Error *err = NULL;

    qmp_quit(hmp_amber(h), &err);
    hmp_handle_error(h, err);
}

static void hmp_system_reset(Hmp *h, int argc, char **argv)
{
    Error *err = NULL;

    qmp_system_reset(hmp_amber(h), &err);
    hmp_handle_error(h, err);
}

static void hmp_pmemsave(Hmp *h, int argc, char **argv)
{
    Error *err = NULL;
    uint64_t addr, size;

    if (!hmp_parse_u64(h, argv[1], "ADDR", &addr) ||
        !hmp_parse_u64(h, argv[2], "SIZE", &size)) {
        return;
    }
    if (addr > INT64_MAX || size > INT64_MAX) {
        hmp_printf(h, "Error: ADDR and SIZE must be below 2^63\n");
        return;
    }
    qmp_pmemsave(hmp_amber(h), (int64_t)addr, (int64_t)size, argv[3], &err);
    hmp_handle_error(h, err);
}

static void hmp_info_status(Hmp *h, int argc, char **argv)
{
    Error *err = NULL;
    StatusInfo *info = qmp_query_status(hmp_amber(h), &err);

    if (hmp_handle_error(h, err)) {
        return;
    }
    hmp_printf(h, "VM status: %s", info->running ? "running" : "paused");
    if (!info->running && info->status != RUN_STATE_PAUSED) {
        hmp_printf(h, " (%s)", RunState_str(info->status));
    }
    hmp_printf(h, "\n");
    qapi_free_StatusInfo(info);
}

static void hmp_info_version(Hmp *h, int argc, char **argv)
{
    VersionInfo *info = qmp_query_version(hmp_amber(h), NULL);

    hmp_printf(h, "%" PRId64 ".%" PRId64 ".%" PRId64 " (%s)\n", info->qemu->major,
               info->qemu->minor, info->qemu->micro, info->package);
    qapi_free_VersionInfo(info);
}

static void hmp_info_cpus(Hmp *h, int argc, char **argv)
{
    Error *err = NULL;
    CpuInfoFastList *list = qmp_query_cpus_fast(hmp_amber(h), &err);

    if (hmp_handle_error(h, err)) {
        return;
    }
    for (CpuInfoFastList *l = list; l; l = l->next) {
        hmp_printf(h, "%c CPU #%" PRId64 ": thread_id=%" PRId64 "\n",
                   l == list ? '*' : ' ', l->value->cpu_index, l->value->thread_id);
    }
    qapi_free_CpuInfoFastList(list);
}

static void hmp_info_name(Hmp *h, int argc, char **argv)
{
    NameInfo *info = qmp_query_name(hmp_amber(h), NULL);

    if (info->has_name) {
        hmp_printf(h, "%s\n", info->name);
    }
    qapi_free_NameInfo(info);
}

static void hmp_info_chardev(Hmp *h, int argc, char **argv)
{
    ChardevInfoList *list = qmp_query_chardev(hmp_amber(h), NULL);

    for (ChardevInfoList *l = list; l; l = l->next) {
        hmp_printf(h, "%s: filename=%s\n", l->value->label, l->value->filename);
    }
    qapi_free_ChardevInfoList(list);
}

static const HmpCommand stop_cmd = {
    .name = "stop", .help = "stop emulation", .fn = hmp_stop,
};
static const HmpCommand cont_cmd = {
    .name = "cont|c", .help = "resume emulation", .fn = hmp_cont,
};
static const HmpCommand quit_cmd = {
    .name = "quit|q", .help = "quit amber", .fn = hmp_quit,
};
static const HmpCommand system_reset_cmd = {
    .name = "system_reset", .help = "reset the system", .fn = hmp_system_reset,
};
static const HmpCommand pmemsave_cmd = {
    .name = "pmemsave", .args = "ADDR SIZE FILE", .min_args = 3, .max_args = 3,
    .help = "save guest-physical memory [ADDR, ADDR+SIZE) to FILE", .fn = hmp_pmemsave,
};
static const HmpCommand info_status_cmd = {
    .name = "status", .info = true, .help = "show the VM status (running|paused)",
    .fn = hmp_info_status,
};
static const HmpCommand info_version_cmd = {
    .name = "version", .info = true, .help = "show the version of amber",
    .fn = hmp_info_version,
};
static const HmpCommand info_cpus_cmd = {
    .name = "cpus", .info = true, .help = "show infos for each CPU", .fn = hmp_info_cpus,
};
static const HmpCommand info_chardev_cmd = {
    .name = "chardev", .info = true, .help = "show the character devices",
    .fn = hmp_info_chardev,
};
static const HmpCommand info_name_cmd = {
    .name = "name", .info = true, .help = "show the name of the VM", .fn = hmp_info_name,
};

HMP_REGISTER(stop_cmd)
HMP_REGISTER(cont_cmd)
HMP_REGISTER(quit_cmd)
HMP_REGISTER(system_reset_cmd)
HMP_REGISTER(pmemsave_cmd)
HMP_REGISTER(info_status_cmd)
HMP_REGISTER(info_version_cmd)
HMP_REGISTER(info_cpus_cmd)
HMP_REGISTER(info_name_cmd)
HMP_REGISTER(info_chardev_cmd)
