/*
 * Error reporting: implementation of include/util/error.h.
 *
 * An Error owns its message.  Functions that fail fill *errp once; the
 * two sentinels error_fatal and error_abort are only ever compared by
 * address, never dereferenced, so they can be plain (NULL) pointers.
 */
#include "util/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <glib.h>

struct Error {
    char *msg;
    ErrorClass cls;
    const char *file;   /* where it was set: shown by error_abort */
    int line;
};

Error *error_fatal;
Error *error_abort;

/*
 * -msg's choices: process-wide, as stderr is (every thread's messages go
 * there), set once at start-up before any thread runs.
 */
static bool msg_timestamp;
static char *msg_guest_name;

void error_set_message_prefix(bool timestamp, const char *guest_name)
{
    msg_timestamp = timestamp;
    g_free(msg_guest_name);
    msg_guest_name = g_strdup(guest_name);
}

/* What comes before "amber: ": the time and the guest's name, when asked for. */
static void put_prefix(void)
{
    if (msg_timestamp) {
        g_autoptr(GDateTime) now = g_date_time_new_now_utc();
        g_autofree char *t = g_date_time_format(now, "%Y-%m-%dT%H:%M:%S");

        fprintf(stderr, "%s.%06dZ ", t, g_date_time_get_microsecond(now));
    }
    if (msg_guest_name) {
        fprintf(stderr, "%s ", msg_guest_name);
    }
}

static const char *const error_class_names[] = {
    [ERROR_CLASS_GENERIC_ERROR] = "GenericError",
    [ERROR_CLASS_COMMAND_NOT_FOUND] = "CommandNotFound",
    [ERROR_CLASS_DEVICE_NOT_ACTIVE] = "DeviceNotActive",
    [ERROR_CLASS_DEVICE_NOT_FOUND] = "DeviceNotFound",
    [ERROR_CLASS_KVM_MISSING_CAP] = "KVMMissingCap",
};

const char *error_class_name(ErrorClass cls)
{
    if ((unsigned)cls >= G_N_ELEMENTS(error_class_names) ||
        !error_class_names[cls]) {
        return "GenericError";
    }
    return error_class_names[cls];
}

/* Deliver a fresh error to its destination, honouring the sentinels. */
static void error_handle(Error **dst, Error *err)
{
    if (dst == &error_abort) {
        fprintf(stderr, "amber: unexpected error at %s:%d: %s\n",
                err->file ? err->file : "?", err->line, err->msg);
        abort();
    }
    if (dst == &error_fatal) {
        put_prefix();
        fprintf(stderr, "amber: %s\n", err->msg);
        exit(1);
    }
    if (!dst) {
        error_free(err);
        return;
    }
    /* Setting twice loses the first message: that is a programming bug. */
    g_assert(*dst == NULL);
    *dst = err;
}

void error_set_internal(Error **errp, ErrorClass cls, int os_errno,
                        const char *file, int line, const char *fmt, ...)
{
    Error *err;
    va_list ap;
    char *msg;

    if (!errp) {
        return;     /* nobody will read it: skip the formatting */
    }
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (os_errno) {
        char *full = g_strdup_printf("%s: %s", msg, g_strerror(os_errno));
        g_free(msg);
        msg = full;
    }
    err = g_new0(Error, 1);
    err->msg = msg;
    err->cls = cls;
    err->file = file;
    err->line = line;
    error_handle(errp, err);
}

void error_propagate(Error **dst, Error *local)
{
    if (!local) {
        return;
    }
    error_handle(dst, local);
}

void error_prepend(Error **errp, const char *fmt, ...)
{
    va_list ap;
    char *prefix, *msg;

    if (!errp || !*errp) {
        return;
    }
    va_start(ap, fmt);
    prefix = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    msg = g_strconcat(prefix, (*errp)->msg, NULL);
    g_free(prefix);
    g_free((*errp)->msg);
    (*errp)->msg = msg;
}

const char *error_get_pretty(const Error *err)
{
    return err->msg;
}

ErrorClass error_get_class(const Error *err)
{
    return err->cls;
}

Error *error_copy(const Error *err)
{
    Error *copy = g_new0(Error, 1);

    copy->msg = g_strdup(err->msg);
    copy->cls = err->cls;
    copy->file = err->file;
    copy->line = err->line;
    return copy;
}

void error_free(Error *err)
{
    if (err) {
        g_free(err->msg);
        g_free(err);
    }
}

void error_report_err(Error *err)
{
    if (!err) {
        return;
    }
    put_prefix();
    fprintf(stderr, "amber: %s\n", err->msg);
    error_free(err);
}

void error_report(const char *fmt, ...)
{
    va_list ap;

    put_prefix();
    fputs("amber: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void warn_report(const char *fmt, ...)
{
    va_list ap;

    put_prefix();
    fputs("amber: warning: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
