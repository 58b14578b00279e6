/*
 * QMP request handling without a VM: stream framing, request checks,
 * negotiation, argument checking with QEMU's messages, reply shapes.
 */
#include <string.h>
#include <unistd.h>
#include <glib.h>

#include "../../monitor/monitor-int.h"
#include "chardev/char.h"
#include "qapi-commands.h"

/* ---- framing ---------------------------------------------------------------- */

typedef struct Got {
    GPtrArray *texts;
    GPtrArray *errors;
} Got;

static void collect(void *opaque, const char *text, size_t len, const char *error)
{
    Got *g = opaque;

    if (text) {
        g_assert_cmpuint(strlen(text), ==, len);
        g_ptr_array_add(g->texts, g_strdup(text));
    } else {
        g_ptr_array_add(g->errors, g_strdup(error));
    }
}

static void got_init(Got *g, JsonStream *js)
{
    g->texts = g_ptr_array_new_with_free_func(g_free);
    g->errors = g_ptr_array_new_with_free_func(g_free);
    json_stream_init(js, 1024, 8, collect, g);
}

static void got_free(Got *g, JsonStream *js)
{
    g_ptr_array_free(g->texts, TRUE);
    g_ptr_array_free(g->errors, TRUE);
    json_stream_destroy(js);
}

static void feed(JsonStream *js, const char *s)
{
    json_stream_feed(js, (const uint8_t *)s, strlen(s));
}

static void test_stream_bytewise(void)
{
    const char *in = "{\"execute\": \"a}{\\\"\"}  {\"x\": [1, {\"y\": 2}]}\n";
    JsonStream js;
    Got g;

    got_init(&g, &js);
    /* One byte at a time: framing must not depend on read boundaries. */
    for (const char *p = in; *p; p++) {
        json_stream_feed(&js, (const uint8_t *)p, 1);
    }
    g_assert_cmpuint(g.texts->len, ==, 2);
    g_assert_cmpstr(g.texts->pdata[0], ==, "{\"execute\": \"a}{\\\"\"}");
    g_assert_cmpstr(g.texts->pdata[1], ==, "{\"x\": [1, {\"y\": 2}]}");
    g_assert_cmpuint(g.errors->len, ==, 0);
    got_free(&g, &js);
}

static void test_stream_oversize_resyncs(void)
{
    g_autoptr(GString) big = g_string_new("{\"execute\": \"x\", \"arguments\": {\"s\": \"");
    JsonStream js;
    Got g;

    got_init(&g, &js);
    for (int i = 0; i < 5000; i++) {
        g_string_append(big, i % 7 ? "a" : "}{");     /* braces inside the string */
    }
    g_string_append(big, "\"}}\n{\"execute\": \"ok\"}\n");
    feed(&js, big->str);
    g_assert_cmpuint(g.errors->len, ==, 1);
    g_assert_nonnull(strstr(g.errors->pdata[0], "larger than 1024 bytes"));
    g_assert_cmpuint(g.texts->len, ==, 1);
    g_assert_cmpstr(g.texts->pdata[0], ==, "{\"execute\": \"ok\"}");
    /* Memory stays bounded: nothing of the skipped value was kept. */
    g_assert_cmpuint(js.buf->len, ==, 0);
    got_free(&g, &js);
}

static void test_stream_depth_and_garbage(void)
{
    JsonStream js;
    Got g;

    got_init(&g, &js);
    feed(&js, "[[[[[[[[[[[[1]]]]]]]]]]]] } 42 {\"a\": 1}");
    g_assert_cmpuint(g.errors->len, ==, 2);
    g_assert_nonnull(strstr(g.errors->pdata[0], "nesting deeper than 8"));
    g_assert_nonnull(strstr(g.errors->pdata[1], "unbalanced"));
    g_assert_cmpuint(g.texts->len, ==, 2);
    g_assert_cmpstr(g.texts->pdata[0], ==, "42");
    g_assert_cmpstr(g.texts->pdata[1], ==, "{\"a\": 1}");
    got_free(&g, &js);
}

static void test_json_output(void)
{
    g_autoptr(JsonParser) p = json_parser_new();
    g_autofree char *out = NULL;

    g_assert_true(json_parser_load_from_data(
        p, "{\"a\": [1, true, null, \"\\u00e9\\n\"], \"b\": {}}", -1, NULL));
    out = qmp_json_to_string(json_parser_get_root(p));
    /* QEMU's separators and escapes. */
    g_assert_cmpstr(out, ==, "{\"a\": [1, true, null, \"\\u00E9\\n\"], \"b\": {}}");
}

/* ---- dispatch ------------------------------------------------------------------ */

/* Run one request text; return the reply serialized. */
static char *run(Amber *s, bool *negotiated, const char *req)
{
    g_autoptr(JsonParser) p = json_parser_new();
    JsonNode *reply;
    char *out;

    g_assert_true(json_parser_load_from_data(p, req, -1, NULL));
    reply = qmp_dispatch(s, json_parser_get_root(p), negotiated);
    g_assert_nonnull(reply);
    out = qmp_json_to_string(reply);
    json_node_unref(reply);
    return out;
}

#define GENERIC(msg) "{\"error\": {\"class\": \"GenericError\", \"desc\": \"" msg "\"}}"

typedef struct Case {
    const char *request;
    const char *reply;
} Case;

static const Case after_negotiation[] = {
    { "{\"execute\": \"pmemsave\", \"arguments\": {\"size\": 1, \"filename\": \"f\"}}",
      GENERIC("Parameter 'val' is missing") },
    { "{\"execute\": \"pmemsave\", \"arguments\": {\"val\": 0, \"size\": \"1\", \"filename\": \"f\"}}",
      GENERIC("Invalid parameter type for 'size', expected: integer") },
    { "{\"execute\": \"pmemsave\", \"arguments\": {\"val\": 0, \"size\": 1.5, \"filename\": \"f\"}}",
      GENERIC("Invalid parameter type for 'size', expected: integer") },
    { "{\"execute\": \"pmemsave\", \"arguments\": {\"val\": 0, \"size\": 1, \"filename\": 3}}",
      GENERIC("Invalid parameter type for 'filename', expected: string") },
    { "{\"execute\": \"pmemsave\", \"arguments\": {\"val\": 0, \"size\": 1, \"filename\": \"f\", \"x\": 1}}",
      GENERIC("Parameter 'x' is unexpected") },
    { "{\"execute\": \"query-status\", \"arguments\": {\"x\": 1}}",
      GENERIC("Parameter 'x' is unexpected") },
    /* Arguments fine: the handler runs and says why it cannot work. */
    { "{\"execute\": \"pmemsave\", \"arguments\": {\"val\": 0, \"size\": 1, \"filename\": \"f\"}}",
      GENERIC("The machine is not created yet") },
    { "{\"execute\": \"nope\", \"id\": 7}",
      "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command nope has not been found\"}, \"id\": 7}" },
    { "{\"execute\": \"qmp_capabilities\"}",
      "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": "
      "\"Capabilities negotiation is already complete, command ignored\"}}" },
    { "[1, 2]", GENERIC("QMP input must be a JSON object") },
    { "{\"id\": 1}", "{\"error\": {\"class\": \"GenericError\", \"desc\": "
      "\"QMP input lacks member 'execute'\"}, \"id\": 1}" },
    { "{\"execute\": 1}", GENERIC("QMP input member 'execute' must be a string") },
    { "{\"execute\": \"stop\", \"arguments\": []}",
      GENERIC("QMP input member 'arguments' must be an object") },
    { "{\"execute\": \"stop\", \"argument\": {}}",
      GENERIC("QMP input member 'argument' is unexpected") },
    { "{\"execute\": \"human-monitor-command\", \"arguments\": {\"command-line\": \"frobnicate\"}}",
      "{\"return\": \"unknown command: 'frobnicate'\\r\\n\"}" },
    { "{\"execute\": \"query-version\", \"id\": {\"a\": [\"b\"]}}",
      "{\"return\": {\"qemu\": {\"major\": 7, \"minor\": 2, \"micro\": 0}, "
      "\"package\": \"amber-0.1.0\"}, \"id\": {\"a\": [\"b\"]}}" },
};

static void test_dispatch(void)
{
    Amber s = { 0 };
    bool negotiated = false;
    char *r;

    r = run(&s, &negotiated, "{\"execute\": \"query-version\"}");
    g_assert_cmpstr(r, ==, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": "
                    "\"Expecting capabilities negotiation with 'qmp_capabilities'\"}}");
    g_free(r);
    g_assert_false(negotiated);
    r = run(&s, &negotiated, "{\"execute\": \"qmp_capabilities\", "
            "\"arguments\": {\"enable\": [\"oob\"]}}");
    g_assert_cmpstr(r, ==, GENERIC("Capability 'oob' not available"));
    g_free(r);
    r = run(&s, &negotiated, "{\"execute\": \"qmp_capabilities\", "
            "\"arguments\": {\"enable\": [\"fast\"]}}");
    g_assert_cmpstr(r, ==, GENERIC("Parameter 'enable[0]' does not accept value 'fast'"));
    g_free(r);
    g_assert_false(negotiated);
    r = run(&s, &negotiated, "{\"execute\": \"qmp_capabilities\", \"id\": \"x\"}");
    g_assert_cmpstr(r, ==, "{\"return\": {}, \"id\": \"x\"}");
    g_free(r);
    g_assert_true(negotiated);
    for (gsize i = 0; i < G_N_ELEMENTS(after_negotiation); i++) {
        r = run(&s, &negotiated, after_negotiation[i].request);
        g_assert_cmpstr(r, ==, after_negotiation[i].reply);
        g_free(r);
    }
}

static void test_query_commands(void)
{
    Amber s = { 0 };
    bool negotiated = true;
    g_autofree char *r = run(&s, &negotiated, "{\"execute\": \"query-commands\"}");
    static const char *const expected[] = {
        "qmp_capabilities", "query-version", "query-commands", "query-status", "stop",
        "cont", "quit", "system_reset", "query-cpus-fast", "pmemsave", "query-name",
        "human-monitor-command", "getfd", "closefd",
    };

    for (gsize i = 0; i < G_N_ELEMENTS(expected); i++) {
        g_autofree char *item = g_strdup_printf("{\"name\": \"%s\"}", expected[i]);

        g_assert_nonnull(strstr(r, item));
    }
}

/*
 * What libvirt's capability probe asks, under -machine none (no guest, no
 * KVM needed): exact replies where they do not depend on the host.
 */
static const struct {
    const char *request, *reply;
} probe[] = {
    { "{\"execute\": \"query-target\"}", "{\"return\": {\"arch\": \"x86_64\"}}" },
    { "{\"execute\": \"query-status\"}",
      "{\"return\": {\"running\": false, \"singlestep\": false, \"status\": \"prelaunch\"}}" },
    { "{\"execute\": \"query-machines\"}",
      "{\"return\": [{\"name\": \"pc-i440fx-7.2\", \"alias\": \"pc\", \"is-default\": true, "
      "\"cpu-max\": 8, \"hotpluggable-cpus\": false, \"numa-mem-supported\": false, "
      "\"deprecated\": false, \"default-cpu-type\": \"host-x86_64-cpu\", "
      "\"default-ram-id\": \"pc.ram\"}, {\"name\": \"none\", \"cpu-max\": 1, "
      "\"hotpluggable-cpus\": false, \"numa-mem-supported\": false, \"deprecated\": false}]}" },
    { "{\"execute\": \"query-tpm-models\"}", "{\"return\": []}" },
    { "{\"execute\": \"query-tpm-types\"}", "{\"return\": []}" },
    { "{\"execute\": \"qom-list-types\", \"arguments\": {\"implements\": \"device\"}}",
      "{\"return\": [{\"name\": \"host-x86_64-cpu\", \"parent\": \"x86_64-cpu\"}, "
      "{\"name\": \"isa-serial\", \"parent\": \"device\"}, {\"name\": \"i8042\", "
      "\"parent\": \"device\"}, {\"name\": \"isa-debug-exit\", \"parent\": \"device\"}]}" },
    { "{\"execute\": \"qom-list-types\", \"arguments\": {\"implements\": \"memory-backend\", "
      "\"abstract\": true}}",
      "{\"return\": [{\"name\": \"memory-backend\", \"abstract\": true, \"parent\": "
      "\"object\"}, {\"name\": \"memory-backend-ram\", \"parent\": \"memory-backend\"}, "
      "{\"name\": \"memory-backend-memfd\", \"parent\": \"memory-backend\"}, "
      "{\"name\": \"memory-backend-file\", \"parent\": \"memory-backend\"}]}" },
    { "{\"execute\": \"qom-list-types\", \"arguments\": {\"implements\": \"nothing\"}}",
      "{\"return\": []}" },
    { "{\"execute\": \"device-list-properties\", \"arguments\": {\"typename\": \"isa-serial\"}}",
      "{\"return\": [{\"name\": \"chardev\", \"type\": \"str\", \"description\": \"the chardev "
      "COM1 is connected to\"}, {\"name\": \"index\", \"type\": \"uint32\", \"description\": "
      "\"the port: 0 (COM1) is the only one\"}]}" },
    { "{\"execute\": \"device-list-properties\", \"arguments\": {\"typename\": \"i8042\"}}",
      "{\"return\": []}" },
    /* DeviceNotFound, as QEMU: libvirt reads it as "this emulator has no such device". */
    { "{\"execute\": \"device-list-properties\", \"arguments\": {\"typename\": "
      "\"virtio-blk-pci\"}}",
      "{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"Device 'virtio-blk-pci' not "
      "found\"}}" },
    { "{\"execute\": \"device-list-properties\", \"arguments\": {\"typename\": "
      "\"memory-backend-ram\"}}", GENERIC("Parameter 'typename' expects device") },
    { "{\"execute\": \"device-list-properties\", \"arguments\": {\"typename\": \"x86_64-cpu\"}}",
      GENERIC("Parameter 'typename' expects a non-abstract device type") },
    { "{\"execute\": \"qom-list-properties\", \"arguments\": {\"typename\": "
      "\"memory-backend-memfd\"}}",
      "{\"return\": [{\"name\": \"size\", \"type\": \"int\", \"description\": \"size of the "
      "memory region in bytes\"}, {\"name\": \"share\", \"type\": \"bool\", \"description\": "
      "\"mark the memory as private to QEMU or shared\"}, {\"name\": \"prealloc\", \"type\": "
      "\"bool\", \"description\": \"preallocate memory\"}, {\"name\": \"dump\", \"type\": "
      "\"bool\", \"description\": \"include memory in a core dump\"}, {\"name\": "
      "\"hugetlb\", \"type\": \"bool\", \"description\": \"use huge pages\"}, {\"name\": "
      "\"hugetlbsize\", \"type\": \"int\", \"description\": \"huge page size (2M, 1G; with "
      "hugetlb)\"}]}" },
    { "{\"execute\": \"qom-list-properties\", \"arguments\": {\"typename\": \"pc-q35-7.2-machine\"}}",
      "{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"Class 'pc-q35-7.2-machine' not "
      "found\"}}" },
    { "{\"execute\": \"query-command-line-options\", \"arguments\": {\"option\": \"overcommit\"}}",
      "{\"return\": [{\"option\": \"overcommit\", \"parameters\": [{\"name\": \"mem-lock\", "
      "\"type\": \"boolean\"}, {\"name\": \"cpu-pm\", \"type\": \"boolean\"}]}]}" },
    { "{\"execute\": \"query-command-line-options\", \"arguments\": {\"option\": \"sandbox\"}}",
      GENERIC("invalid option name: sandbox") },
    { "{\"execute\": \"pmemsave\", \"arguments\": {\"val\": 0, \"size\": 1, \"filename\": \"f\"}}",
      GENERIC("Machine 'none' runs no guest") },
};

static void test_probe_replies(void)
{
    Amber s = { .machine_none = true, .kvm_allowed = true };
    bool negotiated = true;
    bool kvm = access("/dev/kvm", R_OK | W_OK) == 0;
    char *r;

    for (gsize i = 0; i < G_N_ELEMENTS(probe); i++) {
        r = run(&s, &negotiated, probe[i].request);
        g_assert_cmpstr(r, ==, probe[i].reply);
        g_free(r);
    }
    /* As the host really is; with tcg only, -machine none leaves KVM alone. */
    r = run(&s, &negotiated, "{\"execute\": \"query-kvm\"}");
    g_assert_cmpstr(r, ==, kvm ? "{\"return\": {\"enabled\": true, \"present\": true}}"
                               : "{\"return\": {\"enabled\": false, \"present\": false}}");
    g_free(r);
    s.kvm_allowed = false;
    r = run(&s, &negotiated, "{\"execute\": \"query-kvm\"}");
    g_assert_cmpstr(r, ==, kvm ? "{\"return\": {\"enabled\": false, \"present\": true}}"
                               : "{\"return\": {\"enabled\": false, \"present\": false}}");
    g_free(r);
    r = run(&s, &negotiated, "{\"execute\": \"query-cpu-definitions\"}");
    g_assert_cmpstr(r, ==, kvm
        ? "{\"return\": [{\"name\": \"host\", \"migration-safe\": false, \"static\": false, "
          "\"unavailable-features\": [], \"typename\": \"host-x86_64-cpu\", \"deprecated\": "
          "false}]}"
        : "{\"return\": [{\"name\": \"host\", \"migration-safe\": false, \"static\": false, "
          "\"typename\": \"host-x86_64-cpu\", \"deprecated\": false}]}");
    g_free(r);
    r = run(&s, &negotiated, "{\"execute\": \"query-events\"}");
    for (const char *const *e = (const char *const[]){ "STOP", "RESUME", "SHUTDOWN", "RESET",
                                                       NULL }; *e; e++) {
        g_autofree char *item = g_strdup_printf("{\"name\": \"%s\"}", *e);
        g_assert_nonnull(strstr(r, item));
    }
    g_free(r);
}

/*
 * What libvirt asks once a guest is started, answered under -machine none.
 * No chardev is open here, so nobody is connected to a socket one; fd 23
 * is not a socket in this process, so it keeps its number.
 */
static const Case libvirt_start[] = {
    { "{\"execute\": \"query-chardev\"}",
      "{\"return\": [{\"label\": \"charmonitor\", \"filename\": "
      "\"disconnected:fd:23,server=on\", \"frontend-open\": true}, {\"label\": \"spare\", "
      "\"filename\": \"disconnected:unix:/s,server=on\", "
      "\"frontend-open\": false}, {\"label\": \"log\", \"filename\": \"file\", "
      "\"frontend-open\": true}]}" },
    { "{\"execute\": \"query-iothreads\"}", "{\"return\": []}" },
    { "{\"execute\": \"query-block\"}", "{\"return\": []}" },
    { "{\"execute\": \"query-named-block-nodes\", \"arguments\": {\"flat\": true}}",
      "{\"return\": []}" },
    { "{\"execute\": \"query-balloon\"}",
      "{\"error\": {\"class\": \"DeviceNotActive\", \"desc\": \"No balloon device has been "
      "activated\"}}" },
    { "{\"execute\": \"query-hotpluggable-cpus\"}",
      GENERIC("The feature 'query-hotpluggable-cpus' is not enabled") },
    { "{\"execute\": \"set_password\", \"arguments\": {\"protocol\": \"vnc\", "
      "\"password\": \"p\", \"connected\": \"keep\"}}",
      GENERIC("amber has no VNC display: there is no password to set") },
    { "{\"execute\": \"set_password\", \"arguments\": {\"protocol\": \"spice\", "
      "\"password\": \"p\"}}",
      "{\"error\": {\"class\": \"DeviceNotActive\", \"desc\": \"SPICE is not in use: amber "
      "has no display, so there is no password to set\"}}" },
    { "{\"execute\": \"set_password\", \"arguments\": {\"protocol\": \"rdp\", "
      "\"password\": \"p\"}}", GENERIC("Parameter 'protocol' does not accept value 'rdp'") },
    { "{\"execute\": \"expire_password\", \"arguments\": {\"protocol\": \"vnc\", "
      "\"time\": \"now\", \"display\": \"d\"}}",
      GENERIC("amber has no VNC display: there is no password to expire") },
    { "{\"execute\": \"qom-list\", \"arguments\": {\"path\": \"/\"}}",
      "{\"return\": [{\"name\": \"type\", \"type\": \"string\"}, {\"name\": \"machine\", "
      "\"type\": \"child<none-machine>\"}, {\"name\": \"chardevs\", \"type\": \"child<container>\"}]}" },
    { "{\"execute\": \"qom-list\", \"arguments\": {\"path\": \"/machine\"}}",
      "{\"return\": [{\"name\": \"type\", \"type\": \"string\"}, {\"name\": \"unattached\", "
      "\"type\": \"child<container>\"}, {\"name\": \"peripheral\", \"type\": "
      "\"child<container>\"}, {\"name\": \"peripheral-anon\", \"type\": "
      "\"child<container>\"}]}" },
    { "{\"execute\": \"qom-list\", \"arguments\": {\"path\": \"peripheral\"}}",
      "{\"return\": [{\"name\": \"type\", \"type\": \"string\"}]}" },
    { "{\"execute\": \"qom-list\", \"arguments\": {\"path\": \"/chardevs\"}}",
      "{\"return\": [{\"name\": \"type\", \"type\": \"string\"}, {\"name\": \"charmonitor\", "
      "\"type\": \"child<chardev-socket>\"}, {\"name\": \"spare\", \"type\": "
      "\"child<chardev-socket>\"}, {\"name\": \"log\", \"type\": \"child<chardev-file>\"}]}" },
    /* No vCPU without a guest: libvirt then skips its CPUID check. */
    { "{\"execute\": \"qom-list\", \"arguments\": {\"path\": "
      "\"/machine/unattached/device[0]\"}}",
      "{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"Device "
      "'/machine/unattached/device[0]' not found\"}}" },
    { "{\"execute\": \"qom-list\", \"arguments\": {\"path\": \"\"}}",
      GENERIC("Path '' is ambiguous") },
    { "{\"execute\": \"qom-list\", \"arguments\": {\"path\": \"machine/\"}}",
      "{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"Device 'machine/' not "
      "found\"}}" },
    { "{\"execute\": \"qom-get\", \"arguments\": {\"path\": \"/machine\", \"property\": "
      "\"type\"}}", "{\"return\": \"none-machine\"}" },
    { "{\"execute\": \"qom-get\", \"arguments\": {\"path\": \"/machine\", \"property\": "
      "\"peripheral\"}}", "{\"return\": \"/machine/peripheral\"}" },
    { "{\"execute\": \"qom-get\", \"arguments\": {\"path\": \"/chardevs/log\", "
      "\"property\": \"type\"}}", "{\"return\": \"chardev-file\"}" },
    { "{\"execute\": \"qom-get\", \"arguments\": {\"path\": \"/machine\", \"property\": "
      "\"feature-words\"}}", GENERIC("Property 'none-machine.feature-words' not found") },
    { "{\"execute\": \"qom-get\", \"arguments\": {\"path\": \"/nope\", \"property\": "
      "\"type\"}}",
      "{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"Device '/nope' not found\"}}" },
    { "{\"execute\": \"qom-get\", \"arguments\": {\"path\": \"/machine\"}}",
      GENERIC("Parameter 'property' is missing") },
};

static void test_libvirt_start_replies(void)
{
    Amber s = { .machine_none = true };
    bool negotiated = true;

    s.chardevs = g_ptr_array_new_with_free_func(chardev_label_free);
    g_ptr_array_add(s.chardevs, chardev_label_new("charmonitor", "fd:23,server=on", true));
    g_ptr_array_add(s.chardevs, chardev_label_new("spare", "unix:/s,server=on,wait=off",
                                                  false));
    g_ptr_array_add(s.chardevs, chardev_label_new("log", "file:/tmp/log", true));
    for (gsize i = 0; i < G_N_ELEMENTS(libvirt_start); i++) {
        g_autofree char *r = run(&s, &negotiated, libvirt_start[i].request);
        g_assert_cmpstr(r, ==, libvirt_start[i].reply);
    }
    g_ptr_array_unref(s.chardevs);
}

/* Look a SchemaInfo up by name in query-qmp-schema's reply. */
static JsonObject *schema_entry(JsonArray *a, const char *name)
{
    for (guint i = 0; i < json_array_get_length(a); i++) {
        JsonObject *o = json_array_get_object_element(a, i);
        if (!strcmp(json_object_get_string_member(o, "name"), name)) {
            return o;
        }
    }
    return NULL;
}

/* Every name a SchemaInfo refers to must be in the schema too. */
static void check_refs(JsonArray *a, JsonObject *o)
{
    static const char *const refs[] = { "arg-type", "ret-type", "element-type", NULL };
    const char *meta = json_object_get_string_member(o, "meta-type");

    for (const char *const *k = refs; *k; k++) {
        if (json_object_has_member(o, *k)) {
            g_assert_nonnull(schema_entry(a, json_object_get_string_member(o, *k)));
        }
    }
    if (!strcmp(meta, "object")) {
        JsonArray *m = json_object_get_array_member(o, "members");
        for (guint j = 0; j < json_array_get_length(m); j++) {
            JsonObject *mem = json_array_get_object_element(m, j);
            g_assert_nonnull(schema_entry(a, json_object_get_string_member(mem, "type")));
        }
    }
    if (!strcmp(meta, "command")) {
        g_assert_true(json_object_has_member(o, "arg-type"));
        g_assert_true(json_object_has_member(o, "ret-type"));
    }
}

static void test_qmp_schema(void)
{
    Amber s = { .machine_none = true };
    bool negotiated = true;
    g_autofree char *r = run(&s, &negotiated, "{\"execute\": \"query-qmp-schema\"}");
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GHashTable) names = g_hash_table_new(g_str_hash, g_str_equal);
    JsonArray *a;
    JsonObject *o;

    g_assert_true(json_parser_load_from_data(parser, r, -1, NULL));
    a = json_object_get_array_member(json_node_get_object(json_parser_get_root(parser)),
                                     "return");
    for (guint i = 0; i < json_array_get_length(a); i++) {
        o = json_array_get_object_element(a, i);
        const char *name = json_object_get_string_member(o, "name");
        g_assert_true(json_object_has_member(o, "meta-type"));
        g_assert_false(g_hash_table_contains(names, name));     /* each name once */
        g_hash_table_add(names, (gpointer)name);
        check_refs(a, o);
    }
    for (const QmpCommand *c = qmp_command_table; c->name; c++) {
        o = schema_entry(a, c->name);
        g_assert_nonnull(o);
        g_assert_cmpstr(json_object_get_string_member(o, "meta-type"), ==, "command");
    }
    /* QEMU's shapes, which clients query by path (libvirt: "query-kvm/ret-type/present"). */
    o = schema_entry(a, "query-kvm");
    g_assert_cmpstr(json_object_get_string_member(o, "arg-type"), ==, "q_empty");
    o = schema_entry(a, json_object_get_string_member(o, "ret-type"));
    g_assert_cmpstr(json_object_get_string_member(o, "meta-type"), ==, "object");
    o = schema_entry(a, "q_obj_qom-list-types-arg");
    g_assert_cmpstr(json_object_get_string_member(
        json_array_get_object_element(json_object_get_array_member(o, "members"), 1),
        "type"), ==, "bool");
    g_assert_true(json_object_has_member(
        json_array_get_object_element(json_object_get_array_member(o, "members"), 1),
        "default"));
    o = schema_entry(a, "SysEmuTarget");
    g_assert_cmpstr(json_object_get_string_member(o, "meta-type"), ==, "enum");
    g_assert_cmpstr(json_array_get_string_element(json_object_get_array_member(o, "values"),
                                                  0), ==, "x86_64");
    o = schema_entry(a, "[MachineInfo]");
    g_assert_cmpstr(json_object_get_string_member(o, "element-type"), ==, "MachineInfo");
    o = schema_entry(a, "int");
    g_assert_cmpstr(json_object_get_string_member(o, "json-type"), ==, "int");
    g_assert_null(schema_entry(a, "uint64"));   /* every integer type is "int" */
    o = schema_entry(a, "SHUTDOWN");
    g_assert_cmpstr(json_object_get_string_member(o, "meta-type"), ==, "event");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/qmp/stream/bytewise", test_stream_bytewise);
    g_test_add_func("/qmp/stream/oversize-resyncs", test_stream_oversize_resyncs);
    g_test_add_func("/qmp/stream/depth-and-garbage", test_stream_depth_and_garbage);
    g_test_add_func("/qmp/json-output", test_json_output);
    g_test_add_func("/qmp/dispatch", test_dispatch);
    g_test_add_func("/qmp/query-commands", test_query_commands);
    g_test_add_func("/qmp/probe-replies", test_probe_replies);
    g_test_add_func("/qmp/libvirt-start-replies", test_libvirt_start_replies);
    g_test_add_func("/qmp/qmp-schema", test_qmp_schema);
    return g_test_run();
}
