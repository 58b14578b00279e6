/*
 * HMP, the text monitor: a thin front end that splits a line into words
 * and calls the QMP handlers (qmp_*).  Nothing is implemented twice.
 *
 * Any area adds its commands from its own file:
 *
 *     static void hmp_migrate(Hmp *h, int argc, char **argv) { ... }
 *     static const HmpCommand migrate_cmd = {
 *         .name = "migrate", .args = "[-d] URI", .min_args = 1, .max_args = 2,
 *         .help = "migrate to URI", .fn = hmp_migrate,
 *     };
 *     HMP_REGISTER(migrate_cmd)
 *
 * An `info` subcommand sets .info = true and is run as "info NAME".
 */
#ifndef AMBER_MONITOR_HMP_H
#define AMBER_MONITOR_HMP_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "util/error.h"

typedef struct Amber Amber;
typedef struct Hmp Hmp;

/* argv[0] is the command (or info subcommand) name; argc counts it. */
typedef void (*HmpFn)(Hmp *h, int argc, char **argv);

typedef struct HmpCommand {
    const char *name;           /* "cont|c": the first name is shown in help */
    const char *args;           /* usage after the name, e.g. "ADDR SIZE FILE" */
    const char *help;           /* one line */
    int min_args;               /* words after the name */
    int max_args;               /* -1: no limit */
    bool info;                  /* an "info NAME" subcommand */
    HmpFn fn;
} HmpCommand;

void hmp_register(const HmpCommand *cmd);
#define HMP_REGISTER(cmd)                                                \
    static void __attribute__((constructor)) hmp_register_##cmd(void)   \
    {                                                                    \
        hmp_register(&(cmd));                                            \
    }

Amber *hmp_amber(Hmp *h);
void hmp_printf(Hmp *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print "Error: <message>" for err and free it; false when err is NULL. */
bool hmp_handle_error(Hmp *h, Error *err);
/* Numbers as typed at the prompt: decimal or 0x hex, with an error naming `what`. */
bool hmp_parse_u64(Hmp *h, const char *word, const char *what, uint64_t *out);
/* "on"/"off" (also true/false, yes/no, 1/0). */
bool hmp_parse_bool(Hmp *h, const char *word, const char *what, bool *out);

/* Run one command line; its output is appended to out with "\r\n" line ends. */
void hmp_run_line(Amber *s, const char *line, GString *out);

#endif
