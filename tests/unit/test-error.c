/*
 * Error **errp: set, propagate, prepend, copy, class names, errno text,
 * and the fatal/abort sentinels.
 */
#include "util/error.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <glib.h>

static bool fails(int n, Error **errp)
{
    if (n < 0) {
        error_setg(errp, "value %d is negative", n);
        return false;
    }
    return true;
}

static void test_set(void)
{
    Error *err = NULL;

    g_assert_true(fails(1, &err));
    g_assert_null(err);
    g_assert_false(fails(-3, &err));
    g_assert_nonnull(err);
    g_assert_cmpstr(error_get_pretty(err), ==, "value -3 is negative");
    g_assert_cmpint(error_get_class(err), ==, ERROR_CLASS_GENERIC_ERROR);
    error_free(err);

    /* A caller that does not care passes NULL: nothing to free, no crash. */
    g_assert_false(fails(-1, NULL));
}

static void test_set_class(void)
{
    Error *err = NULL;

    error_set(&err, ERROR_CLASS_DEVICE_NOT_FOUND, "device '%s' not found", "x");
    g_assert_cmpint(error_get_class(err), ==, ERROR_CLASS_DEVICE_NOT_FOUND);
    g_assert_cmpstr(error_class_name(error_get_class(err)), ==, "DeviceNotFound");
    error_free(err);
}

static void test_class_names(void)
{
    g_assert_cmpstr(error_class_name(ERROR_CLASS_GENERIC_ERROR), ==, "GenericError");
    g_assert_cmpstr(error_class_name(ERROR_CLASS_COMMAND_NOT_FOUND), ==, "CommandNotFound");
    g_assert_cmpstr(error_class_name(ERROR_CLASS_DEVICE_NOT_ACTIVE), ==, "DeviceNotActive");
    g_assert_cmpstr(error_class_name(ERROR_CLASS_DEVICE_NOT_FOUND), ==, "DeviceNotFound");
    g_assert_cmpstr(error_class_name(ERROR_CLASS_KVM_MISSING_CAP), ==, "KVMMissingCap");
    /* Out-of-range values do not crash. */
    g_assert_cmpstr(error_class_name((ErrorClass)1000), ==, "GenericError");
}

static void test_errno(void)
{
    Error *err = NULL;
    char *want = g_strdup_printf("cannot open 'x': %s", g_strerror(ENOENT));

    error_setg_errno(&err, ENOENT, "cannot open '%s'", "x");
    g_assert_cmpstr(error_get_pretty(err), ==, want);
    error_free(err);
    g_free(want);

    /* errno 0 adds nothing. */
    err = NULL;
    error_setg_errno(&err, 0, "plain");
    g_assert_cmpstr(error_get_pretty(err), ==, "plain");
    error_free(err);
}

static void test_propagate(void)
{
    Error *local = NULL, *dst = NULL;

    g_assert_false(fails(-7, &local));
    error_propagate(&dst, local);
    g_assert_true(dst == local);
    g_assert_cmpstr(error_get_pretty(dst), ==, "value -7 is negative");
    error_free(dst);

    /* Propagating no error leaves dst alone. */
    dst = NULL;
    error_propagate(&dst, NULL);
    g_assert_null(dst);

    /* Propagating to NULL frees (checked for leaks under ASan). */
    local = NULL;
    g_assert_false(fails(-1, &local));
    error_propagate(NULL, local);
}

static void test_prepend(void)
{
    Error *err = NULL;

    error_setg(&err, "disk full");
    error_prepend(&err, "saving block '%s': ", "pc.ram");
    error_prepend(&err, "migration: ");
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "migration: saving block 'pc.ram': disk full");
    error_free(err);

    /* No-ops, no crash. */
    error_prepend(NULL, "x");
    err = NULL;
    error_prepend(&err, "x");
    g_assert_null(err);
}

static void test_copy(void)
{
    Error *err = NULL, *copy;

    error_set(&err, ERROR_CLASS_KVM_MISSING_CAP, "needs %s", "KVM_CAP_XSAVE2");
    copy = error_copy(err);
    g_assert_true(copy != err);
    error_free(err);
    g_assert_cmpstr(error_get_pretty(copy), ==, "needs KVM_CAP_XSAVE2");
    g_assert_cmpint(error_get_class(copy), ==, ERROR_CLASS_KVM_MISSING_CAP);
    error_free(copy);
    error_free(NULL);
}

static void test_report(void)
{
    if (g_test_subprocess()) {
        Error *err = NULL;

        error_setg(&err, "first");
        error_report_err(err);
        error_report("second %d", 2);
        warn_report("third");
        return;
    }
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_passed();
    g_test_trap_assert_stderr("amber: first\namber: second 2\namber: warning: third\n");
}

static void test_fatal(void)
{
    if (g_test_subprocess()) {
        error_setg_errno(&error_fatal, EACCES, "cannot open '%s'", "/dev/kvm");
        return;     /* not reached */
    }
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("amber: cannot open '/dev/kvm': *");
    /* Exit status 1, not a signal: g_test_trap_has_passed is false either
     * way, so check the message did not come from abort(). */
    g_test_trap_assert_stderr_unmatched("*unexpected*");
}

/* error_fatal must exit with status 1 (scripts check it), not abort. */
static void test_fatal_status(void)
{
    int status;
    pid_t pid = fork();

    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);

        dup2(null, 2);
        error_setg(&error_fatal, "bye");
        _exit(99);      /* not reached */
    }
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 1);
}

static void test_fatal_propagate(void)
{
    if (g_test_subprocess()) {
        Error *local = NULL;

        fails(-2, &local);
        error_propagate(&error_fatal, local);
        return;
    }
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("amber: value -2 is negative\n");
}

static void test_abort(void)
{
    if (g_test_subprocess()) {
        fails(-9, &error_abort);
        return;
    }
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("amber: unexpected error at *: value -9 is negative*");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/error/set", test_set);
    g_test_add_func("/error/set-class", test_set_class);
    g_test_add_func("/error/class-names", test_class_names);
    g_test_add_func("/error/errno", test_errno);
    g_test_add_func("/error/propagate", test_propagate);
    g_test_add_func("/error/prepend", test_prepend);
    g_test_add_func("/error/copy", test_copy);
    g_test_add_func("/error/report", test_report);
    g_test_add_func("/error/fatal", test_fatal);
    g_test_add_func("/error/fatal-status", test_fatal_status);
    g_test_add_func("/error/fatal-propagate", test_fatal_propagate);
    g_test_add_func("/error/abort", test_abort);
    return g_test_run();
}
