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

/* -chardev ID: the chardev spec amber's chardev layer takes for it. */
typedef struct CliChardev {
    char *id;
    char *spec;                 /* "unix:PATH,server=on,wait=off", "fd:N,...", ... */
    bool used;                  /* named by a -mon or -device already */
} CliChardev;

/* -add-fd: a descriptor the parent handed over, in fd set `set` (QEMU's fd sets). */
typedef struct CliFd {
    int set;
    int fd;
    char *opaque;               /* the parent's note on it, or NULL */
} CliFd;

/* -object secret: kept for the commands that name it (libvirt's master key). */
typedef struct CliSecret {
    char *id;
    char *format;               /* "raw" or "base64" */
    char *data;                 /* data= or file=, exactly one of them */
    char *file;
    char *keyid;                /* the secret that decrypts this one, with iv= */
    char *iv;
} CliSecret;

typedef struct CliOptions {
    MachineOptions *machine;    /* handed to machine_create(), which owns it then */
    bool machine_none;          /* -machine none: no guest and no KVM, QMP only */
    bool kvm_allowed;           /* the accelerator list names kvm (the default) */
    bool no_shutdown;           /* -no-shutdown: a guest poweroff stops the VM */
    char *uuid;                 /* -uuid */
    GPtrArray *chardevs;        /* -chardev (CliChardev *) */
    GPtrArray *secrets;         /* -object secret (CliSecret *) */
    GPtrArray *fds;             /* -add-fd (CliFd *), in command-line order */
    GPtrArray *labels;          /* every chardev (ChardevLabel *), for query-chardev */
    char *serial_id;            /* -device isa-serial id=, or NULL */
    GPtrArray *qmp;             /* -qmp specs (char *) */
    GPtrArray *hmp;             /* -monitor specs (char *) */
    GPtrArray *qmp_labels;      /* the chardev label of each qmp[i] (char *) */
    GPtrArray *hmp_labels;      /* the chardev label of each hmp[i] (char *) */
    char *serial_label;         /* COM1's chardev label: "serial0" or a -chardev id */
    GPtrArray *trace;           /* -trace patterns (char *) */
    char *logfile;              /* -D */
    char *pidfile;              /* -pidfile */
    char *incoming;             /* -incoming URI|defer */
    bool daemonize;
    bool msg_timestamp;         /* -msg timestamp=on */
    bool msg_guest_name;        /* -msg guest-name=on (with -name) */
    bool show_help;             /* -help: print cli_usage() and exit 0 */
    bool show_version;          /* -version */
} CliOptions;

/* Fill *cli from argv (argv[0] is the program).  false with *errp on bad input. */
bool cli_parse(int argc, char **argv, CliOptions *cli, Error **errp);
/* Free everything cli_parse() filled, including cli->machine if still set. */
void cli_options_clear(CliOptions *cli);

/* An -object the command line made: what qom-list shows under /objects. */
typedef struct CliObject {
    char *id;
    const char *type;               /* its QOM type: "memory-backend-ram", "secret", ... */
} CliObject;

/* The -object list as the object tree shows it (CliObject *, a new array). */
GPtrArray *cli_objects(const CliOptions *cli);

void cli_print_usage(FILE *f);
const char *cli_version(void);

/*
 * query-command-line-options' table (system/cli-query.c): an option's
 * parameter list under QEMU's name for it, the parameters amber takes
 * (type: a CommandLineParameterType value).
 */
typedef struct CliParamList {
    const char *option;
    struct {
        const char *name;
        int type;
    } params[8];                /* up to the first NULL name */
} CliParamList;
/* The i-th list, or NULL past the last. */
const CliParamList *cli_param_list_nth(size_t i);

/* The process: parse, build the VM, run the main loop; returns the exit status. */
int amber_main(int argc, char **argv);

#endif
