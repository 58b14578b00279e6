/*
 * Runs a fuzz target over committed inputs, without libFuzzer: each file
 * of each directory given, once, in name order.  A directory that is
 * missing or empty fails, so a corpus cannot drop out of `make check`
 * unnoticed.  `--seeds DIR` writes the target's seeds instead.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <glib.h>

#include "fuzz.h"

static gint by_name(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int replay_dir(const char *dir)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    GDir *d = g_dir_open(dir, 0, &err);
    const char *name;

    if (!d) {
        fprintf(stderr, "replay: %s\n", err->message);
        return -1;
    }
    while ((name = g_dir_read_name(d))) {
        g_ptr_array_add(names, g_strdup(name));
    }
    g_dir_close(d);
    g_ptr_array_sort(names, by_name);
    for (guint i = 0; i < names->len; i++) {
        g_autofree char *path = g_build_filename(dir, names->pdata[i], NULL);
        g_autofree char *data = NULL;
        gsize len;

        if (!g_file_get_contents(path, &data, &len, &err)) {
            fprintf(stderr, "replay: %s\n", err->message);
            return -1;
        }
        LLVMFuzzerTestOneInput((const uint8_t *)data, len);
    }
    return names->len;
}

int main(int argc, char **argv)
{
    int total = 0;

    if (argc == 3 && !strcmp(argv[1], "--seeds")) {
        return fuzz_write_seeds(argv[2]) ? 0 : 1;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS-DIR... | --seeds DIR\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        int n = replay_dir(argv[i]);

        if (n <= 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], n ? "unreadable" : "no inputs");
            return 1;
        }
        total += n;
    }
    printf("replayed %d inputs\n", total);
    return 0;
}
