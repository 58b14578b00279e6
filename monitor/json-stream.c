/*
 * QMP stream framing and QEMU-style JSON output.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "monitor/json-stream.h"

void json_stream_init(JsonStream *js, size_t max_size, int max_depth,
                      JsonStreamFn fn, void *opaque)
{
    memset(js, 0, sizeof(*js));
    js->buf = g_string_new(NULL);
    js->max_size = max_size;
    js->max_depth = max_depth;
    js->fn = fn;
    js->opaque = opaque;
}

void json_stream_reset(JsonStream *js)
{
    g_string_truncate(js->buf, 0);
    js->depth = 0;
    js->in_string = false;
    js->escape = false;
    js->skipping = false;
}

void json_stream_destroy(JsonStream *js)
{
    if (js->buf) {
        g_string_free(js->buf, TRUE);
        js->buf = NULL;
    }
}

static void emit_value(JsonStream *js)
{
    /* Copy out first: the callback may feed or reset the stream. */
    g_autofree char *text = g_strndup(js->buf->str, js->buf->len);
    size_t len = js->buf->len;

    g_string_truncate(js->buf, 0);
    js->fn(js->opaque, text, len, NULL);
}

static void reject(JsonStream *js, const char *why)
{
    g_string_truncate(js->buf, 0);
    js->skipping = true;
    js->fn(js->opaque, NULL, 0, why);
}

static bool is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * Track strings and nesting for byte c; returns true when c closed the
 * outermost value.  Shared by the storing and the skipping paths, so a
 * skipped value ends exactly where a stored one would.
 */
static bool track(JsonStream *js, uint8_t c, bool *too_deep)
{
    if (js->in_string) {
        if (js->escape) {
            js->escape = false;
        } else if (c == '\\') {
            js->escape = true;
        } else if (c == '"') {
            js->in_string = false;
        }
        return false;
    }
    switch (c) {
    case '"':
        js->in_string = true;
        return false;
    case '{':
    case '[':
        js->depth++;
        *too_deep = js->depth > js->max_depth;
        return false;
    case '}':
    case ']':
        js->depth--;
        return js->depth == 0;
    default:
        return false;
    }
}

/* A top-level scalar (or garbage) ends at whitespace or a new value. */
static void feed_toplevel(JsonStream *js, uint8_t c)
{
    if (!js->in_string && (c == '}' || c == ']')) {
        g_string_truncate(js->buf, 0);
        js->fn(js->opaque, NULL, 0, "JSON parse error, unbalanced closing bracket");
        return;
    }
    if (js->buf->len && !js->in_string && (is_space(c) || c == '{' || c == '[')) {
        emit_value(js);
    }
    if (is_space(c) && !js->in_string) {
        return;
    }
    g_string_append_c(js->buf, c);
    if (c == '{' || c == '[') {
        js->depth = 1;
    } else if (js->in_string) {
        bool was_escape = js->escape;

        js->escape = !was_escape && c == '\\';
        js->in_string = was_escape || c != '"';
    } else if (c == '"') {
        js->in_string = true;
    }
}

void json_stream_feed(JsonStream *js, const uint8_t *data, size_t len)
{
    char msg[96];

    for (size_t i = 0; i < len; i++) {
        uint8_t c = data[i];
        bool too_deep = false;

        if (js->skipping) {
            if (track(js, c, &too_deep) ||
                (js->depth == 0 && !js->in_string && is_space(c))) {
                json_stream_reset(js);
            }
            continue;
        }
        if (js->depth == 0) {
            feed_toplevel(js, c);
        } else {
            g_string_append_c(js->buf, c);
            if (track(js, c, &too_deep)) {
                emit_value(js);
                continue;
            }
        }
        if (too_deep) {
            snprintf(msg, sizeof(msg), "JSON parse error, nesting deeper than %d levels",
                     js->max_depth);
            reject(js, msg);
        } else if (js->buf->len > js->max_size) {
            snprintf(msg, sizeof(msg), "JSON parse error, request larger than %zu bytes",
                     js->max_size);
            reject(js, msg);
        }
    }
}

/* ---- output ---------------------------------------------------------------- */

static void append_string(GString *out, const char *s)
{
    const char *p = s;

    g_string_append_c(out, '"');
    while (*p) {
        gunichar ch = g_utf8_get_char_validated(p, -1);

        if (ch == (gunichar)-1 || ch == (gunichar)-2) {
            ch = 0xfffd;            /* invalid UTF-8: replacement character */
            p++;
        } else {
            p = g_utf8_next_char(p);
        }
        switch (ch) {
        case '"':  g_string_append(out, "\\\""); break;
        case '\\': g_string_append(out, "\\\\"); break;
        case '\b': g_string_append(out, "\\b"); break;
        case '\f': g_string_append(out, "\\f"); break;
        case '\n': g_string_append(out, "\\n"); break;
        case '\r': g_string_append(out, "\\r"); break;
        case '\t': g_string_append(out, "\\t"); break;
        default:
            if (ch >= 0x20 && ch < 0x7f) {
                g_string_append_c(out, (char)ch);
            } else if (ch < 0x10000) {
                g_string_append_printf(out, "\\u%04X", ch);
            } else {
                ch -= 0x10000;
                g_string_append_printf(out, "\\u%04X\\u%04X",
                                       0xd800 | (ch >> 10), 0xdc00 | (ch & 0x3ff));
            }
        }
    }
    g_string_append_c(out, '"');
}

static void append_value(GString *out, JsonNode *node)
{
    GType t = json_node_get_value_type(node);

    if (t == G_TYPE_INT64) {
        g_string_append_printf(out, "%" PRId64, json_node_get_int(node));
    } else if (t == G_TYPE_DOUBLE) {
        char buf[G_ASCII_DTOSTR_BUF_SIZE];

        g_string_append(out, g_ascii_dtostr(buf, sizeof(buf), json_node_get_double(node)));
    } else if (t == G_TYPE_BOOLEAN) {
        g_string_append(out, json_node_get_boolean(node) ? "true" : "false");
    } else if (t == G_TYPE_STRING) {
        append_string(out, json_node_get_string(node));
    } else {
        g_string_append(out, "null");
    }
}

void qmp_json_append(GString *out, JsonNode *node)
{
    if (!node || JSON_NODE_HOLDS_NULL(node)) {
        g_string_append(out, "null");
    } else if (JSON_NODE_HOLDS_OBJECT(node)) {
        JsonObject *o = json_node_get_object(node);
        GList *members = json_object_get_members(o);

        g_string_append_c(out, '{');
        for (GList *l = members; l; l = l->next) {
            append_string(out, l->data);
            g_string_append(out, ": ");
            qmp_json_append(out, json_object_get_member(o, l->data));
            if (l->next) {
                g_string_append(out, ", ");
            }
        }
        g_string_append_c(out, '}');
        g_list_free(members);
    } else if (JSON_NODE_HOLDS_ARRAY(node)) {
        JsonArray *a = json_node_get_array(node);
        guint n = json_array_get_length(a);

        g_string_append_c(out, '[');
        for (guint i = 0; i < n; i++) {
            qmp_json_append(out, json_array_get_element(a, i));
            if (i + 1 < n) {
                g_string_append(out, ", ");
            }
        }
        g_string_append_c(out, ']');
    } else {
        append_value(out, node);
    }
}

char *qmp_json_to_string(JsonNode *node)
{
    GString *out = g_string_new(NULL);

    qmp_json_append(out, node);
    return g_string_free(out, FALSE);
}
