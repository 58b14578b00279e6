/*
 * The QEMU words that libvirt puts on a command line (its capability probe
 * and a domain without disks or NICs).  Each is either honoured, or
 * accepted because its value is what amber's machine already is (no USB,
 * no ACPI, no RTC, no display), or refused with the option and the value
 * it cannot honour: a guest must never see something other than what the
 * command line asked for.
 *
 * -device, -chardev, -audiodev and -object take QEMU's two spellings, the
 * dotted key=value list and the JSON object newer libvirt writes; both
 * become one list of properties first.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <json-glib/json-glib.h>

#include "chardev/char.h"
#include "cli-int.h"

/* ---- properties: key=value lists and JSON objects ------------------------------ */

typedef struct CliProp {
    char *key;
    char *val;                  /* NULL for a bare word ("server" in key=value form) */
} CliProp;

static void prop_free(gpointer p)
{
    CliProp *prop = p;

    g_free(prop->key);
    g_free(prop->val);
    g_free(prop);
}

static void prop_add(GPtrArray *props, const char *key, const char *val)
{
    CliProp *prop = g_new0(CliProp, 1);

    prop->key = g_strdup(key);
    prop->val = g_strdup(val);
    g_ptr_array_add(props, prop);
}

static bool json_props(GPtrArray *props, const char *arg, Error **errp)
{
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GError) gerr = NULL;
    JsonNode *root;
    g_autoptr(GList) members = NULL;

    if (!json_parser_load_from_data(parser, arg, -1, &gerr)) {
        error_setg(errp, "invalid JSON: %s", gerr->message);
        return false;
    }
    root = json_parser_get_root(parser);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
        error_setg(errp, "a JSON argument must be an object");
        return false;
    }
    JsonObject *o = json_node_get_object(root);
    members = json_object_get_members(o);
    for (GList *l = members; l; l = l->next) {
        JsonNode *n = json_object_get_member(o, l->data);
        GType t = JSON_NODE_HOLDS_VALUE(n) ? json_node_get_value_type(n) : G_TYPE_INVALID;
        g_autofree char *val = NULL;

        if (t == G_TYPE_STRING) {
            val = g_strdup(json_node_get_string(n));
        } else if (t == G_TYPE_INT64) {
            val = g_strdup_printf("%" G_GINT64_FORMAT, json_node_get_int(n));
        } else if (t == G_TYPE_BOOLEAN) {
            val = g_strdup(json_node_get_boolean(n) ? "on" : "off");
        } else {
            error_setg(errp, "property '%s' must be a string, an integer or a boolean",
                       (const char *)l->data);
            return false;
        }
        prop_add(props, l->data, val);
    }
    return true;
}

/*
 * Properties of arg; in key=value form a first word without '=' is the
 * value of first_key ("-device isa-serial,..." names the driver).
 */
static GPtrArray *read_props(const char *arg, const char *first_key, Error **errp)
{
    GPtrArray *props = g_ptr_array_new_with_free_func(prop_free);

    if (arg[0] == '{') {
        if (!json_props(props, arg, errp)) {
            g_ptr_array_unref(props);
            return NULL;
        }
        return props;
    }
    g_auto(GStrv) items = g_strsplit(arg, ",", -1);
    for (int i = 0; items[i]; i++) {
        const char *val;
        g_autofree char *key = cli_split_key(items[i], &val);

        if (i == 0 && !val && first_key) {
            prop_add(props, first_key, key);
        } else {
            prop_add(props, key, val);
        }
    }
    return props;
}

static const char *prop_get(GPtrArray *props, const char *key)
{
    for (guint i = 0; i < props->len; i++) {
        CliProp *prop = props->pdata[i];
        if (!strcmp(prop->key, key)) {
            return prop->val ? prop->val : "on";
        }
    }
    return NULL;
}

/* Fails naming the first property not in the NULL-terminated known list. */
static bool props_known(GPtrArray *props, const char *what, const char *const *known,
                        Error **errp)
{
    for (guint i = 0; i < props->len; i++) {
        CliProp *prop = props->pdata[i];
        if (!g_strv_contains(known, prop->key)) {
            error_setg(errp, "%s has no property '%s' that amber supports", what, prop->key);
            return false;
        }
    }
    return true;
}

/* A property that amber honours with one value only; absent is fine. */
static bool prop_only(GPtrArray *props, const char *key, const char *want, const char *why,
                      Error **errp)
{
    const char *val = prop_get(props, key);
    bool on, want_on;

    if (!val || !strcmp(val, want)) {
        return true;
    }
    if (cli_parse_bool(key, val, &on, NULL) && cli_parse_bool(key, want, &want_on, NULL) &&
        on == want_on) {
        return true;
    }
    error_setg(errp, "%s=%s: %s", key, val, why);
    return false;
}

/* ---- words with nothing to do in amber ---------------------------------------- */

static bool opt_no_user_config(CliParse *p, const char *arg, Error **errp)
{
    return true;                /* amber reads no configuration files */
}

static bool opt_nodefaults(CliParse *p, const char *arg, Error **errp)
{
    /* amber adds no default devices beyond its machine; this only keeps
     * -nographic from putting COM1 on the terminal. */
    p->nodefaults = true;
    return true;
}

static bool opt_nographic(CliParse *p, const char *arg, Error **errp)
{
    p->nographic = true;
    return true;
}

static bool opt_display(CliParse *p, const char *arg, Error **errp)
{
    if (strcmp(arg, "none") != 0) {
        error_setg(errp, "amber has no display (only -display none)");
        return false;
    }
    return true;
}

static bool opt_no_acpi(CliParse *p, const char *arg, Error **errp)
{
    return true;                /* amber's machine has no ACPI tables */
}

static bool opt_no_hpet(CliParse *p, const char *arg, Error **errp)
{
    return true;                /* nor an HPET */
}

static bool opt_no_shutdown(CliParse *p, const char *arg, Error **errp)
{
    p->cli->no_shutdown = true;
    return true;
}

static bool opt_usb(CliParse *p, const char *arg, Error **errp)
{
    error_setg(errp, "-usb: amber's machine has no USB controller");
    return false;
}

static bool opt_msg(CliParse *p, const char *arg, Error **errp)
{
    static const char *const known[] = { "timestamp", "guest-name", NULL };
    g_autoptr(GPtrArray) props = read_props(arg, NULL, errp);
    bool on;

    if (!props || !props_known(props, "-msg", known, errp)) {
        return false;
    }
    /* How amber's own messages look: the guest sees nothing of it. */
    for (guint i = 0; i < props->len; i++) {
        CliProp *prop = props->pdata[i];
        if (!cli_parse_bool(prop->key, prop->val ? prop->val : "on", &on, errp)) {
            return false;
        }
        *(!strcmp(prop->key, "timestamp") ? &p->cli->msg_timestamp
                                          : &p->cli->msg_guest_name) = on;
    }
    return true;
}

/* ---- the vCPU, memory, clock, boot ------------------------------------------------ */

static bool opt_cpu(CliParse *p, const char *arg, Error **errp)
{
    static const char *const known[] = { "model", "migratable", NULL };
    g_autoptr(GPtrArray) props = read_props(arg, "model", errp);

    if (!props) {
        return false;
    }
    const char *model = prop_get(props, "model");
    if (!model || strcmp(model, "host") != 0) {
        error_setg(errp, "amber's vCPUs are the host's CPU as KVM reports it: only "
                   "-cpu host");
        return false;
    }
    /* Feature flags (+x, x=on) would change the CPUID amber gives the guest. */
    return props_known(props, "-cpu host", known, errp) &&
           prop_only(props, "migratable", "on", "amber hides the host features that "
                     "cannot migrate (migratable=on only)", errp);
}

static bool opt_overcommit(CliParse *p, const char *arg, Error **errp)
{
    static const char *const known[] = { "mem-lock", "cpu-pm", NULL };
    g_autoptr(GPtrArray) props = read_props(arg, NULL, errp);

    return props && props_known(props, "-overcommit", known, errp) &&
           prop_only(props, "mem-lock", "off", "amber does not lock guest memory", errp) &&
           prop_only(props, "cpu-pm", "off", "amber keeps the host's CPU power "
                     "management from the guest", errp);
}

static bool opt_uuid(CliParse *p, const char *arg, Error **errp)
{
    if (!g_uuid_string_is_valid(arg)) {
        error_setg(errp, "not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)");
        return false;
    }
    cli_replace_str(&p->cli->uuid, arg);
    return true;
}

static bool opt_rtc(CliParse *p, const char *arg, Error **errp)
{
    static const char *const known[] = { "base", "clock", "driftfix", NULL };
    static const char why[] = "amber's machine has no RTC, so only the default holds";
    g_autoptr(GPtrArray) props = read_props(arg, NULL, errp);

    return props && props_known(props, "-rtc", known, errp) &&
           prop_only(props, "base", "utc", why, errp) &&
           prop_only(props, "clock", "host", why, errp) &&
           prop_only(props, "driftfix", "none", why, errp);
}

static bool opt_boot(CliParse *p, const char *arg, Error **errp)
{
    static const char *const known[] = { "strict", "menu", NULL };
    g_autoptr(GPtrArray) props = read_props(arg, NULL, errp);
    const char *strict;
    bool on;

    if (!props) {
        return false;
    }
    if (prop_get(props, "order") || prop_get(props, "once")) {
        error_setg(errp, "amber loads its guest directly: there is no boot order");
        return false;
    }
    /* strict: no other device to fall back to, so both values hold. */
    strict = prop_get(props, "strict");
    return props_known(props, "-boot", known, errp) &&
           (!strict || cli_parse_bool("strict", strict, &on, errp)) &&
           prop_only(props, "menu", "off", "amber has no boot menu", errp);
}

static bool opt_global(CliParse *p, const char *arg, Error **errp)
{
    /* KVM's in-kernel PIT reinjects lost ticks: QEMU's "delay" policy. */
    if (!strcmp(arg, "kvm-pit.lost_tick_policy=delay")) {
        return true;
    }
    error_setg(errp, "amber takes only kvm-pit.lost_tick_policy=delay, which its "
               "in-kernel PIT does");
    return false;
}

/* ---- chardevs, monitors, devices ---------------------------------------------------- */

void cli_chardev_free(gpointer p)
{
    CliChardev *c = p;

    g_free(c->id);
    g_free(c->spec);
    g_free(c);
}

void cli_chardev_use_free(gpointer p)
{
    CliChardevUse *u = p;

    g_free(u->chardev);
    g_free(u->opt);
    g_free(u);
}

static CliChardev *find_chardev(CliOptions *cli, const char *id)
{
    for (guint i = 0; i < cli->chardevs->len; i++) {
        CliChardev *c = cli->chardevs->pdata[i];
        if (!strcmp(c->id, id)) {
            return c;
        }
    }
    return NULL;
}

/* The spec amber's chardev layer takes for a -chardev socket. */
static char *socket_spec(GPtrArray *props, Error **errp)
{
    const char *path = prop_get(props, "path"), *fd = prop_get(props, "fd");
    const char *server = prop_get(props, "server"), *wait = prop_get(props, "wait");
    bool srv = false, wt = true;

    if (!!path == !!fd) {
        error_setg(errp, "a socket chardev needs path= or fd= (one of them)");
        return NULL;
    }
    if ((server && !cli_parse_bool("server", server, &srv, errp)) ||
        (wait && !cli_parse_bool("wait", wait, &wt, errp))) {
        return NULL;
    }
    if (fd && !srv) {
        error_setg(errp, "fd=%s: amber takes a passed socket only as a listening one "
                   "(server=on)", fd);
        return NULL;
    }
    if (fd && g_ascii_isdigit(*fd)) {
        guint64 n;
        if (g_ascii_string_to_unsigned(fd, 10, 0, G_MAXINT, &n, NULL) &&
            !chardev_check_listening_fd((int)n, errp)) {
            error_prepend(errp, "fd=%s: ", fd);
            return NULL;
        }
    }
    if (!srv) {
        return g_strdup_printf("unix:%s", path);
    }
    return g_strdup_printf("%s:%s,server=on,wait=%s", fd ? "fd" : "unix", fd ? fd : path,
                           wt ? "on" : "off");
}

static char *chardev_spec_of(const char *backend, GPtrArray *props, Error **errp)
{
    static const char *const socket[] = { "backend", "id", "path", "fd", "server", "wait",
                                          NULL };
    static const char *const file[] = { "backend", "id", "path", "append", NULL };
    static const char *const bare[] = { "backend", "id", NULL };
    static const char *const backends[] = { "socket", "file", "pty", "null", "stdio", NULL };
    g_autofree char *what = g_strdup_printf("-chardev %s", backend);

    if (!g_strv_contains(backends, backend)) {
        error_setg(errp, "amber has no '%s' chardev backend (socket, file, pty, null, stdio)",
                   backend);
        return NULL;
    }
    if (!props_known(props, what, !strcmp(backend, "socket") ? socket :
                                  !strcmp(backend, "file") ? file : bare, errp)) {
        return NULL;
    }
    if (!strcmp(backend, "socket")) {
        return socket_spec(props, errp);
    }
    if (!strcmp(backend, "file") && prop_get(props, "path")) {
        bool append = false;

        if (prop_get(props, "append") &&
            !cli_parse_bool("append", prop_get(props, "append"), &append, errp)) {
            return NULL;
        }
        /* A /dev/fdset/N path becomes a descriptor once every -add-fd is read. */
        return g_strdup_printf("%s:%s", append ? "file-append" : "file",
                               prop_get(props, "path"));
    }
    if (!strcmp(backend, "file")) {
        error_setg(errp, "a file chardev needs path=");
        return NULL;
    }
    return g_strdup(backend);           /* pty, null, stdio */
}

static bool opt_chardev(CliParse *p, const char *arg, Error **errp)
{
    g_autoptr(GPtrArray) props = read_props(arg, "backend", errp);
    const char *backend, *id;
    g_autofree char *spec = NULL;

    if (!props) {
        return false;
    }
    backend = prop_get(props, "backend");
    id = prop_get(props, "id");
    if (!backend || !id || !*id) {
        error_setg(errp, "-chardev needs a backend and an id (socket,id=ID,...)");
        return false;
    }
    if (find_chardev(p->cli, id)) {
        error_setg(errp, "duplicate chardev id '%s'", id);
        return false;
    }
    spec = chardev_spec_of(backend, props, errp);
    if (!spec || !chardev_check_spec(spec, NULL, errp)) {
        return false;
    }
    CliChardev *c = g_new0(CliChardev, 1);
    c->id = g_strdup(id);
    c->spec = g_steal_pointer(&spec);
    g_ptr_array_add(p->cli->chardevs, c);
    return true;
}

static void add_use(CliParse *p, const char *chardev, const char *opt, int kind)
{
    CliChardevUse *u = g_new0(CliChardevUse, 1);

    u->chardev = g_strdup(chardev);
    u->opt = g_strdup(opt);
    u->kind = kind;
    g_ptr_array_add(p->uses, u);
}

static bool opt_mon(CliParse *p, const char *arg, Error **errp)
{
    static const char *const known[] = { "chardev", "id", "mode", "pretty", NULL };
    g_autoptr(GPtrArray) props = read_props(arg, NULL, errp);
    g_autofree char *opt = g_strdup_printf("-mon %s", arg);
    const char *chardev, *mode;

    if (!props || !props_known(props, "-mon", known, errp) ||
        !prop_only(props, "pretty", "off", "amber's QMP replies are never "
                   "pretty-printed", errp)) {
        return false;
    }
    chardev = prop_get(props, "chardev");
    mode = prop_get(props, "mode");
    if (!chardev || !*chardev) {
        error_setg(errp, "-mon needs chardev=ID");
        return false;
    }
    if (mode && strcmp(mode, "control") != 0 && strcmp(mode, "readline") != 0) {
        error_setg(errp, "mode=%s: expected control or readline", mode);
        return false;
    }
    add_use(p, chardev, opt, mode && !strcmp(mode, "control") ? CLI_USE_QMP : CLI_USE_HMP);
    return true;
}

/* -device isa-serial: COM1 on a -chardev; amber's machine has no other device to add. */
static bool opt_device(CliParse *p, const char *arg, Error **errp)
{
    static const char *const known[] = { "driver", "chardev", "id", "index", NULL };
    g_autoptr(GPtrArray) props = read_props(arg, "driver", errp);
    g_autofree char *opt = g_strdup_printf("-device %s", arg);
    const char *driver, *chardev;

    if (!props) {
        return false;
    }
    driver = prop_get(props, "driver");
    if (!driver || strcmp(driver, "isa-serial") != 0) {
        error_setg(errp, "amber's machine has no device '%s' to add (it takes only "
                   "isa-serial, as COM1)", driver ? driver : "");
        return false;
    }
    chardev = prop_get(props, "chardev");
    if (!props_known(props, "isa-serial", known, errp) ||
        !prop_only(props, "index", "0", "amber has one serial port, COM1 (index=0)",
                   errp)) {
        return false;
    }
    if (!chardev || !*chardev) {
        error_setg(errp, "isa-serial needs chardev=ID");
        return false;
    }
    add_use(p, chardev, opt, CLI_USE_SERIAL);
    cli_replace_str(&p->cli->serial_id, prop_get(props, "id"));
    return true;
}

static bool opt_audiodev(CliParse *p, const char *arg, Error **errp)
{
    static const char *const known[] = { "driver", "id", NULL };
    g_autoptr(GPtrArray) props = read_props(arg, "driver", errp);
    const char *driver;

    if (!props) {
        return false;
    }
    driver = prop_get(props, "driver");
    if (!driver || strcmp(driver, "none") != 0) {
        error_setg(errp, "amber's machine has no sound device: only the none driver");
        return false;
    }
    if (!prop_get(props, "id")) {
        error_setg(errp, "-audiodev needs id=ID");
        return false;
    }
    return props_known(props, "-audiodev none", known, errp);
}

/* ---- -add-fd and /dev/fdset/N ---------------------------------------------------- */

void cli_fd_free(gpointer p)
{
    CliFd *f = p;

    g_free(f->opaque);
    g_free(f);
}

static bool fd_number(GPtrArray *props, const char *key, int *out)
{
    const char *val = prop_get(props, key);
    guint64 n;

    if (!val || !g_ascii_string_to_unsigned(val, 10, 0, G_MAXINT, &n, NULL)) {
        return false;
    }
    *out = (int)n;
    return true;
}

/*
 * -add-fd fd=N,set=S[,opaque=TEXT]: libvirt opens what amber may not be
 * allowed to (a console log, a file chardev) and hands the descriptor over
 * in a set that a path /dev/fdset/S then names.
 */
static bool opt_add_fd(CliParse *p, const char *arg, Error **errp)
{
    static const char *const known[] = { "fd", "set", "opaque", NULL };
    g_autoptr(GPtrArray) props = read_props(arg, NULL, errp);
    CliFd *f;
    int fd, set;

    if (!props || !props_known(props, "-add-fd", known, errp)) {
        return false;
    }
    if (!fd_number(props, "fd", &fd) || !fd_number(props, "set", &set)) {
        error_setg(errp, "-add-fd needs fd=N and set=N, both non-negative numbers");
        return false;
    }
    if (fd <= STDERR_FILENO) {
        error_setg(errp, "fd=%d: a standard stream cannot go into an fd set", fd);
        return false;
    }
    if (fcntl(fd, F_GETFD) < 0) {
        error_setg(errp, "fd=%d: not an open file descriptor", fd);
        return false;
    }
    for (guint i = 0; i < p->cli->fds->len; i++) {
        if (((CliFd *)p->cli->fds->pdata[i])->fd == fd) {
            error_setg(errp, "fd=%d is already in fd set %d", fd,
                       ((CliFd *)p->cli->fds->pdata[i])->set);
            return false;
        }
    }
    /* Kept for this process: no exec: child of a migration inherits it. */
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    f = g_new0(CliFd, 1);
    f->fd = fd;
    f->set = set;
    f->opaque = g_strdup(prop_get(props, "opaque"));
    g_ptr_array_add(p->cli->fds, f);
    return true;
}

#define FDSET_PREFIX "/dev/fdset/"

/*
 * A file chardev's /dev/fdset/S (a -chardev, -serial, -qmp or -monitor
 * spec): a descriptor of set S open for writing.  what names the option.
 */
static bool resolve_fdset(CliOptions *cli, char **spec, const char *what, Error **errp)
{
    const char *colon = strchr(*spec, ':');
    const char *path = colon ? colon + 1 : "";
    bool append = g_str_has_prefix(*spec, "file-append:");
    bool seen = false;
    guint64 set;

    if (!(append || g_str_has_prefix(*spec, "file:")) ||
        !g_str_has_prefix(path, FDSET_PREFIX)) {
        return true;
    }
    if (!g_ascii_string_to_unsigned(path + strlen(FDSET_PREFIX), 10, 0, G_MAXINT, &set,
                                    NULL)) {
        error_setg(errp, "%s: path=%s: not an fd set number", what, path);
        return false;
    }
    for (guint i = 0; i < cli->fds->len; i++) {
        CliFd *f = cli->fds->pdata[i];
        int mode = fcntl(f->fd, F_GETFL) & O_ACCMODE;

        seen |= f->set == (int)set;
        if (f->set == (int)set && (mode == O_WRONLY || mode == O_RDWR)) {
            g_free(*spec);
            *spec = g_strdup_printf("%s:%d", append ? "filefd-append" : "filefd", f->fd);
            return true;
        }
    }
    error_setg(errp, "%s: path=%s: %s", what, path,
               seen ? "that fd set has no descriptor open for writing"
                    : "no -add-fd made that fd set");
    return false;
}

static bool resolve_fdsets(CliOptions *cli, Error **errp)
{
    for (guint i = 0; i < cli->chardevs->len; i++) {
        CliChardev *c = cli->chardevs->pdata[i];
        g_autofree char *what = g_strdup_printf("-chardev id=%s", c->id);

        if (!resolve_fdset(cli, &c->spec, what, errp)) {
            return false;
        }
    }
    for (guint i = 0; i < cli->qmp->len; i++) {
        if (!resolve_fdset(cli, (char **)&cli->qmp->pdata[i], "-qmp", errp)) {
            return false;
        }
    }
    for (guint i = 0; i < cli->hmp->len; i++) {
        if (!resolve_fdset(cli, (char **)&cli->hmp->pdata[i], "-monitor", errp)) {
            return false;
        }
    }
    return !cli->machine->serial ||
           resolve_fdset(cli, &cli->machine->serial, "-serial", errp);
}

/* The commands and devices that name a -chardev, once every -chardev is known. */
bool cli_resolve_chardevs(CliParse *p, Error **errp)
{
    CliOptions *cli = p->cli;

    if (!resolve_fdsets(cli, errp)) {
        return false;
    }

    /* What the lists hold before -mon and -device add theirs was given bare. */
    p->bare_qmp = cli->qmp->len;
    p->bare_hmp = cli->hmp->len;
    p->bare_serial = cli->machine->serial != NULL;
    /*
     * QEMU's names for chardevs that -qmp, -monitor and -serial made; a
     * frontend on a -chardev (below) goes by its id.  query-chardev finds
     * each open chardev by this name, not by its spec: two ptys share one.
     */
    for (guint i = 0; i < p->bare_qmp + p->bare_hmp; i++) {
        g_ptr_array_add(i < p->bare_qmp ? cli->qmp_labels : cli->hmp_labels,
                        g_strdup_printf("compat_monitor%u", i));
    }
    cli->serial_label = g_strdup("serial0");

    for (guint i = 0; i < p->uses->len; i++) {
        CliChardevUse *u = p->uses->pdata[i];
        CliChardev *c = find_chardev(cli, u->chardev);

        if (!c) {
            error_setg(errp, "%s: no -chardev with id '%s'", u->opt, u->chardev);
            return false;
        }
        if (c->used) {
            error_setg(errp, "%s: chardev '%s' is already in use", u->opt, u->chardev);
            return false;
        }
        c->used = true;
        if (u->kind == CLI_USE_SERIAL && cli->machine->serial) {
            error_setg(errp, "%s: amber has one serial port (COM1) and -serial gave it "
                       "already", u->opt);
            return false;
        }
        if (u->kind == CLI_USE_SERIAL) {
            cli->machine->serial = g_strdup(c->spec);
            cli_replace_str(&cli->serial_label, c->id);
        } else {
            g_ptr_array_add(u->kind == CLI_USE_QMP ? cli->qmp : cli->hmp,
                            g_strdup(c->spec));
            g_ptr_array_add(u->kind == CLI_USE_QMP ? cli->qmp_labels : cli->hmp_labels,
                            g_strdup(c->id));
        }
    }
    return true;
}

static bool serial_on_chardev(CliParse *p)
{
    for (guint i = 0; i < p->uses->len; i++) {
        if (((CliChardevUse *)p->uses->pdata[i])->kind == CLI_USE_SERIAL) {
            return true;
        }
    }
    return false;
}

/*
 * QEMU's labels: a -chardev keeps its id; one that -qmp or -monitor made is
 * "compat_monitorN", COM1's own (from -serial or the default) "serial0";
 * -machine none has no COM1.
 */
void cli_label_chardevs(CliParse *p)
{
    CliOptions *cli = p->cli;

    for (guint i = 0; i < cli->chardevs->len; i++) {
        CliChardev *c = cli->chardevs->pdata[i];
        g_ptr_array_add(cli->labels, chardev_label_new(c->id, c->spec, c->used));
    }
    for (guint i = 0; i < p->bare_qmp; i++) {
        g_ptr_array_add(cli->labels, chardev_label_new(cli->qmp_labels->pdata[i],
                                                       cli->qmp->pdata[i], true));
    }
    for (guint i = 0; i < p->bare_hmp; i++) {
        g_ptr_array_add(cli->labels, chardev_label_new(cli->hmp_labels->pdata[i],
                                                       cli->hmp->pdata[i], true));
    }
    if (!cli->machine_none && !serial_on_chardev(p) && cli->machine->serial) {
        g_ptr_array_add(cli->labels,
                        chardev_label_new("serial0", cli->machine->serial, true));
    }
}

/* ---- -object secret ------------------------------------------------------------- */

void cli_secret_free(gpointer p)
{
    CliSecret *s = p;

    g_free(s->id);
    g_free(s->format);
    g_free(s->data);
    g_free(s->file);
    g_free(s->keyid);
    g_free(s->iv);
    g_free(s);
}

static bool id_taken(CliOptions *cli, const char *id)
{
    for (guint i = 0; i < cli->secrets->len; i++) {
        if (!strcmp(((CliSecret *)cli->secrets->pdata[i])->id, id)) {
            return true;
        }
    }
    for (guint i = 0; i < cli->machine->backends->len; i++) {
        if (!strcmp(((RamBackendOptions *)cli->machine->backends->pdata[i])->id, id)) {
            return true;
        }
    }
    return false;
}

static bool secret_check(CliOptions *cli, const CliSecret *s, Error **errp)
{
    if (!s->id || !*s->id) {
        error_setg(errp, "id= is required");
        return false;
    }
    if (id_taken(cli, s->id)) {
        error_setg(errp, "duplicate object id '%s'", s->id);
        return false;
    }
    if (strcmp(s->format, "raw") != 0 && strcmp(s->format, "base64") != 0) {
        error_setg(errp, "format=%s: expected raw or base64", s->format);
        return false;
    }
    if (!!s->data == !!s->file) {
        error_setg(errp, "a secret needs data= or file= (one of them)");
        return false;
    }
    if (!!s->keyid != !!s->iv) {
        error_setg(errp, "keyid= and iv= go together");
        return false;
    }
    return true;
}

/* Re-spell a JSON -object as key=value for the memory backends' parser. */
static char *object_as_list(GPtrArray *props)
{
    GString *out = g_string_new(prop_get(props, "qom-type"));

    for (guint i = 0; i < props->len; i++) {
        CliProp *prop = props->pdata[i];
        if (strcmp(prop->key, "qom-type") != 0) {
            g_string_append_printf(out, ",%s=%s", prop->key, prop->val ? prop->val : "on");
        }
    }
    return g_string_free(out, FALSE);
}

static bool object_secret(CliParse *p, GPtrArray *props, Error **errp)
{
    static const char *const known[] = { "qom-type", "id", "format", "data", "file",
                                         "keyid", "iv", NULL };
    CliSecret *s;

    if (!props_known(props, "secret", known, errp)) {
        return false;
    }
    s = g_new0(CliSecret, 1);
    s->id = g_strdup(prop_get(props, "id"));
    s->format = g_strdup(prop_get(props, "format") ? prop_get(props, "format") : "raw");
    s->data = g_strdup(prop_get(props, "data"));
    s->file = g_strdup(prop_get(props, "file"));
    s->keyid = g_strdup(prop_get(props, "keyid"));
    s->iv = g_strdup(prop_get(props, "iv"));
    if (!secret_check(p->cli, s, errp)) {
        cli_secret_free(s);
        return false;
    }
    g_ptr_array_add(p->cli->secrets, s);
    return true;
}

bool cli_object_secret(CliParse *p, const char *arg, bool *handled, Error **errp)
{
    g_autoptr(GPtrArray) props = read_props(arg, "qom-type", errp);
    const char *type;

    *handled = false;
    if (!props) {
        return false;
    }
    type = prop_get(props, "qom-type");
    if (type && !strcmp(type, "secret")) {
        *handled = true;
        return object_secret(p, props, errp);
    }
    if (arg[0] == '{') {
        /* A JSON memory backend: hand it on in the spelling cli.c reads. */
        g_autofree char *list = object_as_list(props);

        *handled = true;
        return cli_object_list(p, list, errp);
    }
    return true;
}

/* ---- the table ---------------------------------------------------------------------- */

const CliOption cli_qemu_options[] = {
    { "no-user-config", NULL, "accepted: amber reads no configuration files",
      opt_no_user_config },
    { "nodefaults", NULL, "accepted: amber adds no default devices (COM1 stays, on null)",
      opt_nodefaults },
    { "nographic", NULL, "no display (amber has none); COM1 on stdio unless -nodefaults",
      opt_nographic },
    { "display", "none", "amber has no display", opt_display },
    { "cpu", "host[,migratable=on]", "the vCPU model: the host's CPU as KVM reports it",
      opt_cpu },
    { "overcommit", "mem-lock=off[,cpu-pm=off]", "accepted with amber's behaviour only",
      opt_overcommit },
    { "uuid", "UUID", "the VM's UUID", opt_uuid },
    { "rtc", "base=utc[,clock=host][,driftfix=none]", "accepted: amber's machine has no RTC",
      opt_rtc },
    { "no-shutdown", NULL, "on a guest poweroff stop the VM instead of exiting",
      opt_no_shutdown },
    { "no-acpi", NULL, "accepted: amber's machine has no ACPI", opt_no_acpi },
    { "no-hpet", NULL, "accepted: amber's machine has no HPET", opt_no_hpet },
    { "boot", "[strict=on|off][,menu=off]", "accepted: amber loads its guest directly",
      opt_boot },
    { "usb", NULL, "refused: amber's machine has no USB controller", opt_usb },
    { "msg", "timestamp=on|off[,guest-name=on|off]",
      "start amber's messages with the time (UTC) and/or the -name", opt_msg },
    { "global", "kvm-pit.lost_tick_policy=delay", "accepted: what the in-kernel PIT does",
      opt_global },
    { "chardev", "socket,id=ID,path=PATH|fd=N[,server=on][,wait=off] | file,id=ID,path=P"
      "[,append=on] | pty,id=ID | null,id=ID | stdio,id=ID",
      "a chardev for -mon or -device isa-serial", opt_chardev },
    { "mon", "chardev=ID[,id=NAME][,mode=control|readline]",
      "a monitor on a -chardev (control: QMP, readline: HMP)", opt_mon },
    { "device", "isa-serial,chardev=ID[,id=NAME][,index=0]",
      "COM1 on a -chardev; any other device is refused", opt_device },
    { "audiodev", "none,id=ID", "accepted: amber's machine has no sound device",
      opt_audiodev },
    { "add-fd", "fd=N,set=S[,opaque=TEXT]",
      "put inherited descriptor N in fd set S, for a path /dev/fdset/S", opt_add_fd },
};

const size_t cli_qemu_options_count = G_N_ELEMENTS(cli_qemu_options);
