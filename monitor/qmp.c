/*
 * QMP server: QEMU's wire protocol over a chardev.
 *
 * Per connection: greeting, capabilities negotiation, then requests.  The
 * byte stream is framed by JsonStream; each complete value is parsed and
 * dispatched on the main thread.  Replies and events end in "\r\n" as
 * QEMU's do.
 */
#include <string.h>

#include "monitor-int.h"
#include "qapi-commands.h"
#include "qapi-config.h"

JsonNode *qmp_error_reply(Error *err, JsonNode *id)
{
    JsonObject *o = json_object_new();
    JsonObject *e = json_object_new();
    JsonNode *n;

    json_object_set_string_member(e, "class", error_class_name(error_get_class(err)));
    json_object_set_string_member(e, "desc", error_get_pretty(err));
    json_object_set_object_member(o, "error", e);
    if (id) {
        json_object_set_member(o, "id", json_node_copy(id));
    }
    error_free(err);
    n = json_node_init_object(json_node_alloc(), o);
    json_object_unref(o);
    return n;
}

static JsonNode *return_reply(JsonNode *ret, JsonNode *id)
{
    JsonObject *o = json_object_new();
    JsonNode *n;

    json_object_set_member(o, "return", ret);
    if (id) {
        json_object_set_member(o, "id", json_node_copy(id));
    }
    n = json_node_init_object(json_node_alloc(), o);
    json_object_unref(o);
    return n;
}

static const QmpCommand *find_command(const char *name)
{
    for (const QmpCommand *c = qmp_command_table; c->name; c++) {
        if (strcmp(c->name, name) == 0) {
            return c;
        }
    }
    return NULL;
}

/* QEMU's checks on the request object itself, before the command runs. */
static bool check_request(JsonObject *req, Error **errp)
{
    GList *members = json_object_get_members(req);
    bool ok = true;

    for (GList *l = members; l && ok; l = l->next) {
        const char *key = l->data;
        JsonNode *n = json_object_get_member(req, key);

        if (strcmp(key, "execute") == 0) {
            if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING) {
                error_setg(errp, "QMP input member 'execute' must be a string");
                ok = false;
            }
        } else if (strcmp(key, "arguments") == 0) {
            if (!JSON_NODE_HOLDS_OBJECT(n)) {
                error_setg(errp, "QMP input member 'arguments' must be an object");
                ok = false;
            }
        } else if (strcmp(key, "exec-oob") == 0) {
            error_setg(errp, "QMP input member 'exec-oob' is unexpected: "
                       "out-of-band execution is not supported");
            ok = false;
        } else if (strcmp(key, "id") != 0) {
            error_setg(errp, "QMP input member '%s' is unexpected", key);
            ok = false;
        }
    }
    g_list_free(members);
    if (ok && !json_object_has_member(req, "execute")) {
        error_setg(errp, "QMP input lacks member 'execute'");
        ok = false;
    }
    return ok;
}

JsonNode *qmp_dispatch(Amber *s, JsonNode *request, bool *negotiated)
{
    Error *err = NULL;
    JsonObject *req, *args;
    JsonNode *id, *ret = NULL;
    const QmpCommand *cmd;
    const char *name;
    bool is_caps;

    if (!JSON_NODE_HOLDS_OBJECT(request)) {
        error_setg(&err, "QMP input must be a JSON object");
        return qmp_error_reply(err, NULL);
    }
    req = json_node_get_object(request);
    id = json_object_get_member(req, "id");
    if (!check_request(req, &err)) {
        return qmp_error_reply(err, id);
    }
    name = json_object_get_string_member(req, "execute");
    is_caps = strcmp(name, "qmp_capabilities") == 0;
    cmd = find_command(name);
    if (!*negotiated && !is_caps) {
        error_set(&err, ERROR_CLASS_COMMAND_NOT_FOUND,
                  "Expecting capabilities negotiation with 'qmp_capabilities'");
        return qmp_error_reply(err, id);
    }
    if (*negotiated && is_caps) {
        error_set(&err, ERROR_CLASS_COMMAND_NOT_FOUND,
                  "Capabilities negotiation is already complete, command ignored");
        return qmp_error_reply(err, id);
    }
    if (!cmd) {
        error_set(&err, ERROR_CLASS_COMMAND_NOT_FOUND,
                  "The command %s has not been found", name);
        return qmp_error_reply(err, id);
    }
    args = json_object_has_member(req, "arguments")
           ? json_object_ref(json_object_get_object_member(req, "arguments"))
           : json_object_new();
    cmd->fn(s, args, &ret, &err);
    json_object_unref(args);
    if (err) {
        if (ret) {
            json_node_unref(ret);
        }
        return qmp_error_reply(err, id);
    }
    if (is_caps) {
        *negotiated = true;
    }
    if (!ret) {
        ret = qapi_node_take_object(json_object_new());
    }
    return return_reply(ret, id);
}

void qmp_qmp_capabilities(Amber *s, bool has_enable, QMPCapabilityList *enable,
                          Error **errp)
{
    /* Negotiation state is the connection's: qmp_dispatch handles it. */
    if (has_enable && enable) {
        error_setg(errp, "Capability '%s' not available", QMPCapability_str(enable->value));
    }
}

/* ---- the connection ---------------------------------------------------------- */

static void send_node(Monitor *mon, JsonNode *node)
{
    GString *out = g_string_new(NULL);

    qmp_json_append(out, node);
    g_string_append(out, "\r\n");
    chardev_write(mon->chr, out->str, out->len);
    g_string_free(out, TRUE);
}

static void send_error(Monitor *mon, const char *msg)
{
    Error *err = NULL;
    JsonNode *reply;

    error_setg(&err, "%s", msg);
    reply = qmp_error_reply(err, NULL);
    send_node(mon, reply);
    json_node_unref(reply);
}

static void handle_text(void *opaque, const char *text, size_t len, const char *error)
{
    Monitor *mon = opaque;
    MonitorSet *set = monitor_set(mon->s);
    g_autoptr(JsonParser) parser = NULL;
    g_autoptr(GError) gerr = NULL;
    JsonNode *reply;

    if (error) {
        send_error(mon, error);
        return;
    }
    parser = json_parser_new_immutable();
    if (!json_parser_load_from_data(parser, text, len, &gerr)) {
        g_autofree char *msg = g_strdup_printf("JSON parse error, %s", gerr->message);

        send_error(mon, msg);
        return;
    }
    set->cur = mon;
    reply = qmp_dispatch(mon->s, json_parser_get_root(parser), &mon->negotiated);
    set->cur = NULL;
    if (reply) {
        send_node(mon, reply);
        json_node_unref(reply);
    }
}

static void greet(Monitor *mon)
{
    JsonObject *root = json_object_new();
    JsonObject *qmp = json_object_new();
    JsonObject *ver = json_object_new();
    JsonObject *triple = json_object_new();
    JsonNode *node;

    if (mon->greeted) {
        return;
    }
    mon->greeted = true;
    /* The QMP level amber speaks as a QEMU version; amber's own in package. */
    json_object_set_int_member(triple, "micro", QMP_QEMU_VERSION_MICRO);
    json_object_set_int_member(triple, "minor", QMP_QEMU_VERSION_MINOR);
    json_object_set_int_member(triple, "major", QMP_QEMU_VERSION_MAJOR);
    json_object_set_object_member(ver, "qemu", triple);
    json_object_set_string_member(ver, "package", "amber-" AMBER_VERSION);
    json_object_set_object_member(qmp, "version", ver);
    json_object_set_array_member(qmp, "capabilities", json_array_new());
    json_object_set_object_member(root, "QMP", qmp);
    node = json_node_init_object(json_node_alloc(), root);
    json_object_unref(root);
    send_node(mon, node);
    json_node_unref(node);
}

static void qmp_reset_connection(Monitor *mon)
{
    json_stream_reset(&mon->stream);
    mon->negotiated = false;
    mon->greeted = false;
}

static void qmp_opened(void *opaque)
{
    /* No-op when input already arrived (and greeted) before this notice. */
    greet(opaque);
}

static void qmp_closed(void *opaque)
{
    Monitor *mon = opaque;

    /*
     * stdio stays writable after stdin's EOF: that is not a new
     * connection, so keep its state.  A failed write may report the close
     * while we are mid-request: finish the request first.
     */
    if (chardev_is_connected(mon->chr)) {
        return;
    }
    if (mon->in_read) {
        mon->closed_in_read = true;
        return;
    }
    qmp_reset_connection(mon);
}

static void qmp_read(void *opaque, const uint8_t *buf, size_t len)
{
    Monitor *mon = opaque;

    /* Input can be delivered before the open notification: greet first. */
    greet(mon);
    mon->in_read = true;
    json_stream_feed(&mon->stream, buf, len);
    mon->in_read = false;
    if (mon->closed_in_read) {
        mon->closed_in_read = false;
        qmp_reset_connection(mon);
    }
}

const ChardevHandlers monitor_qmp_handlers = {
    .read = qmp_read,
    .opened = qmp_opened,
    .closed = qmp_closed,
};

void monitor_qmp_init(Monitor *mon)
{
    json_stream_init(&mon->stream, QMP_MAX_REQUEST_SIZE, QMP_MAX_REQUEST_DEPTH,
                     handle_text, mon);
}

void monitor_qmp_destroy(Monitor *mon)
{
    json_stream_destroy(&mon->stream);
}
