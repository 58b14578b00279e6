/*
 * QMP as a client sends it: a byte stream framed into JSON texts (sizes and
 * depths bounded), each parsed and dispatched against the schema to its
 * handler, on a process with no machine (every command must refuse or work
 * without one).  Negotiation is per input, as per connection.
 */
#include <string.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "fuzz.h"
#include "monitor/json-stream.h"
#include "system/amber.h"

/* The monitor's internals: the dispatcher the QMP server calls. */
JsonNode *qmp_dispatch(Amber *s, JsonNode *request, bool *negotiated);

typedef struct Conn {
    Amber *s;
    bool negotiated;
} Conn;

static void one_text(void *opaque, const char *text, size_t len, const char *error)
{
    Conn *c = opaque;
    JsonParser *p;
    JsonNode *reply;

    if (!text) {
        return;
    }
    p = json_parser_new();
    if (json_parser_load_from_data(p, text, len, NULL)) {
        reply = qmp_dispatch(c->s, json_parser_get_root(p), &c->negotiated);
        if (reply) {
            g_free(qmp_json_to_string(reply));
            json_node_unref(reply);
        }
    }
    g_object_unref(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static Amber *s;
    Conn c = { 0 };
    JsonStream js;

    if (!s) {
        s = amber_new();
    }
    c.s = s;
    json_stream_init(&js, QMP_MAX_REQUEST_SIZE, QMP_MAX_REQUEST_DEPTH, one_text, &c);
    json_stream_feed(&js, data, size);
    json_stream_destroy(&js);
    /* Events queued by handlers: delivered (to no sink) as the main loop would. */
    while (g_main_context_iteration(NULL, FALSE)) {
    }
    return 0;
}

static const char *const seeds[] = {
    "{\"execute\": \"qmp_capabilities\"}\n"
    "{\"execute\": \"query-version\"}{\"execute\": \"query-commands\", \"id\": 1}",
    "{\"execute\": \"qmp_capabilities\"}"
    "{\"execute\": \"migrate-set-parameters\", \"arguments\": {\"max-bandwidth\": 1048576,"
    " \"downtime-limit\": 50, \"x-background-snapshot-chunk-size\": 65536}}"
    "{\"execute\": \"query-migrate-parameters\"}{\"execute\": \"query-migrate\"}",
    "{\"execute\": \"qmp_capabilities\"}"
    "{\"execute\": \"migrate-set-capabilities\", \"arguments\": {\"capabilities\":"
    " [{\"capability\": \"events\", \"state\": true}]}}"
    "{\"execute\": \"query-migrate-capabilities\"}",
    "{\"execute\": \"qmp_capabilities\"}"
    "{\"execute\": \"human-monitor-command\", \"arguments\": {\"command-line\":"
    " \"info migrate_parameters\"}}{\"execute\": \"query-status\"}",
    "{\"execute\": \"qmp_capabilities\"}{\"execute\": \"migrate\", \"arguments\":"
    " {\"uri\": \"file:/nonexistent/x\"}}{\"execute\": \"migrate_cancel\"}"
    "{\"execute\": \"pmemsave\", \"arguments\": {\"val\": 0, \"size\": 1, \"filename\": \"f\"}}",
    "{\"execute\": \"query-status\"}[1, {\"a\": [[[]]]}]\"x\"{\"execute\": 3}",
};

bool fuzz_write_seeds(const char *dir)
{
    return fuzz_seed_strings(dir, "qmp", seeds, G_N_ELEMENTS(seeds));
}
