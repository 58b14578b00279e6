/*
 * Trace points and the log: pattern matching, -trace help listing, file
 * output format, disabled events writing nothing (and not evaluating their
 * arguments), whole lines under concurrency.
 */
#include "util/log.h"
#include "util/trace.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <glib.h>
#include <glib/gstdio.h>

static int side_effects;

static int count_call(void)
{
    return ++side_effects;
}

static void emit_all(int value)
{
    trace(test_alpha, "value=%d", value);
    trace(test_beta, "value=%d", value);
    trace(other_gamma, "value=%d", value);
}

/* A second site with the same name as one above. */
static void emit_alpha_again(void)
{
    trace(test_alpha, "again");
}

typedef struct {
    char *dir;
    char *path;
} LogFixture;

static void fixture_setup(LogFixture *f, gconstpointer data)
{
    f->dir = g_dir_make_tmp("amber-test-log-XXXXXX", NULL);
    g_assert_nonnull(f->dir);
    f->path = g_build_filename(f->dir, "trace.log", NULL);
    trace_disable_all();
    g_assert_true(log_set_file(f->path, &error_abort));
}

static void fixture_teardown(LogFixture *f, gconstpointer data)
{
    trace_disable_all();
    log_close();
    g_unlink(f->path);
    g_rmdir(f->dir);
    g_free(f->path);
    g_free(f->dir);
}

static char *read_log(LogFixture *f)
{
    char *text = NULL;

    g_assert_true(g_file_get_contents(f->path, &text, NULL, NULL));
    return text;
}

static void test_exists(void)
{
    /* Known before any of them ran: registered by the linker section. */
    g_assert_true(trace_event_exists("test_alpha"));
    g_assert_true(trace_event_exists("other_gamma"));
    g_assert_true(trace_event_exists("uffd_register"));
    g_assert_false(trace_event_exists("test_nope"));
}

static void test_patterns(void)
{
    Error *err = NULL;

    trace_disable_all();
    g_assert_true(trace_enable("test_*", &error_abort));
    g_assert_true(trace_event_enabled("test_alpha"));
    g_assert_true(trace_event_enabled("test_beta"));
    g_assert_false(trace_event_enabled("other_gamma"));

    g_assert_true(trace_enable("-test_beta", &error_abort));
    g_assert_false(trace_event_enabled("test_beta"));
    g_assert_true(trace_event_enabled("test_alpha"));

    g_assert_true(trace_enable("enable=other_g?mma", &error_abort));
    g_assert_true(trace_event_enabled("other_gamma"));

    /* A glob matching nothing is accepted (the events may not be built). */
    g_assert_true(trace_enable("nothing_*", &error_abort));

    /* A plain name that does not exist is a user error, not silence. */
    g_assert_false(trace_enable("test_alpah", &err));
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(error_get_pretty(err), "test_alpah"));
    g_assert_nonnull(strstr(error_get_pretty(err), "-trace help"));
    error_free(err);
    err = NULL;
    g_assert_false(trace_enable("", &err));
    error_free(err);
    err = NULL;
    g_assert_false(trace_enable("-", &err));
    error_free(err);

    trace_disable_all();
    g_assert_false(trace_event_enabled("test_alpha"));
}

static void test_list(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    char **lines;
    size_t i, n, alpha = 0;

    trace_list(f);
    fclose(f);
    lines = g_strsplit(buf, "\n", -1);
    n = g_strv_length(lines);
    g_assert_cmpuint(n, >=, 4);
    for (i = 0; i + 1 < n; i++) {
        if (i > 0) {
            /* Sorted, no duplicates. */
            g_assert_cmpint(strcmp(lines[i - 1], lines[i]), <, 0);
        }
        alpha += strcmp(lines[i], "test_alpha") == 0;
    }
    g_assert_cmpuint(alpha, ==, 1);
    g_assert_nonnull(strstr(buf, "other_gamma\n"));
    g_assert_nonnull(strstr(buf, "uffd_protect\n"));
    g_strfreev(lines);
    free(buf);
}

static void test_file_output(LogFixture *f, gconstpointer data)
{
    long long before = log_timestamp_us(), after, ts;
    long tid;
    char name[64], rest[64];
    char *text;

    g_assert_true(trace_enable("test_alpha", &error_abort));
    emit_all(42);
    after = log_timestamp_us();
    text = read_log(f);
    /* Only the enabled event wrote, once, as "<us> <tid> <name> <msg>". */
    g_assert_cmpint(sscanf(text, "%lld %ld %63s %63[^\n]", &ts, &tid, name, rest), ==, 4);
    g_assert_cmpint(ts, >=, before);
    g_assert_cmpint(ts, <=, after);
    g_assert_cmpint(tid, ==, (long)syscall(SYS_gettid));
    g_assert_cmpstr(name, ==, "test_alpha");
    g_assert_cmpstr(rest, ==, "value=42");
    g_assert_cmpuint(strlen(text), ==, strchr(text, '\n') - text + 1);
    g_free(text);

    /* Both sites named test_alpha are on. */
    emit_alpha_again();
    text = read_log(f);
    g_assert_nonnull(strstr(text, " test_alpha again\n"));
    g_free(text);
}

static void test_disabled_silent(LogFixture *f, gconstpointer data)
{
    char *text;
    int i;

    side_effects = 0;
    for (i = 0; i < 1000; i++) {
        emit_all(i);
        trace(test_alpha, "%d", count_call());
    }
    /* Off: nothing written, arguments never evaluated. */
    g_assert_cmpint(side_effects, ==, 0);
    text = read_log(f);
    g_assert_cmpstr(text, ==, "");
    g_free(text);

    g_assert_true(trace_enable("test_alpha", &error_abort));
    trace(test_alpha, "%d", count_call());
    g_assert_cmpint(side_effects, ==, 1);
}

static void test_log_printf(LogFixture *f, gconstpointer data)
{
    char *text;

    log_printf("plain %s", "line");
    log_printf("already terminated\n");
    text = read_log(f);
    g_assert_cmpstr(text, ==, "plain line\nalready terminated\n");
    g_free(text);
}

static void test_bad_file(void)
{
    Error *err = NULL;

    g_assert_false(log_set_file("/nonexistent-dir/x.log", &err));
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(error_get_pretty(err), "/nonexistent-dir/x.log"));
    g_assert_nonnull(strstr(error_get_pretty(err), g_strerror(ENOENT)));
    error_free(err);
}

#define LINES_PER_THREAD 300

static void *writer(void *opaque)
{
    int i;

    for (i = 0; i < LINES_PER_THREAD; i++) {
        trace(test_beta, "thread=%d line=%d padding=%s", GPOINTER_TO_INT(opaque),
              i, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    }
    return NULL;
}

static void test_threads(LogFixture *f, gconstpointer data)
{
    pthread_t th[4];
    char *text, **lines;
    int i, n;

    g_assert_true(trace_enable("test_beta", &error_abort));
    for (i = 0; i < 4; i++) {
        pthread_create(&th[i], NULL, writer, GINT_TO_POINTER(i));
    }
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
    }
    text = read_log(f);
    lines = g_strsplit(text, "\n", -1);
    n = g_strv_length(lines);
    g_assert_cmpint(n, ==, 4 * LINES_PER_THREAD + 1);   /* + empty tail */
    for (i = 0; i < n - 1; i++) {
        g_assert_true(g_regex_match_simple(
            "^[0-9]+ [0-9]+ test_beta thread=[0-3] line=[0-9]+ padding=x{48}$",
            lines[i], 0, 0));
    }
    g_strfreev(lines);
    g_free(text);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/log/exists", test_exists);
    g_test_add_func("/log/patterns", test_patterns);
    g_test_add_func("/log/list", test_list);
    g_test_add_func("/log/bad-file", test_bad_file);
    g_test_add("/log/file-output", LogFixture, NULL, fixture_setup,
               test_file_output, fixture_teardown);
    g_test_add("/log/disabled-silent", LogFixture, NULL, fixture_setup,
               test_disabled_silent, fixture_teardown);
    g_test_add("/log/printf", LogFixture, NULL, fixture_setup,
               test_log_printf, fixture_teardown);
    g_test_add("/log/threads", LogFixture, NULL, fixture_setup,
               test_threads, fixture_teardown);
    return g_test_run();
}
