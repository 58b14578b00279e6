/*
 * The log: where trace lines and log_printf() output go.
 *
 * -D FILE sends it to FILE (opened for append); otherwise it goes to
 * stderr.  Every line is written whole (one write under a lock), so lines
 * from different threads never interleave.
 */
#ifndef AMBER_UTIL_LOG_H
#define AMBER_UTIL_LOG_H

#include <stdarg.h>
#include <stdbool.h>

#include "util/error.h"

/* Send the log to path (NULL or "-" means stderr again). */
bool log_set_file(const char *path, Error **errp);
/* Close a log file set by log_set_file(); the log is stderr again. */
void log_close(void);

/* Write a formatted line (a newline is added if missing) to the log. */
void log_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_vprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* Wall-clock microseconds since the epoch, as used in log lines. */
long long log_timestamp_us(void);

#endif
