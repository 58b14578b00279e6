/*
 * HMP: the "(amber) " text monitor over a chardev, the command registry and
 * the line parser.  Input is read into lines ("\n", "\r" or "\r\n"), split
 * into words (shell-style quotes allowed) and handed to the registered
 * command, which calls the QMP handler.  There is no line editing or echo:
 * a terminal in cooked mode already provides both.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "monitor-int.h"
#include "monitor/hmp.h"
#include "qapi-commands.h"
#include "qapi-config.h"

#define HMP_MAX_LINE 4096
#define HMP_PROMPT "(amber) "

struct Hmp {
    Amber *s;
    GString *out;
};

/*
 * The command types: static descriptions, filled from constructors before
 * main() and only read after it (process-wide; docs/devel/architecture.md).
 */
static GPtrArray *hmp_commands;

void hmp_register(const HmpCommand *cmd)
{
    if (!hmp_commands) {
        hmp_commands = g_ptr_array_new();
    }
    g_ptr_array_add(hmp_commands, (gpointer)cmd);
}

Amber *hmp_amber(Hmp *h)
{
    return h->s;
}

void hmp_printf(Hmp *h, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_string_append_vprintf(h->out, fmt, ap);
    va_end(ap);
}

bool hmp_handle_error(Hmp *h, Error *err)
{
    if (!err) {
        return false;
    }
    hmp_printf(h, "Error: %s\n", error_get_pretty(err));
    error_free(err);
    return true;
}

bool hmp_parse_u64(Hmp *h, const char *word, const char *what, uint64_t *out)
{
    char *end;

    errno = 0;
    *out = strtoull(word, &end, 0);
    if (errno || end == word || *end || word[0] == '-') {
        hmp_printf(h, "Error: %s must be a number (decimal or 0x hex), not '%s'\n",
                   what, word);
        return false;
    }
    return true;
}

bool hmp_parse_bool(Hmp *h, const char *word, const char *what, bool *out)
{
    static const char *const yes[] = { "on", "true", "yes", "1", NULL };
    static const char *const no[] = { "off", "false", "no", "0", NULL };

    for (int i = 0; yes[i]; i++) {
        if (g_ascii_strcasecmp(word, yes[i]) == 0 || g_ascii_strcasecmp(word, no[i]) == 0) {
            *out = g_ascii_strcasecmp(word, yes[i]) == 0;
            return true;
        }
    }
    hmp_printf(h, "Error: %s must be 'on' or 'off', not '%s'\n", what, word);
    return false;
}

/* word is one of the command's "|"-separated names (looked up on every line: no copies). */
static bool name_matches(const HmpCommand *cmd, const char *word)
{
    size_t len = strlen(word);

    if (!len || strchr(word, '|')) {
        return false;
    }
    for (const char *name = cmd->name; name; name = strchr(name, '|')) {
        name += *name == '|';
        if (strncmp(name, word, len) == 0 && (name[len] == '|' || name[len] == 0)) {
            return true;
        }
    }
    return false;
}

static const HmpCommand *find(const char *word, bool info)
{
    for (guint i = 0; hmp_commands && i < hmp_commands->len; i++) {
        const HmpCommand *cmd = g_ptr_array_index(hmp_commands, i);

        if (cmd->info == info && name_matches(cmd, word)) {
            return cmd;
        }
    }
    return NULL;
}

static gint cmp_cmd(gconstpointer a, gconstpointer b)
{
    const HmpCommand *x = *(const HmpCommand *const *)a;
    const HmpCommand *y = *(const HmpCommand *const *)b;

    return strcmp(x->name, y->name);
}

/* `help` lists `help` and `info` themselves among the commands, as QEMU's does. */
static const HmpCommand help_row = {
    .name = "help|?", .args = "[cmd]", .help = "show the help",
};
static const HmpCommand info_row = {
    .name = "info", .args = "[subcommand]",
    .help = "show various information about the system state (help info: the subcommands)",
};

static void print_row(Hmp *h, const HmpCommand *cmd, bool info)
{
    g_autofree char *usage = g_strdup_printf("%s%s%s%s", info ? "info " : "", cmd->name,
                                             cmd->args ? " " : "", cmd->args ? cmd->args : "");

    hmp_printf(h, "%-32s -- %s\n", usage, cmd->help);
}

static void print_list(Hmp *h, bool info)
{
    g_autoptr(GPtrArray) sorted = g_ptr_array_new();

    for (guint i = 0; hmp_commands && i < hmp_commands->len; i++) {
        const HmpCommand *cmd = g_ptr_array_index(hmp_commands, i);

        if (cmd->info == info) {
            g_ptr_array_add(sorted, (gpointer)cmd);
        }
    }
    if (!info) {
        g_ptr_array_add(sorted, (gpointer)&help_row);
        g_ptr_array_add(sorted, (gpointer)&info_row);
    }
    g_ptr_array_sort(sorted, cmp_cmd);
    for (guint i = 0; i < sorted->len; i++) {
        print_row(h, g_ptr_array_index(sorted, i), info);
    }
}

/* help, help CMD, help info, help info SUB: as QEMU answers them. */
static void help(Hmp *h, int argc, char **argv)
{
    bool info = argc > 1 && strcmp(argv[1], "info") == 0;
    const char *name = argc > (info ? 2 : 1) ? argv[info ? 2 : 1] : NULL;
    const HmpCommand *cmd;

    if (!name) {
        print_list(h, info);
        return;
    }
    cmd = !info && (!strcmp(name, "help") || !strcmp(name, "?")) ? &help_row
                                                                  : find(name, info);
    if (!cmd) {
        hmp_printf(h, "unknown command: '%s%s'\n", info ? "info " : "", name);
        return;
    }
    print_row(h, cmd, info);
}

static void run_words(Hmp *h, int argc, char **argv)
{
    bool info = strcmp(argv[0], "info") == 0;
    const HmpCommand *cmd;

    if (strcmp(argv[0], "help") == 0 || strcmp(argv[0], "?") == 0) {
        help(h, argc, argv);
        return;
    }
    if (info) {
        if (argc < 2) {
            print_list(h, true);
            return;
        }
        argc--;
        argv++;
    }
    cmd = find(argv[0], info);
    if (!cmd) {
        hmp_printf(h, info ? "unknown info command: '%s'\n" : "unknown command: '%s'\n",
                   argv[0]);
        return;
    }
    if (argc - 1 < cmd->min_args || (cmd->max_args >= 0 && argc - 1 > cmd->max_args)) {
        hmp_printf(h, "Usage: %s%s%s%s\n", info ? "info " : "", argv[0],
                   cmd->args ? " " : "", cmd->args ? cmd->args : "");
        return;
    }
    cmd->fn(h, argc, argv);
}

void hmp_run_line(Amber *s, const char *line, GString *out)
{
    Hmp h = { .s = s, .out = g_string_new(NULL) };
    g_auto(GStrv) argv = NULL;
    g_autoptr(GError) gerr = NULL;
    int argc = 0;

    if (strspn(line, " \t") != strlen(line)) {
        if (!g_shell_parse_argv(line, &argc, &argv, &gerr)) {
            hmp_printf(&h, "Error: cannot parse the line: %s\n", gerr->message);
        } else {
            run_words(&h, argc, argv);
        }
    }
    for (const char *p = h.out->str; *p; p++) {
        if (*p == '\n') {
            g_string_append_c(out, '\r');
        }
        g_string_append_c(out, *p);
    }
    g_string_free(h.out, TRUE);
}

char *qmp_human_monitor_command(Amber *s, const char *command_line, Error **errp)
{
    GString *out = g_string_new(NULL);

    hmp_run_line(s, command_line, out);
    return g_string_free(out, FALSE);
}

/* ---- the connection ---------------------------------------------------------- */

static void hmp_greet(Monitor *mon)
{
    if (mon->greeted) {
        return;
    }
    mon->greeted = true;
    monitor_puts(mon, "amber " AMBER_VERSION " monitor - type 'help' for more information\n");
    monitor_puts(mon, HMP_PROMPT);
}

static void hmp_opened(void *opaque)
{
    /* No-op when input already arrived (and greeted) before this notice. */
    hmp_greet(opaque);
}

static void hmp_closed(void *opaque)
{
    Monitor *mon = opaque;

    /* stdio stays writable after stdin's EOF: not a new connection. */
    if (chardev_is_connected(mon->chr)) {
        return;
    }
    g_string_truncate(mon->line, 0);
    mon->line_too_long = false;
    mon->greeted = false;
}

static void hmp_line(Monitor *mon)
{
    MonitorSet *set = monitor_set(mon->s);
    g_autoptr(GString) out = g_string_new(NULL);

    if (mon->line_too_long) {
        g_string_append_printf(out, "Error: line longer than %d bytes ignored\r\n",
                               HMP_MAX_LINE);
    } else {
        set->cur = mon;
        hmp_run_line(mon->s, mon->line->str, out);
        set->cur = NULL;
    }
    g_string_truncate(mon->line, 0);
    mon->line_too_long = false;
    g_string_append(out, HMP_PROMPT);
    chardev_write(mon->chr, out->str, out->len);
}

static void hmp_read(void *opaque, const uint8_t *buf, size_t len)
{
    Monitor *mon = opaque;

    /* Input can be delivered before the open notification: greet first. */
    hmp_greet(mon);
    for (size_t i = 0; i < len; i++) {
        uint8_t c = buf[i];

        if (c == '\n' && mon->last_was_cr) {
            mon->last_was_cr = false;
            continue;
        }
        mon->last_was_cr = c == '\r';
        if (c == '\n' || c == '\r') {
            hmp_line(mon);
        } else if (c == 0) {
            continue;           /* a NUL cannot be part of a command */
        } else if (mon->line->len >= HMP_MAX_LINE) {
            mon->line_too_long = true;
        } else {
            g_string_append_c(mon->line, c);
        }
    }
}

const ChardevHandlers monitor_hmp_handlers = {
    .read = hmp_read,
    .opened = hmp_opened,
    .closed = hmp_closed,
};

void monitor_hmp_init(Monitor *mon)
{
    mon->line = g_string_new(NULL);
}

void monitor_hmp_destroy(Monitor *mon)
{
    g_string_free(mon->line, TRUE);
}
