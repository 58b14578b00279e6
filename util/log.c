/*
 * Log destination (-D) and trace point control (-trace).
 *
 * Process-wide state (docs/devel/architecture.md lists all of it): trace
 * points are static records spread over every object file and must be
 * reachable from any thread without a context pointer, so the log
 * destination and the on/off switches cannot be handed down a context
 * struct.  Everything here is protected by log_lock, except the per-event
 * enabled flags, which are read at the trace sites with relaxed atomics.
 */
#include "util/log.h"
#include "util/trace.h"

#include <errno.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>
#include <glib.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_file;          /* NULL: stderr */

/*
 * The linker defines these for a section whose name is a C identifier.
 * Weak, so a binary without any trace point still links (both are NULL).
 */
extern TraceEvent *const __start_amber_trace_events[] __attribute__((weak));
extern TraceEvent *const __stop_amber_trace_events[] __attribute__((weak));

static size_t trace_event_count(void)
{
    if (!__start_amber_trace_events || !__stop_amber_trace_events) {
        return 0;
    }
    return __stop_amber_trace_events - __start_amber_trace_events;
}

static TraceEvent *trace_event_at(size_t i)
{
    return __start_amber_trace_events[i];
}

long long log_timestamp_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

bool log_set_file(const char *path, Error **errp)
{
    FILE *f = NULL;

    if (path && strcmp(path, "-") != 0) {
        if (!*path) {
            error_setg(errp, "log file name is empty");
            return false;
        }
        f = fopen(path, "ae");
        if (!f) {
            error_setg_errno(errp, errno, "cannot open log file '%s'", path);
            return false;
        }
        /* Lines are written whole by log_write_line(); no stdio buffering. */
        setvbuf(f, NULL, _IONBF, 0);
    }
    pthread_mutex_lock(&log_lock);
    if (log_file) {
        fclose(log_file);
    }
    log_file = f;
    pthread_mutex_unlock(&log_lock);
    return true;
}

void log_close(void)
{
    log_set_file(NULL, NULL);
}

/* Write line (which must end in '\n') with one call under the lock. */
static void log_write_line(const char *line, size_t len)
{
    pthread_mutex_lock(&log_lock);
    fwrite(line, 1, len, log_file ? log_file : stderr);
    if (!log_file) {
        fflush(stderr);
    }
    pthread_mutex_unlock(&log_lock);
}

static void log_vformat(GString *s, const char *fmt, va_list ap)
{
    g_string_append_vprintf(s, fmt, ap);
    if (s->len == 0 || s->str[s->len - 1] != '\n') {
        g_string_append_c(s, '\n');
    }
}

void log_vprintf(const char *fmt, va_list ap)
{
    GString *s = g_string_new(NULL);

    log_vformat(s, fmt, ap);
    log_write_line(s->str, s->len);
    g_string_free(s, TRUE);
}

void log_printf(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vprintf(fmt, ap);
    va_end(ap);
}

void trace_emit(const TraceEvent *ev, const char *fmt, ...)
{
    GString *s = g_string_new(NULL);
    va_list ap;

    g_string_printf(s, "%lld %ld %s ", log_timestamp_us(),
                    (long)syscall(SYS_gettid), ev->name);
    va_start(ap, fmt);
    log_vformat(s, fmt, ap);
    va_end(ap);
    log_write_line(s->str, s->len);
    g_string_free(s, TRUE);
}

static bool is_glob(const char *pattern)
{
    return strpbrk(pattern, "*?[") != NULL;
}

/* Set enabled = on for every event matching pattern; count the matches. */
static size_t trace_set_matching(const char *pattern, bool on)
{
    size_t i, n = trace_event_count(), matched = 0;

    for (i = 0; i < n; i++) {
        TraceEvent *ev = trace_event_at(i);

        if (fnmatch(pattern, ev->name, 0) == 0) {
            __atomic_store_n(&ev->enabled, on, __ATOMIC_RELAXED);
            matched++;
        }
    }
    return matched;
}

bool trace_enable(const char *pattern, Error **errp)
{
    bool on = true;

    if (!pattern) {
        error_setg(errp, "missing trace event pattern");
        return false;
    }
    if (g_str_has_prefix(pattern, "enable=")) {
        pattern += strlen("enable=");
    }
    if (pattern[0] == '-') {
        on = false;
        pattern++;
    }
    if (!*pattern) {
        error_setg(errp, "empty trace event pattern (try -trace help)");
        return false;
    }
    if (trace_set_matching(pattern, on) == 0 && !is_glob(pattern)) {
        error_setg(errp, "trace event '%s' does not exist "
                   "(-trace help lists the events)", pattern);
        return false;
    }
    return true;
}

void trace_disable_all(void)
{
    trace_set_matching("*", false);
}

bool trace_event_enabled(const char *name)
{
    size_t i, n = trace_event_count();

    for (i = 0; i < n; i++) {
        TraceEvent *ev = trace_event_at(i);

        if (strcmp(ev->name, name) == 0 &&
            __atomic_load_n(&ev->enabled, __ATOMIC_RELAXED)) {
            return true;
        }
    }
    return false;
}

bool trace_event_exists(const char *name)
{
    size_t i, n = trace_event_count();

    for (i = 0; i < n; i++) {
        if (strcmp(trace_event_at(i)->name, name) == 0) {
            return true;
        }
    }
    return false;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void trace_list(FILE *f)
{
    size_t i, n = trace_event_count();
    const char **names = g_new(const char *, n ? n : 1);

    for (i = 0; i < n; i++) {
        names[i] = trace_event_at(i)->name;
    }
    qsort(names, n, sizeof(*names), compare_names);
    for (i = 0; i < n; i++) {
        /* Sites sharing a name are listed once. */
        if (i == 0 || strcmp(names[i], names[i - 1]) != 0) {
            fprintf(f, "%s\n", names[i]);
        }
    }
    g_free(names);
}
