/*
 * Error reporting: the Error **errp convention.
 *
 * A function that can fail takes "Error **errp" as its last argument and
 * says whether it failed through its return value (false, NULL or -1).
 * On failure it sets *errp exactly once, and only if errp is not NULL.
 * Callers that want to add context use error_prepend(); callers that do
 * not care pass NULL; &error_fatal exits the process with the message
 * and &error_abort aborts (for "cannot happen").
 */
#ifndef AMBER_UTIL_ERROR_H
#define AMBER_UTIL_ERROR_H

#include <stdarg.h>
#include <stdbool.h>

/* QMP error classes, spelled on the wire as QEMU spells them. */
typedef enum ErrorClass {
    ERROR_CLASS_GENERIC_ERROR,      /* "GenericError" */
    ERROR_CLASS_COMMAND_NOT_FOUND,  /* "CommandNotFound" */
    ERROR_CLASS_DEVICE_NOT_ACTIVE,  /* "DeviceNotActive" */
    ERROR_CLASS_DEVICE_NOT_FOUND,   /* "DeviceNotFound" */
    ERROR_CLASS_KVM_MISSING_CAP,    /* "KVMMissingCap" */
} ErrorClass;

typedef struct Error Error;

/* Sentinels: pass &error_fatal / &error_abort as errp. */
extern Error *error_fatal;
extern Error *error_abort;

#define error_setg(errp, ...) \
    error_set_internal((errp), ERROR_CLASS_GENERIC_ERROR, 0, __FILE__, __LINE__, __VA_ARGS__)
#define error_set(errp, cls, ...) \
    error_set_internal((errp), (cls), 0, __FILE__, __LINE__, __VA_ARGS__)
/* Appends ": strerror(os_errno)" to the message. */
#define error_setg_errno(errp, os_errno, ...) \
    error_set_internal((errp), ERROR_CLASS_GENERIC_ERROR, (os_errno), __FILE__, __LINE__, __VA_ARGS__)

void error_set_internal(Error **errp, ErrorClass cls, int os_errno,
                        const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Move *local into *dst (or free it if dst is NULL; honours the sentinels). */
void error_propagate(Error **dst, Error *local);
/* Prefix the message of *errp (no-op when errp or *errp is NULL). */
void error_prepend(Error **errp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

const char *error_get_pretty(const Error *err);
ErrorClass error_get_class(const Error *err);
const char *error_class_name(ErrorClass cls);   /* "GenericError", ... */
Error *error_copy(const Error *err);
void error_free(Error *err);
/* Print "amber: <message>" to stderr and free the error. */
void error_report_err(Error *err);
/* Print "amber: <formatted message>" to stderr. */
void error_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void warn_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * -msg: start each message with the time (UTC, ISO 8601 with microseconds,
 * as QEMU writes it and libvirt's log reader expects) and/or the guest's
 * name (NULL: none).  Set once, before any thread reports.
 */
void error_set_message_prefix(bool timestamp, const char *guest_name);

#endif
