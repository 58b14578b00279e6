/*
 * What amber is, for the QMP queries a client (libvirt's capability probe)
 * sends before it starts anything: architecture, KVM, machine types, vCPU
 * models, TPMs, and the command-line options amber takes.  Every answer
 * is what amber really does; none needs a guest, so all of them work
 * under -machine none on a host without KVM.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "qapi-commands.h"

TargetInfo *qmp_query_target(Amber *s, Error **errp)
{
    TargetInfo *info = g_new0(TargetInfo, 1);

    info->arch = SYS_EMU_TARGET_X86_64;
    return info;
}

static bool kvm_present(void)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

    if (fd < 0) {
        return false;
    }
    close(fd);
    return true;
}

KvmInfo *qmp_query_kvm(Amber *s, Error **errp)
{
    KvmInfo *info = g_new0(KvmInfo, 1);

    info->present = kvm_present();
    /* A guest exists only on KVM; -machine none uses it when it may and can. */
    info->enabled = s->machine != NULL || (info->present && s->kvm_allowed);
    return info;
}

static MachineInfo *machine_info(const char *name, int cpu_max)
{
    MachineInfo *m = g_new0(MachineInfo, 1);

    m->name = g_strdup(name);
    m->cpu_max = cpu_max;
    return m;
}

MachineInfoList *qmp_query_machines(Amber *s, Error **errp)
{
    MachineInfoList *none = g_new0(MachineInfoList, 1);
    MachineInfoList *pc = g_new0(MachineInfoList, 1);
    MachineInfo *m = machine_info(AMBER_MACHINE_NAME, AMBER_MAX_CPUS);

    m->has_alias = m->has_is_default = true;
    m->alias = g_strdup(AMBER_MACHINE_ALIAS);
    m->is_default = true;
    m->has_default_cpu_type = m->has_default_ram_id = true;
    m->default_cpu_type = g_strdup("host-x86_64-cpu");
    m->default_ram_id = g_strdup("pc.ram");     /* the RAM block amber makes from -m */
    pc->value = m;
    pc->next = none;
    none->value = machine_info("none", 1);
    return pc;
}

CpuDefinitionInfoList *qmp_query_cpu_definitions(Amber *s, Error **errp)
{
    CpuDefinitionInfoList *l = g_new0(CpuDefinitionInfoList, 1);
    CpuDefinitionInfo *c = g_new0(CpuDefinitionInfo, 1);

    c->name = g_strdup("host");
    c->typename = g_strdup("host-x86_64-cpu");
    /* With KVM the host model lacks nothing; without it amber cannot tell. */
    c->has_unavailable_features = kvm_present();
    l->value = c;
    return l;
}

TpmModelList *qmp_query_tpm_models(Amber *s, Error **errp)
{
    return NULL;                /* no TPM */
}

TpmTypeList *qmp_query_tpm_types(Amber *s, Error **errp)
{
    return NULL;
}

HotpluggableCPUList *qmp_query_hotpluggable_cpus(Amber *s, Error **errp)
{
    HotpluggableCPUList *head = NULL;

    if (!s->machine) {
        /* QEMU's words for a machine without vCPU slots (none). */
        error_setg(errp, "The feature 'query-hotpluggable-cpus' is not enabled");
        return NULL;
    }
    /* Built by prepending, so the last vCPU comes first, as in QEMU. */
    for (int i = 0; i < machine_ncpus(s->machine); i++) {
        HotpluggableCPU *c = g_new0(HotpluggableCPU, 1);
        HotpluggableCPUList *item = g_new0(HotpluggableCPUList, 1);

        c->type = g_strdup("host-x86_64-cpu");
        c->vcpus_count = 1;
        c->props = g_new0(CpuInstanceProperties, 1);
        c->props->socket_id = i;        /* one socket per vCPU, as query-cpus-fast */
        c->has_qom_path = true;
        c->qom_path = g_strdup_printf("/machine/unattached/device[%d]", i);
        item->value = c;
        item->next = head;
        head = item;
    }
    return head;
}
