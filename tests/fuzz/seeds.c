/* Writing seed inputs: shared by every fuzz target and both of its builds. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <glib.h>

#include "fuzz.h"

bool fuzz_seed(const char *dir, const char *name, const void *data, size_t len)
{
    g_autofree char *path = g_build_filename(dir, name, NULL);
    g_autoptr(GError) err = NULL;

    if (!g_file_set_contents(path, data, len, &err)) {
        fprintf(stderr, "replay: %s\n", err->message);
        return false;
    }
    return true;
}

bool fuzz_seed_strings(const char *dir, const char *prefix, const char *const *texts,
                       size_t n)
{
    for (size_t i = 0; i < n; i++) {
        g_autofree char *name = g_strdup_printf("%s-%zu", prefix, i);

        if (!fuzz_seed(dir, name, texts[i], strlen(texts[i]))) {
            return false;
        }
    }
    return true;
}
