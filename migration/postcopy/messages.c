/*
 * Postcopy's COMMAND payloads and return-path messages: writers and
 * checked readers (see include/migration/postcopy-messages.h for the
 * layouts).  Payload readers work on the bytes savevm's loader read for
 * the frame; the return path is read from its own stream here.
 */
#include <inttypes.h>
#include <string.h>

#include <glib.h>

#include "migration/postcopy-messages.h"
#include "util/cutils.h"

/* A name of len bytes from p into name (256 bytes); no NUL inside, not empty. */
static bool take_name(const uint8_t *p, uint8_t len, char *name, const char *what,
                      Error **errp)
{
    memcpy(name, p, len);
    name[len] = '\0';
    if (len == 0 || strlen(name) != len) {
        error_setg(errp, "%s: invalid block name of %u bytes", what, len);
        return false;
    }
    return true;
}

/* ---- COMMAND payloads --------------------------------------------------------------- */

void postcopy_put_advise(QEMUFile *f, uint64_t page_summary, uint64_t target_page_size)
{
    uint8_t buf[16];

    put_be64_at(buf, page_summary);
    put_be64_at(buf + 8, target_page_size);
    savevm_put_command(f, MIG_CMD_POSTCOPY_ADVISE, sizeof(buf), buf);
}

bool postcopy_parse_advise(const uint8_t *data, uint16_t len, uint64_t *page_summary,
                           uint64_t *target_page_size, Error **errp)
{
    if (len != 16) {
        error_setg(errp, "POSTCOPY_ADVISE: length %u (expected 16: page size summary, "
                   "target page size)", len);
        return false;
    }
    *page_summary = be64_at(data);
    *target_page_size = be64_at(data + 8);
    return true;
}

void postcopy_put_discard(QEMUFile *f, const char *idstr, const PostcopyRange *ranges,
                          size_t n)
{
    size_t idlen = strlen(idstr);
    uint8_t buf[3 + 255 + 16 * POSTCOPY_DISCARD_MAX_RANGES];
    size_t len = 0;

    g_assert(idlen > 0 && idlen < 256 && n > 0 && n <= POSTCOPY_DISCARD_MAX_RANGES);
    buf[len++] = POSTCOPY_DISCARD_VERSION;
    buf[len++] = idlen;
    memcpy(buf + len, idstr, idlen);
    len += idlen;
    buf[len++] = 0;
    for (size_t i = 0; i < n; i++, len += 16) {
        put_be64_at(buf + len, ranges[i].start);
        put_be64_at(buf + len + 8, ranges[i].length);
    }
    savevm_put_command(f, MIG_CMD_POSTCOPY_RAM_DISCARD, len, buf);
}

bool postcopy_parse_discard(const uint8_t *data, uint16_t len, char *name,
                            PostcopyRange *ranges, size_t *n, Error **errp)
{
    size_t idlen, rest;

    if (len < 3 + 1 + 16) {
        error_setg(errp, "POSTCOPY_RAM_DISCARD: length %u is too short", len);
        return false;
    }
    if (data[0] != POSTCOPY_DISCARD_VERSION) {
        error_setg(errp, "POSTCOPY_RAM_DISCARD: version %u (only %u)", data[0],
                   POSTCOPY_DISCARD_VERSION);
        return false;
    }
    idlen = data[1];
    if (2 + idlen + 1 > len) {
        error_setg(errp, "POSTCOPY_RAM_DISCARD: block name of %zu bytes runs past the "
                   "%u bytes of the command", idlen, len);
        return false;
    }
    if (!take_name(data + 2, idlen, name, "POSTCOPY_RAM_DISCARD", errp)) {
        return false;
    }
    if (data[2 + idlen] != 0) {
        error_setg(errp, "POSTCOPY_RAM_DISCARD: no 0 after the block name (0x%02x)",
                   data[2 + idlen]);
        return false;
    }
    rest = len - 3 - idlen;
    if (rest == 0 || rest % 16) {
        error_setg(errp, "POSTCOPY_RAM_DISCARD: %zu bytes of ranges (a non-zero multiple "
                   "of 16 expected)", rest);
        return false;
    }
    if (rest / 16 > POSTCOPY_DISCARD_MAX_RANGES) {
        error_setg(errp, "POSTCOPY_RAM_DISCARD: %zu ranges in one command (at most %d)",
                   rest / 16, POSTCOPY_DISCARD_MAX_RANGES);
        return false;
    }
    *n = rest / 16;
    for (size_t i = 0; i < *n; i++) {
        ranges[i].start = be64_at(data + 3 + idlen + 16 * i);
        ranges[i].length = be64_at(data + 3 + idlen + 16 * i + 8);
    }
    return true;
}

void postcopy_put_packaged(QEMUFile *f, uint32_t length)
{
    uint8_t buf[4];

    put_be32_at(buf, length);
    savevm_put_command(f, MIG_CMD_PACKAGED, sizeof(buf), buf);
}

bool postcopy_parse_packaged(const uint8_t *data, uint16_t len, uint32_t *length,
                             Error **errp)
{
    if (len != 4) {
        error_setg(errp, "PACKAGED: length %u (expected 4)", len);
        return false;
    }
    *length = be32_at(data);
    if (*length > POSTCOPY_PACKAGED_MAX) {
        error_setg(errp, "PACKAGED: a package of %" PRIu32 " bytes (at most %u)", *length,
                   POSTCOPY_PACKAGED_MAX);
        return false;
    }
    return true;
}

/* ---- the return path ----------------------------------------------------------------- */

static void put_rp(QEMUFile *f, uint16_t type, uint16_t len, const uint8_t *payload)
{
    qemu_put_be16(f, type);
    qemu_put_be16(f, len);
    qemu_put_buffer(f, payload, len);
}

void rp_put_value(QEMUFile *f, uint16_t type, uint32_t value)
{
    uint8_t buf[4];

    g_assert(type == MIG_RP_MSG_SHUT || type == MIG_RP_MSG_PONG ||
             type == MIG_RP_MSG_RESUME_ACK);
    put_be32_at(buf, value);
    put_rp(f, type, sizeof(buf), buf);
}

void rp_put_req_pages(QEMUFile *f, const char *idstr, uint64_t start, uint32_t length)
{
    uint8_t buf[12 + 1 + 255];
    size_t len = 12;

    put_be64_at(buf, start);
    put_be32_at(buf + 8, length);
    if (idstr) {
        size_t idlen = strlen(idstr);

        g_assert(idlen > 0 && idlen < 256);
        buf[len++] = idlen;
        memcpy(buf + len, idstr, idlen);
        len += idlen;
    }
    put_rp(f, idstr ? MIG_RP_MSG_REQ_PAGES_ID : MIG_RP_MSG_REQ_PAGES, len, buf);
}

void rp_put_recv_bitmap(QEMUFile *f, const char *idstr)
{
    uint8_t buf[1 + 255];
    size_t idlen = strlen(idstr);

    g_assert(idlen > 0 && idlen < 256);
    buf[0] = idlen;
    memcpy(buf + 1, idstr, idlen);
    put_rp(f, MIG_RP_MSG_RECV_BITMAP, 1 + idlen, buf);
}

static const char *rp_name(uint16_t type)
{
    static const char *const names[] = {
        [MIG_RP_MSG_SHUT] = "SHUT", [MIG_RP_MSG_PONG] = "PONG",
        [MIG_RP_MSG_REQ_PAGES_ID] = "REQ_PAGES_ID", [MIG_RP_MSG_REQ_PAGES] = "REQ_PAGES",
        [MIG_RP_MSG_RECV_BITMAP] = "RECV_BITMAP", [MIG_RP_MSG_RESUME_ACK] = "RESUME_ACK",
    };

    return type < G_N_ELEMENTS(names) && names[type] ? names[type] : NULL;
}

/* The payload of a message of this type and length, checked and decoded. */
static bool rp_decode(RpMessage *msg, const uint8_t *p, uint16_t len, Error **errp)
{
    const char *name = rp_name(msg->type);
    size_t fixed = 0;

    switch (msg->type) {
    case MIG_RP_MSG_SHUT:
    case MIG_RP_MSG_PONG:
    case MIG_RP_MSG_RESUME_ACK:
        if (len != 4) {
            break;
        }
        msg->value = be32_at(p);
        return true;
    case MIG_RP_MSG_REQ_PAGES:
        if (len != 12) {
            break;
        }
        msg->start = be64_at(p);
        msg->length = be32_at(p + 8);
        return true;
    case MIG_RP_MSG_REQ_PAGES_ID:
        fixed = 12;
        /* fall through */
    case MIG_RP_MSG_RECV_BITMAP:
        if (len < fixed + 2 || p[fixed] != len - fixed - 1) {
            break;
        }
        if (fixed) {
            msg->start = be64_at(p);
            msg->length = be32_at(p + 8);
        }
        msg->has_name = true;
        return take_name(p + fixed + 1, p[fixed], msg->name, name, errp);
    }
    error_setg(errp, "return path: %s message of %u bytes does not fit its layout", name,
               len);
    return false;
}

bool rp_read(QEMUFile *f, RpMessage *msg, Error **errp)
{
    uint8_t payload[UINT16_MAX];
    uint16_t len;

    memset(msg, 0, sizeof(*msg));
    msg->type = qemu_get_be16(f, "return path message type");
    len = qemu_get_be16(f, "return path message length");
    if (!qemu_file_check(f, errp)) {
        return false;
    }
    if (!rp_name(msg->type)) {
        error_setg(errp, "return path: unknown message type %u", msg->type);
        return false;
    }
    qemu_get_buffer(f, payload, len, "return path message");
    return qemu_file_check(f, errp) && rp_decode(msg, payload, len, errp);
}

int rp_request_block(const RamBlockList *ram, const RpMessage *msg, int *last,
                     Error **errp)
{
    const RAMBlock *rb;
    int b = *last;

    if (msg->has_name) {
        b = ram_block_index(ram, msg->name);
        if (b < 0) {
            g_autofree char *safe = g_strescape(msg->name, NULL);

            error_setg(errp, "page request: block '%s' does not exist", safe);
            return -1;
        }
    } else if (b < 0) {
        error_setg(errp, "page request: REQ_PAGES with no block named before");
        return -1;
    }
    rb = ram->blocks[b];
    if (msg->length == 0 || msg->length % rb->page_size) {
        error_setg(errp, "page request: length %" PRIu32 " is not a multiple of block "
                   "'%s''s page size %zu", msg->length, rb->idstr, rb->page_size);
        return -1;
    }
    if (msg->start % rb->page_size) {
        error_setg(errp, "page request: start 0x%" PRIx64 " is not aligned to block "
                   "'%s''s page size %zu", msg->start, rb->idstr, rb->page_size);
        return -1;
    }
    if (msg->start >= rb->used_length || msg->length > rb->used_length - msg->start) {
        error_setg(errp, "page request: 0x%" PRIx64 "+0x%" PRIx32 " is outside block "
                   "'%s' (0x%" PRIx64 " bytes)", msg->start, msg->length, rb->idstr,
                   rb->used_length);
        return -1;
    }
    *last = b;
    return b;
}
