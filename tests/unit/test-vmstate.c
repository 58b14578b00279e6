/*
 * State descriptions: round trip of every field kind, wire encoding,
 * bounds on hostile input, versions, subsections, the JSON description.
 */
#include <string.h>
#include <glib.h>
#include <json-glib/json-glib.h>

#include "migration/vmstate.h"

typedef struct Inner {
    uint16_t a;
    uint32_t b;
} Inner;

typedef struct Dev {
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    bool flag;
    int i;
    int64_t i64;
    uint8_t buf[5];
    uint32_t regs[4];
    uint8_t fifo_len;
    uint8_t fifo[8];
    uint8_t head;
    Inner inner;
    Inner inners[2];
    uint32_t ninner;
    Inner vinner[3];
    uint32_t added_in_v2;
    bool extra_on;
    uint32_t extra;
    int post_load_calls;
} Dev;

static const VMStateField inner_fields[] = {
    VMSTATE_UINT16(a, Inner),
    VMSTATE_UINT32(b, Inner),
    VMSTATE_END_OF_LIST()
};

static const VMStateDescription inner_vmsd = {
    .name = "inner", .version_id = 1, .minimum_version_id = 1, .fields = inner_fields,
};

static bool extra_needed(void *opaque)
{
    return ((Dev *)opaque)->extra_on;
}

static const VMStateField extra_fields[] = {
    VMSTATE_UINT32(extra, Dev),
    VMSTATE_END_OF_LIST()
};

static const VMStateDescription extra_vmsd = {
    .name = "dev/extra", .version_id = 1, .minimum_version_id = 1,
    .fields = extra_fields, .needed = extra_needed,
};

static bool dev_pre_load(void *opaque, Error **errp)
{
    Dev *d = opaque;

    /* Defaults for what an older stream or an absent subsection lacks. */
    d->added_in_v2 = 0x5eed;
    d->extra = 77;
    d->extra_on = false;
    return true;
}

static bool dev_post_load(void *opaque, int version_id, Error **errp)
{
    Dev *d = opaque;

    d->extra_on = d->extra != 77;
    d->post_load_calls++;
    return true;
}

static const VMStateField dev_fields[] = {
    VMSTATE_UINT8(u8, Dev),
    VMSTATE_UINT16(u16, Dev),
    VMSTATE_UINT32(u32, Dev),
    VMSTATE_UINT64(u64, Dev),
    VMSTATE_BOOL(flag, Dev),
    VMSTATE_INT(i, Dev),
    VMSTATE_INT64(i64, Dev),
    VMSTATE_BUFFER(buf, Dev),
    VMSTATE_UINT32_ARRAY(regs, Dev, 4),
    VMSTATE_UINT8(fifo_len, Dev),
    VMSTATE_VARRAY_UINT8(fifo, Dev, fifo_len),
    VMSTATE_UINT8_BOUNDED(head, Dev, 7),
    VMSTATE_STRUCT(inner, Dev, inner_vmsd, Inner),
    VMSTATE_STRUCT_ARRAY(inners, Dev, 2, inner_vmsd, Inner),
    VMSTATE_UINT32(ninner, Dev),
    VMSTATE_STRUCT_VARRAY(vinner, Dev, ninner, inner_vmsd, Inner),
    VMSTATE_UINT32_V(added_in_v2, Dev, 2),
    VMSTATE_END_OF_LIST()
};

static const VMStateDescription dev_vmsd = {
    .name = "dev", .version_id = 2, .minimum_version_id = 1,
    .fields = dev_fields,
    .subsections = (const VMStateDescription *const[]) { &extra_vmsd, NULL },
    .pre_load = dev_pre_load, .post_load = dev_post_load,
};

/* The same device as an older build described it. */
static const VMStateDescription dev_vmsd_v1 = {
    .name = "dev", .version_id = 1, .minimum_version_id = 1,
    .fields = dev_fields,
};

static void fill(Dev *d)
{
    memset(d, 0, sizeof(*d));
    d->u8 = 0x81;
    d->u16 = 0x8283;
    d->u32 = 0x84858687;
    d->u64 = 0x88898a8b8c8d8e8fULL;
    d->flag = true;
    d->i = -12345;
    d->i64 = -(1LL << 40);
    memcpy(d->buf, "abcde", 5);
    for (int i = 0; i < 4; i++) {
        d->regs[i] = 0x1000 + i;
    }
    d->fifo_len = 3;
    memcpy(d->fifo, "xyz", 3);
    d->head = 7;
    d->inner = (Inner){ 1, 2 };
    d->inners[0] = (Inner){ 3, 4 };
    d->inners[1] = (Inner){ 5, 6 };
    d->ninner = 2;
    d->vinner[0] = (Inner){ 7, 8 };
    d->vinner[1] = (Inner){ 9, 10 };
    d->added_in_v2 = 0xabcdef;
    d->extra_on = true;
    d->extra = 4242;
}

/* Save d with vmsd into a fresh byte array (and its description, if asked). */
static GByteArray *save(const VMStateDescription *vmsd, Dev *d, char **json)
{
    QEMUFile *f = qemu_file_new_mem_output("test");
    JsonBuilder *b = json ? json_builder_new() : NULL;
    GByteArray *out = g_byte_array_new();
    const uint8_t *data;
    Error *err = NULL;
    size_t len;

    if (b) {
        json_builder_begin_object(b);
    }
    if (!vmstate_save(f, vmsd, d, b, &err)) {
        g_printerr("save: %s\n", error_get_pretty(err));
        g_assert_not_reached();
    }
    data = qemu_file_mem_data(f, &len);
    g_byte_array_append(out, data, len);
    qemu_fclose(f);
    if (b) {
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(JsonNode) root = NULL;

        json_builder_end_object(b);
        root = json_builder_get_root(b);
        json_generator_set_root(gen, root);
        *json = json_generator_to_data(gen, NULL);
        g_object_unref(b);
    }
    return out;
}

/* Load bytes into d; on failure return the message. */
static char *load(const VMStateDescription *vmsd, const uint8_t *data, size_t len,
                  int version, Dev *d)
{
    g_autofree uint8_t *copy = g_memdup2(data, MAX(len, 1));
    QEMUFile *f = qemu_file_new_mem_input(copy, len, "test");
    Error *err = NULL;
    char *msg = NULL;

    if (!vmstate_load(f, vmsd, d, version, &err)) {
        msg = g_strdup(error_get_pretty(err));
        error_free(err);
    } else {
        /* A description reads exactly what it wrote. */
        g_assert_cmpuint(qemu_file_pos(f), ==, len);
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

static void test_round_trip(void)
{
    Dev a, b;
    GByteArray *s;

    fill(&a);
    s = save(&dev_vmsd, &a, NULL);
    memset(&b, 0, sizeof(b));
    g_assert_null(load(&dev_vmsd, s->data, s->len, 2, &b));
    g_assert_cmpint(b.post_load_calls, ==, 1);
    b.post_load_calls = 0;
    g_assert_cmpmem(&a, sizeof(a), &b, sizeof(b));
    g_byte_array_unref(s);
}

typedef struct Small {
    uint8_t a;
    uint16_t b;
    int c;
    bool d;
    uint64_t e;
} Small;

static const VMStateField small_fields[] = {
    VMSTATE_UINT8(a, Small),
    VMSTATE_UINT16(b, Small),
    VMSTATE_INT(c, Small),
    VMSTATE_BOOL(d, Small),
    VMSTATE_UINT64(e, Small),
    VMSTATE_END_OF_LIST()
};

static const VMStateDescription small_vmsd = {
    .name = "small", .version_id = 1, .minimum_version_id = 1, .fields = small_fields,
};

static void test_encoding(void)
{
    Small s = { 0x01, 0x0203, -2, true, 0x0405060708090a0bULL };
    static const uint8_t want[] = {
        0x01, 0x02, 0x03, 0xff, 0xff, 0xff, 0xfe, 0x01,
        0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b,
    };
    QEMUFile *f = qemu_file_new_mem_output("enc");
    const uint8_t *data;
    size_t len;

    g_assert_true(vmstate_save(f, &small_vmsd, &s, NULL, NULL));
    data = qemu_file_mem_data(f, &len);
    g_assert_cmpmem(data, len, want, sizeof(want));
    qemu_fclose(f);
}

static void test_hostile_lengths(void)
{
    Dev a, b;
    GByteArray *s;
    g_autofree char *msg = NULL;
    size_t off_len = 1 + 2 + 4 + 8 + 1 + 4 + 8 + 5 + 16;   /* fifo_len's offset */

    fill(&a);
    s = save(&dev_vmsd, &a, NULL);
    g_assert_cmpuint(s->data[off_len], ==, 3);

    /* A length over the array's capacity is refused before any element. */
    s->data[off_len] = 9;
    msg = load(&dev_vmsd, s->data, s->len, 2, &b);
    assert_contains(msg, "field 'fifo': length 9 exceeds maximum 8");
    g_clear_pointer(&msg, g_free);
    s->data[off_len] = 255;
    msg = load(&dev_vmsd, s->data, s->len, 2, &b);
    assert_contains(msg, "length 255 exceeds maximum 8");
    g_clear_pointer(&msg, g_free);
    s->data[off_len] = 3;

    /* A bounded index. */
    s->data[off_len + 1 + 3] = 8;
    msg = load(&dev_vmsd, s->data, s->len, 2, &b);
    assert_contains(msg, "field 'head': value 8 out of range (max 7)");
    g_clear_pointer(&msg, g_free);
    s->data[off_len + 1 + 3] = 7;

    /* A bool is 0 or 1. */
    s->data[1 + 2 + 4 + 8] = 2;
    msg = load(&dev_vmsd, s->data, s->len, 2, &b);
    assert_contains(msg, "field 'flag': invalid bool value 2");
    g_clear_pointer(&msg, g_free);
    s->data[1 + 2 + 4 + 8] = 1;
    g_assert_null(load(&dev_vmsd, s->data, s->len, 2, &b));
    g_byte_array_unref(s);

    /* Saving refuses an in-memory length the loader would refuse. */
    {
        QEMUFile *f = qemu_file_new_mem_output("bad");
        Error *err = NULL;

        a.ninner = 4;
        g_assert_false(vmstate_save(f, &dev_vmsd, &a, NULL, &err));
        assert_contains(error_get_pretty(err), "field 'vinner': length 4 exceeds maximum 3");
        error_free(err);
        qemu_fclose(f);
    }
}

static void test_truncated(void)
{
    Dev a, b;
    GByteArray *s;

    fill(&a);
    s = save(&dev_vmsd, &a, NULL);
    /* Where the (optional) subsection starts, a cut looks like a stream
     * without it; only the section footer after it can tell (savevm). */
    size_t sub_start = s->len - (2 + strlen("dev/extra") + 4 + 4);

    for (size_t cut = 0; cut < s->len; cut++) {
        g_autofree char *msg = NULL;

        memset(&b, 0, sizeof(b));
        msg = load(&dev_vmsd, s->data, cut, 2, &b);
        if (cut == sub_start) {
            g_assert_null(msg);
            g_assert_cmpuint(b.extra, ==, 77);
            continue;
        }
        assert_contains(msg, "unexpected end of stream");
        g_assert_cmpint(b.post_load_calls, ==, 0);
    }
    g_byte_array_unref(s);
}

static void test_versions(void)
{
    Dev a, b;
    GByteArray *v1, *v2;
    g_autofree char *msg = NULL;

    fill(&a);
    v1 = save(&dev_vmsd_v1, &a, NULL);
    v2 = save(&dev_vmsd, &a, NULL);
    /* Version 1 lacks the v2 field (4 bytes) and the subsection. */
    g_assert_cmpuint(v2->len, ==, v1->len + 4 + 1 + 1 + strlen("dev/extra") + 4 + 4);

    memset(&b, 0, sizeof(b));
    g_assert_null(load(&dev_vmsd, v1->data, v1->len, 1, &b));
    g_assert_cmphex(b.added_in_v2, ==, 0x5eed);          /* default kept */
    g_assert_cmpuint(b.regs[3], ==, a.regs[3]);

    msg = load(&dev_vmsd, v2->data, v2->len, 3, &b);
    g_assert_cmpstr(msg, ==, "unsupported version 3 (max 2)");
    g_clear_pointer(&msg, g_free);
    msg = load(&dev_vmsd, v2->data, v2->len, 0, &b);
    g_assert_cmpstr(msg, ==, "version 0 is too old (min 1)");
    g_clear_pointer(&msg, g_free);

    /* A v1 loader meets a v2 stream: refused, not misread. */
    msg = load(&dev_vmsd_v1, v2->data, v2->len, 2, &b);
    g_assert_cmpstr(msg, ==, "unsupported version 2 (max 1)");
    g_byte_array_unref(v1);
    g_byte_array_unref(v2);
}

static void test_subsections(void)
{
    Dev a, b;
    GByteArray *with, *without;
    g_autofree char *json = NULL;
    g_autofree char *msg = NULL;
    const char *name = "dev/extra";
    guint8 *p;

    fill(&a);
    with = save(&dev_vmsd, &a, NULL);
    a.extra_on = false;
    without = save(&dev_vmsd, &a, &json);
    /* Not needed: not in the stream, not in the description. */
    g_assert_cmpuint(with->len, ==, without->len + 2 + strlen(name) + 4 + 4);
    g_assert_null(strstr(json, "subsections"));
    g_assert_null(memmem(without->data, without->len, name, strlen(name)));

    memset(&b, 0, sizeof(b));
    g_assert_null(load(&dev_vmsd, without->data, without->len, 2, &b));
    g_assert_cmpuint(b.extra, ==, 77);
    g_assert_false(b.extra_on);
    g_assert_null(load(&dev_vmsd, with->data, with->len, 2, &b));
    g_assert_cmpuint(b.extra, ==, 4242);
    g_assert_true(b.extra_on);

    /* An unknown subsection of ours is named. */
    p = memmem(with->data, with->len, name, strlen(name));
    g_assert_nonnull(p);
    memcpy(p, "dev/zzzzz", strlen(name));
    msg = load(&dev_vmsd, with->data, with->len, 2, &b);
    assert_contains(msg, "unknown subsection 'dev/zzzzz'");
    g_clear_pointer(&msg, g_free);
    /* A subsection with a version from the future. */
    memcpy(p, name, strlen(name));
    p[strlen(name) + 3] = 9;
    msg = load(&dev_vmsd, with->data, with->len, 2, &b);
    assert_contains(msg, "subsection 'dev/extra': unsupported version 9 (max 1)");
    g_byte_array_unref(with);
    g_byte_array_unref(without);
}

static JsonObject *field_at(JsonArray *fields, guint i, const char *name, const char *type,
                            gint64 size)
{
    JsonObject *o = json_array_get_object_element(fields, i);

    g_assert_cmpstr(json_object_get_string_member(o, "name"), ==, name);
    g_assert_cmpstr(json_object_get_string_member(o, "type"), ==, type);
    g_assert_cmpint(json_object_get_int_member(o, "size"), ==, size);
    return o;
}

static void test_description(void)
{
    Dev a;
    GByteArray *s;
    g_autofree char *json = NULL;
    g_autoptr(JsonParser) parser = json_parser_new();
    JsonObject *root, *o, *st;
    JsonArray *fields, *subs;

    fill(&a);
    s = save(&dev_vmsd, &a, &json);
    g_assert_true(json_parser_load_from_data(parser, json, -1, NULL));
    root = json_node_get_object(json_parser_get_root(parser));
    g_assert_cmpstr(json_object_get_string_member(root, "vmsd_name"), ==, "dev");
    g_assert_cmpint(json_object_get_int_member(root, "version"), ==, 2);
    fields = json_object_get_array_member(root, "fields");

    field_at(fields, 0, "u8", "uint8", 1);
    field_at(fields, 1, "u16", "uint16", 2);
    field_at(fields, 2, "u32", "uint32", 4);
    field_at(fields, 3, "u64", "uint64", 8);
    field_at(fields, 4, "flag", "bool", 1);
    field_at(fields, 5, "i", "int32", 4);
    field_at(fields, 6, "i64", "int64", 8);
    field_at(fields, 7, "buf", "buffer", 5);
    o = field_at(fields, 8, "regs", "uint32", 4);
    g_assert_cmpint(json_object_get_int_member(o, "array_len"), ==, 4);
    field_at(fields, 9, "fifo_len", "uint8", 1);
    o = field_at(fields, 10, "fifo", "uint8", 1);
    g_assert_cmpint(json_object_get_int_member(o, "array_len"), ==, 3);   /* saved count */
    field_at(fields, 11, "head", "uint8", 1);
    o = field_at(fields, 12, "inner", "struct", 6);
    g_assert_false(json_object_has_member(o, "index"));
    st = json_object_get_object_member(o, "struct");
    g_assert_cmpstr(json_object_get_string_member(st, "vmsd_name"), ==, "inner");
    field_at(json_object_get_array_member(st, "fields"), 1, "b", "uint32", 4);
    o = field_at(fields, 13, "inners", "struct", 6);
    g_assert_cmpint(json_object_get_int_member(o, "index"), ==, 0);
    o = field_at(fields, 14, "inners", "struct", 6);
    g_assert_cmpint(json_object_get_int_member(o, "index"), ==, 1);
    field_at(fields, 15, "ninner", "uint32", 4);
    field_at(fields, 16, "vinner", "struct", 6);
    field_at(fields, 17, "vinner", "struct", 6);
    field_at(fields, 18, "added_in_v2", "uint32", 4);
    g_assert_cmpuint(json_array_get_length(fields), ==, 19);

    subs = json_object_get_array_member(root, "subsections");
    g_assert_cmpuint(json_array_get_length(subs), ==, 1);
    o = json_array_get_object_element(subs, 0);
    g_assert_cmpstr(json_object_get_string_member(o, "vmsd_name"), ==, "dev/extra");
    field_at(json_object_get_array_member(o, "fields"), 0, "extra", "uint32", 4);
    g_byte_array_unref(s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/vmstate/round-trip", test_round_trip);
    g_test_add_func("/vmstate/encoding", test_encoding);
    g_test_add_func("/vmstate/hostile-lengths", test_hostile_lengths);
    g_test_add_func("/vmstate/truncated", test_truncated);
    g_test_add_func("/vmstate/versions", test_versions);
    g_test_add_func("/vmstate/subsections", test_subsections);
    g_test_add_func("/vmstate/description", test_description);
    return g_test_run();
}
