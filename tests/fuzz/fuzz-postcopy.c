/*
 * Postcopy's messages as a peer sends them.  The first byte picks the
 * reader: the payload of POSTCOPY_ADVISE, POSTCOPY_RAM_DISCARD or PACKAGED
 * (the rest, as the loader hands a COMMAND's payload over), or the return
 * path (the rest as a stream of messages, each page request checked
 * against two RAM blocks, one of huge pages).
 */
#include <string.h>

#include <glib.h>

#include "fuzz.h"
#include "migration/postcopy-messages.h"

enum { PICK_ADVISE, PICK_DISCARD, PICK_PACKAGED, PICK_RP, PICKS };

static void return_path(const uint8_t *data, size_t size)
{
    static RAMBlock a = { .idstr = "pc.ram", .used_length = 8u << 20, .page_size = 4096 };
    static RAMBlock h = { .idstr = "huge", .used_length = 8u << 20, .page_size = 2u << 20 };
    RamBlockList ram = { .blocks = { &a, &h }, .nblocks = 2 };
    QEMUFile *f = qemu_file_new_mem_input(data, size, "rp");
    Error *err = NULL;
    RpMessage m;
    int last = -1;

    while (rp_read(f, &m, &err)) {
        if (m.type == MIG_RP_MSG_REQ_PAGES || m.type == MIG_RP_MSG_REQ_PAGES_ID) {
            int b = rp_request_block(&ram, &m, &last, &err);

            if (b < 0) {
                error_free(err);
                err = NULL;
                continue;
            }
            /* What a source would then read: inside the block, by its own check. */
            g_assert(m.start + m.length <= ram.blocks[b]->used_length);
        }
    }
    error_free(err);
    qemu_fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    PostcopyRange ranges[POSTCOPY_DISCARD_MAX_RANGES];
    uint16_t len = MIN(size ? size - 1 : 0, UINT16_MAX);
    uint64_t a, b;
    uint32_t n32;
    char name[256];
    Error *err = NULL;
    size_t n;

    if (!size) {
        return 0;
    }
    switch (data[0] % PICKS) {
    case PICK_ADVISE:
        postcopy_parse_advise(data + 1, len, &a, &b, &err);
        break;
    case PICK_DISCARD:
        if (postcopy_parse_discard(data + 1, len, name, ranges, &n, &err)) {
            g_assert(n >= 1 && n <= POSTCOPY_DISCARD_MAX_RANGES && strlen(name) > 0);
        }
        break;
    case PICK_PACKAGED:
        if (postcopy_parse_packaged(data + 1, len, &n32, &err)) {
            g_assert(n32 <= POSTCOPY_PACKAGED_MAX);
        }
        break;
    default:
        return_path(data + 1, size - 1);
        break;
    }
    error_free(err);
    return 0;
}

/* A message written by its writer, prefixed with the pick byte. */
static bool seed_from(const char *dir, const char *name, uint8_t pick,
                      void (*write)(QEMUFile *f), bool strip_command_header)
{
    QEMUFile *f = qemu_file_new_mem_output("seed");
    g_autoptr(GByteArray) b = g_byte_array_new();
    const uint8_t *p;
    size_t len, skip = strip_command_header ? 5 : 0;
    bool ok;

    write(f);
    p = qemu_file_mem_data(f, &len);
    g_byte_array_append(b, &pick, 1);
    g_byte_array_append(b, p + skip, len - skip);
    ok = fuzz_seed(dir, name, b->data, b->len);
    qemu_fclose(f);
    return ok;
}

static void w_advise(QEMUFile *f)
{
    postcopy_put_advise(f, 4096, 4096);
}

static void w_discard(QEMUFile *f)
{
    static const PostcopyRange r[] = { { 0, 4096 }, { 0x10000, 0x3000 } };

    postcopy_put_discard(f, "pc.ram", r, G_N_ELEMENTS(r));
}

static void w_packaged(QEMUFile *f)
{
    postcopy_put_packaged(f, 4096);
}

static void w_rp(QEMUFile *f)
{
    rp_put_value(f, MIG_RP_MSG_PONG, 1);
    rp_put_req_pages(f, "pc.ram", 0x5000, 0x2000);
    rp_put_req_pages(f, NULL, 0x9000, 0x1000);
    rp_put_req_pages(f, "huge", 0x200000, 0x200000);
    rp_put_recv_bitmap(f, "pc.ram");
    rp_put_value(f, MIG_RP_MSG_RESUME_ACK, 1);
    rp_put_value(f, MIG_RP_MSG_SHUT, 0);
}

bool fuzz_write_seeds(const char *dir)
{
    return seed_from(dir, "advise", PICK_ADVISE, w_advise, true) &&
           seed_from(dir, "discard", PICK_DISCARD, w_discard, true) &&
           seed_from(dir, "packaged", PICK_PACKAGED, w_packaged, true) &&
           seed_from(dir, "return-path", PICK_RP, w_rp, false);
}
