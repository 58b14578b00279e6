/*
 * Postcopy's messages: each written and read back, its bytes as QEMU lays
 * them out, and every malformed variant refused with the field named, a
 * cut anywhere included.
 */
#include <string.h>
#include <glib.h>

#include "migration/postcopy-messages.h"
#include "test-helpers.h"

/* The bytes written to a memory stream by fn. */
static GBytes *written(void (*fn)(QEMUFile *f, void *opaque), void *opaque)
{
    QEMUFile *f = qemu_file_new_mem_output("mem");
    const uint8_t *data;
    size_t len;
    GBytes *out;

    fn(f, opaque);
    data = qemu_file_mem_data(f, &len);
    out = g_bytes_new(data, len);
    qemu_fclose(f);
    return out;
}

/* A COMMAND frame: check its header, return its payload. */
static const uint8_t *command_payload(GBytes *b, uint16_t cmd, uint16_t *len)
{
    const uint8_t *p = g_bytes_get_data(b, NULL);

    g_assert_cmpuint(g_bytes_get_size(b), >=, 5);
    g_assert_cmpuint(p[0], ==, QEMU_VM_COMMAND);
    g_assert_cmpuint(p[1] << 8 | p[2], ==, cmd);
    *len = p[3] << 8 | p[4];
    g_assert_cmpuint(g_bytes_get_size(b), ==, 5u + *len);
    return p + 5;
}

/* ---- COMMAND payloads --------------------------------------------------------------- */

static void write_advise(QEMUFile *f, void *opaque)
{
    postcopy_put_advise(f, 0x1000, 0x1000);
}

static void test_advise(void)
{
    g_autoptr(GBytes) b = written(write_advise, NULL);
    static const uint8_t expect[] = {
        0x08, 0x00, 0x03, 0x00, 0x10,
        0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x10, 0,
    };
    uint64_t summary, tps;
    Error *err = NULL;
    uint16_t len;
    const uint8_t *p = command_payload(b, MIG_CMD_POSTCOPY_ADVISE, &len);

    g_assert_cmpmem(g_bytes_get_data(b, NULL), g_bytes_get_size(b), expect, sizeof(expect));
    g_assert_true(postcopy_parse_advise(p, len, &summary, &tps, &error_abort));
    g_assert_cmpuint(summary, ==, 0x1000);
    g_assert_cmpuint(tps, ==, 0x1000);
    g_assert_false(postcopy_parse_advise(p, 8, &summary, &tps, &err));
    assert_error_contains(&err, "POSTCOPY_ADVISE: length 8 (expected 16");
}

static const PostcopyRange ranges3[] = {
    { 0, 0x1000 }, { 0x200000, 0x3000 }, { 0x7ff000, 0x1000 },
};

static void write_discard(QEMUFile *f, void *opaque)
{
    postcopy_put_discard(f, "pc.ram", ranges3, G_N_ELEMENTS(ranges3));
}

/* Parse a discard payload built from text, expecting an error containing msg. */
static void expect_discard_error(const uint8_t *p, uint16_t len, const char *msg)
{
    PostcopyRange r[POSTCOPY_DISCARD_MAX_RANGES];
    char name[256];
    Error *err = NULL;
    size_t n;

    g_assert_false(postcopy_parse_discard(p, len, name, r, &n, &err));
    assert_error_contains(&err, msg);
}

static void test_discard(void)
{
    g_autoptr(GBytes) b = written(write_discard, NULL);
    PostcopyRange r[POSTCOPY_DISCARD_MAX_RANGES];
    uint8_t bad[3 + 6 + 16 * 13];
    char name[256];
    uint16_t len;
    const uint8_t *p = command_payload(b, MIG_CMD_POSTCOPY_RAM_DISCARD, &len);
    size_t n;

    g_assert_cmpuint(len, ==, 3 + 6 + 16 * 3);
    g_assert_cmpmem(p, 10, "\x00\x06pc.ram\x00\x00", 10);
    g_assert_true(postcopy_parse_discard(p, len, name, r, &n, &error_abort));
    g_assert_cmpstr(name, ==, "pc.ram");
    g_assert_cmpuint(n, ==, 3);
    g_assert_cmpmem(r, sizeof(ranges3), ranges3, sizeof(ranges3));

    expect_discard_error(p, 19, "length 19 is too short");
    memcpy(bad, p, len);
    bad[0] = 1;
    expect_discard_error(bad, len, "version 1 (only 0)");
    memcpy(bad, p, len);
    bad[1] = 200;
    expect_discard_error(bad, len, "block name of 200 bytes runs past");
    memcpy(bad, p, len);
    bad[1] = 0;
    expect_discard_error(bad, len, "invalid block name of 0 bytes");
    memcpy(bad, p, len);
    bad[4] = 0;
    expect_discard_error(bad, len, "invalid block name of 6 bytes");
    memcpy(bad, p, len);
    bad[8] = 'x';
    expect_discard_error(bad, len, "no 0 after the block name (0x78)");
    expect_discard_error(p, len - 1, "47 bytes of ranges");
    /* One range too many for a command. */
    memcpy(bad, p, 9);
    memset(bad + 9, 0, 16 * 13);
    expect_discard_error(bad, 9 + 16 * 13, "13 ranges in one command (at most 12)");
}

static void write_packaged(QEMUFile *f, void *opaque)
{
    postcopy_put_packaged(f, 0x123456);
}

static void test_packaged(void)
{
    g_autoptr(GBytes) b = written(write_packaged, NULL);
    static const uint8_t too_big[] = { 0x01, 0x00, 0x00, 0x01 };
    Error *err = NULL;
    uint32_t size;
    uint16_t len;
    const uint8_t *p = command_payload(b, MIG_CMD_PACKAGED, &len);

    g_assert_cmpmem(p, len, "\x00\x12\x34\x56", 4);
    g_assert_true(postcopy_parse_packaged(p, len, &size, &error_abort));
    g_assert_cmpuint(size, ==, 0x123456);
    g_assert_false(postcopy_parse_packaged(p, 3, &size, &err));
    assert_error_contains(&err, "PACKAGED: length 3 (expected 4)");
    g_assert_false(postcopy_parse_packaged(too_big, 4, &size, &err));
    assert_error_contains(&err, "a package of 16777217 bytes (at most 16777216)");
}

/* ---- the return path ----------------------------------------------------------------- */

static void write_rp_all(QEMUFile *f, void *opaque)
{
    rp_put_value(f, MIG_RP_MSG_SHUT, 0);
    rp_put_value(f, MIG_RP_MSG_PONG, 0xfeedcafe);
    rp_put_req_pages(f, "pc.ram", 0x5000, 0x2000);
    rp_put_req_pages(f, NULL, 0x9000, 0x1000);
    rp_put_recv_bitmap(f, "pc.ram1");
    rp_put_value(f, MIG_RP_MSG_RESUME_ACK, 1);
}

static void test_rp_round_trip(void)
{
    g_autoptr(GBytes) b = written(write_rp_all, NULL);
    QEMUFile *f = qemu_file_new_mem_input(g_bytes_get_data(b, NULL), g_bytes_get_size(b),
                                          "rp");
    const uint8_t *p = g_bytes_get_data(b, NULL);
    RpMessage m;

    /* SHUT (8 bytes), PONG (8), then REQ_PAGES_ID as QEMU writes it. */
    g_assert_cmpmem(p + 16, 23, "\x00\x03\x00\x13" "\x00\x00\x00\x00\x00\x00\x50\x00"
                    "\x00\x00\x20\x00" "\x06pc.ram", 23);
    g_assert_true(rp_read(f, &m, &error_abort));
    g_assert_cmpuint(m.type, ==, MIG_RP_MSG_SHUT);
    g_assert_cmpuint(m.value, ==, 0);
    g_assert_true(rp_read(f, &m, &error_abort));
    g_assert_cmpuint(m.type, ==, MIG_RP_MSG_PONG);
    g_assert_cmpuint(m.value, ==, 0xfeedcafe);
    g_assert_true(rp_read(f, &m, &error_abort));
    g_assert_cmpuint(m.type, ==, MIG_RP_MSG_REQ_PAGES_ID);
    g_assert_true(m.has_name);
    g_assert_cmpstr(m.name, ==, "pc.ram");
    g_assert_cmpuint(m.start, ==, 0x5000);
    g_assert_cmpuint(m.length, ==, 0x2000);
    g_assert_true(rp_read(f, &m, &error_abort));
    g_assert_cmpuint(m.type, ==, MIG_RP_MSG_REQ_PAGES);
    g_assert_false(m.has_name);
    g_assert_cmpuint(m.start, ==, 0x9000);
    g_assert_true(rp_read(f, &m, &error_abort));
    g_assert_cmpuint(m.type, ==, MIG_RP_MSG_RECV_BITMAP);
    g_assert_cmpstr(m.name, ==, "pc.ram1");
    g_assert_true(rp_read(f, &m, &error_abort));
    g_assert_cmpuint(m.type, ==, MIG_RP_MSG_RESUME_ACK);
    g_assert_cmpuint(m.value, ==, 1);
    qemu_fclose(f);

    /* Cut anywhere: every message before the cut reads, the cut one is refused. */
    for (size_t cut = 0; cut < g_bytes_get_size(b); cut++) {
        Error *err = NULL;
        int whole = 0;

        f = qemu_file_new_mem_input(p, cut, "rp");
        while (rp_read(f, &m, &err)) {
            whole++;
        }
        g_assert_nonnull(err);
        g_assert_cmpint(whole, <, 6);
        error_free(err);
        qemu_fclose(f);
    }
}

static void expect_rp_error(const void *bytes, size_t len, const char *msg)
{
    QEMUFile *f = qemu_file_new_mem_input(bytes, len, "rp");
    Error *err = NULL;
    RpMessage m;

    g_assert_false(rp_read(f, &m, &err));
    assert_error_contains(&err, msg);
    qemu_fclose(f);
}

static void test_rp_hostile(void)
{
    expect_rp_error("\x00\x09\x00\x00", 4, "unknown message type 9");
    expect_rp_error("\x00\x00\x00\x00", 4, "unknown message type 0");
    expect_rp_error("\x00\x01\x00\x03\x00\x00\x00", 7,
                    "SHUT message of 3 bytes does not fit its layout");
    expect_rp_error("\x00\x04\x00\x0b" "\x00\x00\x00\x00\x00\x00\x50\x00\x00\x00\x20", 15,
                    "REQ_PAGES message of 11 bytes");
    /* The name's length byte says 7, the message holds 6. */
    expect_rp_error("\x00\x03\x00\x13" "\x00\x00\x00\x00\x00\x00\x50\x00"
                    "\x00\x00\x20\x00" "\x07pc.ram", 23, "REQ_PAGES_ID message of 19 bytes");
    expect_rp_error("\x00\x05\x00\x04" "\x03p\x00m", 8,
                    "RECV_BITMAP: invalid block name of 3 bytes");
    expect_rp_error("\x00\x05\x00\x01" "\x00", 5, "RECV_BITMAP message of 1 bytes");
    expect_rp_error("\x00\x02\x00\x04\x00", 5, "unexpected end of stream");
}

static void test_rp_request_block(void)
{
    RAMBlock a = { .idstr = "pc.ram", .used_length = 8u << 20, .page_size = 4096 };
    RAMBlock h = { .idstr = "huge", .used_length = 8u << 20, .page_size = 2u << 20 };
    RamBlockList ram = { .blocks = { &a, &h }, .nblocks = 2 };
    RpMessage named = { .type = MIG_RP_MSG_REQ_PAGES_ID, .has_name = true,
                        .start = 0x3000, .length = 0x1000 };
    RpMessage next = { .type = MIG_RP_MSG_REQ_PAGES, .start = 0x7ff000, .length = 0x1000 };
    RpMessage m;
    Error *err = NULL;
    int last = -1;

    g_assert_cmpint(rp_request_block(&ram, &next, &last, &err), ==, -1);
    assert_error_contains(&err, "REQ_PAGES with no block named before");
    strcpy(named.name, "pc.rom");
    g_assert_cmpint(rp_request_block(&ram, &named, &last, &err), ==, -1);
    assert_error_contains(&err, "block 'pc.rom' does not exist");
    strcpy(named.name, "pc.ram");
    g_assert_cmpint(rp_request_block(&ram, &named, &last, &error_abort), ==, 0);
    g_assert_cmpint(last, ==, 0);
    g_assert_cmpint(rp_request_block(&ram, &next, &last, &error_abort), ==, 0);

    m = next;
    m.start = 0x800000;
    g_assert_cmpint(rp_request_block(&ram, &m, &last, &err), ==, -1);
    assert_error_contains(&err, "0x800000+0x1000 is outside block 'pc.ram' (0x800000 bytes)");
    m = next;
    m.length = 0x2000;
    g_assert_cmpint(rp_request_block(&ram, &m, &last, &err), ==, -1);
    assert_error_contains(&err, "is outside block 'pc.ram'");
    m = next;
    m.start = 0x7ff001;
    g_assert_cmpint(rp_request_block(&ram, &m, &last, &err), ==, -1);
    assert_error_contains(&err, "start 0x7ff001 is not aligned to block 'pc.ram''s page "
                          "size 4096");
    m = next;
    m.length = 0;
    g_assert_cmpint(rp_request_block(&ram, &m, &last, &err), ==, -1);
    assert_error_contains(&err, "length 0 is not a multiple");
    m = next;
    m.start = UINT64_MAX - 0xfff;
    g_assert_cmpint(rp_request_block(&ram, &m, &last, &err), ==, -1);
    assert_error_contains(&err, "is outside block");

    /* Huge pages: a request is for whole ones. */
    strcpy(named.name, "huge");
    named.start = 0;
    named.length = 0x1000;
    g_assert_cmpint(rp_request_block(&ram, &named, &last, &err), ==, -1);
    assert_error_contains(&err, "length 4096 is not a multiple of block 'huge''s page size "
                          "2097152");
    named.length = 2u << 20;
    g_assert_cmpint(rp_request_block(&ram, &named, &last, &error_abort), ==, 1);
    g_assert_cmpint(last, ==, 1);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/postcopy-messages/advise", test_advise);
    g_test_add_func("/postcopy-messages/discard", test_discard);
    g_test_add_func("/postcopy-messages/packaged", test_packaged);
    g_test_add_func("/postcopy-messages/rp-round-trip", test_rp_round_trip);
    g_test_add_func("/postcopy-messages/rp-hostile", test_rp_hostile);
    g_test_add_func("/postcopy-messages/rp-request-block", test_rp_request_block);
    return g_test_run();
}
