/*
 * The types amber has, under QEMU's QOM names: what qom-list-types,
 * device-list-properties and qom-list-properties report.  amber has no
 * object model; this table only describes, truthfully, the machine types,
 * the one vCPU model, the accelerator, the devices of its machine, the
 * memory backends and secrets that the command line takes.  A client
 * (libvirt) decides from it what it may ask for, so nothing is listed that
 * amber would refuse.
 */
#include <string.h>

#include "qapi-commands.h"

typedef struct TypeProp {
    const char *name;
    const char *type;
    const char *description;
} TypeProp;

typedef struct TypeInfo {
    const char *name;
    const char *parent;
    bool abstract;
    bool device;                /* device-list-properties takes it */
    const TypeProp *props;      /* NULL-name terminated, or NULL */
} TypeInfo;

static const TypeProp serial_props[] = {
    { "chardev", "str", "the chardev COM1 is connected to" },
    { "index", "uint32", "the port: 0 (COM1) is the only one" },
    { NULL },
};

static const TypeProp backend_props[] = {
    { "size", "int", "size of the memory region in bytes" },
    { "share", "bool", "mark the memory as private to QEMU or shared" },
    { "prealloc", "bool", "preallocate memory" },
    { "dump", "bool", "include memory in a core dump" },
    { NULL },
};

static const TypeProp memfd_props[] = {
    { "size", "int", "size of the memory region in bytes" },
    { "share", "bool", "mark the memory as private to QEMU or shared" },
    { "prealloc", "bool", "preallocate memory" },
    { "dump", "bool", "include memory in a core dump" },
    { "hugetlb", "bool", "use huge pages" },
    { "hugetlbsize", "int", "huge page size (2M, 1G; with hugetlb)" },
    { NULL },
};

static const TypeProp file_props[] = {
    { "size", "int", "size of the memory region in bytes" },
    { "share", "bool", "mark the memory as private to QEMU or shared" },
    { "prealloc", "bool", "preallocate memory" },
    { "dump", "bool", "include memory in a core dump" },
    { "mem-path", "string", "file to use as the backing store" },
    { NULL },
};

static const TypeProp secret_props[] = {
    { "format", "QCryptoSecretFormat", "raw or base64" },
    { "data", "string", "the secret, inline" },
    { "file", "string", "a file holding the secret" },
    { "keyid", "string", "the secret that decrypts this one" },
    { "iv", "string", "the AES initialization vector, base64" },
    { NULL },
};

static const TypeProp machine_props[] = {
    { "memory-backend", "link<memory-backend>", "the -object backing guest RAM" },
    { "usb", "bool", "only off: the machine has no USB controller" },
    { "acpi", "OnOffAuto", "only off: the machine has no ACPI" },
    { "dump-guest-core", "bool", "include guest memory in a core dump" },
    { NULL },
};

static const TypeInfo types[] = {
    { "object", NULL, true },
    { "machine", "object", true },
    { AMBER_MACHINE_NAME "-machine", "machine", false, false, machine_props },
    { "none-machine", "machine" },
    { "accel", "object", true },
    { "kvm-accel", "accel" },
    { "device", "object", true },
    { "x86_64-cpu", "device", true },
    { "host-x86_64-cpu", "x86_64-cpu" },
    { "isa-serial", "device", false, true, serial_props },
    { "i8042", "device", false, true },
    { "isa-debug-exit", "device", false, true },
    { "memory-backend", "object", true, false, backend_props },
    { "memory-backend-ram", "memory-backend", false, false, backend_props },
    { "memory-backend-memfd", "memory-backend", false, false, memfd_props },
    { "memory-backend-file", "memory-backend", false, false, file_props },
    { "secret", "object", false, false, secret_props },
};

static const TypeInfo *find_type(const char *name)
{
    for (size_t i = 0; i < G_N_ELEMENTS(types); i++) {
        if (!strcmp(types[i].name, name)) {
            return &types[i];
        }
    }
    return NULL;
}

/* Whether t is `ancestor` or derives from it. */
static bool derives_from(const TypeInfo *t, const char *ancestor)
{
    for (; t; t = t->parent ? find_type(t->parent) : NULL) {
        if (!strcmp(t->name, ancestor)) {
            return true;
        }
    }
    return false;
}

ObjectTypeInfoList *qmp_qom_list_types(Amber *s, bool has_implements,
                                       const char *implements, bool has_abstract,
                                       bool abstract, Error **errp)
{
    ObjectTypeInfoList *head = NULL, **tail = &head;

    for (size_t i = 0; i < G_N_ELEMENTS(types); i++) {
        const TypeInfo *t = &types[i];
        ObjectTypeInfo *info;

        if ((t->abstract && !(has_abstract && abstract)) ||
            (has_implements && !derives_from(t, implements))) {
            continue;
        }
        info = g_new0(ObjectTypeInfo, 1);
        info->name = g_strdup(t->name);
        info->has_abstract = t->abstract;
        info->abstract = t->abstract;
        info->has_parent = t->parent != NULL;
        info->parent = g_strdup(t->parent);
        *tail = g_new0(ObjectTypeInfoList, 1);
        (*tail)->value = info;
        tail = &(*tail)->next;
    }
    return head;
}

static ObjectPropertyInfoList *list_props(const TypeInfo *t)
{
    ObjectPropertyInfoList *head = NULL, **tail = &head;

    for (const TypeProp *p = t->props; p && p->name; p++) {
        ObjectPropertyInfo *info = g_new0(ObjectPropertyInfo, 1);

        info->name = g_strdup(p->name);
        info->type = g_strdup(p->type);
        info->has_description = true;
        info->description = g_strdup(p->description);
        *tail = g_new0(ObjectPropertyInfoList, 1);
        (*tail)->value = info;
        tail = &(*tail)->next;
    }
    return head;
}

ObjectPropertyInfoList *qmp_device_list_properties(Amber *s, const char *typename,
                                                   Error **errp)
{
    const TypeInfo *t = find_type(typename);

    /* QEMU's classes and words: libvirt treats DeviceNotFound as "no such device". */
    if (!t) {
        error_set(errp, ERROR_CLASS_DEVICE_NOT_FOUND, "Device '%s' not found", typename);
        return NULL;
    }
    if (!derives_from(t, "device")) {
        error_setg(errp, "Parameter 'typename' expects device");
        return NULL;
    }
    if (t->abstract) {
        error_setg(errp, "Parameter 'typename' expects a non-abstract device type");
        return NULL;
    }
    return list_props(t);
}

ObjectPropertyInfoList *qmp_qom_list_properties(Amber *s, const char *typename,
                                                Error **errp)
{
    const TypeInfo *t = find_type(typename);

    if (!t) {
        error_set(errp, ERROR_CLASS_DEVICE_NOT_FOUND, "Class '%s' not found", typename);
        return NULL;
    }
    return list_props(t);
}
