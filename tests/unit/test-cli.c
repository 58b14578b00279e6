/*
 * Command-line parsing: what each option fills in, and the one-line
 * message each bad input produces (nothing is started by the parser).
 */
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <fcntl.h>
#include <unistd.h>
#include <glib.h>

#include "system/cli.h"
#include "qapi-types.h"

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
}

/* QEMU's topology words: filled as QEMU 7.2 fills them, one socket per vCPU only. */
static void test_smp_topology(void)
{
    static const struct { const char *arg; int cpus; } ok[] = {
        { "1,sockets=1,cores=1,threads=1", 1 },     /* libvirt's default */
        { "2,sockets=2,cores=1,threads=1", 2 },
        { "2,sockets=2", 2 }, { "sockets=3", 3 }, { "4,maxcpus=4", 4 },
        { "sockets=2,cores=1,threads=1,maxcpus=2", 2 }, { "3,dies=1,clusters=1", 3 },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(ok); i++) {
        CliOptions cli;
        PARSE_OK(&cli, "-smp", ok[i].arg);
        g_assert_cmpint(cli.machine->smp, ==, ok[i].cpus);
        cli_options_clear(&cli);
    }
    PARSE_FAILS("-smp 2,sockets=1,cores=2: amber gives every vCPU a socket of its own: use "
                "sockets=2,cores=1,threads=1", "-smp", "2,sockets=1,cores=2");
    PARSE_FAILS("-smp 4,sockets=2,threads=2: amber gives every vCPU a socket of its own: use "
                "sockets=4,cores=1,threads=1", "-smp", "4,sockets=2,threads=2");
    PARSE_FAILS("-smp 3,sockets=2: sockets (2) * dies (1) * clusters (1) * cores (1) * "
                "threads (1) != maxcpus (3)", "-smp", "3,sockets=2");
    PARSE_FAILS("-smp 2,maxcpus=4: maxcpus=4: amber cannot hot-plug vCPUs; maxcpus must "
                "equal the number of vCPUs (2)", "-smp", "2,maxcpus=4");
    PARSE_FAILS("-smp 2,books=1: unsupported property 'books' (cpus, sockets, dies, clusters, "
                "cores, threads, maxcpus)", "-smp", "2,books=1");
    PARSE_FAILS("-smp 2,cores=0: cores=0: must be at least 1", "-smp", "2,cores=0");
    /* A product past any integer saturates instead of wrapping around. */
    PARSE_FAILS("-smp sockets=1000,cores=1000,threads=1000,dies=1000,clusters=1000: the "
                "number of vCPUs must be between 1 and 8", "-smp",
                "sockets=1000,cores=1000,threads=1000,dies=1000,clusters=1000");
}

static void test_accel(void)
{
    CliOptions cli;

    PARSE_OK(&cli, "-accel", "kvm");
    g_assert_cmpstr(cli.machine->accel, ==, "kvm");
    g_assert_true(cli.kvm_allowed);
    cli_options_clear(&cli);
    PARSE_OK(&cli, "-machine", "pc,accel=kvm:tcg");
    g_assert_true(cli.kvm_allowed);
    cli_options_clear(&cli);
    /* No guest, so no accelerator needed: libvirt's TCG probe. */
    PARSE_OK(&cli, "-machine", "none,accel=tcg");
    g_assert_true(cli.machine_none);
    g_assert_false(cli.kvm_allowed);
    cli_options_clear(&cli);
    PARSE_OK(&cli, "-accel", "tcg", "-machine", "none");
    g_assert_false(cli.kvm_allowed);
    cli_options_clear(&cli);
    PARSE_FAILS("-accel tcg: amber runs guests on kvm only (tcg is accepted with -machine "
                "none, which runs no guest)", "-accel", "tcg");
    PARSE_FAILS("-machine accel=tcg: amber runs guests on kvm only (tcg is accepted with "
                "-machine none, which runs no guest)", "-machine", "pc,accel=tcg");
    PARSE_FAILS("-accel hvf: unknown accelerator 'hvf' (amber runs guests on kvm)",
                "-accel", "hvf");
    PARSE_FAILS("-machine accel=kvm:xen: unknown accelerator 'xen' (amber runs guests on kvm)",
                "-machine", "accel=kvm:xen");
    PARSE_FAILS("-accel kvm,kernel-irqchip=split: amber takes one accelerator name and no "
                "properties (-accel kvm)", "-accel", "kvm,kernel-irqchip=split");
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
    g_assert_cmpint(b->dump, ==, RAM_DUMP_DEFAULT);
    g_assert_false(cli.machine->no_guest_core);
    cli_options_clear(&cli);

    /* Core dumps: the machine's default, and a backend's own word over it. */
    PARSE_OK(&cli, "-object", "memory-backend-ram,id=r,size=4096,dump=on",
             "-object", "memory-backend-ram,id=s,size=4096,dump=off",
             "-machine", "pc,dump-guest-core=off");
    g_assert_cmpint(((RamBackendOptions *)cli.machine->backends->pdata[0])->dump, ==,
                    RAM_DUMP_ON);
    g_assert_cmpint(((RamBackendOptions *)cli.machine->backends->pdata[1])->dump, ==,
                    RAM_DUMP_OFF);
    g_assert_true(cli.machine->no_guest_core);
    cli_options_clear(&cli);
    PARSE_FAILS("-object memory-backend-ram,id=a,size=1G,dump=maybe: dump=maybe: "
                "expected on or off", "-object", "memory-backend-ram,id=a,size=1G,dump=maybe");

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
                "memory-backend-ram, memory-backend-memfd, memory-backend-file and secret)",
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
    PARSE_FAILS("-machine type=q35: unsupported machine type 'q35' (amber's machine is pc, "
                "also called pc-i440fx-7.2; none runs no guest)", "-machine", "type=q35");
    PARSE_FAILS("-machine pc-q35-7.2: unsupported machine type 'pc-q35-7.2' (amber's machine "
                "is pc, also called pc-i440fx-7.2; none runs no guest)",
                "-machine", "pc-q35-7.2");
    PARSE_FAILS("-machine pc,usb=on: usb=on: amber's machine has no USB controller",
                "-machine", "pc,usb=on");
    PARSE_FAILS("-machine pc,acpi=on: acpi=on: amber's machine has no ACPI",
                "-machine", "pc,acpi=on");
    PARSE_FAILS("-machine pc,mem-merge=on: mem-merge=on: amber does not offer guest RAM to "
                "KSM (mem-merge=off is what it does)", "-machine", "pc,mem-merge=on");
    PARSE_FAILS("-machine pc,dump-guest-core=maybe: dump-guest-core=maybe: expected on or off",
                "-machine", "pc,dump-guest-core=maybe");
    PARSE_FAILS("-machine pc,smm=off: unsupported machine property 'smm' (-machine accepts "
                "type, memory-backend, accel, usb=off, acpi=off, vmport=off, mem-merge=off, "
                "dump-guest-core)",
                "-machine", "pc,smm=off");
    PARSE_FAILS("-machine pc,usb: machine property 'usb' needs a value (usb=...)",
                "-machine", "pc,usb");
    PARSE_FAILS("-incoming needs a guest: -machine none has none",
                "-machine", "none", "-incoming", "defer");
}

/* The names of amber's machine, and libvirt's -machine line for a domain. */
static void test_machine_types(void)
{
    static const char *const names[] = { "pc", "pc-i440fx-7.2", "type=pc" };
    CliOptions cli;

    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
        PARSE_OK(&cli, "-machine", names[i]);
        g_assert_false(cli.machine_none);
        cli_options_clear(&cli);
    }
    PARSE_OK(&cli, "-m", "512", "-object", "memory-backend-ram,id=pc.ram,size=536870912",
             "-machine", "pc-i440fx-7.2,usb=off,dump-guest-core=off,memory-backend=pc.ram,"
             "accel=kvm,acpi=off,vmport=off");
    g_assert_false(cli.machine_none);
    g_assert_cmpstr(cli.machine->memory_backend, ==, "pc.ram");
    g_assert_cmpuint(cli.machine->ram_size, ==, 512ULL << 20);
    cli_options_clear(&cli);
    /* libvirt's probe line. */
    PARSE_OK(&cli, "-S", "-no-user-config", "-nodefaults", "-nographic",
             "-machine", "none,accel=kvm:tcg", "-qmp", "unix:/tmp/q.sock,server=on,wait=off",
             "-pidfile", "/tmp/q.pid", "-daemonize");
    g_assert_true(cli.machine_none);
    g_assert_true(cli.kvm_allowed);
    g_assert_cmpstr(cli.machine->serial, ==, "null");
    cli_options_clear(&cli);
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

    PARSE_FAILS("-serial foo:bar: unknown chardev backend 'foo' (use stdio, null, pty, "
                "file:PATH or unix:PATH[,server=on,wait=off])", "-serial", "foo:bar");
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

/* The words libvirt puts on every command line, with the values amber honours. */
/* A listening unix socket in a fresh directory, as libvirt passes one for -mon. */
static int listening_socket(char **dir)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    *dir = g_dir_make_tmp("amber-cli-XXXXXX", NULL);
    g_assert_nonnull(*dir);
    g_snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/mon.sock", *dir);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    g_assert_cmpint(listen(fd, 1), ==, 0);
    return fd;
}

static void test_qemu_words(void)
{
    CliOptions cli;
    g_autofree char *dir = NULL;
    int fd = listening_socket(&dir);
    g_autofree char *chardev = g_strdup_printf("socket,id=charmonitor,fd=%d,server=on,"
                                               "wait=off", fd);
    g_autofree char *spec = g_strdup_printf("fd:%d,server=on,wait=off", fd);

    PARSE_OK(&cli, "-name", "guest=demo,debug-threads=on", "-S",
             "-object", "secret,id=masterKey0,format=raw,file=/var/lib/x/master-key.aes",
             "-machine", "pc-i440fx-7.2,usb=off,dump-guest-core=off", "-accel", "kvm",
             "-cpu", "host,migratable=on", "-m", "512", "-overcommit", "mem-lock=off",
             "-smp", "1,sockets=1,cores=1,threads=1",
             "-uuid", "c7a5fdbd-edaf-9455-926a-d65c16db1809", "-no-user-config",
             "-nodefaults", "-chardev", chardev,
             "-mon", "chardev=charmonitor,id=monitor,mode=control", "-rtc", "base=utc",
             "-no-shutdown", "-no-acpi", "-no-hpet", "-boot", "strict=on",
             "-global", "kvm-pit.lost_tick_policy=delay",
             "-audiodev", "{\"id\":\"audio1\",\"driver\":\"none\"}",
             "-msg", "timestamp=on", "-display", "none");
    g_assert_cmpstr(cli.machine->name, ==, "demo");
    g_assert_cmpstr(cli.uuid, ==, "c7a5fdbd-edaf-9455-926a-d65c16db1809");
    g_assert_true(cli.no_shutdown);
    g_assert_cmpuint(cli.qmp->len, ==, 1);
    g_assert_cmpstr(cli.qmp->pdata[0], ==, spec);
    g_assert_cmpuint(cli.secrets->len, ==, 1);
    g_assert_cmpstr(cli.machine->serial, ==, "null");
    cli_options_clear(&cli);

    /* -nographic without -nodefaults: COM1 on the terminal, as QEMU. */
    PARSE_OK(&cli, "-nographic");
    g_assert_cmpstr(cli.machine->serial, ==, "stdio");
    cli_options_clear(&cli);
    PARSE_OK(&cli, "-nographic", "-nodefaults");
    g_assert_cmpstr(cli.machine->serial, ==, "null");
    cli_options_clear(&cli);
    PARSE_OK(&cli, "-name", "plain", "-audiodev", "none,id=a", "-audiodev", "driver=none,id=b",
             "-boot", "strict=off,menu=off", "-rtc", "base=utc,clock=host,driftfix=none",
             "-overcommit", "mem-lock=off,cpu-pm=off", "-cpu", "host", "-msg", "timestamp");
    g_assert_cmpstr(cli.machine->name, ==, "plain");
    cli_options_clear(&cli);
    close(fd);
    g_autofree char *path = g_build_filename(dir, "mon.sock", NULL);
    unlink(path);
    rmdir(dir);
}

/* Values amber cannot honour: refused, naming the option and the value. */
static void test_qemu_refused(void)
{
    PARSE_FAILS("-usb: amber's machine has no USB controller", "-usb");
    PARSE_FAILS("-display gtk: amber has no display (only -display none)", "-display", "gtk");
    PARSE_FAILS("-cpu qemu64: amber's vCPUs are the host's CPU as KVM reports it: only "
                "-cpu host", "-cpu", "qemu64");
    PARSE_FAILS("-cpu host,+vmx: -cpu host has no property '+vmx' that amber supports",
                "-cpu", "host,+vmx");
    PARSE_FAILS("-cpu host,migratable=off: migratable=off: amber hides the host features "
                "that cannot migrate (migratable=on only)", "-cpu", "host,migratable=off");
    PARSE_FAILS("-overcommit mem-lock=on: mem-lock=on: amber does not lock guest memory",
                "-overcommit", "mem-lock=on");
    PARSE_FAILS("-overcommit cpu-pm=on: cpu-pm=on: amber keeps the host's CPU power "
                "management from the guest", "-overcommit", "cpu-pm=on");
    PARSE_FAILS("-uuid nope: not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
                "-uuid", "nope");
    PARSE_FAILS("-rtc base=localtime: base=localtime: amber's machine has no RTC, so only "
                "the default holds", "-rtc", "base=localtime");
    PARSE_FAILS("-rtc base=utc,driftfix=slew: driftfix=slew: amber's machine has no RTC, so "
                "only the default holds", "-rtc", "base=utc,driftfix=slew");
    PARSE_FAILS("-boot order=c: amber loads its guest directly: there is no boot order",
                "-boot", "order=c");
    PARSE_FAILS("-boot menu=on: menu=on: amber has no boot menu", "-boot", "menu=on");
    PARSE_FAILS("-audiodev pa,id=a: amber's machine has no sound device: only the none "
                "driver", "-audiodev", "pa,id=a");
    PARSE_FAILS("-audiodev none: -audiodev needs id=ID", "-audiodev", "none");
    PARSE_FAILS("-global kvm-pit.lost_tick_policy=discard: amber takes only "
                "kvm-pit.lost_tick_policy=delay, which its in-kernel PIT does",
                "-global", "kvm-pit.lost_tick_policy=discard");
    PARSE_FAILS("-device piix3-usb-uhci,id=usb: amber's machine has no device "
                "'piix3-usb-uhci' to add (it takes only isa-serial, as COM1)",
                "-device", "piix3-usb-uhci,id=usb");
    PARSE_FAILS("-device {\"driver\":\"virtio-balloon-pci\",\"id\":\"balloon0\"}: amber's "
                "machine has no device 'virtio-balloon-pci' to add (it takes only isa-serial, "
                "as COM1)", "-device", "{\"driver\":\"virtio-balloon-pci\",\"id\":\"balloon0\"}");
    PARSE_FAILS("-device {\"driver\": [1]}: property 'driver' must be a string, an integer "
                "or a boolean", "-device", "{\"driver\": [1]}");
    {
        /* The rest of the message is JSON-GLib's and varies between its versions. */
        CliOptions cli;
        Error *err = NULL;
        g_assert_false(parse(&cli, &err, "-device", "{nope", NULL));
        g_assert_true(g_str_has_prefix(error_get_pretty(err), "-device {nope: invalid JSON: "));
        error_free(err);
        cli_options_clear(&cli);
    }
    PARSE_FAILS("-name guest=a,foo=b: unsupported -name property 'foo' (guest=, "
                "debug-threads=, process=)", "-name", "guest=a,foo=b");
    PARSE_FAILS("-msg color=on: -msg has no property 'color' that amber supports",
                "-msg", "color=on");
    PARSE_FAILS("-nographic cannot be used with -daemonize (COM1 would be on stdio; add "
                "-nodefaults or -serial)", "-nographic", "-daemonize");
}

static void test_chardev_mon(void)
{
    CliOptions cli;

    PARSE_OK(&cli, "-chardev", "socket,id=m,path=/tmp/m.sock,server=on,wait=off",
             "-mon", "chardev=m,mode=control",
             "-chardev", "socket,id=h,path=/tmp/h.sock,server=on,wait=off",
             "-mon", "chardev=h,mode=readline",
             "-chardev", "{\"backend\":\"file\",\"id\":\"s\",\"path\":\"/tmp/s.log\"}",
             "-device", "{\"driver\":\"isa-serial\",\"chardev\":\"s\",\"id\":\"serial0\","
             "\"index\":0}");
    g_assert_cmpstr(cli.qmp->pdata[0], ==, "unix:/tmp/m.sock,server=on,wait=off");
    g_assert_cmpstr(cli.hmp->pdata[0], ==, "unix:/tmp/h.sock,server=on,wait=off");
    g_assert_cmpstr(cli.machine->serial, ==, "file:/tmp/s.log");
    cli_options_clear(&cli);
    PARSE_OK(&cli, "-chardev", "null,id=n", "-device", "isa-serial,chardev=n");
    g_assert_cmpstr(cli.machine->serial, ==, "null");
    cli_options_clear(&cli);

    PARSE_OK(&cli, "-chardev", "pty,id=c", "-device", "isa-serial,chardev=c");
    g_assert_cmpstr(cli.machine->serial, ==, "pty");
    g_assert_cmpstr(cli.serial_label, ==, "c");
    cli_options_clear(&cli);
    /* Each frontend knows its chardev's name: two ptys have one spec. */
    PARSE_OK(&cli, "-qmp", "unix:/tmp/q,server=on,wait=off", "-monitor", "stdio",
             "-chardev", "pty,id=h", "-mon", "chardev=h,mode=readline",
             "-chardev", "pty,id=q", "-mon", "chardev=q,mode=control", "-serial", "pty");
    g_assert_cmpuint(cli.qmp_labels->len, ==, 2);
    g_assert_cmpstr(cli.qmp_labels->pdata[0], ==, "compat_monitor0");
    g_assert_cmpstr(cli.qmp_labels->pdata[1], ==, "q");
    g_assert_cmpuint(cli.hmp_labels->len, ==, 2);
    g_assert_cmpstr(cli.hmp_labels->pdata[0], ==, "compat_monitor1");
    g_assert_cmpstr(cli.hmp_labels->pdata[1], ==, "h");
    g_assert_cmpstr(cli.serial_label, ==, "serial0");
    cli_options_clear(&cli);
    PARSE_FAILS("-chardev pty,id=c,path=/dev/pts/9: -chardev pty has no property 'path' "
                "that amber supports", "-chardev", "pty,id=c,path=/dev/pts/9");
    PARSE_FAILS("-chardev spicevmc,id=c,name=vdagent: amber has no 'spicevmc' chardev "
                "backend (socket, file, pty, null, stdio)", "-chardev", "spicevmc,id=c,name=vdagent");
    PARSE_FAILS("-chardev socket,path=/x: -chardev needs a backend and an id "
                "(socket,id=ID,...)", "-chardev", "socket,path=/x");
    PARSE_FAILS("-chardev socket,id=c: a socket chardev needs path= or fd= (one of them)",
                "-chardev", "socket,id=c");
    PARSE_FAILS("-chardev socket,id=c,fd=3: fd=3: amber takes a passed socket only as a "
                "listening one (server=on)", "-chardev", "socket,id=c,fd=3");
    PARSE_FAILS("-chardev socket,id=c,fd=x,server=on: fd: needs a descriptor number "
                "(fd:N,server=on,wait=off)", "-chardev", "socket,id=c,fd=x,server=on");
    PARSE_FAILS("-chardev socket,id=c,fd=999,server=on: fd=999: descriptor 999 is not an open "
                "socket", "-chardev", "socket,id=c,fd=999,server=on");
    PARSE_FAILS("-chardev socket,id=c,path=/x,server=on,logfile=/l: -chardev socket has no "
                "property 'logfile' that amber supports",
                "-chardev", "socket,id=c,path=/x,server=on,logfile=/l");
    PARSE_FAILS("-chardev null,id=c: duplicate chardev id 'c'",
                "-chardev", "null,id=c", "-chardev", "null,id=c");
    PARSE_FAILS("-mon chardev=nope,mode=control: no -chardev with id 'nope'",
                "-mon", "chardev=nope,mode=control");
    PARSE_FAILS("-mon chardev=c,mode=control: chardev 'c' is already in use",
                "-chardev", "null,id=c", "-mon", "chardev=c", "-mon", "chardev=c,mode=control");
    PARSE_FAILS("-mon chardev=c,mode=fancy: mode=fancy: expected control or readline",
                "-mon", "chardev=c,mode=fancy");
    PARSE_FAILS("-mon chardev=c,pretty=on: pretty=on: amber's QMP replies are never "
                "pretty-printed", "-mon", "chardev=c,pretty=on");
    PARSE_FAILS("-device isa-serial,chardev=c: amber has one serial port (COM1) and -serial "
                "gave it already", "-serial", "null", "-chardev", "null,id=c",
                "-device", "isa-serial,chardev=c");
    PARSE_FAILS("-device isa-serial,chardev=c,index=1: index=1: amber has one serial port, "
                "COM1 (index=0)", "-device", "isa-serial,chardev=c,index=1");
    PARSE_FAILS("-device isa-serial: isa-serial needs chardev=ID", "-device", "isa-serial");
}

static void test_objects(void)
{
    CliOptions cli;
    CliSecret *sec;
    RamBackendOptions *ram;

    /* libvirt's memfd on huge pages: hugetlb and hugetlbsize together, in JSON. */
    PARSE_OK(&cli, "-object", "{\"qom-type\":\"memory-backend-memfd\",\"id\":\"pc.ram\","
             "\"hugetlb\":true,\"hugetlbsize\":2097152,\"prealloc\":true,"
             "\"size\":268435456}", "-machine", "memory-backend=pc.ram");
    ram = cli.machine->backends->pdata[0];
    g_assert_true(ram->hugetlb);
    g_assert_cmpuint(ram->hugetlbsize, ==, 2u << 20);
    cli_options_clear(&cli);
    PARSE_FAILS("-object memory-backend-memfd,id=m,size=4M,hugetlbsize=2M: hugetlbsize= "
                "needs hugetlb=on", "-object", "memory-backend-memfd,id=m,size=4M,hugetlbsize=2M");
    PARSE_FAILS("-object memory-backend-memfd,id=m,size=4M,hugetlb=on,hugetlbsize=4K: "
                "hugetlbsize=4K: not a huge page size (a power of two, at least 2 MiB)",
                "-object", "memory-backend-memfd,id=m,size=4M,hugetlb=on,hugetlbsize=4K");
    PARSE_FAILS("-object memory-backend-ram,id=m,size=4M,hugetlbsize=2M: memory-backend-ram "
                "has no property 'hugetlbsize'",
                "-object", "memory-backend-ram,id=m,size=4M,hugetlbsize=2M");

    PARSE_OK(&cli, "-object", "secret,id=k0,data=c2VjcmV0,format=base64",
             "-object", "{\"qom-type\":\"secret\",\"id\":\"k1\",\"data\":\"x\","
             "\"keyid\":\"k0\",\"iv\":\"aXY=\"}",
             "-object", "{\"qom-type\":\"memory-backend-ram\",\"id\":\"pc.ram\","
             "\"size\":268435456}", "-machine", "memory-backend=pc.ram");
    g_assert_cmpuint(cli.secrets->len, ==, 2);
    sec = cli.secrets->pdata[1];
    g_assert_cmpstr(sec->id, ==, "k1");
    g_assert_cmpstr(sec->format, ==, "raw");
    g_assert_cmpstr(sec->keyid, ==, "k0");
    g_assert_cmpuint(cli.machine->ram_size, ==, 256ULL << 20);
    cli_options_clear(&cli);

    PARSE_FAILS("-object secret,id=k,format=hex,data=x: format=hex: expected raw or base64",
                "-object", "secret,id=k,format=hex,data=x");
    PARSE_FAILS("-object secret,id=k: a secret needs data= or file= (one of them)",
                "-object", "secret,id=k");
    PARSE_FAILS("-object secret,data=x: id= is required", "-object", "secret,data=x");
    PARSE_FAILS("-object secret,id=k,data=x,keyid=k0: keyid= and iv= go together",
                "-object", "secret,id=k,data=x,keyid=k0");
    PARSE_FAILS("-object secret,id=k,data=x,loaded=on: secret has no property 'loaded' that "
                "amber supports", "-object", "secret,id=k,data=x,loaded=on");
    PARSE_FAILS("-object secret,id=k,data=y: duplicate object id 'k'",
                "-object", "secret,id=k,data=x", "-object", "secret,id=k,data=y");
    PARSE_FAILS("-object memory-backend-ram,id=k,size=1M: duplicate object id 'k'",
                "-object", "secret,id=k,data=x", "-object", "memory-backend-ram,id=k,size=1M");
}

/* -add-fd, and a file chardev's /dev/fdset/N, as libvirt writes a file console. */
static void test_add_fd(void)
{
    CliOptions cli;
    int ro = open("/dev/null", O_RDONLY), wr = open("/dev/null", O_WRONLY);
    g_autofree char *ro_arg = g_strdup_printf("set=0,fd=%d,opaque=serial0-ro", ro);
    g_autofree char *wr_arg = g_strdup_printf("set=0,fd=%d,opaque=serial0-source", wr);
    g_autofree char *wr_set1 = g_strdup_printf("set=1,fd=%d", wr);
    g_autofree char *want = g_strdup_printf("filefd-append:%d", wr);
    g_autofree char *want_trunc = g_strdup_printf("filefd:%d", wr);
    g_autofree char *msg = NULL;
    CliFd *f;

    /* Either order: the set is looked up once every option is read. */
    PARSE_OK(&cli, "-chardev", "file,id=charserial0,path=/dev/fdset/0,append=on",
             "-add-fd", ro_arg, "-add-fd", wr_arg,
             "-device", "isa-serial,chardev=charserial0,id=serial0,index=0");
    g_assert_cmpstr(cli.machine->serial, ==, want);     /* the one open for writing */
    g_assert_cmpuint(cli.fds->len, ==, 2);
    f = cli.fds->pdata[1];
    g_assert_cmpint(f->set, ==, 0);
    g_assert_cmpint(f->fd, ==, wr);
    g_assert_cmpstr(f->opaque, ==, "serial0-source");
    g_assert_cmpint(fcntl(wr, F_GETFD) & FD_CLOEXEC, ==, FD_CLOEXEC);
    cli_options_clear(&cli);

    /* -serial and a monitor take a set too; without append=on the file is emptied. */
    PARSE_OK(&cli, "-serial", "file:/dev/fdset/0", "-add-fd", wr_arg);
    g_assert_cmpstr(cli.machine->serial, ==, want_trunc);
    cli_options_clear(&cli);
    PARSE_OK(&cli, "-monitor", "file:/dev/fdset/0", "-add-fd", wr_arg);
    g_assert_cmpstr(cli.hmp->pdata[0], ==, want_trunc);
    cli_options_clear(&cli);
    PARSE_FAILS("-serial: path=/dev/fdset/4: no -add-fd made that fd set",
                "-serial", "file:/dev/fdset/4");

    /* A path and append=on: appended to, not truncated. */
    PARSE_OK(&cli, "-chardev", "file,id=c,path=/tmp/log,append=on", "-device",
             "isa-serial,chardev=c");
    g_assert_cmpstr(cli.machine->serial, ==, "file-append:/tmp/log");
    cli_options_clear(&cli);

    PARSE_FAILS("-add-fd set=0: -add-fd needs fd=N and set=N, both non-negative numbers",
                "-add-fd", "set=0");
    PARSE_FAILS("-add-fd fd=1,set=0: fd=1: a standard stream cannot go into an fd set",
                "-add-fd", "fd=1,set=0");
    PARSE_FAILS("-add-fd fd=987,set=0: fd=987: not an open file descriptor",
                "-add-fd", "fd=987,set=0");
    PARSE_FAILS("-add-fd fd=3,set=0,flags=x: -add-fd has no property 'flags' that amber "
                "supports", "-add-fd", "fd=3,set=0,flags=x");
    msg = g_strdup_printf("-add-fd %s: fd=%d is already in fd set 0", wr_set1, wr);
    PARSE_FAILS(msg, "-add-fd", wr_arg, "-add-fd", wr_set1);
    PARSE_FAILS("-chardev id=c: path=/dev/fdset/0: no -add-fd made that fd set",
                "-chardev", "file,id=c,path=/dev/fdset/0");
    PARSE_FAILS("-chardev id=c: path=/dev/fdset/0: that fd set has no descriptor open for "
                "writing", "-chardev", "file,id=c,path=/dev/fdset/0", "-add-fd", ro_arg);
    PARSE_FAILS("-chardev id=c: path=/dev/fdset/1: no -add-fd made that fd set",
                "-chardev", "file,id=c,path=/dev/fdset/1", "-add-fd", wr_arg);
    PARSE_FAILS("-chardev id=c: path=/dev/fdset/x: not an fd set number",
                "-chardev", "file,id=c,path=/dev/fdset/x");
    PARSE_FAILS("-chardev file,id=c,path=/p,append=maybe: append=maybe: expected on or off",
                "-chardev", "file,id=c,path=/p,append=maybe");
    close(ro);
    close(wr);
}

/* Every parameter query-command-line-options reports is one the parser takes. */
static void test_query_options(void)
{
    static const struct { const char *option, *word, *fmt; } opts[] = {
        { "machine", "-machine", "pc,%s=%s" }, { "smp-opts", "-smp", "1,%s=%s" },
        { "memory", "-m", "%s=%s" }, { "accel", "-accel", "%s=%s" },
        { "name", "-name", "%s=%s" }, { "boot-opts", "-boot", "%s=%s" },
        { "rtc", "-rtc", "%s=%s" }, { "overcommit", "-overcommit", "%s=%s" },
        { "msg", "-msg", "%s=%s" }, { "chardev", "-chardev", "socket,id=c,path=/p,%s=%s" },
        { "mon", "-mon", "chardev=c,%s=%s" },
        { "device", "-device", "isa-serial,chardev=c,%s=%s" },
        { "audiodev", "-audiodev", "none,id=a,%s=%s" },
        { "add-fd", "-add-fd", "set=1,fd=100,%s=%s" },
    };
    /* A value each parameter takes (the first parameter of a list keys it). */
    static const struct { const char *name, *val; } vals[] = {
        { "type", "pc" }, { "memory-backend", "m" }, { "accel", "kvm" }, { "usb", "off" },
        { "acpi", "off" }, { "vmport", "off" }, { "mem-merge", "off" },
        { "dump-guest-core", "on" },
        { "size", "64M" }, { "guest", "g" }, { "debug-threads", "on" }, { "process", "p" },
        { "strict", "on" }, { "menu", "off" }, { "base", "utc" }, { "clock", "host" },
        { "driftfix", "none" }, { "mem-lock", "off" }, { "cpu-pm", "off" },
        { "timestamp", "on" }, { "guest-name", "off" }, { "backend", "socket" },
        { "id", "x" }, { "path", "/p" }, { "server", "on" }, { "wait", "off" },
        { "chardev", "c" }, { "mode", "control" }, { "pretty", "off" },
        { "driver", "none" }, { "index", "0" }, { "cpus", "1" }, { "sockets", "1" },
        { "dies", "1" }, { "clusters", "1" }, { "cores", "1" }, { "threads", "1" },
        { "maxcpus", "1" }, { "fd", NULL }, { "append", "on" }, { "set", "1" },
        { "opaque", "serial0-source" },
    };
    size_t n = 0;
    int null = open("/dev/null", O_WRONLY);

    g_assert_cmpint(dup2(null, 100), ==, 100);     /* -add-fd's descriptor */
    close(null);
    for (const CliParamList *l; (l = cli_param_list_nth(n)); n++) {
        const char *word = NULL, *fmt = NULL;
        for (size_t i = 0; i < G_N_ELEMENTS(opts); i++) {
            if (!strcmp(opts[i].option, l->option)) {
                word = opts[i].word;
                fmt = opts[i].fmt;
            }
        }
        g_assert_nonnull(word);
        for (size_t j = 0; j < G_N_ELEMENTS(l->params) && l->params[j].name; j++) {
            const char *name = l->params[j].name, *val = NULL;
            bool found = false;
            for (size_t k = 0; k < G_N_ELEMENTS(vals); k++) {
                if (!strcmp(vals[k].name, name)) {
                    val = vals[k].val;
                    found = true;
                }
            }
            g_assert_true(found);
            if (!val || (!strcmp(name, "driver") && !strcmp(word, "-device")) ||
                (!strcmp(name, "backend") || !strcmp(name, "id"))) {
                continue;       /* fd needs a real socket; the list's key is in fmt */
            }
            /* append= is the file backend's. */
            g_autofree char *arg = g_strdup_printf(strcmp(name, "append") ? fmt
                                                   : "file,id=c,path=/p,%s=%s", name, val);
            CliOptions cli;
            const char *extra = !strcmp(word, "-mon") || !strcmp(word, "-device")
                                ? "-chardev" : NULL;
            if (!strcmp(name, "memory-backend")) {
                PARSE_OK(&cli, "-object", "memory-backend-ram,id=m,size=64M", word, arg);
            } else if (extra) {
                PARSE_OK(&cli, "-chardev", "null,id=c", word, arg);
            } else {
                PARSE_OK(&cli, word, arg);
            }
            cli_options_clear(&cli);
        }
    }
    g_assert_cmpuint(n, ==, G_N_ELEMENTS(opts));
    close(100);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/cli/defaults", test_defaults);
    g_test_add_func("/cli/add-fd", test_add_fd);
    g_test_add_func("/cli/memory-size", test_memory_size);
    g_test_add_func("/cli/smp", test_smp);
    g_test_add_func("/cli/smp-topology", test_smp_topology);
    g_test_add_func("/cli/accel", test_accel);
    g_test_add_func("/cli/backends", test_backends);
    g_test_add_func("/cli/machine", test_machine);
    g_test_add_func("/cli/machine-types", test_machine_types);
    g_test_add_func("/cli/qemu-words", test_qemu_words);
    g_test_add_func("/cli/qemu-refused", test_qemu_refused);
    g_test_add_func("/cli/chardev-mon", test_chardev_mon);
    g_test_add_func("/cli/objects", test_objects);
    g_test_add_func("/cli/query-options", test_query_options);
    g_test_add_func("/cli/chardevs", test_chardevs);
    g_test_add_func("/cli/misc", test_misc);
    return g_test_run();
}
