/*
 * Postcopy's messages, as QEMU lays them out (docs/devel/postcopy.md):
 * the payloads of its COMMAND frames on the main stream and the return
 * path's messages from the destination.  Writers and checked readers only;
 * what each message does is the postcopy code's business.
 *
 * COMMAND payloads (u8 0x08, be16 cmd, be16 len, payload; savevm.h):
 *   POSTCOPY_ADVISE      be64 host page size summary, be64 target page size
 *                        (len 16; len 0 when no RAM is postcopied)
 *   POSTCOPY_RAM_DISCARD u8 version 0, u8 idlen, idstr, u8 0, then pairs of
 *                        be64 start, be64 length (bytes in the block), at
 *                        most POSTCOPY_DISCARD_MAX_RANGES per command
 *   PACKAGED             be32 length, then that many bytes of sections
 *                        (at most POSTCOPY_PACKAGED_MAX)
 *   OPEN_RETURN_PATH, POSTCOPY_LISTEN, POSTCOPY_RUN, POSTCOPY_RESUME: len 0
 *   PING                 be32 value
 *
 * Return path (be16 type, be16 len, payload):
 *   SHUT 1         be32 0 (clean) or an error
 *   PONG 2         be32 the PING's value
 *   REQ_PAGES_ID 3 be64 start, be32 length, u8 idlen, idstr
 *   REQ_PAGES 4    be64 start, be32 length (the block of the previous request)
 *   RECV_BITMAP 5  u8 idlen, idstr
 *   RESUME_ACK 6   be32 value
 *
 * Every reader treats its input as hostile: a bad message is an error that
 * names the field, never a crash.
 */
#ifndef AMBER_MIGRATION_POSTCOPY_MESSAGES_H
#define AMBER_MIGRATION_POSTCOPY_MESSAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migration/qemu-file.h"
#include "migration/savevm.h"
#include "system/ram.h"
#include "util/error.h"

#define POSTCOPY_DISCARD_VERSION      0
#define POSTCOPY_DISCARD_MAX_RANGES   12
#define POSTCOPY_PACKAGED_MAX         (16u << 20)
/*
 * After RECV_BITMAP's bitmap (be64 size, then size bytes of little-endian
 * 64-bit words, bit set: the page is at the destination), this marker.
 */
#define POSTCOPY_RECV_BITMAP_ENDING   UINT64_C(0x0123456789abcdef)

typedef struct PostcopyRange {
    uint64_t start;             /* bytes into the block */
    uint64_t length;
} PostcopyRange;

/* ---- COMMAND payloads --------------------------------------------------------------- */

void postcopy_put_advise(QEMUFile *f, uint64_t page_summary, uint64_t target_page_size);
bool postcopy_parse_advise(const uint8_t *data, uint16_t len, uint64_t *page_summary,
                           uint64_t *target_page_size, Error **errp);

/* n ranges of block idstr (1 to POSTCOPY_DISCARD_MAX_RANGES). */
void postcopy_put_discard(QEMUFile *f, const char *idstr, const PostcopyRange *ranges,
                          size_t n);
/* name: 256 bytes; ranges: POSTCOPY_DISCARD_MAX_RANGES entries. */
bool postcopy_parse_discard(const uint8_t *data, uint16_t len, char *name,
                            PostcopyRange *ranges, size_t *n, Error **errp);

/* The command; the caller writes the length bytes of sections after it. */
void postcopy_put_packaged(QEMUFile *f, uint32_t length);
bool postcopy_parse_packaged(const uint8_t *data, uint16_t len, uint32_t *length,
                             Error **errp);

/* ---- the return path ----------------------------------------------------------------- */

typedef struct RpMessage {
    uint16_t type;              /* MigRpMessage */
    uint32_t value;             /* SHUT, PONG, RESUME_ACK */
    uint64_t start;             /* REQ_PAGES(_ID) */
    uint32_t length;
    bool has_name;              /* REQ_PAGES_ID, RECV_BITMAP */
    char name[256];
} RpMessage;

/* SHUT, PONG or RESUME_ACK with its value. */
void rp_put_value(QEMUFile *f, uint16_t type, uint32_t value);
/* REQ_PAGES_ID with idstr, or REQ_PAGES (idstr NULL: the previous request's block). */
void rp_put_req_pages(QEMUFile *f, const char *idstr, uint64_t start, uint32_t length);
void rp_put_recv_bitmap(QEMUFile *f, const char *idstr);
/* One message, its length checked against its type. */
bool rp_read(QEMUFile *f, RpMessage *msg, Error **errp);

/*
 * The pages a REQ_PAGES(_ID) asks for, checked against ram: the named block
 * (or *last, the previous request's, for REQ_PAGES), a length that is a
 * non-zero multiple of the block's page size, a start aligned to it, all
 * inside the block.  *last becomes this request's block.  Returns the
 * block's index, or -1 with an error naming what is wrong.
 */
int rp_request_block(const RamBlockList *ram, const RpMessage *msg, int *last,
                     Error **errp);

#endif
