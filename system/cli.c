/*
 * The command line, in QEMU's words.  Parsing only fills a CliOptions:
 * nothing is opened or created here, so a mistake costs the user one
 * line on stderr and nothing else.  Checks that need the whole command
 * line (stdio used twice, -m against the memory backend) run at the end.
 */
#include <inttypes.h>
#include <string.h>

#include "chardev/char.h"
#include "system/cli.h"

#ifndef AMBER_VERSION
#define AMBER_VERSION "0.1.0"
#endif

typedef struct CliParse {
    CliOptions *cli;
    bool ram_size_set;
} CliParse;

typedef struct CliOption {
    const char *name;
    const char *arg;            /* NULL: the option takes no argument */
    const char *help;
    bool (*handle)(CliParse *p, const char *arg, Error **errp);
} CliOption;

const char *cli_version(void)
{
    return AMBER_VERSION;
}

/* ---- small parsers ----------------------------------------------------------- */

static bool parse_bool(const char *key, const char *val, bool *out, Error **errp)
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

static bool parse_count(const char *s, int *out)
{
    guint64 v;

    if (!g_ascii_isdigit(*s) || !g_ascii_string_to_unsigned(s, 10, 0, 1000, &v, NULL)) {
        return false;
    }
    *out = (int)v;
    return true;
}

/* Split "key=value" (value NULL when there is no '='). */
static char *split_key(const char *item, const char **value)
{
    const char *eq = strchr(item, '=');

    *value = eq ? eq + 1 : NULL;
    return eq ? g_strndup(item, eq - item) : g_strdup(item);
}

static void replace_str(char **dst, const char *src)
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

static bool opt_smp(CliParse *p, const char *arg, Error **errp)
{
    g_auto(GStrv) items = g_strsplit(arg, ",", -1);
    int cpus = -1;

    for (int i = 0; items[i]; i++) {
        const char *val;
        g_autofree char *key = split_key(items[i], &val);
        if (i == 0 && !val) {
            val = key;          /* "-smp 4" */
        } else if (strcmp(key, "cpus") != 0) {
            error_setg(errp, "unsupported property '%s' (use -smp N or -smp cpus=N)", key);
            return false;
        }
        if (!val || !parse_count(val, &cpus)) {
            error_setg(errp, "'%s' is not a number of vCPUs", val ? val : items[i]);
            return false;
        }
    }
    if (cpus < 1 || cpus > AMBER_MAX_CPUS) {
        error_setg(errp, "the number of vCPUs must be between 1 and %d", AMBER_MAX_CPUS);
        return false;
    }
    p->cli->machine->smp = cpus;
    return true;
}

static bool opt_accel(CliParse *p, const char *arg, Error **errp)
{
    if (strcmp(arg, "kvm") != 0) {
        error_setg(errp, "only kvm is supported");
        return false;
    }
    replace_str(&p->cli->machine->accel, "kvm");
    return true;
}

static bool opt_enable_kvm(CliParse *p, const char *arg, Error **errp)
{
    return opt_accel(p, "kvm", errp);
}

static bool opt_machine(CliParse *p, const char *arg, Error **errp)
{
    g_auto(GStrv) items = g_strsplit(arg, ",", -1);

    for (int i = 0; items[i]; i++) {
        const char *val;
        g_autofree char *key = split_key(items[i], &val);
        if (!strcmp(key, "memory-backend") && val && *val) {
            replace_str(&p->cli->machine->memory_backend, val);
            continue;
        }
        if (!strcmp(key, "memory-backend")) {
            error_setg(errp, "memory-backend needs an id (memory-backend=ID)");
        } else if (!val) {
            error_setg(errp, "unsupported machine type '%s' (amber has one machine type; "
                       "-machine accepts only memory-backend=ID)", key);
        } else {
            error_setg(errp, "unsupported machine property '%s' (-machine accepts only "
                       "memory-backend=ID)", key);
        }
        return false;
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
                   "memory-backend-memfd and memory-backend-file)", type);
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
        replace_str(&b->id, val);
        return true;
    }
    if (!strcmp(key, "size")) {
        return parse_size_bytes(val, &b->size, errp);
    }
    if (!strcmp(key, "share")) {
        return parse_bool(key, val, &b->share, errp);
    }
    if (!strcmp(key, "prealloc")) {
        return parse_bool(key, val, &b->prealloc, errp);
    }
    if (!strcmp(key, "mem-path") && b->kind == RAM_BACKEND_FILE) {
        replace_str(&b->mem_path, val);
        return true;
    }
    if (!strcmp(key, "hugetlb") && b->kind == RAM_BACKEND_MEMFD) {
        return parse_bool(key, val, &b->hugetlb, errp);
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
    return true;
}

static bool opt_object(CliParse *p, const char *arg, Error **errp)
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
        g_autofree char *key = split_key(items[i], &val);
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
        replace_str(&p->cli->field, arg);                             \
        return true;                                                  \
    }
STRING_OPTION(opt_kernel, machine->kernel)
STRING_OPTION(opt_append, machine->append)
STRING_OPTION(opt_initrd, machine->initrd)
STRING_OPTION(opt_name, machine->name)
STRING_OPTION(opt_pidfile, pidfile)
STRING_OPTION(opt_logfile, logfile)
STRING_OPTION(opt_incoming, incoming)

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
    { "smp", "N", "number of vCPUs, 1 to 8 (also cpus=N)", opt_smp },
    { "accel", "kvm", "accelerator (only kvm)", opt_accel },
    { "enable-kvm", NULL, "same as -accel kvm", opt_enable_kvm },
    { "machine", "memory-backend=ID", "back guest RAM with the -object named ID",
      opt_machine },
    { "object", "memory-backend-ram|memfd|file,id=ID,size=SIZE[,share=on|off]"
      "[,prealloc=on|off][,mem-path=PATH][,hugetlb=on|off]",
      "define a RAM backend (mem-path for file, hugetlb for memfd)", opt_object },
    { "kernel", "FILE", "multiboot guest image (default: the built-in guest)", opt_kernel },
    { "append", "CMDLINE", "guest command line (built-in guest: workload=, report=, ...)",
      opt_append },
    { "initrd", "FILE", "initial ramdisk, with -kernel", opt_initrd },
    { "serial", "SPEC", "COM1 backend: stdio, null, file:PATH, unix:PATH[,server=on,"
      "wait=off]; default null", opt_serial },
    { "qmp", "SPEC", "QMP monitor on a chardev (repeatable)", opt_qmp },
    { "monitor", "SPEC", "human monitor on a chardev (repeatable)", opt_monitor },
    { "S", NULL, "do not start the vCPUs until 'cont'", opt_S },
    { "name", "NAME", "name of the guest", opt_name },
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

void cli_print_usage(FILE *f)
{
    fprintf(f, "usage: amber [options]\n\n"
            "A small KVM virtual machine monitor.  With no -kernel the built-in guest "
            "runs.\n\nOptions (-opt and --opt are the same):\n");
    for (size_t i = 0; i < G_N_ELEMENTS(options); i++) {
        const CliOption *o = &options[i];
        fprintf(f, "  -%s%s%s\n        %s\n", o->name, o->arg ? " " : "",
                o->arg ? o->arg : "", o->help);
    }
}

static const CliOption *find_option(const char *name)
{
    for (size_t i = 0; i < G_N_ELEMENTS(options); i++) {
        if (!strcmp(options[i].name, name)) {
            return &options[i];
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

static bool check_all(CliParse *p, Error **errp)
{
    if (p->cli->machine->initrd && !p->cli->machine->kernel) {
        error_setg(errp, "-initrd is only allowed with -kernel");
        return false;
    }
    return check_stdio(p->cli, errp) && check_memory(p, errp);
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
    cli->trace = g_ptr_array_new_with_free_func(g_free);
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

bool cli_parse(int argc, char **argv, CliOptions *cli, Error **errp)
{
    CliParse p = { .cli = cli };

    cli_init(cli);
    for (int i = 1; i < argc; i++) {
        if (!parse_one(&p, argc, argv, &i, errp)) {
            return false;
        }
        if (cli->show_help || cli->show_version) {
            return true;        /* as QEMU: print and exit, whatever follows */
        }
    }
    if (!cli->machine->serial) {
        cli->machine->serial = g_strdup("null");
    }
    return check_all(&p, errp);
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
    g_free(cli->logfile);
    g_free(cli->pidfile);
    g_free(cli->incoming);
    memset(cli, 0, sizeof(*cli));
}
