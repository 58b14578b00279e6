/*
 * HMP lines as typed at the monitor: each line split into words and run,
 * on a process with no machine.  The input is cut into lines at newlines,
 * each at most the monitor's 4096 bytes.
 */
#include <string.h>

#include <glib.h>

#include "fuzz.h"
#include "monitor/hmp.h"
#include "system/amber.h"

#define FUZZ_HMP_MAX_LINE 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static Amber *s;
    const uint8_t *p = data, *end = data + size;

    if (!s) {
        s = amber_new();
    }
    while (p < end) {
        const uint8_t *nl = memchr(p, '\n', end - p);
        size_t len = MIN((size_t)((nl ? nl : end) - p), FUZZ_HMP_MAX_LINE);
        /* The monitor drops NUL bytes: a line is a C string. */
        g_autofree char *line = g_strndup((const char *)p, len);
        GString *out = g_string_new(NULL);

        hmp_run_line(s, line, out);
        g_string_free(out, TRUE);
        p = nl ? nl + 1 : end;
    }
    while (g_main_context_iteration(NULL, FALSE)) {
    }
    return 0;
}

static const char *const seeds[] = {
    "help\ninfo status\ninfo migrate\ninfo migrate_capabilities\ninfo migrate_parameters\n",
    "migrate_set_parameter max-bandwidth 64M\nmigrate_set_parameter downtime-limit 120\n"
    "migrate_set_parameter x-background-snapshot-chunk-size 64K\n"
    "migrate_set_parameter direct-io on\nmigrate_set_capability events on\n",
    "migrate -d file:/nonexistent/x\nmigrate_cancel\nmigrate_incoming tcp:0:0\n",
    "migrate \"exec:cat > /dev/null\"\nstop\ncont\nsystem_reset\n",
    "migrate_set_parameter 'quoted value\nx \"unterminated\n\\\n",
};

bool fuzz_write_seeds(const char *dir)
{
    return fuzz_seed_strings(dir, "hmp", seeds, G_N_ELEMENTS(seeds));
}
