/* Small assertions shared by the unit tests. */
#ifndef AMBER_TESTS_UNIT_TEST_HELPERS_H
#define AMBER_TESTS_UNIT_TEST_HELPERS_H

#include <string.h>
#include <glib.h>

#include "util/error.h"

/* Check the message of *errp, then free and clear it. */
static inline void assert_error_contains(Error **errp, const char *needle)
{
    g_assert_nonnull(*errp);
    if (!strstr(error_get_pretty(*errp), needle)) {
        g_printerr("message '%s' lacks '%s'\n", error_get_pretty(*errp), needle);
        g_assert_not_reached();
    }
    error_free(*errp);
    *errp = NULL;
}

#endif
