/*
 * query-command-line-options: the options that take key=value parameters,
 * named as QEMU names their parameter lists, with exactly the parameters
 * cli.c and cli-qemu.c accept (test-cli checks each one is taken).
 * libvirt decides from this list which words it may put on a command line.
 */
#include <string.h>

#include "qapi-commands.h"
#include "system/cli.h"

#define S COMMAND_LINE_PARAMETER_TYPE_STRING
#define B COMMAND_LINE_PARAMETER_TYPE_BOOLEAN
#define N COMMAND_LINE_PARAMETER_TYPE_NUMBER
#define Z COMMAND_LINE_PARAMETER_TYPE_SIZE

static const CliParamList cli_param_lists[] = {
    { "machine", { { "type", S }, { "memory-backend", S }, { "accel", S }, { "usb", B },
                   { "acpi", B }, { "vmport", B }, { "mem-merge", B },
                   { "dump-guest-core", B } } },
    { "smp-opts", { { "cpus", N }, { "sockets", N }, { "dies", N }, { "clusters", N },
                    { "cores", N }, { "threads", N }, { "maxcpus", N } } },
    { "memory", { { "size", Z } } },
    { "accel", { { "accel", S } } },
    { "name", { { "guest", S }, { "debug-threads", B }, { "process", S } } },
    { "boot-opts", { { "strict", B }, { "menu", B } } },
    { "rtc", { { "base", S }, { "clock", S }, { "driftfix", S } } },
    { "overcommit", { { "mem-lock", B }, { "cpu-pm", B } } },
    { "msg", { { "timestamp", B }, { "guest-name", B } } },
    { "chardev", { { "backend", S }, { "id", S }, { "path", S }, { "fd", S },
                   { "server", B }, { "wait", B }, { "append", B } } },
    { "mon", { { "chardev", S }, { "id", S }, { "mode", S }, { "pretty", B } } },
    { "device", { { "driver", S }, { "chardev", S }, { "id", S }, { "index", N } } },
    { "audiodev", { { "driver", S }, { "id", S } } },
    { "add-fd", { { "fd", N }, { "set", N }, { "opaque", S } } },
};

const CliParamList *cli_param_list_nth(size_t i)
{
    return i < G_N_ELEMENTS(cli_param_lists) ? &cli_param_lists[i] : NULL;
}

static CommandLineOptionInfo *option_info(const CliParamList *l)
{
    CommandLineOptionInfo *info = g_new0(CommandLineOptionInfo, 1);
    CommandLineParameterInfoList **tail = &info->parameters;

    info->option = g_strdup(l->option);
    for (size_t i = 0; i < G_N_ELEMENTS(l->params) && l->params[i].name; i++) {
        CommandLineParameterInfo *p = g_new0(CommandLineParameterInfo, 1);

        p->name = g_strdup(l->params[i].name);
        p->type = l->params[i].type;
        *tail = g_new0(CommandLineParameterInfoList, 1);
        (*tail)->value = p;
        tail = &(*tail)->next;
    }
    return info;
}

CommandLineOptionInfoList *qmp_query_command_line_options(Amber *s, bool has_option,
                                                          const char *option,
                                                          Error **errp)
{
    CommandLineOptionInfoList *head = NULL, **tail = &head;

    for (size_t i = 0; i < G_N_ELEMENTS(cli_param_lists); i++) {
        if (has_option && strcmp(option, cli_param_lists[i].option) != 0) {
            continue;
        }
        *tail = g_new0(CommandLineOptionInfoList, 1);
        (*tail)->value = option_info(&cli_param_lists[i]);
        tail = &(*tail)->next;
    }
    if (has_option && !head) {
        error_setg(errp, "invalid option name: %s", option);   /* QEMU's words */
    }
    return head;
}
