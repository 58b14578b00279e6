/*
 * The generated QMP code: enum tables agree with the C enums, types survive
 * a JSON round trip, nested errors name the member as QEMU does, and the
 * committed docs/qmp-reference.md is what the schema generates.
 */
#include <string.h>
#include <glib.h>

#include "qapi-commands.h"
#include "qapi-config.h"
#include "qapi-events.h"

static void test_runstate_names(void)
{
    /* The schema's names and runstate_name() must never drift apart. */
    for (int i = 0; i < RUN_STATE__MAX; i++) {
        g_assert_cmpstr(RunState_str(i), ==, runstate_name(i));
    }
    g_assert_null(RunState_lookup[RUN_STATE__MAX]);
}

static JsonNode *parse(const char *text)
{
    g_autoptr(JsonParser) p = json_parser_new();

    g_assert_true(json_parser_load_from_data(p, text, -1, NULL));
    return json_node_copy(json_parser_get_root(p));
}

static void test_round_trip(void)
{
    const char *text = "[{\"cpu-index\": 1, \"qom-path\": \"/p\", \"thread-id\": 99, "
                       "\"props\": {\"socket-id\": 1, \"core-id\": 0, \"thread-id\": 0}, "
                       "\"target\": \"x86_64\"}]";
    g_autoptr(JsonNode) in = parse(text);
    g_autoptr(JsonNode) out = NULL;
    CpuInfoFastList *list = NULL;
    Error *err = NULL;

    g_assert_true(qapi_in_CpuInfoFastList(in, "cpus", &list, &err));
    g_assert_null(err);
    g_assert_nonnull(list);
    g_assert_null(list->next);
    g_assert_cmpint(list->value->thread_id, ==, 99);
    g_assert_cmpint(list->value->props->socket_id, ==, 1);
    g_assert_cmpstr(list->value->qom_path, ==, "/p");
    out = qapi_out_CpuInfoFastList(list);
    g_assert_true(json_node_equal(in, out));
    qapi_free_CpuInfoFastList(list);
}

typedef struct BadCase {
    const char *json;
    const char *message;
} BadCase;

static const BadCase bad_cpus[] = {
    { "{}", "Invalid parameter type for 'cpus', expected: array" },
    { "[{\"cpu-index\": 0, \"qom-path\": \"/p\", \"thread-id\": 1, \"target\": \"t\"}]",
      "Parameter 'cpus[0].props' is missing" },
    { "[{\"cpu-index\": 0, \"qom-path\": \"/p\", \"thread-id\": 1, \"target\": \"t\", "
      "\"props\": {\"socket-id\": 0, \"core-id\": false, \"thread-id\": 0}}]",
      "Invalid parameter type for 'cpus[0].props.core-id', expected: integer" },
    { "[{\"cpu-index\": 0, \"qom-path\": \"/p\", \"thread-id\": 1, \"target\": \"t\", "
      "\"props\": {\"socket-id\": 0, \"core-id\": 0, \"thread-id\": 0, \"die-id\": 0}}]",
      "Parameter 'cpus[0].props.die-id' is unexpected" },
    { "[7]", "Invalid parameter type for 'cpus[0]', expected: object" },
};

static void test_nested_errors(void)
{
    for (gsize i = 0; i < G_N_ELEMENTS(bad_cpus); i++) {
        g_autoptr(JsonNode) in = parse(bad_cpus[i].json);
        CpuInfoFastList *list = NULL;
        Error *err = NULL;

        g_assert_false(qapi_in_CpuInfoFastList(in, "cpus", &list, &err));
        g_assert_null(list);
        g_assert_nonnull(err);
        g_assert_cmpstr(error_get_pretty(err), ==, bad_cpus[i].message);
        error_free(err);
    }
}

static void test_optional_member(void)
{
    NameInfo none = { 0 }, named = { .has_name = true, .name = (char *)"vm1" };
    g_autoptr(JsonNode) a = qapi_out_NameInfo(&none);
    g_autoptr(JsonNode) b = qapi_out_NameInfo(&named);

    g_assert_cmpuint(json_object_get_size(json_node_get_object(a)), ==, 0);
    g_assert_cmpstr(json_object_get_string_member(json_node_get_object(b), "name"), ==, "vm1");
}

static void test_reference_current(void)
{
    g_autofree char *committed = NULL, *generated = NULL;
    g_autoptr(GError) gerr = NULL;

    if (!g_file_get_contents(AMBER_QMP_REFERENCE_COMMITTED, &committed, NULL, &gerr)) {
        g_test_message("%s", gerr->message);
        g_test_fail();
        return;
    }
    g_assert_true(g_file_get_contents(AMBER_QMP_REFERENCE_GENERATED, &generated, NULL, NULL));
    if (strcmp(committed, generated) != 0) {
        g_test_message("docs/qmp-reference.md is out of date with qapi/*.json: "
                       "run 'ninja -C <build> qapi-doc'");
        g_test_fail();
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/qapi/runstate-names", test_runstate_names);
    g_test_add_func("/qapi/round-trip", test_round_trip);
    g_test_add_func("/qapi/nested-errors", test_nested_errors);
    g_test_add_func("/qapi/optional-member", test_optional_member);
    g_test_add_func("/qapi/reference-current", test_reference_current);
    return g_test_run();
}
