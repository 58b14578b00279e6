/*
 * Command-line internals shared by cli.c (amber's own words and the
 * whole-command-line checks) and cli-qemu.c (the words QEMU's clients,
 * libvirt first, put on every command line).
 */
#ifndef AMBER_SYSTEM_CLI_INT_H
#define AMBER_SYSTEM_CLI_INT_H

#include "system/cli.h"

/* A -mon or -device isa-serial that names a -chardev, resolved at the end. */
typedef struct CliChardevUse {
    char *chardev;              /* the -chardev id it names */
    char *opt;                  /* the option that named it, for messages */
    enum { CLI_USE_QMP, CLI_USE_HMP, CLI_USE_SERIAL } kind;
} CliChardevUse;

typedef struct CliParse {
    CliOptions *cli;
    bool ram_size_set;
    bool nodefaults;            /* -nodefaults */
    bool nographic;             /* -nographic: COM1 on stdio unless -nodefaults/-serial */
    bool accel_kvm;             /* kvm named by -accel, -enable-kvm or accel= */
    char *accel_no_kvm;         /* the option that asked only for tcg, or NULL */
    GPtrArray *uses;            /* CliChardevUse * */
    guint bare_qmp, bare_hmp;   /* -qmp / -monitor given a spec, not a -chardev */
    bool bare_serial;           /* -serial given a spec */
} CliParse;

typedef struct CliOption {
    const char *name;
    const char *arg;            /* NULL: the option takes no argument */
    const char *help;
    bool (*handle)(CliParse *p, const char *arg, Error **errp);
} CliOption;

/* cli.c: small parsers */
bool cli_parse_bool(const char *key, const char *val, bool *out, Error **errp);
bool cli_parse_count(const char *s, int *out);
/* Split "key=value" (*value NULL when there is no '='); the key is a new string. */
char *cli_split_key(const char *item, const char **value);
void cli_replace_str(char **dst, const char *src);
/* An accelerator list "kvm", "tcg", "kvm:tcg"; opt names the option for messages. */
bool cli_accel_list(CliParse *p, const char *list, const char *opt, Error **errp);

/* -object memory-backend-*,... in key=value form. */
bool cli_object_list(CliParse *p, const char *arg, Error **errp);

/* cli-qemu.c */
extern const CliOption cli_qemu_options[];
extern const size_t cli_qemu_options_count;
/* -object secret,...: true with *handled when the object is a secret. */
bool cli_object_secret(CliParse *p, const char *arg, bool *handled, Error **errp);
/* Resolve the -chardev ids that -mon and -device name (end of the command line). */
bool cli_resolve_chardevs(CliParse *p, Error **errp);
/* Name every chardev as QEMU would, once COM1's default is set. */
void cli_label_chardevs(CliParse *p);
void cli_chardev_use_free(gpointer p);
void cli_chardev_free(gpointer p);
void cli_secret_free(gpointer p);
void cli_fd_free(gpointer p);

#endif
