/*
 * The command line, in QEMU's words.  Parsing only fills a CliOptions:
 * nothing is opened or created here, so a mistake costs the user one
 * line on stderr and nothing else.  Checks that need the whole command
 * line (stdio used twice, -m against the memory backend) run at the end.
 */
#include <inttypes.h>
#include <stddef.h>
#include <string.h>

#include "chardev/char.h"
#include "cli-int.h"

#ifndef AMBER_VERSION
#define AMBER_VERSION "0.1.0"
#endif

const char *cli_version(void)
{
    return AMBER_VERSION;
}

/* ---- small parsers ----------------------------------------------------------- */

bool cli_parse_bool(const char *key, const char *val, bool *out, Error **errp)
{
    if (!strcmp(val, "on") || !strcmp(val, "yes") || !strcmp(val, "true")) {
        *out = true;
    } else if (!strcmp(val, "off") || !strcmp(val, "no") || !strcmp(val, "false")) {
        *out = false;
    } else {
        error_setg(errp, "%s=%s: expected on or off", key, val);
        return false;
    }
    return true;
}

bool cli_parse_count(const char *s, int *out)
{
    guint64 v;

    if (!g_ascii_isdigit(*s) || !g_ascii_string_to_unsigned(s, 10, 0, 1000, &v, NULL)) {
        return false;
    }
    *out = (int)v;
    return true;
}

char *cli_split_key(const char *item, const char **value)
{
    const char *eq = strchr(item, '=');

    *value = eq ? eq + 1 : NULL;
    return eq ? g_strndup(item, eq - item) : g_strdup(item);
}

void cli_replace_str(char **dst, const char *src)
{
    g_free(*dst);
    *dst = g_strdup(src);
}

/* ---- machine shape ---------------------------------------------------------------- */

static bool opt_m(CliParse *p, const char *arg, Error **errp)
{
    const char *s = g_str_has_prefix(arg, "size=") ? arg + 5 : arg;
    uint64_t size;

    if (!parse_size_mib_default(s, &size, errp)) {
        return false;
    }
    if (size == 0) {
        error_setg(errp, "memory size must be greater than zero");
        return false;
    }
    p->cli->machine->ram_size = (size + 4095) & ~4095ULL;
    p->ram_size_set = true;
    return true;
}

/*
 * -smp [cpus=]N[,sockets=S][,dies=D][,clusters=L][,cores=C][,threads=T][,maxcpus=M]
 * Missing values are filled as QEMU 7.2 fills them (sockets first), the
 * product must equal maxcpus.  amber's vCPUs are one socket each (CPUID and
 * query-cpus-fast say so) and cannot be hot-plugged: any other layout would
 * change what the guest sees, so it is refused.
 */
typedef struct SmpConfig {
    int cpus, sockets, dies, clusters, cores, threads, maxcpus;     /* 0: not given */
} SmpConfig;

static int *smp_field(SmpConfig *c, const char *key)
{
    static const struct { const char *name; size_t off; } fields[] = {
        { "cpus", offsetof(SmpConfig, cpus) },
        { "sockets", offsetof(SmpConfig, sockets) },
        { "dies", offsetof(SmpConfig, dies) },
        { "clusters", offsetof(SmpConfig, clusters) },
        { "cores", offsetof(SmpConfig, cores) },
        { "threads", offsetof(SmpConfig, threads) },
        { "maxcpus", offsetof(SmpConfig, maxcpus) },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(fields); i++) {
        if (!strcmp(fields[i].name, key)) {
            return (int *)((char *)c + fields[i].off);
        }
    }
    return NULL;
}

static bool smp_read(SmpConfig *c, const char *arg, Error **errp)
{
    g_auto(GStrv) items = g_strsplit(arg, ",", -1);

    for (int i = 0; items[i]; i++) {
        const char *val;
        g_autofree char *key = cli_split_key(items[i], &val);
        int *field = smp_field(c, key);

        if (i == 0 && !val) {
            val = key;          /* "-smp 4" */
            field = &c->cpus;
        } else if (!field) {
            error_setg(errp, "unsupported property '%s' (cpus, sockets, dies, clusters, "
                       "cores, threads, maxcpus)", key);
            return false;
        }
        if (!val || !cli_parse_count(val, field)) {
            error_setg(errp, "'%s' is not a number of vCPUs", val ? val : items[i]);
            return false;
        }
        if (*field == 0 && field == &c->cpus) {
            error_setg(errp, "the number of vCPUs must be between 1 and %d", AMBER_MAX_CPUS);
            return false;
        }
        if (*field == 0) {
            error_setg(errp, "%s=0: must be at least 1", key);
            return false;
        }
    }
    return true;
}

/* The product of the hierarchy, saturated so that no input overflows it. */
static int smp_total(const SmpConfig *c)
{
    int64_t t = (int64_t)c->sockets * c->dies * c->clusters * c->cores * c->threads;

    return (int)MIN(t, (int64_t)G_MAXINT);
}

static void smp_fill(SmpConfig *c)
{
    c->dies = c->dies ? c->dies : 1;
    c->clusters = c->clusters ? c->clusters : 1;
    if (!c->cpus && !c->maxcpus) {
        c->sockets = c->sockets ? c->sockets : 1;
    } else {
        int max = c->maxcpus = c->maxcpus ? c->maxcpus : c->cpus;
        c->cores = c->cores ? c->cores : (c->sockets ? 0 : 1);
        c->threads = c->threads ? c->threads : 1;
        if (!c->sockets) {
            c->sockets = MAX(max / (c->dies * c->clusters * c->cores * c->threads), 1);
        } else if (!c->cores) {
            c->cores = MAX(max / (c->sockets * c->dies * c->clusters * c->threads), 1);
        }
    }
    c->cores = c->cores ? c->cores : 1;
    c->threads = c->threads ? c->threads : 1;
    c->maxcpus = c->maxcpus ? c->maxcpus : smp_total(c);
    c->cpus = c->cpus ? c->cpus : c->maxcpus;
}

static bool smp_check(const SmpConfig *c, Error **errp)
{
    if (smp_total(c) != c->maxcpus) {
        error_setg(errp, "sockets (%d) * dies (%d) * clusters (%d) * cores (%d) * threads "
                   "(%d) != maxcpus (%d)", c->sockets, c->dies, c->clusters, c->cores,
                   c->threads, c->maxcpus);
        return false;
    }
    if (c->cpus < 1 || c->cpus > AMBER_MAX_CPUS) {
        error_setg(errp, "the number of vCPUs must be between 1 and %d", AMBER_MAX_CPUS);
        return false;
    }
    if (c->maxcpus != c->cpus) {
        error_setg(errp, "maxcpus=%d: amber cannot hot-plug vCPUs; maxcpus must equal the "
                   "number of vCPUs (%d)", c->maxcpus, c->cpus);
        return false;
    }
    if (c->cores != 1 || c->threads != 1 || c->dies != 1 || c->clusters != 1) {
        error_setg(errp, "amber gives every vCPU a socket of its own: use "
                   "sockets=%d,cores=1,threads=1", c->cpus);
        return false;
    }
    return true;
}

static bool opt_smp(CliParse *p, const char *arg, Error **errp)
{
    SmpConfig c = { 0 };

    if (!smp_read(&c, arg, errp)) {
        return false;
    }
    smp_fill(&c);
    if (!smp_check(&c, errp)) {
        return false;
    }
    p->cli->machine->smp = c.cpus;
    return true;
}

/*
 * Accelerators: amber runs guests on kvm only.  A list may name tcg too
 * (libvirt's "kvm:tcg"); one that names only tcg is accepted for
 * -machine none, which runs no guest, and refused otherwise at the end.
 */
bool cli_accel_list(CliParse *p, const char *list, const char *opt, Error **errp)
{
    g_auto(GStrv) names = g_strsplit(list, ":", -1);
    bool kvm = false;

    for (int i = 0; names[i]; i++) {
        if (!strcmp(names[i], "kvm")) {
            kvm = true;
        } else if (strcmp(names[i], "tcg") != 0) {
            error_setg(errp, "unknown accelerator '%s' (amber runs guests on kvm)",
                       names[i]);
            return false;
        }
    }
    if (!names[0]) {
        error_setg(errp, "accelerator name expected (kvm)");
        return false;
    }
    p->accel_kvm |= kvm;
    if (!kvm && !p->accel_no_kvm) {
        p->accel_no_kvm = g_strdup(opt);
    }
    return true;
}

static bool opt_accel(CliParse *p, const char *arg, Error **errp)
{
    const char *name = g_str_has_prefix(arg, "accel=") ? arg + 6 : arg;
    g_autofree char *opt = g_strdup_printf("-accel %s", arg);

    if (strchr(name, ',') || strchr(name, ':')) {
        error_setg(errp, "amber takes one accelerator name and no properties (-accel kvm)");
        return false;
    }
    return cli_accel_list(p, name, opt, errp);
}

static bool opt_enable_kvm(CliParse *p, const char *arg, Error **errp)
{
    return opt_accel(p, "kvm", errp);
}

/* The names of amber's one machine (query-machines lists them) and none. */
static bool machine_type(CliParse *p, const char *type, Error **errp)
{
    if (!strcmp(type, "none")) {
        p->cli->machine_none = true;
        return true;
    }
    if (!strcmp(type, AMBER_MACHINE_NAME) || !strcmp(type, AMBER_MACHINE_ALIAS)) {
        p->cli->machine_none = false;
        return true;
    }
    error_setg(errp, "unsupported machine type '%s' (amber's machine is %s, also "
               "called %s; none runs no guest)", type, AMBER_MACHINE_ALIAS,
               AMBER_MACHINE_NAME);
    return false;
}

/* A -machine property whose only value amber honours is `want`. */
static bool machine_fixed(const char *key, const char *val, const char *want,
                          const char *why, Error **errp)
{
    bool on, want_on = !strcmp(want, "on");

    if (!cli_parse_bool(key, val, &on, errp)) {
        return false;
    }
    if (on != want_on) {
        error_setg(errp, "%s=%s: %s", key, val, why);
        return false;
    }
    return true;
}

static bool machine_property(CliParse *p, const char *key, const char *val, Error **errp)
{
    g_autofree char *opt = g_strdup_printf("-machine accel=%s", val ? val : "");

    if (!val || !*val) {
        error_setg(errp, "machine property '%s' needs a value (%s=...)", key, key);
        return false;
    }
    if (!strcmp(key, "type")) {
        return machine_type(p, val, errp);
    }
    if (!strcmp(key, "memory-backend")) {
        cli_replace_str(&p->cli->machine->memory_backend, val);
        return true;
    }
    if (!strcmp(key, "accel")) {
        return cli_accel_list(p, val, opt, errp);
    }
    if (!strcmp(key, "usb")) {
        return machine_fixed(key, val, "off", "amber's machine has no USB controller", errp);
    }
    if (!strcmp(key, "acpi")) {
        return machine_fixed(key, val, "off", "amber's machine has no ACPI", errp);
    }
    if (!strcmp(key, "vmport")) {
        return machine_fixed(key, val, "off", "amber's machine has no VMware port", errp);
    }
    if (!strcmp(key, "mem-merge")) {
        /* libvirt's <nosharepages/>: amber never offers guest RAM to KSM anyway. */
        return machine_fixed(key, val, "off", "amber does not offer guest RAM to KSM "
                             "(mem-merge=off is what it does)", errp);
    }
    if (!strcmp(key, "dump-guest-core")) {
        bool on;        /* amber's core dumps only: the guest sees no difference */

        if (!cli_parse_bool(key, val, &on, errp)) {
            return false;
        }
        p->cli->machine->no_guest_core = !on;
        return true;
    }
    error_setg(errp, "unsupported machine property '%s' (-machine accepts type, "
               "memory-backend, accel, usb=off, acpi=off, vmport=off, mem-merge=off, "
               "dump-guest-core)", key);
    return false;
}

static bool opt_machine(CliParse *p, const char *arg, Error **errp)
{
    g_auto(GStrv) items = g_strsplit(arg, ",", -1);

    for (int i = 0; items[i]; i++) {
        const char *val;
        g_autofree char *key = cli_split_key(items[i], &val);
        if (i == 0 && !val) {
            if (!machine_type(p, key, errp)) {
                return false;
            }
        } else if (!machine_property(p, key, val, errp)) {
            return false;
        }
    }
    return true;
}

/* ---- -object memory-backend-* ----------------------------------------------------- */

static bool backend_kind(const char *type, RamBackendKind *kind, Error **errp)
{
    if (!strcmp(type, "memory-backend-ram")) {
        *kind = RAM_BACKEND_RAM;
    } else if (!strcmp(type, "memory-backend-memfd")) {
        *kind = RAM_BACKEND_MEMFD;
    } else if (!strcmp(type, "memory-backend-file")) {
        *kind = RAM_BACKEND_FILE;
    } else {
        error_setg(errp, "unknown object type '%s' (amber knows memory-backend-ram, "
                   "memory-backend-memfd, memory-backend-file and secret)", type);
        return false;
    }
    return true;
}

static bool backend_property(RamBackendOptions *b, const char *type, const char *key,
                             const char *val, Error **errp)
{
    if (!val) {
        error_setg(errp, "property '%s' needs a value (%s=...)", key, key);
        return false;
    }
    if (!strcmp(key, "id")) {
        cli_replace_str(&b->id, val);
        return true;
    }
    if (!strcmp(key, "size")) {
        return parse_size_bytes(val, &b->size, errp);
    }
    if (!strcmp(key, "share")) {
        return cli_parse_bool(key, val, &b->share, errp);
    }
    if (!strcmp(key, "prealloc")) {
        return cli_parse_bool(key, val, &b->prealloc, errp);
    }
    if (!strcmp(key, "dump")) {
        bool on;

        if (!cli_parse_bool(key, val, &on, errp)) {
            return false;
        }
        b->dump = on ? RAM_DUMP_ON : RAM_DUMP_OFF;
        return true;
    }
    if (!strcmp(key, "mem-path") && b->kind == RAM_BACKEND_FILE) {
        cli_replace_str(&b->mem_path, val);
        return true;
    }
    if (!strcmp(key, "hugetlb") && b->kind == RAM_BACKEND_MEMFD) {
        return cli_parse_bool(key, val, &b->hugetlb, errp);
    }
    if (!strcmp(key, "hugetlbsize") && b->kind == RAM_BACKEND_MEMFD) {
        if (!parse_size_bytes(val, &b->hugetlbsize, errp)) {
            return false;
        }
        if (b->hugetlbsize < (2u << 20) || (b->hugetlbsize & (b->hugetlbsize - 1))) {
            error_setg(errp, "hugetlbsize=%s: not a huge page size (a power of two, at "
                       "least 2 MiB)", val);
            return false;
        }
        return true;
    }
    error_setg(errp, "%s has no property '%s'", type, key);
    return false;
}

static bool backend_check(CliParse *p, const RamBackendOptions *b, const char *type,
                          bool size_set, Error **errp)
{
    GPtrArray *all = p->cli->machine->backends;

    if (!b->id || !*b->id) {
        error_setg(errp, "id= is required");
        return false;
    }
    if (!size_set) {
        error_setg(errp, "size= is required");
        return false;
    }
    if (b->size == 0) {
        error_setg(errp, "size must be greater than zero");
        return false;
    }
    if (b->hugetlbsize && !b->hugetlb) {
        error_setg(errp, "hugetlbsize= needs hugetlb=on");
        return false;
    }
    if (b->kind == RAM_BACKEND_FILE && (!b->mem_path || !*b->mem_path)) {
        error_setg(errp, "mem-path= is required for %s", type);
        return false;
    }
    for (guint i = 0; i < all->len; i++) {
        const RamBackendOptions *o = g_ptr_array_index(all, i);
        if (!strcmp(o->id, b->id)) {
            error_setg(errp, "duplicate object id '%s'", b->id);
            return false;
        }
    }
    for (guint i = 0; i < p->cli->secrets->len; i++) {
        if (!strcmp(((CliSecret *)p->cli->secrets->pdata[i])->id, b->id)) {
            error_setg(errp, "duplicate object id '%s'", b->id);
            return false;
        }
    }
    return true;
}

bool cli_object_list(CliParse *p, const char *arg, Error **errp)
{
    g_auto(GStrv) items = g_strsplit(arg, ",", -1);
    RamBackendOptions *b = g_new0(RamBackendOptions, 1);
    bool size_set = false;

    if (!backend_kind(items[0], &b->kind, errp)) {
        goto fail;
    }
    b->share = b->kind == RAM_BACKEND_MEMFD;    /* QEMU's defaults */
    for (int i = 1; items[i]; i++) {
        const char *val;
        g_autofree char *key = cli_split_key(items[i], &val);
        if (!backend_property(b, items[0], key, val, errp)) {
            goto fail;
        }
        size_set |= !strcmp(key, "size");
    }
    if (!backend_check(p, b, items[0], size_set, errp)) {
        goto fail;
    }
    g_ptr_array_add(p->cli->machine->backends, b);
    return true;

fail:
    ram_backend_options_free(b);
    return false;
}

/* A secret (cli-qemu.c), a JSON object (handed back in key=value form), or RAM. */
static bool opt_object(CliParse *p, const char *arg, Error **errp)
{
    bool handled;

    if (!cli_object_secret(p, arg, &handled, errp)) {
        return false;
    }
    return handled || cli_object_list(p, arg, errp);
}

/* ---- chardevs, monitors and the rest ------------------------------------------------- */

static bool opt_serial(CliParse *p, const char *arg, Error **errp)
{
    if (p->cli->machine->serial) {
        error_setg(errp, "amber has one serial port (COM1); -serial may be given once");
        return false;
    }
    if (!chardev_check_spec(arg, NULL, errp)) {
        return false;
    }
    p->cli->machine->serial = g_strdup(arg);
    return true;
}

static bool add_monitor(GPtrArray *list, const char *arg, Error **errp)
{
    if (!chardev_check_spec(arg, NULL, errp)) {
        return false;
    }
    g_ptr_array_add(list, g_strdup(arg));
    return true;
}

static bool opt_qmp(CliParse *p, const char *arg, Error **errp)
{
    return add_monitor(p->cli->qmp, arg, errp);
}

static bool opt_monitor(CliParse *p, const char *arg, Error **errp)
{
    return add_monitor(p->cli->hmp, arg, errp);
}

#define STRING_OPTION(fn, field)                                      \
    static bool fn(CliParse *p, const char *arg, Error **errp)        \
    {                                                                 \
        cli_replace_str(&p->cli->field, arg);                         \
        return true;                                                  \
    }
STRING_OPTION(opt_kernel, machine->kernel)
STRING_OPTION(opt_append, machine->append)
STRING_OPTION(opt_initrd, machine->initrd)
STRING_OPTION(opt_pidfile, pidfile)
STRING_OPTION(opt_logfile, logfile)
STRING_OPTION(opt_incoming, incoming)

/* -name NAME or -name guest=NAME[,debug-threads=on|off][,process=P] (libvirt's form). */
static bool opt_name(CliParse *p, const char *arg, Error **errp)
{
    g_auto(GStrv) items = g_strsplit(arg, ",", -1);

    for (int i = 0; items[i]; i++) {
        const char *val;
        g_autofree char *key = cli_split_key(items[i], &val);
        bool on;

        if (i == 0 && !val) {
            cli_replace_str(&p->cli->machine->name, key);
        } else if (!strcmp(key, "guest") && val) {
            cli_replace_str(&p->cli->machine->name, val);
        } else if (!strcmp(key, "debug-threads") && val) {
            /* Thread names are the host's business; amber names its threads anyway. */
            if (!cli_parse_bool(key, val, &on, errp)) {
                return false;
            }
        } else if (!strcmp(key, "process") && val) {
            continue;   /* a process title the host shows; the guest never sees it */
        } else {
            error_setg(errp, "unsupported -name property '%s' (guest=, debug-threads=, "
                       "process=)", key);
            return false;
        }
    }
    return true;
}

static bool opt_trace(CliParse *p, const char *arg, Error **errp)
{
    g_ptr_array_add(p->cli->trace, g_strdup(arg));
    return true;
}

static bool opt_S(CliParse *p, const char *arg, Error **errp)
{
    p->cli->machine->start_paused = true;
    return true;
}

static bool opt_daemonize(CliParse *p, const char *arg, Error **errp)
{
    p->cli->daemonize = true;
    return true;
}

static bool opt_help(CliParse *p, const char *arg, Error **errp)
{
    p->cli->show_help = true;
    return true;
}

static bool opt_version(CliParse *p, const char *arg, Error **errp)
{
    p->cli->show_version = true;
    return true;
}

static const CliOption options[] = {
    { "m", "SIZE", "guest RAM (MiB without a suffix; K, M, G, T); default 128M", opt_m },
    { "smp", "[cpus=]N[,sockets=N,cores=1,threads=1,maxcpus=N]",
      "number of vCPUs, 1 to 8, one socket each", opt_smp },
    { "accel", "kvm", "accelerator (kvm; tcg only with -machine none)", opt_accel },
    { "enable-kvm", NULL, "same as -accel kvm", opt_enable_kvm },
    { "machine", "[pc|pc-i440fx-7.2|none][,memory-backend=ID][,accel=kvm[:tcg]][,usb=off]"
      "[,acpi=off][,vmport=off][,mem-merge=off][,dump-guest-core=on|off]",
      "machine type (none: no guest, QMP only); back guest RAM with the -object ID",
      opt_machine },
    { "object", "memory-backend-ram|memfd|file,id=ID,size=SIZE[,share=on|off]"
      "[,prealloc=on|off][,dump=on|off][,mem-path=PATH][,hugetlb=on|off][,hugetlbsize=SIZE] | secret,id=ID,"
      "format=raw|base64,data=D|file=F[,keyid=ID,iv=IV]",
      "define a RAM backend (mem-path for file, hugetlb for memfd) or a secret", opt_object },
    { "kernel", "FILE", "multiboot guest image (default: the built-in guest)", opt_kernel },
    { "append", "CMDLINE", "guest command line (built-in guest: workload=, report=, ...)",
      opt_append },
    { "initrd", "FILE", "initial ramdisk, with -kernel", opt_initrd },
    { "serial", "SPEC", "COM1 backend: stdio, null, pty, file:PATH, unix:PATH[,server=on,"
      "wait=off]; default null", opt_serial },
    { "qmp", "SPEC", "QMP monitor on a chardev (repeatable)", opt_qmp },
    { "monitor", "SPEC", "human monitor on a chardev (repeatable)", opt_monitor },
    { "S", NULL, "do not start the vCPUs until 'cont'", opt_S },
    { "name", "NAME|guest=NAME[,debug-threads=on|off]", "name of the guest", opt_name },
    { "incoming", "URI|defer", "wait for an incoming migration stream", opt_incoming },
    { "pidfile", "FILE", "write the process id to FILE", opt_pidfile },
    { "daemonize", NULL, "detach once the VM is set up", opt_daemonize },
    { "D", "FILE", "write the log (trace output) to FILE", opt_logfile },
    { "trace", "PATTERN", "enable trace events matching PATTERN ('help' lists them)",
      opt_trace },
    { "version", NULL, "print the version and exit", opt_version },
    { "help", NULL, "print this help and exit", opt_help },
    { "h", NULL, "same as -help", opt_help },
};

static void print_option(FILE *f, const CliOption *o)
{
    fprintf(f, "  -%s%s%s\n        %s\n", o->name, o->arg ? " " : "", o->arg ? o->arg : "",
            o->help);
}

void cli_print_usage(FILE *f)
{
    fprintf(f, "usage: amber [options]\n\n"
            "A small KVM virtual machine monitor.  With no -kernel the built-in guest "
            "runs.\n\nOptions (-opt and --opt are the same):\n");
    for (size_t i = 0; i < G_N_ELEMENTS(options); i++) {
        print_option(f, &options[i]);
    }
    fprintf(f, "\nQEMU's words that libvirt uses (values amber cannot honour are "
            "refused):\n");
    for (size_t i = 0; i < cli_qemu_options_count; i++) {
        print_option(f, &cli_qemu_options[i]);
    }
}

static const CliOption *find_option(const char *name)
{
    for (size_t i = 0; i < G_N_ELEMENTS(options); i++) {
        if (!strcmp(options[i].name, name)) {
            return &options[i];
        }
    }
    for (size_t i = 0; i < cli_qemu_options_count; i++) {
        if (!strcmp(cli_qemu_options[i].name, name)) {
            return &cli_qemu_options[i];
        }
    }
    return NULL;
}

/* ---- whole-command-line checks ----------------------------------------------------- */

static bool check_stdio(CliOptions *cli, Error **errp)
{
    const char *user = NULL;
    const MachineOptions *mo = cli->machine;
    bool is_stdio;

    if (mo->serial && chardev_check_spec(mo->serial, &is_stdio, NULL) && is_stdio) {
        user = "-serial";
    }
    for (int kind = 0; kind < 2; kind++) {
        GPtrArray *list = kind ? cli->hmp : cli->qmp;
        const char *opt = kind ? "-monitor" : "-qmp";
        for (guint i = 0; i < list->len; i++) {
            if (!chardev_check_spec(list->pdata[i], &is_stdio, NULL) || !is_stdio) {
                continue;
            }
            if (user) {
                error_setg(errp, "%s stdio: stdio is already used by %s", opt, user);
                return false;
            }
            user = opt;
        }
    }
    if (user && cli->daemonize) {
        error_setg(errp, "-daemonize cannot be used with %s stdio", user);
        return false;
    }
    return true;
}

static bool check_memory(CliParse *p, Error **errp)
{
    MachineOptions *mo = p->cli->machine;
    const RamBackendOptions *b = NULL;

    if (!mo->memory_backend) {
        return true;
    }
    for (guint i = 0; i < mo->backends->len; i++) {
        const RamBackendOptions *o = g_ptr_array_index(mo->backends, i);
        if (!strcmp(o->id, mo->memory_backend)) {
            b = o;
        }
    }
    if (!b) {
        error_setg(errp, "-machine memory-backend=%s: no -object with id '%s'",
                   mo->memory_backend, mo->memory_backend);
        return false;
    }
    if (p->ram_size_set && ((b->size + 4095) & ~4095ULL) != mo->ram_size) {
        error_setg(errp, "-m (%" PRIu64 " MiB) does not match the size of memory backend "
                   "'%s' (%" PRIu64 " bytes): they must be equal", mo->ram_size >> 20,
                   b->id, b->size);
        return false;
    }
    mo->ram_size = b->size;     /* -m defaults to the backend's size */
    return true;
}

/* kvm unless the command line asked for tcg alone, which only -machine none takes. */
static bool check_accel(CliParse *p, Error **errp)
{
    CliOptions *cli = p->cli;

    cli->kvm_allowed = p->accel_kvm || !p->accel_no_kvm;
    if (!cli->kvm_allowed && !cli->machine_none) {
        error_setg(errp, "%s: amber runs guests on kvm only (tcg is accepted with "
                   "-machine none, which runs no guest)", p->accel_no_kvm);
        return false;
    }
    return true;
}

static bool check_all(CliParse *p, Error **errp)
{
    if (p->cli->machine->initrd && !p->cli->machine->kernel) {
        error_setg(errp, "-initrd is only allowed with -kernel");
        return false;
    }
    if (p->cli->machine_none && p->cli->incoming) {
        error_setg(errp, "-incoming needs a guest: -machine none has none");
        return false;
    }
    if (p->nographic && p->cli->daemonize && !strcmp(p->cli->machine->serial, "stdio")) {
        error_setg(errp, "-nographic cannot be used with -daemonize (COM1 would be on "
                   "stdio; add -nodefaults or -serial)");
        return false;
    }
    return check_accel(p, errp) && check_stdio(p->cli, errp) && check_memory(p, errp);
}

/* ---- entry points --------------------------------------------------------------------- */

static void cli_init(CliOptions *cli)
{
    memset(cli, 0, sizeof(*cli));
    cli->machine = g_new0(MachineOptions, 1);
    cli->machine->ram_size = CLI_DEFAULT_RAM_SIZE;
    cli->machine->smp = 1;
    cli->machine->accel = g_strdup("kvm");
    cli->machine->backends = g_ptr_array_new();
    cli->qmp = g_ptr_array_new_with_free_func(g_free);
    cli->hmp = g_ptr_array_new_with_free_func(g_free);
    cli->qmp_labels = g_ptr_array_new_with_free_func(g_free);
    cli->hmp_labels = g_ptr_array_new_with_free_func(g_free);
    cli->trace = g_ptr_array_new_with_free_func(g_free);
    cli->chardevs = g_ptr_array_new_with_free_func(cli_chardev_free);
    cli->fds = g_ptr_array_new_with_free_func(cli_fd_free);
    cli->secrets = g_ptr_array_new_with_free_func(cli_secret_free);
    cli->labels = g_ptr_array_new_with_free_func(chardev_label_free);
    cli->kvm_allowed = true;
}

static bool parse_one(CliParse *p, int argc, char **argv, int *i, Error **errp)
{
    const char *word = argv[*i];
    const char *name = word + 1 + (word[1] == '-');
    const CliOption *o;

    if (word[0] != '-' || !*name) {
        error_setg(errp, "%s: unexpected argument (options start with '-'; see -help)", word);
        return false;
    }
    o = find_option(name);
    if (!o) {
        error_setg(errp, "%s: invalid option (see -help)", word);
        return false;
    }
    if (!o->arg) {
        return o->handle(p, NULL, errp);
    }
    if (*i + 1 >= argc) {
        error_setg(errp, "%s: requires an argument", word);
        return false;
    }
    const char *arg = argv[++*i];
    if (!o->handle(p, arg, errp)) {
        error_prepend(errp, "%s %s: ", word, arg);
        return false;
    }
    return true;
}

static bool parse_all(CliParse *p, int argc, char **argv, Error **errp)
{
    CliOptions *cli = p->cli;

    for (int i = 1; i < argc; i++) {
        if (!parse_one(p, argc, argv, &i, errp)) {
            return false;
        }
        if (cli->show_help || cli->show_version) {
            return true;        /* as QEMU: print and exit, whatever follows */
        }
    }
    if (!cli_resolve_chardevs(p, errp)) {
        return false;
    }
    if (!cli->machine->serial) {
        /* QEMU's -nographic puts the default serial port on the terminal. */
        bool tty = p->nographic && !p->nodefaults;
        cli->machine->serial = g_strdup(tty ? "stdio" : "null");
    }
    cli_label_chardevs(p);
    return check_all(p, errp);
}

bool cli_parse(int argc, char **argv, CliOptions *cli, Error **errp)
{
    CliParse p = { .cli = cli };
    bool ok;

    cli_init(cli);
    p.uses = g_ptr_array_new_with_free_func(cli_chardev_use_free);
    ok = parse_all(&p, argc, argv, errp);
    g_ptr_array_unref(p.uses);
    g_free(p.accel_no_kvm);
    return ok;
}

static void cli_object_free(gpointer p)
{
    CliObject *o = p;

    g_free(o->id);
    g_free(o);
}

static void add_object(GPtrArray *objs, const char *id, const char *type)
{
    CliObject *o = g_new0(CliObject, 1);

    o->id = g_strdup(id);
    o->type = type;
    g_ptr_array_add(objs, o);
}

GPtrArray *cli_objects(const CliOptions *cli)
{
    GPtrArray *objs = g_ptr_array_new_with_free_func(cli_object_free);

    for (guint i = 0; cli->machine->backends && i < cli->machine->backends->len; i++) {
        const RamBackendOptions *b = cli->machine->backends->pdata[i];

        add_object(objs, b->id, ram_backend_kind_name(b->kind));
    }
    for (guint i = 0; cli->secrets && i < cli->secrets->len; i++) {
        add_object(objs, ((CliSecret *)cli->secrets->pdata[i])->id, "secret");
    }
    return objs;
}

void cli_options_clear(CliOptions *cli)
{
    machine_options_free(cli->machine);
    if (cli->qmp) {
        g_ptr_array_unref(cli->qmp);
    }
    if (cli->hmp) {
        g_ptr_array_unref(cli->hmp);
    }
    if (cli->trace) {
        g_ptr_array_unref(cli->trace);
    }
    if (cli->fds) {
        g_ptr_array_unref(cli->fds);
    }
    if (cli->chardevs) {
        g_ptr_array_unref(cli->chardevs);
    }
    if (cli->secrets) {
        g_ptr_array_unref(cli->secrets);
    }
    if (cli->labels) {
        g_ptr_array_unref(cli->labels);
    }
    g_free(cli->serial_id);
    g_free(cli->serial_label);
    if (cli->qmp_labels) {
        g_ptr_array_unref(cli->qmp_labels);
    }
    if (cli->hmp_labels) {
        g_ptr_array_unref(cli->hmp_labels);
    }
    g_free(cli->uuid);
    g_free(cli->logfile);
    g_free(cli->pidfile);
    g_free(cli->incoming);
    memset(cli, 0, sizeof(*cli));
}
