/*
 * amber-img's parts: the whole file and its sections (amber-img.c), and
 * the `ram` section with what it carries, plain or mapped-ram (img-ram.c).
 */
#ifndef AMBER_TOOLS_IMG_H
#define AMBER_TOOLS_IMG_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "migration/qemu-file.h"
#include "migration/savevm.h"
#include "util/error.h"

/* One section as it sits in the file. */
typedef struct ImgSection {
    uint64_t offset;                /* of its type byte */
    uint64_t payload;               /* of its first payload byte */
    uint64_t end;                   /* just past its footer */
    uint8_t type;
    uint32_t section_id;
    char idstr[256];
    uint32_t instance_id;
    uint32_t version;
} ImgSection;

typedef struct ImgRam ImgRam;

typedef struct Img {
    const char *path;
    const uint8_t *data;            /* the whole file, mapped */
    uint64_t size;
    int fd;                         /* the same file, for mapped-ram's page reads */
    char machine[256];
    bool mapped_ram;                /* the configuration lists the capability */
    bool checksum;                  /* ... or x-checksum */
    bool verify;                    /* verify: read and check every page */
    GArray *sections;               /* of ImgSection */
    ImgRam *ram;
    /* The VMDESCRIPTION found at the end of the file. */
    JsonParser *vmdesc;
    JsonArray *devices;
    int64_t vmdesc_page_size;
    uint64_t vmdesc_offset;         /* of its 0x06 byte */
    uint32_t vmdesc_len;
    char *vmdesc_problem;           /* why none was found */
    GPtrArray *devs;                /* of ImgDevice * */
    uint64_t eof_offset;
} Img;

/*
 * From a load callback, positioned at the payload: the section as the
 * file has it (its header is read back from the mapping).
 */
ImgSection *img_section_begin(Img *img, QEMUFile *f, const char *idstr,
                              uint32_t instance_id, bool long_header);
/* Positioned just before the footer the loader checks next. */
void img_section_end(ImgSection *s, QEMUFile *f);

/* ---- img-ram.c ----------------------------------------------------------------- */

ImgRam *img_ram_new(Img *img);
void img_ram_free(ImgRam *ram);
/* The loader's entry for "ram": each section goes to the RAM loader of -incoming. */
bool img_ram_register(ImgRam *ram, SaveStateRegistry *r, Error **errp);
/* extract-ram: write the RAM into dir while the stream is read. */
void img_ram_extract_to(ImgRam *ram, const char *dir);
/* ok: say what was written; otherwise remove it again. */
void img_ram_extract_done(ImgRam *ram, bool ok);
bool img_ram_ended(ImgRam *ram);
/* After EOF: the section was there, ended, and left every block loaded. */
bool img_ram_check_end(ImgRam *ram, Error **errp);
void img_ram_info_text(ImgRam *ram);
void img_ram_info_json(ImgRam *ram, JsonBuilder *b);

static inline void img_json_int(JsonBuilder *b, const char *key, int64_t v)
{
    json_builder_set_member_name(b, key);
    json_builder_add_int_value(b, v);
}

static inline void img_json_str(JsonBuilder *b, const char *key, const char *v)
{
    json_builder_set_member_name(b, key);
    json_builder_add_string_value(b, v);
}

#endif
