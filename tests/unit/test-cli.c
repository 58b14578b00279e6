/*
 * Command-line parsing: what each option fills in, and the one-line
 * message each bad input produces (nothing is started by the parser).
 */
#include <string.h>
#include <glib.h>

#include "system/cli.h"

/* Parse a NULL-terminated list of words (argv[0] is added). */
static bool parse(CliOptions *cli, Error **errp, const char *first, ...)
{
    GPtrArray *argv = g_ptr_array_new();
    va_list ap;

    g_ptr_array_add(argv, (char *)"amber");
    va_start(ap, first);
    for (const char *w = first; w; w = va_arg(ap, const char *)) {
        g_ptr_array_add(argv, (char *)w);
    }
    va_end(ap);
    bool ok = cli_parse(argv->len, (char **)argv->pdata, cli, errp);
    g_ptr_array_free(argv, TRUE);
    return ok;
}

#define PARSE_OK(cli, ...) g_assert_true(parse((cli), &error_abort, __VA_ARGS__, NULL))

/* The parse must fail with exactly `msg` (what follows "amber: "). */
#define PARSE_FAILS(msg, ...)                                                   \
    do {                                                                        \
        CliOptions c_;                                                          \
        Error *err_ = NULL;                                                     \
        g_assert_false(parse(&c_, &err_, __VA_ARGS__, NULL));                   \
        g_assert_nonnull(err_);                                                 \
        g_assert_cmpstr(error_get_pretty(err_), ==, (msg));                     \
        g_assert_null(strchr(error_get_pretty(err_), '\n'));                    \
        error_free(err_);                                                       \
        cli_options_clear(&c_);                                                 \
    } while (0)

static void test_defaults(void)
{
    CliOptions cli;
    char *argv[] = { (char *)"amber", NULL };

    g_assert_true(cli_parse(1, argv, &cli, &error_abort));
    g_assert_cmpuint(cli.machine->ram_size, ==, 128ULL << 20);
    g_assert_cmpint(cli.machine->smp, ==, 1);
    g_assert_cmpstr(cli.machine->accel, ==, "kvm");
    g_assert_cmpstr(cli.machine->serial, ==, "null");
    g_assert_null(cli.machine->kernel);
    g_assert_false(cli.machine->start_paused);
    g_assert_cmpuint(cli.qmp->len, ==, 0);
    g_assert_cmpuint(cli.hmp->len, ==, 0);
    g_assert_false(cli.daemonize);
    cli_options_clear(&cli);
}

static void test_memory_size(void)
{
    static const struct { const char *arg; uint64_t bytes; } ok[] = {
        { "512", 512ULL << 20 }, { "2G", 2ULL << 30 }, { "65536K", 64ULL << 20 },
        { "1T", 1ULL << 40 }, { "size=256M", 256ULL << 20 }, { "4g", 4ULL << 30 },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(ok); i++) {
        CliOptions cli;
        PARSE_OK(&cli, "-m", ok[i].arg);
        g_assert_cmpuint(cli.machine->ram_size, ==, ok[i].bytes);
        cli_options_clear(&cli);
    }
    PARSE_FAILS("-m 0: memory size must be greater than zero", "-m", "0");
    CliOptions cli;
    Error *err = NULL;
    static const char *const bad[] = { "abc", "-1", "12X", "" };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_assert_false(parse(&cli, &err, "-m", bad[i], NULL));
        g_autofree char *prefix = g_strdup_printf("-m %s: ", bad[i]);
        g_assert_true(g_str_has_prefix(error_get_pretty(err), prefix));
        error_free(err);
        err = NULL;
        cli_options_clear(&cli);
    }
    PARSE_FAILS("-m: requires an argument", "-m");
}

static void test_smp(void)
{
    CliOptions cli;

    PARSE_OK(&cli, "-smp", "4");
    g_assert_cmpint(cli.machine->smp, ==, 4);
    cli_options_clear(&cli);
    PARSE_OK(&cli, "--smp", "cpus=8");
    g_assert_cmpint(cli.machine->smp, ==, 8);
    cli_options_clear(&cli);
    PARSE_FAILS("-smp 0: the number of vCPUs must be between 1 and 8", "-smp", "0");
    PARSE_FAILS("-smp 9: the number of vCPUs must be between 1 and 8", "-smp", "9");
    PARSE_FAILS("-smp two: 'two' is not a number of vCPUs", "-smp", "two");
    PARSE_FAILS("-smp 2,sockets=2: unsupported property 'sockets' (use -smp N or "
                "-smp cpus=N)", "-smp", "2,sockets=2");
}

static void test_accel(void)
{
    CliOptions cli;

    PARSE_OK(&cli, "-accel", "kvm");
    g_assert_cmpstr(cli.machine->accel, ==, "kvm");
    cli_options_clear(&cli);
    PARSE_FAILS("-accel tcg: only kvm is supported", "-accel", "tcg");
}

static void test_backends(void)
{
    CliOptions cli;
    RamBackendOptions *b;

    PARSE_OK(&cli, "-object", "memory-backend-memfd,id=mem,size=1G,share=on",
             "-machine", "memory-backend=mem");
    g_assert_cmpuint(cli.machine->backends->len, ==, 1);
    b = g_ptr_array_index(cli.machine->backends, 0);
    g_assert_cmpint(b->kind, ==, RAM_BACKEND_MEMFD);
    g_assert_cmpstr(b->id, ==, "mem");
    g_assert_cmpuint(b->size, ==, 1ULL << 30);
    g_assert_true(b->share);
    g_assert_cmpstr(cli.machine->memory_backend, ==, "mem");
    g_assert_cmpuint(cli.machine->ram_size, ==, 1ULL << 30);   /* -m follows the backend */
    cli_options_clear(&cli);

    PARSE_OK(&cli, "-m", "512", "-object",
             "memory-backend-file,id=f,size=512M,mem-path=/tmp/x,prealloc=on",
             "-machine", "memory-backend=f");
    b = g_ptr_array_index(cli.machine->backends, 0);
    g_assert_cmpint(b->kind, ==, RAM_BACKEND_FILE);
    g_assert_cmpstr(b->mem_path, ==, "/tmp/x");
    g_assert_true(b->prealloc);
    g_assert_false(b->share);
    cli_options_clear(&cli);

    PARSE_OK(&cli, "-object", "memory-backend-ram,id=r,size=4096");
    b = g_ptr_array_index(cli.machine->backends, 0);
    g_assert_cmpuint(b->size, ==, 4096);    /* size= is in bytes without a suffix */
    g_assert_false(b->share);
    cli_options_clear(&cli);

    PARSE_FAILS("-object memory-backend-ram,size=1G: id= is required",
                "-object", "memory-backend-ram,size=1G");
    PARSE_FAILS("-object memory-backend-ram,id=a: size= is required",
                "-object", "memory-backend-ram,id=a");
    PARSE_FAILS("-object memory-backend-file,id=a,size=1G: mem-path= is required for "
                "memory-backend-file", "-object", "memory-backend-file,id=a,size=1G");
    PARSE_FAILS("-object memory-backend-ram,id=a,size=1G,color=red: memory-backend-ram "
                "has no property 'color'", "-object",
                "memory-backend-ram,id=a,size=1G,color=red");
    PARSE_FAILS("-object memory-backend-ram,id=a,size=1G,mem-path=/x: memory-backend-ram "
                "has no property 'mem-path'", "-object",
                "memory-backend-ram,id=a,size=1G,mem-path=/x");
    PARSE_FAILS("-object memory-backend-ram,id=a,size=1G,share=maybe: share=maybe: "
                "expected on or off", "-object", "memory-backend-ram,id=a,size=1G,share=maybe");
    PARSE_FAILS("-object memory-backend-ram,id=a,size=1G: duplicate object id 'a'",
                "-object", "memory-backend-ram,id=a,size=1G",
                "-object", "memory-backend-ram,id=a,size=1G");
    PARSE_FAILS("-object rng-random,id=r: unknown object type 'rng-random' (amber knows "
                "memory-backend-ram, memory-backend-memfd and memory-backend-file)",
                "-object", "rng-random,id=r");
    PARSE_FAILS("-object memory-backend-ram,id=a,size=0: size must be greater than zero",
                "-object", "memory-backend-ram,id=a,size=0");
}

static void test_machine(void)
{
    PARSE_FAILS("-machine memory-backend=nope: no -object with id 'nope'",
                "-machine", "memory-backend=nope");
    PARSE_FAILS("-m (512 MiB) does not match the size of memory backend 'a' "
                "(1073741824 bytes): they must be equal",
                "-m", "512", "-object", "memory-backend-ram,id=a,size=1G",
                "-machine", "memory-backend=a");
    PARSE_FAILS("-machine type=q35: unsupported machine property 'type' (-machine accepts "
                "only memory-backend=ID)", "-machine", "type=q35");
    PARSE_FAILS("-machine pc: unsupported machine type 'pc' (amber has one machine type; "
                "-machine accepts only memory-backend=ID)", "-machine", "pc");
}

static void test_chardevs(void)
{
    CliOptions cli;

    PARSE_OK(&cli, "-serial", "file:/tmp/s.log", "-qmp", "unix:/tmp/a,server=on,wait=off",
             "-qmp", "unix:/tmp/b,server=on,wait=off", "-monitor", "stdio");
    g_assert_cmpstr(cli.machine->serial, ==, "file:/tmp/s.log");
    g_assert_cmpuint(cli.qmp->len, ==, 2);
    g_assert_cmpstr(cli.qmp->pdata[1], ==, "unix:/tmp/b,server=on,wait=off");
    g_assert_cmpuint(cli.hmp->len, ==, 1);
    cli_options_clear(&cli);

    PARSE_FAILS("-serial foo:bar: unknown chardev backend 'foo' (use stdio, null, file:PATH "
                "or unix:PATH[,server=on,wait=off])", "-serial", "foo:bar");
    PARSE_FAILS("-monitor stdio: stdio is already used by -serial",
                "-serial", "stdio", "-monitor", "stdio");
    PARSE_FAILS("-qmp stdio: stdio is already used by -serial",
                "-serial", "stdio", "-qmp", "stdio");
    PARSE_FAILS("-monitor stdio: stdio is already used by -qmp",
                "-qmp", "stdio", "-monitor", "stdio");
    PARSE_FAILS("-daemonize cannot be used with -monitor stdio",
                "-monitor", "stdio", "-daemonize");
    PARSE_FAILS("-serial null: amber has one serial port (COM1); -serial may be given once",
                "-serial", "stdio", "-serial", "null");
}

static void test_misc(void)
{
    CliOptions cli;

    PARSE_OK(&cli, "-S", "-name", "vm1", "-pidfile", "/tmp/p", "-daemonize", "-D", "/tmp/l",
             "-trace", "kvm_*", "-trace", "uffd_*", "-incoming", "defer",
             "-kernel", "/k", "-append", "report=200", "-initrd", "/i");
    g_assert_true(cli.machine->start_paused);
    g_assert_cmpstr(cli.machine->name, ==, "vm1");
    g_assert_cmpstr(cli.pidfile, ==, "/tmp/p");
    g_assert_true(cli.daemonize);
    g_assert_cmpstr(cli.logfile, ==, "/tmp/l");
    g_assert_cmpuint(cli.trace->len, ==, 2);
    g_assert_cmpstr(cli.incoming, ==, "defer");
    g_assert_cmpstr(cli.machine->kernel, ==, "/k");
    g_assert_cmpstr(cli.machine->append, ==, "report=200");
    g_assert_cmpstr(cli.machine->initrd, ==, "/i");
    cli_options_clear(&cli);

    PARSE_OK(&cli, "-version", "-bogus");
    g_assert_true(cli.show_version);
    cli_options_clear(&cli);
    PARSE_OK(&cli, "--help");
    g_assert_true(cli.show_help);
    cli_options_clear(&cli);

    PARSE_FAILS("-bogus: invalid option (see -help)", "-bogus");
    PARSE_FAILS("disk.img: unexpected argument (options start with '-'; see -help)",
                "disk.img");
    PARSE_FAILS("-initrd is only allowed with -kernel", "-initrd", "/i");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/cli/defaults", test_defaults);
    g_test_add_func("/cli/memory-size", test_memory_size);
    g_test_add_func("/cli/smp", test_smp);
    g_test_add_func("/cli/accel", test_accel);
    g_test_add_func("/cli/backends", test_backends);
    g_test_add_func("/cli/machine", test_machine);
    g_test_add_func("/cli/chardevs", test_chardevs);
    g_test_add_func("/cli/misc", test_misc);
    return g_test_run();
}
