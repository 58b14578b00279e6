/*
 * The command line, parsed into a plain struct before anything starts:
 * a bad option is reported (one line, "amber: ...") and the process exits
 * without having opened KVM or created a file.
 */
#ifndef AMBER_SYSTEM_CLI_H
#define AMBER_SYSTEM_CLI_H

#include <stdbool.h>
#include <stdio.h>
#include <glib.h>

#include "util/error.h"
#include "system/machine.h"

#define CLI_DEFAULT_RAM_SIZE (128ULL << 20)     /* QEMU's default -m */

typedef struct CliOptions {
    MachineOptions *machine;    /* handed to machine_create(), which owns it then */
    GPtrArray *qmp;             /* -qmp specs (char *) */
    GPtrArray *hmp;             /* -monitor specs (char *) */
    GPtrArray *trace;           /* -trace patterns (char *) */
    char *logfile;              /* -D */
    char *pidfile;              /* -pidfile */
    char *incoming;             /* -incoming URI|defer */
    bool daemonize;
    bool show_help;             /* -help: print cli_usage() and exit 0 */
    bool show_version;          /* -version */
} CliOptions;

/* Fill *cli from argv (argv[0] is the program).  false with *errp on bad input. */
bool cli_parse(int argc, char **argv, CliOptions *cli, Error **errp);
/* Free everything cli_parse() filled, including cli->machine if still set. */
void cli_options_clear(CliOptions *cli);

void cli_print_usage(FILE *f);
const char *cli_version(void);

/* The process: parse, build the VM, run the main loop; returns the exit status. */
int amber_main(int argc, char **argv);

#endif
