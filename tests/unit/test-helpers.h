/* Small assertions shared by the unit tests. */
#ifndef AMBER_TESTS_UNIT_TEST_HELPERS_H
#define AMBER_TESTS_UNIT_TEST_HELPERS_H

#include <string.h>
#include <glib.h>

#include "migration/migration-io.h"
#include "migration/savevm.h"
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

/*
 * A QEMUFile over fd through the migration threads' own I/O (no cancel
 * eventfd); io must outlive it.  Close with test_fd_close().  The process
 * must ignore SIGPIPE, as amber does.
 */
static inline QEMUFile *test_fd_file(MigrationIO *io, int fd, bool output,
                                     const char *name)
{
    Error *err = NULL;

    if (!migration_io_init(io, fd, -1, &err)) {
        g_error("migration_io_init: %s", error_get_pretty(err));
    }
    return output ? migration_io_output(io, name) : migration_io_input(io, name);
}

/* qemu_fclose(f), and fd gets its flags back. */
static inline int test_fd_close(MigrationIO *io, QEMUFile *f)
{
    int ret = qemu_fclose(f);

    migration_io_restore(io);
    return ret;
}

/*
 * A whole stream with the VM stopped, in the steps the migration thread
 * takes (without its cancel checks and rate limit).
 */
static inline bool test_save_stream(SaveStateRegistry *r, QEMUFile *f, Error **errp)
{
    int ret;

    if (!savevm_save_head(r, f, NULL, errp)) {
        return false;
    }
    while ((ret = savevm_save_iterate(r, f, errp)) == 0) {
    }
    return ret > 0 && savevm_save_complete(r, f, errp) && savevm_save_tail(r, f, errp);
}

#endif
