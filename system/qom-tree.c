/*
 * qom-list and qom-get: amber's object tree under QEMU's paths.  amber has
 * no object model, so the tree is built on each request from what the
 * process really has: the machine, its vCPUs and built-in devices, the
 * -device that has an id, the chardevs, and the -objects (memory backends
 * and secrets, by id; only their type is a property here).  Clients
 * such as libvirt walk these paths after they start a guest
 * (/machine/peripheral for the devices they added, the first vCPU for its
 * properties), so every node here must exist in amber and nothing may be
 * listed that amber does not have.
 *
 * The vCPUs are /machine/unattached/device[N] for vCPU N, as
 * query-cpus-fast and query-hotpluggable-cpus name them; the built-in
 * devices follow them.
 */
#include <string.h>

#include "chardev/char.h"
#include "qapi-commands.h"
#include "system/cli.h"

typedef struct QomNode {
    char *path;
    char *type;                 /* the QOM type, also what "type" reads */
    int cpu;                    /* vCPU index, or -1 */
} QomNode;

static void qom_node_free(gpointer p)
{
    QomNode *n = p;

    g_free(n->path);
    g_free(n->type);
    g_free(n);
}

static void add_node(GPtrArray *tree, char *path, const char *type, int cpu)
{
    QomNode *n = g_new0(QomNode, 1);

    n->path = path;
    n->type = g_strdup(type);
    n->cpu = cpu;
    g_ptr_array_add(tree, n);
}

/* The devices every machine has (system/devices.c registers them), by QOM type. */
static const char *const builtin_devices[] = { "i8042", "isa-debug-exit" };

static void add_machine_nodes(Amber *s, GPtrArray *tree)
{
    Machine *m = s->machine;
    int ncpus = m ? machine_ncpus(m) : 0;
    int next = ncpus;

    add_node(tree, g_strdup("/machine"),
             m ? AMBER_MACHINE_NAME "-machine" : "none-machine", -1);
    add_node(tree, g_strdup("/machine/unattached"), "container", -1);
    add_node(tree, g_strdup("/machine/peripheral"), "container", -1);
    add_node(tree, g_strdup("/machine/peripheral-anon"), "container", -1);
    if (!m) {
        return;                 /* -machine none: no vCPUs, no devices */
    }
    for (int i = 0; i < ncpus; i++) {
        add_node(tree, g_strdup_printf("/machine/unattached/device[%d]", i),
                 "host-x86_64-cpu", i);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(builtin_devices); i++) {
        add_node(tree, g_strdup_printf("/machine/unattached/device[%d]", next++),
                 builtin_devices[i], -1);
    }
    /* COM1 is the one device a -device adds; with an id it is a peripheral. */
    if (s->serial_id) {
        add_node(tree, g_strdup_printf("/machine/peripheral/%s", s->serial_id),
                 "isa-serial", -1);
    } else {
        add_node(tree, g_strdup_printf("/machine/unattached/device[%d]", next),
                 "isa-serial", -1);
    }
}

static GPtrArray *build_tree(Amber *s)
{
    GPtrArray *tree = g_ptr_array_new_with_free_func(qom_node_free);

    add_node(tree, g_strdup("/"), "container", -1);
    add_machine_nodes(s, tree);
    /* QEMU makes the container with the first -object. */
    if (s->objects && s->objects->len) {
        add_node(tree, g_strdup("/objects"), "container", -1);
    }
    for (guint i = 0; s->objects && i < s->objects->len; i++) {
        CliObject *o = s->objects->pdata[i];
        add_node(tree, g_strdup_printf("/objects/%s", o->id), o->type, -1);
    }
    add_node(tree, g_strdup("/chardevs"), "container", -1);
    for (guint i = 0; s->chardevs && i < s->chardevs->len; i++) {
        ChardevLabel *c = s->chardevs->pdata[i];
        add_node(tree, g_strdup_printf("/chardevs/%s", c->label),
                 chardev_spec_type(c->spec), -1);
    }
    return tree;
}

/* Whether child is a direct child of parent; its name then is returned. */
static const char *child_name(const char *parent, const char *child)
{
    size_t len = strlen(parent);
    const char *rest;

    if (strncmp(child, parent, len) != 0) {
        return NULL;
    }
    rest = child + len;
    if (len > 1) {              /* "/" already ends in the separator */
        if (*rest != '/') {
            return NULL;
        }
        rest++;
    }
    return *rest && !strchr(rest, '/') ? rest : NULL;
}

/*
 * An absolute path names one node; a partial one ("peripheral") names the
 * node whose path ends in it, if exactly one does, as in QEMU.
 */
static QomNode *resolve(GPtrArray *tree, const char *path, Error **errp)
{
    QomNode *found = NULL;
    size_t plen = strlen(path);

    if (!*path) {
        error_setg(errp, "Path '' is ambiguous");       /* QEMU's answer for "" */
        return NULL;
    }
    for (guint i = 0; i < tree->len; i++) {
        QomNode *n = tree->pdata[i];
        size_t nlen = strlen(n->path);

        if (path[0] == '/') {
            if (!strcmp(n->path, path)) {
                return n;
            }
        } else if (plen < nlen && n->path[nlen - plen - 1] == '/' &&
                   !strcmp(n->path + nlen - plen, path)) {
            if (found) {
                error_setg(errp, "Path '%s' is ambiguous", path);
                return NULL;
            }
            found = n;
        }
    }
    if (!found) {
        error_set(errp, ERROR_CLASS_DEVICE_NOT_FOUND, "Device '%s' not found", path);
    }
    return found;
}

/* A vCPU's own properties: where it sits (one socket per vCPU, as amber lays out -smp). */
static const char *const cpu_props[] = { "socket-id", "core-id", "thread-id" };

static int cpu_prop_value(const QomNode *n, const char *name)
{
    return !strcmp(name, "socket-id") ? n->cpu : 0;
}

static void list_add(ObjectPropertyInfoList ***tail, const char *name, char *type)
{
    ObjectPropertyInfo *info = g_new0(ObjectPropertyInfo, 1);

    info->name = g_strdup(name);
    info->type = type;
    **tail = g_new0(ObjectPropertyInfoList, 1);
    (**tail)->value = info;
    *tail = &(**tail)->next;
}

ObjectPropertyInfoList *qmp_qom_list(Amber *s, const char *path, Error **errp)
{
    g_autoptr(GPtrArray) tree = build_tree(s);
    ObjectPropertyInfoList *head = NULL, **tail = &head;
    QomNode *node = resolve(tree, path, errp);

    if (!node) {
        return NULL;
    }
    list_add(&tail, "type", g_strdup("string"));
    if (node->cpu >= 0) {
        for (size_t i = 0; i < G_N_ELEMENTS(cpu_props); i++) {
            list_add(&tail, cpu_props[i], g_strdup("int32"));
        }
    }
    for (guint i = 0; i < tree->len; i++) {
        QomNode *n = tree->pdata[i];
        const char *name = child_name(node->path, n->path);

        if (name) {
            list_add(&tail, name, g_strdup_printf("child<%s>", n->type));
        }
    }
    return head;
}

JsonNode *qmp_qom_get(Amber *s, const char *path, const char *property, Error **errp)
{
    g_autoptr(GPtrArray) tree = build_tree(s);
    QomNode *node = resolve(tree, path, errp);
    JsonNode *v;

    if (!node) {
        return NULL;
    }
    if (!strcmp(property, "type")) {
        v = json_node_new(JSON_NODE_VALUE);
        json_node_set_string(v, node->type);
        return v;
    }
    for (size_t i = 0; node->cpu >= 0 && i < G_N_ELEMENTS(cpu_props); i++) {
        if (!strcmp(property, cpu_props[i])) {
            v = json_node_new(JSON_NODE_VALUE);
            json_node_set_int(v, cpu_prop_value(node, property));
            return v;
        }
    }
    /* A child is a property too; reading one gives its path, as QEMU does. */
    for (guint i = 0; i < tree->len; i++) {
        QomNode *n = tree->pdata[i];
        const char *name = child_name(node->path, n->path);

        if (name && !strcmp(name, property)) {
            v = json_node_new(JSON_NODE_VALUE);
            json_node_set_string(v, n->path);
            return v;
        }
    }
    error_setg(errp, "Property '%s.%s' not found", node->type, property);
    return NULL;
}
