/*
 * Migration URIs as `migrate`, `migrate-incoming` and -incoming take them:
 * parsed into an address (exec:, file:PATH[,offset=N], fd:, unix:, tcp:HOST:PORT
 * with IPv6 brackets) and checked, never opened.
 */
#include <string.h>

#include <glib.h>

#include "fuzz.h"
#include "migration/channel.h"
#include "migration/migration.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autofree char *uri = g_strndup((const char *)data, size);
    ChannelAddress addr;
    Error *err = NULL;

    if (channel_parse_uri(uri, &addr, &err)) {
        g_assert_nonnull(channel_kind_name(addr.kind));
        channel_address_clear(&addr);
    } else {
        g_assert_nonnull(err);
        error_free(err);
        err = NULL;
    }
    if (!migration_incoming_check_uri(uri, &err)) {
        error_free(err);
    }
    return 0;
}

static const char *const seeds[] = {
    "exec:cat > /tmp/x", "file:/tmp/vm.snap", "file:/tmp/vm.snap,offset=4096",
    "fd:migfd", "fd:7", "unix:/tmp/amber.sock", "tcp:127.0.0.1:4444", "tcp:[::1]:0",
    "tcp::4444", "tcp:0:0", "tcp:localhost:65535", "defer", "tcp:host:abc",
    "file:", "nope:x",
};

bool fuzz_write_seeds(const char *dir)
{
    return fuzz_seed_strings(dir, "uri", seeds, G_N_ELEMENTS(seeds));
}
