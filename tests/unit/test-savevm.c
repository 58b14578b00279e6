/*
 * Sections: a whole small stream written and parsed back, its exact
 * framing, iterative sections and commands, and a loader that rejects
 * truncated, bit-flipped and malformed streams with a message.
 */
#include <string.h>
#include <glib.h>
#include <json-glib/json-glib.h>

#include "migration/savevm.h"
#include "test-helpers.h"

/* ---- two small devices ------------------------------------------------------ */

typedef struct Uart {
    uint8_t lcr;
    bool ier;
    uint8_t fifo_len;
    uint8_t fifo[16];
    uint32_t tx_pending;
} Uart;

static bool uart_tx_needed(void *opaque)
{
    return ((Uart *)opaque)->tx_pending != 0;
}

static const VMStateDescription uart_tx_vmsd = {
    .name = "serial/tx", .version_id = 1, .minimum_version_id = 1,
    .needed = uart_tx_needed,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT32(tx_pending, Uart),
        VMSTATE_END_OF_LIST()
    },
};

static const VMStateDescription uart_vmsd = {
    .name = "serial", .version_id = 1, .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT8(lcr, Uart),
        VMSTATE_BOOL(ier, Uart),
        VMSTATE_UINT8(fifo_len, Uart),
        VMSTATE_VARRAY_UINT8(fifo, Uart, fifo_len),
        VMSTATE_END_OF_LIST()
    },
    .subsections = (const VMStateDescription *const[]) { &uart_tx_vmsd, NULL },
};

typedef struct Timer {
    uint64_t count;
    uint32_t regs[3];
    int mode;
} Timer;

static const VMStateDescription timer_vmsd = {
    .name = "timer", .version_id = 2, .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT64(count, Timer),
        VMSTATE_UINT32_ARRAY(regs, Timer, 3),
        VMSTATE_INT(mode, Timer),
        VMSTATE_END_OF_LIST()
    },
};

typedef struct Machine2 {
    Uart uart;
    Timer timer;
    SaveStateRegistry *reg;
} Machine2;

static void machine2_init(Machine2 *m, bool fill)
{
    memset(m, 0, sizeof(*m));
    if (fill) {
        m->uart = (Uart){ .lcr = 0x03, .ier = true, .fifo_len = 4, .fifo = "ping",
                          .tx_pending = 2 };
        m->timer = (Timer){ .count = 123456789012ULL, .regs = { 1, 2, 3 }, .mode = -1 };
    }
    m->reg = savevm_registry_new();
    g_assert_nonnull(savevm_register_vmsd(m->reg, "serial", 0, &uart_vmsd, &m->uart, NULL));
    g_assert_nonnull(savevm_register_vmsd(m->reg, "timer", 0, &timer_vmsd, &m->timer, NULL));
}

static GByteArray *save_stream(Machine2 *m)
{
    QEMUFile *f = qemu_file_new_mem_output("stream");
    GByteArray *out = g_byte_array_new();
    const uint8_t *data;
    Error *err = NULL;
    size_t len;

    if (!test_save_stream(m->reg, f, &err)) {
        g_printerr("%s\n", error_get_pretty(err));
        g_assert_not_reached();
    }
    data = qemu_file_mem_data(f, &len);
    g_byte_array_append(out, data, len);
    qemu_fclose(f);
    return out;
}

/* Load data[0..len) (an exact-size copy) into m; the message on failure. */
static char *load_stream(Machine2 *m, const uint8_t *data, size_t len,
                         const SaveVMLoadOptions *opts, char **vmdesc)
{
    g_autofree uint8_t *copy = g_memdup2(data, MAX(len, 1));
    QEMUFile *f = qemu_file_new_mem_input(copy, len, "stream");
    Error *err = NULL;
    char *msg = NULL;

    if (!savevm_load(m->reg, f, opts, vmdesc, &err)) {
        msg = g_strdup(error_get_pretty(err));
        error_free(err);
    }
    qemu_fclose(f);
    return msg;
}

static void assert_contains(const char *msg, const char *needle)
{
    g_assert_nonnull(msg);
    if (!strstr(msg, needle)) {
        g_printerr("message '%s' lacks '%s'\n", msg, needle);
        g_assert_not_reached();
    }
}

/* Byte offsets of the framing in the stream save_stream() writes. */
typedef struct Layout {
    size_t serial_hdr, serial_footer, timer_hdr, timer_footer, eof, vmdesc;
} Layout;

static Layout layout(void)
{
    Layout l;
    size_t serial_payload = 1 + 1 + 1 + 4 + (2 + strlen("serial/tx") + 4 + 4);
    size_t timer_payload = 8 + 12 + 4;

    l.serial_hdr = 8 + 1 + 4 + strlen(AMBER_MACHINE_TYPE);
    l.serial_footer = l.serial_hdr + 1 + 4 + 1 + strlen("serial") + 4 + 4 + serial_payload;
    l.timer_hdr = l.serial_footer + 5;
    l.timer_footer = l.timer_hdr + 1 + 4 + 1 + strlen("timer") + 4 + 4 + timer_payload;
    l.eof = l.timer_footer + 5;
    l.vmdesc = l.eof + 1;
    return l;
}

static void test_framing(void)
{
    Machine2 m;
    GByteArray *s;
    Layout l = layout();
    static const uint8_t head[] = {
        0x51, 0x45, 0x56, 0x4d, 0, 0, 0, 3,             /* QEVM, version 3 */
        0x07, 0, 0, 0, 12, 'a', 'm', 'b', 'e', 'r', '-', 'p', 'c', '-', '1', '.', '0',
        0x04, 0, 0, 0, 0, 6, 's', 'e', 'r', 'i', 'a', 'l', 0, 0, 0, 0, 0, 0, 0, 1,
        0x03, 0x01, 0x04, 'p', 'i', 'n', 'g',           /* lcr, ier, fifo_len, fifo */
        0x05, 9, 's', 'e', 'r', 'i', 'a', 'l', '/', 't', 'x', 0, 0, 0, 1, 0, 0, 0, 2,
        0x7e, 0, 0, 0, 0,                               /* footer, section 0 */
        0x04, 0, 0, 0, 1, 5, 't', 'i', 'm', 'e', 'r', 0, 0, 0, 0, 0, 0, 0, 2,
    };
    uint32_t jlen;

    machine2_init(&m, true);
    s = save_stream(&m);
    g_assert_cmpuint(s->len, >, sizeof(head));
    g_assert_cmpmem(s->data, sizeof(head), head, sizeof(head));
    g_assert_cmpmem(s->data + l.timer_footer, 5, ((uint8_t[]){ 0x7e, 0, 0, 0, 1 }), 5);
    g_assert_cmpuint(s->data[l.eof], ==, 0x00);
    g_assert_cmpuint(s->data[l.vmdesc], ==, 0x06);
    jlen = (uint32_t)s->data[l.vmdesc + 1] << 24 | s->data[l.vmdesc + 2] << 16 |
           s->data[l.vmdesc + 3] << 8 | s->data[l.vmdesc + 4];
    g_assert_cmpuint(l.vmdesc + 5 + jlen, ==, s->len);
    g_assert_cmpuint(s->data[l.vmdesc + 5], ==, '{');
    savevm_registry_free(m.reg);
    g_byte_array_unref(s);
}

static void test_round_trip(void)
{
    Machine2 a, b;
    GByteArray *s;
    g_autofree char *json = NULL;
    g_autoptr(JsonParser) parser = json_parser_new();
    JsonObject *root, *dev;
    JsonArray *devices;

    machine2_init(&a, true);
    machine2_init(&b, false);
    s = save_stream(&a);
    g_assert_null(load_stream(&b, s->data, s->len, NULL, &json));
    g_assert_cmpmem(&a.uart, sizeof(a.uart), &b.uart, sizeof(b.uart));
    g_assert_cmpmem(&a.timer, sizeof(a.timer), &b.timer, sizeof(b.timer));

    /* The description of every FULL section, as analyze-migration.py wants. */
    g_assert_nonnull(json);
    g_assert_true(json_parser_load_from_data(parser, json, -1, NULL));
    root = json_node_get_object(json_parser_get_root(parser));
    g_assert_cmpint(json_object_get_int_member(root, "page_size"), ==, 4096);
    devices = json_object_get_array_member(root, "devices");
    g_assert_cmpuint(json_array_get_length(devices), ==, 2);
    dev = json_array_get_object_element(devices, 0);
    g_assert_cmpstr(json_object_get_string_member(dev, "name"), ==, "serial");
    g_assert_cmpint(json_object_get_int_member(dev, "instance_id"), ==, 0);
    g_assert_cmpstr(json_object_get_string_member(dev, "vmsd_name"), ==, "serial");
    g_assert_cmpint(json_object_get_int_member(dev, "version"), ==, 1);
    g_assert_cmpuint(json_array_get_length(json_object_get_array_member(dev, "fields")), ==, 4);
    g_assert_cmpuint(json_array_get_length(json_object_get_array_member(dev, "subsections")),
                     ==, 1);
    dev = json_array_get_object_element(devices, 1);
    g_assert_cmpstr(json_object_get_string_member(dev, "name"), ==, "timer");
    g_assert_cmpint(json_object_get_int_member(dev, "version"), ==, 2);

    if (g_getenv("AMBER_SAVE_STREAM")) {
        /* For checking by hand with QEMU's scripts/analyze-migration.py. */
        g_assert_true(g_file_set_contents(g_getenv("AMBER_SAVE_STREAM"),
                                          (const char *)s->data, s->len, NULL));
    }
    savevm_registry_free(a.reg);
    savevm_registry_free(b.reg);
    g_byte_array_unref(s);
}

static void test_truncated(void)
{
    Machine2 a, b;
    GByteArray *s;
    Layout l = layout();

    machine2_init(&a, true);
    machine2_init(&b, false);
    s = save_stream(&a);
    for (size_t cut = 0; cut < s->len; cut++) {
        g_autofree char *msg = load_stream(&b, s->data, cut, NULL, NULL);

        if (cut == l.vmdesc) {
            g_assert_null(msg);     /* ends right after EOF: no description, fine */
            continue;
        }
        assert_contains(msg, "unexpected end of stream");
    }
    savevm_registry_free(a.reg);
    savevm_registry_free(b.reg);
    g_byte_array_unref(s);
}

/* Every bit of every framing byte (not device payload) flipped is caught. */
static void test_bit_flips(void)
{
    Machine2 a, b;
    GByteArray *s;
    Layout l = layout();
    size_t spans[][2] = {
        { 0, l.serial_hdr },                                    /* header, configuration */
        { l.serial_hdr, l.serial_hdr + 1 + 4 + 1 + 6 + 8 },     /* serial section header */
        { l.serial_footer, l.serial_footer + 5 },
        { l.timer_hdr, l.timer_hdr + 1 + 4 + 1 + 5 + 8 },
        { l.timer_footer, l.eof + 1 },                          /* footer and EOF */
        { l.vmdesc, l.vmdesc + 5 },                             /* VMDESCRIPTION header */
    };
    unsigned tried = 0;

    machine2_init(&a, true);
    machine2_init(&b, false);
    s = save_stream(&a);
    for (unsigned k = 0; k < G_N_ELEMENTS(spans); k++) {
        for (size_t i = spans[k][0]; i < spans[k][1]; i++) {
            for (int bit = 0; bit < 8; bit++) {
                g_autofree char *msg = NULL;

                s->data[i] ^= 1u << bit;
                msg = load_stream(&b, s->data, s->len, NULL, NULL);
                if (!msg) {
                    g_printerr("flip of bit %d at offset %zu went unnoticed\n", bit, i);
                    g_assert_not_reached();
                }
                s->data[i] ^= 1u << bit;
                tried++;
            }
        }
    }
    g_assert_cmpuint(tried, >, 8 * 60);
    g_assert_null(load_stream(&b, s->data, s->len, NULL, NULL));
    savevm_registry_free(a.reg);
    savevm_registry_free(b.reg);
    g_byte_array_unref(s);
}

/* ---- hand-made streams --------------------------------------------------------- */

static QEMUFile *stream_begin(const char *machine_type)
{
    QEMUFile *f = qemu_file_new_mem_output("crafted");

    savevm_put_header(f);
    savevm_put_configuration(f, machine_type, NULL);
    return f;
}

/* A section for a made-up entry, payload from vmsd. */
static void put_full(QEMUFile *f, const char *idstr, uint32_t id, uint32_t instance,
                     int version, const VMStateDescription *vmsd, void *opaque,
                     uint8_t footer)
{
    SaveStateEntry se = { .section_id = id, .instance_id = instance, .version_id = version };

    g_strlcpy(se.idstr, idstr, sizeof(se.idstr));
    savevm_put_section_header(f, &se, QEMU_VM_SECTION_FULL);
    g_assert_true(vmstate_save(f, vmsd, opaque, NULL, NULL));
    qemu_put_byte(f, footer);
    qemu_put_be32(f, id);
}

static char *load_crafted(QEMUFile *f, const SaveVMLoadOptions *opts)
{
    Machine2 m;
    const uint8_t *data;
    size_t len;
    char *msg;

    machine2_init(&m, false);
    data = qemu_file_mem_data(f, &len);
    msg = load_stream(&m, data, len, opts, NULL);
    savevm_registry_free(m.reg);
    qemu_fclose(f);
    return msg;
}

static void test_loader_errors(void)
{
    Uart u = { .fifo_len = 1 };
    Timer t = { 0 };
    QEMUFile *f;
    char *msg;

    f = qemu_file_new_mem_output("magic");
    qemu_put_be32(f, 0x7f454c46);
    qemu_put_be32(f, 3);
    msg = load_crafted(f, NULL);
    assert_contains(msg, "not a migration stream: bad magic 0x7f454c46");
    g_free(msg);

    f = qemu_file_new_mem_output("version");
    qemu_put_be32(f, QEMU_VM_FILE_MAGIC);
    qemu_put_be32(f, 2);
    msg = load_crafted(f, NULL);
    assert_contains(msg, "unsupported stream version 2 (expected 3)");
    g_free(msg);

    msg = load_crafted(stream_begin("pc-i440fx-7.2"), NULL);
    assert_contains(msg, "the stream is for machine type 'pc-i440fx-7.2', this machine is "
                    "'amber-pc-1.0'");
    g_free(msg);

    f = qemu_file_new_mem_output("noconfig");
    savevm_put_header(f);
    savevm_put_eof(f);
    msg = load_crafted(f, NULL);
    assert_contains(msg, "expected the configuration section (0x07) after the header, got 0x00");
    g_free(msg);

    f = stream_begin(AMBER_MACHINE_TYPE);
    put_full(f, "serial", 0, 0, 7, &uart_vmsd, &u, QEMU_VM_SECTION_FOOTER);
    msg = load_crafted(f, NULL);
    assert_contains(msg, "section 'serial' instance 0: unsupported version 7 (max 1)");
    g_free(msg);

    f = stream_begin(AMBER_MACHINE_TYPE);
    put_full(f, "serial", 3, 0, 1, &uart_vmsd, &u, QEMU_VM_SECTION_FULL);
    msg = load_crafted(f, NULL);
    assert_contains(msg, "footer for section 3 expected, got 0x04");
    g_free(msg);

    f = stream_begin(AMBER_MACHINE_TYPE);
    put_full(f, "serial", 0, 1, 1, &uart_vmsd, &u, QEMU_VM_SECTION_FOOTER);
    msg = load_crafted(f, NULL);
    assert_contains(msg, "unknown section 'serial' instance 1 (section 0)");
    g_free(msg);

    f = stream_begin(AMBER_MACHINE_TYPE);
    put_full(f, "timer", 0, 0, 2, &timer_vmsd, &t, QEMU_VM_SECTION_FOOTER);
    put_full(f, "timer", 1, 0, 2, &timer_vmsd, &t, QEMU_VM_SECTION_FOOTER);
    msg = load_crafted(f, NULL);
    assert_contains(msg, "section 'timer' instance 0 appears twice");
    g_free(msg);

    f = stream_begin(AMBER_MACHINE_TYPE);
    qemu_put_byte(f, QEMU_VM_SECTION_PART);
    qemu_put_be32(f, 9);
    msg = load_crafted(f, NULL);
    assert_contains(msg, "PART for section 9, which no START opened");
    g_free(msg);

    f = stream_begin(AMBER_MACHINE_TYPE);
    qemu_put_byte(f, 0x42);
    msg = load_crafted(f, NULL);
    assert_contains(msg, "unexpected section type 0x42 at offset 25");
    g_free(msg);

    /* A hostile length inside a section names the section and the field. */
    f = stream_begin(AMBER_MACHINE_TYPE);
    u.fifo_len = 16;
    put_full(f, "serial", 0, 0, 1, &uart_vmsd, &u, QEMU_VM_SECTION_FOOTER);
    savevm_put_eof(f);
    msg = load_crafted(f, NULL);
    g_assert_null(msg);                         /* 16 fits; the timer may be absent */
    f = stream_begin(AMBER_MACHINE_TYPE);
    {
        SaveStateEntry se = { .section_id = 0, .version_id = 1 };

        g_strlcpy(se.idstr, "serial", sizeof(se.idstr));
        savevm_put_section_header(f, &se, QEMU_VM_SECTION_FULL);
        qemu_put_byte(f, 0);
        qemu_put_byte(f, 0);
        qemu_put_byte(f, 200);                  /* fifo_len */
    }
    msg = load_crafted(f, NULL);
    assert_contains(msg, "section 'serial' instance 0: field 'fifo': length 200 exceeds "
                    "maximum 16");
    g_free(msg);

    /* Data after EOF that is not a description. */
    f = stream_begin(AMBER_MACHINE_TYPE);
    savevm_put_eof(f);
    qemu_put_byte(f, 0x04);
    msg = load_crafted(f, NULL);
    assert_contains(msg, "unexpected data after the end of the stream");
    g_free(msg);
}

/* ---- iterative sections and commands --------------------------------------------- */

typedef struct Counter {
    uint32_t next;          /* save side: next value to send */
    uint32_t sum;           /* load side */
    int parts;
    int pings;
    uint32_t ping_value;
} Counter;

static bool counter_setup(QEMUFile *f, void *opaque, Error **errp)
{
    qemu_put_be32(f, 0x5e7u);
    return true;
}

static int counter_iterate(QEMUFile *f, void *opaque, Error **errp)
{
    Counter *c = opaque;

    qemu_put_be32(f, ++c->next);
    return c->next >= 3;
}

static bool counter_complete(QEMUFile *f, void *opaque, Error **errp)
{
    qemu_put_be32(f, 0xe0d);
    return true;
}

static bool counter_load(QEMUFile *f, void *opaque, int version_id, Error **errp)
{
    Counter *c = opaque;
    uint32_t v = qemu_get_be32(f, "counter value");

    c->parts++;
    if (v != 0x5e7 && v != 0xe0d) {
        c->sum += v;
    }
    return true;
}

static const SaveStateHandlers counter_ops = {
    .save_setup = counter_setup,
    .save_iterate = counter_iterate,
    .save_complete = counter_complete,
    .load_state = counter_load,
};

static int on_command(void *opaque, QEMUFile *f, uint16_t cmd, const uint8_t *data,
                      uint16_t len, Error **errp)
{
    Counter *c = opaque;

    if (cmd == MIG_CMD_SWITCHOVER_START && len == 0) {
        return 0;
    }
    if (cmd != MIG_CMD_PING || len != 4) {
        error_setg(errp, "unexpected");
        return -1;
    }
    c->pings++;
    c->ping_value = (uint32_t)data[0] << 24 | data[1] << 16 | data[2] << 8 | data[3];
    return 0;
}

static void test_iterative_and_commands(void)
{
    Counter src = { 0 }, dst = { 0 };
    SaveStateRegistry *rs = savevm_registry_new();
    SaveStateRegistry *rd = savevm_registry_new();
    SaveVMLoadOptions opts = { .command = on_command, .command_opaque = &dst };
    static const uint8_t ping[] = { 0, 0, 0x12, 0x34 };
    QEMUFile *f = qemu_file_new_mem_output("iter");
    const uint8_t *data;
    size_t len;
    Error *err = NULL;
    int ret;

    g_assert_nonnull(savevm_register(rs, "ram", 0, 4, &counter_ops, &src, NULL));
    g_assert_nonnull(savevm_register(rd, "ram", 0, 4, &counter_ops, &dst, NULL));
    g_assert_null(savevm_register(rd, "ram", 0, 4, &counter_ops, &dst, &err));
    assert_contains(error_get_pretty(err), "'ram' instance 0 is already registered");
    error_free(err);
    err = NULL;

    savevm_put_header(f);
    savevm_put_configuration(f, AMBER_MACHINE_TYPE, NULL);
    g_assert_true(savevm_save_setup(rs, f, NULL));
    savevm_put_command(f, MIG_CMD_PING, sizeof(ping), ping);
    while ((ret = savevm_save_iterate(rs, f, NULL)) == 0) {
    }
    g_assert_cmpint(ret, ==, 1);
    savevm_put_command(f, MIG_CMD_SWITCHOVER_START, 0, NULL);
    g_assert_true(savevm_save_complete(rs, f, NULL));
    savevm_put_eof(f);
    data = qemu_file_mem_data(f, &len);

    {
        g_autofree uint8_t *copy = g_memdup2(data, len);
        QEMUFile *in = qemu_file_new_mem_input(copy, len, "in");
        bool ok;

        opts.command = NULL;
        ok = savevm_load(rd, in, &opts, NULL, &err);
        g_assert_false(ok);
        assert_contains(error_get_pretty(err), "command PING (2) with 4 bytes is not "
                        "supported here");
        error_free(err);
        err = NULL;
        qemu_fclose(in);
    }
    dst = (Counter){ 0 };
    opts.command = on_command;
    {
        g_autofree uint8_t *copy = g_memdup2(data, len);
        QEMUFile *in = qemu_file_new_mem_input(copy, len, "in");

        g_assert_true(savevm_load(rd, in, &opts, NULL, &err));
        qemu_fclose(in);
    }
    /* START + 3 PARTs + END, values 1+2+3; one PING with its payload. */
    g_assert_cmpint(dst.parts, ==, 5);
    g_assert_cmpuint(dst.sum, ==, 6);
    g_assert_cmpint(dst.pings, ==, 1);
    g_assert_cmphex(dst.ping_value, ==, 0x1234);
    qemu_fclose(f);
    savevm_registry_free(rs);
    savevm_registry_free(rd);
}

static void test_registry(void)
{
    SaveStateRegistry *r = savevm_registry_new();
    Uart u1, u2;
    SaveStateEntry *a, *b;
    Error *err = NULL;

    a = savevm_register_vmsd(r, "serial", SAVEVM_INSTANCE_ANY, &uart_vmsd, &u1, NULL);
    b = savevm_register_vmsd(r, "serial", SAVEVM_INSTANCE_ANY, &uart_vmsd, &u2, NULL);
    g_assert_cmpuint(a->instance_id, ==, 0);
    g_assert_cmpuint(b->instance_id, ==, 1);
    g_assert_cmpuint(a->section_id, !=, b->section_id);
    g_assert_true(savevm_find(r, "serial", 1) == b);
    g_assert_null(savevm_register_vmsd(r, "", 0, &uart_vmsd, &u1, &err));
    assert_contains(error_get_pretty(err), "must be 1 to 255 bytes");
    error_free(err);
    savevm_unregister(r, a);
    g_assert_null(savevm_find(r, "serial", 0));
    g_assert_cmpuint(savevm_registry_count(r), ==, 1);
    savevm_registry_free(r);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/savevm/framing", test_framing);
    g_test_add_func("/savevm/round-trip", test_round_trip);
    g_test_add_func("/savevm/truncated", test_truncated);
    g_test_add_func("/savevm/bit-flips", test_bit_flips);
    g_test_add_func("/savevm/loader-errors", test_loader_errors);
    g_test_add_func("/savevm/iterative-and-commands", test_iterative_and_commands);
    g_test_add_func("/savevm/registry", test_registry);
    return g_test_run();
}
