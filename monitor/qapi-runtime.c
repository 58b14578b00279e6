/*
 * Argument reading and reply building for the generated QMP code.  The
 * messages match QEMU's word for word: scripts that drive QEMU parse them.
 */
#include <string.h>
#include <glib.h>

#include "monitor/qapi-runtime.h"

char *qapi_path(const char *prefix, const char *name)
{
    if (!prefix || !*prefix) {
        return g_strdup(name);
    }
    return g_strdup_printf("%s.%s", prefix, name);
}

void qapi_err_missing(const char *path, Error **errp)
{
    error_setg(errp, "Parameter '%s' is missing", path);
}

bool qapi_check_unexpected(JsonObject *obj, const char *prefix,
                           const char *const *known, Error **errp)
{
    GList *members = json_object_get_members(obj);
    bool ok = true;

    for (GList *l = members; l && ok; l = l->next) {
        const char *name = l->data;
        bool found = false;

        for (int i = 0; known[i] && !found; i++) {
            found = strcmp(known[i], name) == 0;
        }
        if (!found) {
            g_autofree char *path = qapi_path(prefix, name);

            error_setg(errp, "Parameter '%s' is unexpected", path);
            ok = false;
        }
    }
    g_list_free(members);
    return ok;
}

static void err_type(const char *path, const char *expected, Error **errp)
{
    error_setg(errp, "Invalid parameter type for '%s', expected: %s", path, expected);
}

JsonObject *qapi_in_object(JsonNode *n, const char *path, Error **errp)
{
    if (!JSON_NODE_HOLDS_OBJECT(n)) {
        err_type(path, "object", errp);
        return NULL;
    }
    return json_node_get_object(n);
}

JsonArray *qapi_in_array(JsonNode *n, const char *path, Error **errp)
{
    if (!JSON_NODE_HOLDS_ARRAY(n)) {
        err_type(path, "array", errp);
        return NULL;
    }
    return json_node_get_array(n);
}

static bool holds(JsonNode *n, GType type)
{
    return JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == type;
}

bool qapi_in_int(JsonNode *n, const char *path, int64_t min, int64_t max,
                 const char *type_name, int64_t *out, Error **errp)
{
    int64_t v;

    if (!holds(n, G_TYPE_INT64)) {
        err_type(path, "integer", errp);
        return false;
    }
    v = json_node_get_int(n);
    if (v < min || v > max) {
        error_setg(errp, "Parameter '%s' expects %s", path, type_name);
        return false;
    }
    *out = v;
    return true;
}

bool qapi_in_uint(JsonNode *n, const char *path, uint64_t max,
                  const char *type_name, uint64_t *out, Error **errp)
{
    int64_t v;

    if (!holds(n, G_TYPE_INT64)) {
        err_type(path, "integer", errp);
        return false;
    }
    /* json-glib reads integers as gint64, so values above INT64_MAX
     * arrive as doubles and fail above; negatives are refused here. */
    v = json_node_get_int(n);
    if (v < 0 || (uint64_t)v > max) {
        error_setg(errp, "Parameter '%s' expects %s", path, type_name);
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

bool qapi_in_bool(JsonNode *n, const char *path, bool *out, Error **errp)
{
    if (!holds(n, G_TYPE_BOOLEAN)) {
        err_type(path, "boolean", errp);
        return false;
    }
    *out = json_node_get_boolean(n);
    return true;
}

bool qapi_in_number(JsonNode *n, const char *path, double *out, Error **errp)
{
    if (holds(n, G_TYPE_INT64)) {
        *out = (double)json_node_get_int(n);
        return true;
    }
    if (!holds(n, G_TYPE_DOUBLE)) {
        err_type(path, "number", errp);
        return false;
    }
    *out = json_node_get_double(n);
    return true;
}

bool qapi_in_str(JsonNode *n, const char *path, char **out, Error **errp)
{
    if (!holds(n, G_TYPE_STRING)) {
        err_type(path, "string", errp);
        return false;
    }
    *out = g_strdup(json_node_get_string(n));
    return true;
}

bool qapi_in_any(JsonNode *n, const char *path, JsonNode **out, Error **errp)
{
    *out = json_node_copy(n);
    return true;
}

bool qapi_in_enum(JsonNode *n, const char *path, const char *const *lookup,
                  int *out, Error **errp)
{
    const char *s;

    if (!holds(n, G_TYPE_STRING)) {
        err_type(path, "string", errp);
        return false;
    }
    s = json_node_get_string(n);
    for (int i = 0; lookup[i]; i++) {
        if (strcmp(lookup[i], s) == 0) {
            *out = i;
            return true;
        }
    }
    error_setg(errp, "Parameter '%s' does not accept value '%s'", path, s);
    return false;
}

JsonNode *qapi_node_int(int64_t v)
{
    JsonNode *n = json_node_new(JSON_NODE_VALUE);

    json_node_set_int(n, v);
    return n;
}

JsonNode *qapi_node_bool(bool v)
{
    JsonNode *n = json_node_new(JSON_NODE_VALUE);

    json_node_set_boolean(n, v);
    return n;
}

JsonNode *qapi_node_double(double v)
{
    JsonNode *n = json_node_new(JSON_NODE_VALUE);

    json_node_set_double(n, v);
    return n;
}

JsonNode *qapi_node_str(const char *v)
{
    JsonNode *n = json_node_new(JSON_NODE_VALUE);

    json_node_set_string(n, v ? v : "");
    return n;
}

JsonNode *qapi_node_copy(JsonNode *n)
{
    return n ? json_node_copy(n) : json_node_new(JSON_NODE_NULL);
}

JsonNode *qapi_node_take_object(JsonObject *o)
{
    JsonNode *n = json_node_new(JSON_NODE_OBJECT);

    json_node_take_object(n, o);
    return n;
}

JsonNode *qapi_node_take_array(JsonArray *a)
{
    JsonNode *n = json_node_new(JSON_NODE_ARRAY);

    json_node_take_array(n, a);
    return n;
}
