/*
 * Support for the code scripts/qapi-gen.py generates: reading command
 * arguments from json-glib nodes with QEMU's error wording, building
 * replies, and the command table entry type.
 *
 * Paths name a member for error messages the way QEMU does:
 * "arg", "caps[1].state".
 */
#ifndef AMBER_MONITOR_QAPI_RUNTIME_H
#define AMBER_MONITOR_QAPI_RUNTIME_H

#include <stdbool.h>
#include <stdint.h>
#include <json-glib/json-glib.h>

#include "util/error.h"

typedef struct Amber Amber;

/* Unmarshal args (never NULL: {} when the request had none), call the
 * handler, set *ret to the reply value on success. */
typedef void (*QmpMarshalFn)(Amber *s, JsonObject *args, JsonNode **ret, Error **errp);

typedef struct QmpCommand {
    const char *name;
    QmpMarshalFn fn;
} QmpCommand;

/* "prefix.name", or name when prefix is NULL or empty. Caller frees. */
char *qapi_path(const char *prefix, const char *name);
void qapi_err_missing(const char *path, Error **errp);
/* Fails on the first member of obj not in the NULL-terminated known list. */
bool qapi_check_unexpected(JsonObject *obj, const char *prefix,
                           const char *const *known, Error **errp);

/* Type-checked readers: on a mismatch, "Invalid parameter type for ...". */
JsonObject *qapi_in_object(JsonNode *n, const char *path, Error **errp);
JsonArray *qapi_in_array(JsonNode *n, const char *path, Error **errp);
bool qapi_in_int(JsonNode *n, const char *path, int64_t min, int64_t max,
                 const char *type_name, int64_t *out, Error **errp);
bool qapi_in_uint(JsonNode *n, const char *path, uint64_t max,
                  const char *type_name, uint64_t *out, Error **errp);
bool qapi_in_bool(JsonNode *n, const char *path, bool *out, Error **errp);
bool qapi_in_number(JsonNode *n, const char *path, double *out, Error **errp);
/* *out is a newly allocated copy. */
bool qapi_in_str(JsonNode *n, const char *path, char **out, Error **errp);
bool qapi_in_any(JsonNode *n, const char *path, JsonNode **out, Error **errp);
/* lookup is NULL-terminated; *out is the index. */
bool qapi_in_enum(JsonNode *n, const char *path, const char *const *lookup,
                  int *out, Error **errp);

/* New nodes for replies and events. */
JsonNode *qapi_node_int(int64_t v);
JsonNode *qapi_node_bool(bool v);
JsonNode *qapi_node_double(double v);
JsonNode *qapi_node_str(const char *v);          /* NULL gives "" */
JsonNode *qapi_node_copy(JsonNode *n);           /* NULL gives null */
JsonNode *qapi_node_take_object(JsonObject *o);  /* takes the reference */
JsonNode *qapi_node_take_array(JsonArray *a);

#endif
