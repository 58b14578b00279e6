/*
 * amber-img: inspect, check and unpack a saved VM (a QEVM v3 stream in a file).
 *
 *   amber-img info [--json] FILE       sections, RAM blocks, pages, devices
 *   amber-img verify FILE              full structural check: "OK" or the first problem
 *   amber-img extract-ram FILE DIR     one raw file per RAM block + DIR/physmem.raw
 *
 * The header, configuration, section bookkeeping (names, instances, ids,
 * versions, START/PART/END order) and footers are checked by the loader
 * `amber -incoming` runs (migration/savevm.c), so the tool and a restore
 * agree on what a good stream is.  The loader needs an entry per section:
 * the tool registers one per device the VMDESCRIPTION (at the end of the
 * file) describes, which steps over the payload using the described field
 * sizes, and one for "ram".  That one hands each RAM section to the RAM
 * loader of -incoming (migration/ram-load.c, loading into scratch memory
 * shaped like the stream's blocks), then walks the same bytes again here
 * for what the loader does not keep: pages by kind per block, pages sent
 * twice, and the pages extract-ram writes out.
 *
 * Every command reads the whole stream; nothing is trusted.  A failure is
 * one line on stderr and exit status 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "util/error.h"
#include "util/bitmap.h"
#include "util/cutils.h"
#include "migration/qemu-file.h"
#include "migration/savevm.h"
#include "migration/ram.h"
#include "system/ram.h"

#define PAGE                SAVEVM_PAGE_SIZE

/* RAM records (include/migration/ram.h): flags in the low bits of a be64. */
#define RAM_VERSION         RAM_SECTION_VERSION
#define RAM_FLAG_ZERO       RAM_SAVE_FLAG_ZERO
#define RAM_FLAG_MEM_SIZE   RAM_SAVE_FLAG_MEM_SIZE
#define RAM_FLAG_PAGE       RAM_SAVE_FLAG_PAGE
#define RAM_FLAG_EOS        RAM_SAVE_FLAG_EOS
#define RAM_FLAG_CONTINUE   RAM_SAVE_FLAG_CONTINUE
#define RAM_FLAGS_KNOWN     (RAM_FLAG_ZERO | RAM_FLAG_MEM_SIZE | RAM_FLAG_PAGE | \
                             RAM_FLAG_EOS | RAM_FLAG_CONTINUE)

/* Limits on what a hostile stream can make us allocate. */
#define IMG_MAX_BLOCKS      AMBER_MAX_RAM_BLOCKS
#define IMG_MAX_RAM         (1ULL << 40)
#define IMG_MAX_DESC_DEPTH  16

/* extract-ram writes runs of consecutive pages at most this long. */
#define EXTRACT_RUN_BYTES   (1u << 20)

#define PHYSMEM_NAME        "physmem.raw"

typedef struct ImgBlock {
    char idstr[256];
    uint64_t length;
    uint64_t zero_pages;
    uint64_t normal_pages;
    unsigned long *seen;            /* pages the stream has carried */
    int fd;                         /* extract-ram: its raw file, else -1 */
    RAMBlock rb;                    /* scratch memory the RAM loader fills */
} ImgBlock;

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

typedef struct Img Img;

/* A device the VMDESCRIPTION describes, registered so the loader accepts it. */
typedef struct ImgDevice {
    Img *img;
    JsonObject *desc;
    const char *name;
    uint32_t instance_id;
    int version;
    bool loaded;
} ImgDevice;

typedef struct Extract {
    char *dir;
    int phys_fd;
    uint64_t phys_size;
    RAMBlock map_blocks[AMBER_MAX_RAM_BLOCKS];
    RamBlockList map;               /* where each block sits in guest-physical space */
    GPtrArray *created;             /* paths, removed again if the stream is bad */
    uint8_t *run;                   /* consecutive pages waiting to be written */
    ImgBlock *run_block;
    uint64_t run_offset;
    size_t run_len;
} Extract;

struct Img {
    const char *path;
    const uint8_t *data;
    uint64_t size;
    char machine[256];
    GArray *sections;               /* of ImgSection */
    GPtrArray *blocks;              /* of ImgBlock *, in stream order */
    uint64_t ram_total;
    unsigned ram_sections;          /* START, PARTs, END seen */
    bool ram_setup;                 /* the block list has been read */
    bool ram_ended;
    ImgBlock *last_block;           /* for CONTINUE records */
    uint64_t list_len;              /* bytes of the block list after MEM_SIZE */
    uint64_t ram_base;              /* stream offset of the payload walked now */
    RamBlockList scratch;           /* the blocks, for the RAM loader */
    SaveStateRegistry *ram_registry;
    RamLoader *ram_loader;
    SaveStateEntry *ram_entry;      /* the loader's "ram" entry */
    /* The VMDESCRIPTION found at the end of the file. */
    JsonParser *vmdesc;
    JsonArray *devices;
    int64_t vmdesc_page_size;
    uint64_t vmdesc_offset;         /* of its 0x06 byte */
    uint32_t vmdesc_len;
    char *vmdesc_problem;           /* why none was found */
    GPtrArray *devs;                /* of ImgDevice * */
    uint64_t eof_offset;
    Extract *ex;
};

/* ---- opening --------------------------------------------------------------- */

static bool img_map(Img *img, const char *path, Error **errp)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    img->path = path;
    if (fd < 0) {
        error_setg_errno(errp, errno, "cannot open '%s'", path);
        return false;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        error_setg(errp, "'%s' is not a regular file", path);
        close(fd);
        return false;
    }
    img->data = (const uint8_t *)"";
    if (st.st_size) {
        void *p = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE | MAP_NORESERVE, fd, 0);

        if (p == MAP_FAILED) {
            error_setg_errno(errp, errno, "cannot map '%s'", path);
            close(fd);
            return false;
        }
        madvise(p, st.st_size, MADV_SEQUENTIAL);
        img->data = p;
        img->size = st.st_size;
    }
    close(fd);
    return true;
}

/*
 * The VMDESCRIPTION is the last thing in the file: u8 0x06, be32 len,
 * len bytes of JSON that start with '{'.  JSON text never holds a raw
 * 0x06, so the last 0x06 whose length reaches exactly to the end of the
 * file is it.  Without it the device sections cannot be stepped over.
 */
static void img_find_vmdesc(Img *img)
{
    int64_t lowest = (int64_t)img->size - SAVEVM_VMDESC_MAX - 6;

    for (int64_t p = (int64_t)img->size - 6; p >= 0 && p >= lowest; p--) {
        const uint8_t *d = img->data + p;
        uint64_t left = img->size - p - 5;
        uint32_t len;

        if (d[0] != QEMU_VM_VMDESCRIPTION || d[5] != '{') {
            continue;
        }
        len = be32_at(d + 1);
        if (len == left) {
            img->vmdesc_offset = p;
            img->vmdesc_len = len;
            return;
        }
        if (len > left && len <= SAVEVM_VMDESC_MAX) {
            img->vmdesc_problem = g_strdup_printf(
                "the VMDESCRIPTION at offset %" PRId64 " is truncated: %" PRIu64
                " of its %u bytes are in the file", p, left, len);
            return;
        }
    }
    img->vmdesc_problem = g_strdup(
        "no VMDESCRIPTION at the end of the file (truncated, or not a complete saved VM): "
        "the device sections cannot be checked without it");
}

/* ---- the VMDESCRIPTION: checked accessors (it is as hostile as the rest) ---- */

static bool desc_int(JsonObject *o, const char *key, bool required, int64_t min,
                     int64_t max, int64_t *out, const char *where, Error **errp)
{
    JsonNode *n = json_object_get_member(o, key);

    if (!n) {
        if (required) {
            error_setg(errp, "VMDESCRIPTION: %s has no \"%s\"", where, key);
            return false;
        }
        return true;
    }
    if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64 ||
        json_node_get_int(n) < min || json_node_get_int(n) > max) {
        error_setg(errp, "VMDESCRIPTION: %s: \"%s\" must be an integer from %" PRId64
                   " to %" PRId64, where, key, min, max);
        return false;
    }
    *out = json_node_get_int(n);
    return true;
}

static const char *desc_str(JsonObject *o, const char *key, const char *where, Error **errp)
{
    JsonNode *n = json_object_get_member(o, key);

    if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING) {
        error_setg(errp, "VMDESCRIPTION: %s: \"%s\" must be a string", where, key);
        return NULL;
    }
    return json_node_get_string(n);
}

/* An optional array member; *out NULL when absent. */
static bool desc_array(JsonObject *o, const char *key, JsonArray **out, const char *where,
                       Error **errp)
{
    JsonNode *n = json_object_get_member(o, key);

    *out = NULL;
    if (!n) {
        return true;
    }
    if (!JSON_NODE_HOLDS_ARRAY(n)) {
        error_setg(errp, "VMDESCRIPTION: %s: \"%s\" must be an array", where, key);
        return false;
    }
    *out = json_node_get_array(n);
    return true;
}

static JsonObject *desc_nth_object(JsonArray *a, guint i, const char *where, Error **errp)
{
    JsonNode *n = json_array_get_element(a, i);

    if (!JSON_NODE_HOLDS_OBJECT(n)) {
        error_setg(errp, "VMDESCRIPTION: %s: element %u is not an object", where, i);
        return NULL;
    }
    return json_node_get_object(n);
}

static bool img_parse_vmdesc(Img *img, Error **errp)
{
    g_autoptr(GError) gerr = NULL;
    JsonNode *root;
    JsonObject *top;

    img->vmdesc = json_parser_new();
    if (!json_parser_load_from_data(img->vmdesc,
                                    (const char *)img->data + img->vmdesc_offset + 5,
                                    img->vmdesc_len, &gerr)) {
        error_setg(errp, "VMDESCRIPTION at offset %" PRIu64 " is not valid JSON: %s",
                   img->vmdesc_offset, gerr->message);
        return false;
    }
    root = json_parser_get_root(img->vmdesc);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
        error_setg(errp, "VMDESCRIPTION is not a JSON object");
        return false;
    }
    top = json_node_get_object(root);
    img->vmdesc_page_size = -1;
    if (!desc_int(top, "page_size", false, 0, INT32_MAX, &img->vmdesc_page_size,
                  "the top level", errp) ||
        !desc_array(top, "devices", &img->devices, "the top level", errp)) {
        return false;
    }
    if (!img->devices) {
        error_setg(errp, "VMDESCRIPTION has no \"devices\" list");
        return false;
    }
    if (img->vmdesc_page_size != -1 && img->vmdesc_page_size != PAGE) {
        error_setg(errp, "VMDESCRIPTION: page_size %" PRId64 ", expected %d",
                   img->vmdesc_page_size, PAGE);
        return false;
    }
    return true;
}

/* ---- sections ---------------------------------------------------------------- */

/*
 * Called from a load callback, positioned at the payload: the header is
 * right before it (long for START/FULL, 5 bytes for PART/END), so its
 * bytes can be read back from the mapping.
 */
static ImgSection *section_begin(Img *img, QEMUFile *f, const char *idstr,
                                 uint32_t instance_id, bool long_header)
{
    ImgSection s = { .payload = qemu_file_pos(f), .instance_id = instance_id };
    size_t hdr = long_header ? 1 + 4 + 1 + strlen(idstr) + 4 + 4 : 1 + 4;

    s.offset = s.payload - hdr;
    s.type = img->data[s.offset];
    s.section_id = be32_at(img->data + s.offset + 1);
    s.version = long_header ? be32_at(img->data + s.payload - 4) : 0;
    g_strlcpy(s.idstr, idstr, sizeof(s.idstr));
    g_array_append_val(img->sections, s);
    return &g_array_index(img->sections, ImgSection, img->sections->len - 1);
}

static void section_end(ImgSection *s, QEMUFile *f)
{
    s->end = qemu_file_pos(f) + 5;     /* the footer the loader checks next */
}

static const char *section_type_name(uint8_t type)
{
    switch (type) {
    case QEMU_VM_SECTION_START: return "START";
    case QEMU_VM_SECTION_PART:  return "PART";
    case QEMU_VM_SECTION_END:   return "END";
    case QEMU_VM_SECTION_FULL:  return "FULL";
    default:                    return "?";
    }
}

/* ---- device sections: stepped over with the described sizes ----------------- */

static bool skip_described(QEMUFile *f, JsonObject *vmsd, int depth, Error **errp);

static bool skip_field(QEMUFile *f, JsonObject *fd, int depth, Error **errp)
{
    const char *name = desc_str(fd, "name", "a field", errp);
    const char *type = name ? desc_str(fd, "type", name, errp) : NULL;
    int64_t size = 0, count = 1;

    if (!type || !desc_int(fd, "size", true, 0, INT32_MAX, &size, name, errp) ||
        !desc_int(fd, "array_len", false, 1, INT32_MAX, &count, name, errp)) {
        return false;
    }
    if (!strcmp(type, "struct")) {
        JsonNode *n = json_object_get_member(fd, "struct");
        uint64_t start = qemu_file_pos(f);

        if (!n || !JSON_NODE_HOLDS_OBJECT(n)) {
            error_setg(errp, "VMDESCRIPTION: struct field '%s' has no \"struct\" object",
                       name);
            return false;
        }
        if (!skip_described(f, json_node_get_object(n), depth + 1, errp)) {
            error_prepend(errp, "field '%s': ", name);
            return false;
        }
        if (qemu_file_pos(f) - start != (uint64_t)size) {
            error_setg(errp, "field '%s': the struct takes %" PRIu64 " bytes, the "
                       "VMDESCRIPTION says %" PRId64, name, qemu_file_pos(f) - start, size);
            return false;
        }
        return true;
    }
    if (!qemu_file_skip(f, (uint64_t)size * count, name)) {
        return qemu_file_check(f, errp);
    }
    return true;
}

/* A subsection: u8 0x05, u8 len, name, be32 version, then its contents. */
static bool skip_subsection(QEMUFile *f, JsonObject *sub, int depth, Error **errp)
{
    const char *name = desc_str(sub, "vmsd_name", "a subsection", errp);
    int64_t version = 0;
    char got[256];
    uint8_t marker, len;
    uint32_t got_version;

    if (!name || !desc_int(sub, "version", true, 0, INT32_MAX, &version, name, errp)) {
        return false;
    }
    marker = qemu_get_byte(f, "subsection marker");
    len = qemu_get_byte(f, "subsection name length");
    qemu_get_buffer(f, got, len, "subsection name");
    got[len] = '\0';
    got_version = qemu_get_be32(f, "subsection version");
    if (!qemu_file_check(f, errp)) {
        return false;
    }
    if (marker != QEMU_VM_SUBSECTION || strlen(name) != len || memcmp(got, name, len)) {
        g_autofree char *safe = g_strescape(got, NULL);

        error_setg(errp, "expected subsection '%s', found marker 0x%02x name '%s'", name,
                   marker, safe);
        return false;
    }
    if (got_version != version) {
        error_setg(errp, "subsection '%s': version %u, the VMDESCRIPTION says %" PRId64,
                   name, got_version, version);
        return false;
    }
    if (!skip_described(f, sub, depth + 1, errp)) {
        error_prepend(errp, "subsection '%s': ", name);
        return false;
    }
    return true;
}

static bool skip_described(QEMUFile *f, JsonObject *vmsd, int depth, Error **errp)
{
    JsonArray *fields, *subs;

    if (depth > IMG_MAX_DESC_DEPTH) {
        error_setg(errp, "VMDESCRIPTION nests deeper than %d levels", IMG_MAX_DESC_DEPTH);
        return false;
    }
    if (!desc_array(vmsd, "fields", &fields, "a description", errp) ||
        !desc_array(vmsd, "subsections", &subs, "a description", errp)) {
        return false;
    }
    for (guint i = 0; fields && i < json_array_get_length(fields); i++) {
        JsonObject *fd = desc_nth_object(fields, i, "fields", errp);

        if (!fd || !skip_field(f, fd, depth, errp)) {
            return false;
        }
    }
    for (guint i = 0; subs && i < json_array_get_length(subs); i++) {
        JsonObject *sub = desc_nth_object(subs, i, "subsections", errp);

        if (!sub || !skip_subsection(f, sub, depth, errp)) {
            return false;
        }
    }
    return true;
}

static bool device_load(QEMUFile *f, void *opaque, int version_id, Error **errp)
{
    ImgDevice *dev = opaque;
    ImgSection *s = section_begin(dev->img, f, dev->name, dev->instance_id, true);

    if (version_id != dev->version) {
        error_setg(errp, "version %d, the VMDESCRIPTION says %d", version_id, dev->version);
        return false;
    }
    if (!skip_described(f, dev->desc, 0, errp)) {
        return false;
    }
    section_end(s, f);
    dev->loaded = true;
    return true;
}

/* The loader only takes entries that can also save; amber-img never does. */
static bool no_save(QEMUFile *f, void *opaque, Error **errp)
{
    error_setg(errp, "amber-img does not write streams");
    return false;
}

static bool no_setup(QEMUFile *f, void *opaque, Error **errp)
{
    return no_save(f, opaque, errp);
}

static const SaveStateHandlers device_ops = {
    .save_state = no_save,
    .load_state = device_load,
};

static bool register_devices(Img *img, SaveStateRegistry *r, Error **errp)
{
    for (guint i = 0; i < json_array_get_length(img->devices); i++) {
        JsonObject *o = desc_nth_object(img->devices, i, "devices", errp);
        g_autofree char *where = g_strdup_printf("device %u", i);
        int64_t instance = 0, version = 0;
        ImgDevice *dev;

        if (!o) {
            return false;
        }
        dev = g_new0(ImgDevice, 1);
        g_ptr_array_add(img->devs, dev);
        dev->img = img;
        dev->desc = o;
        dev->name = desc_str(o, "name", where, errp);
        if (!dev->name ||
            !desc_int(o, "instance_id", true, 0, UINT32_MAX, &instance, dev->name, errp) ||
            !desc_int(o, "version", true, 0, INT32_MAX, &version, dev->name, errp) ||
            !desc_str(o, "vmsd_name", dev->name, errp)) {
            return false;
        }
        dev->instance_id = instance;
        dev->version = version;
        if (!savevm_register(r, dev->name, (int)dev->instance_id, dev->version, &device_ops,
                             dev, errp)) {
            error_prepend(errp, "VMDESCRIPTION: ");
            return false;
        }
    }
    return true;
}

/* ---- extract-ram output --------------------------------------------------------- */

static bool write_all(int fd, const uint8_t *buf, size_t len, uint64_t off, const char *path,
                      Error **errp)
{
    while (len) {
        ssize_t n = pwrite(fd, buf, len, off);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            error_setg_errno(errp, n < 0 ? errno : ENOSPC, "cannot write '%s'", path);
            return false;
        }
        buf += n;
        len -= n;
        off += n;
    }
    return true;
}

static int create_output(Extract *ex, const char *name, uint64_t size, Error **errp)
{
    char *path = g_build_filename(ex->dir, name, NULL);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    if (fd < 0) {
        error_setg_errno(errp, errno, "cannot create '%s'", path);
        g_free(path);
        return -1;
    }
    g_ptr_array_add(ex->created, path);
    /* Sized up front and never written where the guest had zeroes: sparse. */
    if (ftruncate(fd, size) < 0) {
        error_setg_errno(errp, errno, "cannot size '%s' to %" PRIu64 " bytes", path, size);
        close(fd);
        return -1;
    }
    return fd;
}

/* A block's file name: its idstr, made safe to use as one path component. */
static char *block_file_name(const char *idstr)
{
    char *name = g_strdup(idstr);

    g_strdelimit(name, "/", '_');
    if (name[0] == '.') {
        name[0] = '_';
    }
    return name;
}

/*
 * Once the block list is known: one file per block, and the blocks laid
 * out in guest-physical space exactly as the machine maps them
 * (ram_map_guest: low RAM below 3 GiB, the rest from 4 GiB).
 */
static bool extract_open(Img *img, Error **errp)
{
    Extract *ex = img->ex;
    g_autoptr(GHashTable) names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);

    if (img->blocks->len > AMBER_MAX_RAM_BLOCKS) {
        error_setg(errp, "%u RAM blocks: a guest-physical dump can place at most %d",
                   img->blocks->len, AMBER_MAX_RAM_BLOCKS);
        return false;
    }
    for (guint i = 0; i < img->blocks->len; i++) {
        ImgBlock *b = img->blocks->pdata[i];
        RAMBlock *rb = &ex->map_blocks[i];
        char *name = block_file_name(b->idstr);

        if (!strcmp(name, PHYSMEM_NAME) || g_hash_table_contains(names, name)) {
            error_setg(errp, "RAM block '%s' would be written to '%s', which is taken",
                       b->idstr, name);
            g_free(name);
            return false;
        }
        g_hash_table_add(names, name);
        b->fd = create_output(ex, name, b->length, errp);
        if (b->fd < 0) {
            return false;
        }
        g_strlcpy(rb->idstr, b->idstr, sizeof(rb->idstr));
        rb->used_length = rb->max_length = b->length;
        rb->page_size = PAGE;
        rb->fd = -1;
        if (!ram_map_guest(&ex->map, rb, errp)) {
            error_prepend(errp, "cannot lay out RAM block '%s' in guest memory: ", b->idstr);
            return false;
        }
    }
    for (int i = 0; i < ex->map.nregions; i++) {
        ex->phys_size = MAX(ex->phys_size, ex->map.regions[i].gpa + ex->map.regions[i].size);
    }
    ex->phys_fd = create_output(ex, PHYSMEM_NAME, ex->phys_size, errp);
    return ex->phys_fd >= 0;
}

/* Write the pending run to its block's file and to its guest-physical place. */
static bool extract_flush(Img *img, Error **errp)
{
    Extract *ex = img->ex;
    ImgBlock *b = ex->run_block;
    uint64_t start = ex->run_offset, end = start + ex->run_len;
    g_autofree char *phys = NULL;

    if (!ex->run_len) {
        return true;
    }
    ex->run_len = 0;
    if (!write_all(b->fd, ex->run, end - start, start, b->idstr, errp)) {
        return false;
    }
    phys = g_build_filename(ex->dir, PHYSMEM_NAME, NULL);
    for (int i = 0; i < ex->map.nregions; i++) {
        const MemRegion *r = &ex->map.regions[i];
        uint64_t lo = MAX(start, r->offset), hi = MIN(end, r->offset + r->size);

        if (strcmp(r->block->idstr, b->idstr) || lo >= hi) {
            continue;
        }
        if (!write_all(ex->phys_fd, ex->run + (lo - start), hi - lo, r->gpa + (lo - r->offset),
                       phys, errp)) {
            return false;
        }
    }
    return true;
}

/* Read one page's data from the stream into the pending run. */
static bool extract_page(Img *img, QEMUFile *f, ImgBlock *b, uint64_t offset, Error **errp)
{
    Extract *ex = img->ex;

    if (ex->run_len && (ex->run_block != b || ex->run_offset + ex->run_len != offset ||
                        ex->run_len == EXTRACT_RUN_BYTES)) {
        if (!extract_flush(img, errp)) {
            return false;
        }
    }
    if (!ex->run_len) {
        ex->run_block = b;
        ex->run_offset = offset;
    }
    qemu_get_buffer(f, ex->run + ex->run_len, PAGE, "RAM page data");
    ex->run_len += PAGE;
    return qemu_file_check(f, errp);
}

static void extract_close(Extract *ex, bool ok)
{
    if (ex->phys_fd >= 0) {
        close(ex->phys_fd);
    }
    for (guint i = 0; i < ex->created->len; i++) {
        if (!ok) {
            unlink(ex->created->pdata[i]);
        }
    }
}

/* ---- the ram section ------------------------------------------------------------ */

static ImgBlock *find_block(Img *img, const char *idstr)
{
    for (guint i = 0; i < img->blocks->len; i++) {
        ImgBlock *b = img->blocks->pdata[i];

        if (!strcmp(b->idstr, idstr)) {
            return b;
        }
    }
    return NULL;
}

/* u8 len, idstr (1..255 bytes, no NUL) into buf[256]. */
static bool read_idstr(QEMUFile *f, char *buf, const char *what, Error **errp)
{
    uint8_t len = qemu_get_byte(f, what);

    qemu_get_buffer(f, buf, len, what);
    buf[len] = '\0';
    if (!qemu_file_check(f, errp)) {
        return false;
    }
    if (len == 0 || strlen(buf) != len) {
        error_setg(errp, "invalid %s of %u bytes", what, len);
        return false;
    }
    return true;
}

/*
 * The block list opens the setup payload: be64 (total | MEM_SIZE), then
 * per block idstr and be64 length until the total is used up.  Read here
 * first because the RAM loader needs memory shaped like those blocks.
 */
static bool ram_read_blocks(Img *img, QEMUFile *f, Error **errp)
{
    uint64_t at = qemu_file_pos(f), list_start = at + 8;
    uint64_t word = qemu_get_be64(f, "RAM block list");
    uint64_t total = word & ~(uint64_t)(PAGE - 1), left = total;

    if (!qemu_file_check(f, errp)) {
        return false;
    }
    if ((word & (PAGE - 1)) != RAM_FLAG_MEM_SIZE) {
        error_setg(errp, "RAM record at offset %" PRIu64 ": the setup section must start "
                   "with the block list (MEM_SIZE), got flags 0x%x", at,
                   (unsigned)(word & (PAGE - 1)));
        return false;
    }
    if (total == 0 || total > IMG_MAX_RAM) {
        error_setg(errp, "RAM size %" PRIu64 " bytes is out of range (1 page to %llu GiB)",
                   total, IMG_MAX_RAM >> 30);
        return false;
    }
    while (left) {
        ImgBlock *b = g_new0(ImgBlock, 1);
        g_autofree char *safe = NULL;

        b->fd = -1;
        g_ptr_array_add(img->blocks, b);
        if (!read_idstr(f, b->idstr, "RAM block name", errp)) {
            return false;
        }
        b->length = qemu_get_be64(f, "RAM block length");
        if (!qemu_file_check(f, errp)) {
            return false;
        }
        safe = g_strescape(b->idstr, NULL);
        if (img->blocks->len > IMG_MAX_BLOCKS) {
            error_setg(errp, "more than %d RAM blocks", IMG_MAX_BLOCKS);
            return false;
        }
        if (find_block(img, b->idstr) != b) {
            error_setg(errp, "RAM block '%s' is listed twice", safe);
            return false;
        }
        if (b->length == 0 || b->length % PAGE || b->length > left) {
            error_setg(errp, "RAM block '%s': invalid length %" PRIu64 " (expected a "
                       "multiple of %d, at most the %" PRIu64 " bytes left of the RAM size)",
                       safe, b->length, PAGE, left);
            return false;
        }
        left -= b->length;
        b->seen = bitmap_new(b->length / PAGE);
    }
    img->ram_total = total;
    img->list_len = qemu_file_pos(f) - list_start;
    return true;
}

/*
 * Scratch memory for the RAM loader: reserved, not committed, and given
 * back after every section (img_drop_page_cache), so a large image does not
 * have to fit in memory.  Fresh anonymous memory reads as zero, which is
 * what the loader assumes of a VM that never ran.
 */
static bool ram_loader_setup(Img *img, Error **errp)
{
    for (guint i = 0; i < img->blocks->len; i++) {
        ImgBlock *b = img->blocks->pdata[i];
        void *p = mmap(NULL, b->length, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

        if (p == MAP_FAILED) {
            error_setg_errno(errp, errno, "cannot reserve %" PRIu64 " bytes of memory for "
                             "RAM block '%s'", b->length, b->idstr);
            return false;
        }
        b->rb.host = p;
        g_strlcpy(b->rb.idstr, b->idstr, sizeof(b->rb.idstr));
        b->rb.used_length = b->rb.max_length = b->length;
        b->rb.page_size = PAGE;
        b->rb.fd = -1;
        img->scratch.blocks[img->scratch.nblocks++] = &b->rb;
    }
    img->ram_loader = ram_loader_new_memcpy(&img->scratch);
    img->ram_registry = savevm_registry_new();
    if (!ram_loader_register(img->ram_loader, img->ram_registry, errp)) {
        return false;
    }
    img->ram_entry = savevm_find(img->ram_registry, RAM_SECTION_NAME, 0);
    return true;
}

static void img_drop_page_cache(Img *img)
{
    for (guint i = 0; i < img->blocks->len; i++) {
        ImgBlock *b = img->blocks->pdata[i];

        if (b->rb.host) {
            madvise(b->rb.host, b->length, MADV_DONTNEED);
        }
    }
}

static bool ram_read_page(Img *img, QEMUFile *f, uint64_t at, uint64_t offset,
                          unsigned flags, Error **errp)
{
    char idstr[256];
    ImgBlock *b = img->last_block;
    uint64_t page;

    if (flags & RAM_FLAG_CONTINUE) {
        if (!b) {
            error_setg(errp, "RAM record at offset %" PRIu64 ": CONTINUE with no earlier "
                       "block", at);
            return false;
        }
    } else {
        if (!read_idstr(f, idstr, "RAM block name", errp)) {
            return false;
        }
        b = find_block(img, idstr);
        if (!b) {
            g_autofree char *safe = g_strescape(idstr, NULL);

            error_setg(errp, "RAM record at offset %" PRIu64 ": unknown RAM block '%s'",
                       at, safe);
            return false;
        }
        img->last_block = b;
    }
    if (offset > b->length - PAGE) {
        error_setg(errp, "RAM record at offset %" PRIu64 ": page offset 0x%" PRIx64
                   " lies outside block '%s' (0x%" PRIx64 " bytes)", at, offset, b->idstr,
                   b->length);
        return false;
    }
    /* -incoming would take the later copy; a saved VM has no reason to repeat one. */
    page = offset / PAGE;
    if (test_bit(page, b->seen)) {
        error_setg(errp, "RAM record at offset %" PRIu64 ": page 0x%" PRIx64 " of block '%s' "
                   "appears twice", at, offset, b->idstr);
        return false;
    }
    set_bit(page, b->seen);
    if (flags & RAM_FLAG_ZERO) {
        qemu_file_skip(f, 1, "zero page fill byte");
        b->zero_pages++;
        return qemu_file_check(f, errp);
    }
    b->normal_pages++;
    if (img->ex) {
        return extract_page(img, f, b, offset, errp);
    }
    qemu_file_skip(f, PAGE, "RAM page data");
    return qemu_file_check(f, errp);
}

/*
 * Walk a RAM payload the loader has accepted, for the accounting.  The
 * checks repeated here (flags, blocks, offsets) keep this walk safe on its
 * own.
 */
static bool ram_walk_records(Img *img, QEMUFile *f, bool setup, Error **errp)
{
    for (bool first = true;; first = false) {
        uint64_t at = img->ram_base + qemu_file_pos(f);
        uint64_t word = qemu_get_be64(f, "RAM record header");
        uint64_t addr = word & ~(uint64_t)(PAGE - 1);
        unsigned flags = word & (PAGE - 1);
        unsigned kind = flags & (RAM_FLAG_ZERO | RAM_FLAG_PAGE);

        if (!qemu_file_check(f, errp)) {
            return false;
        }
        if (flags & ~RAM_FLAGS_KNOWN) {
            error_setg(errp, "RAM record at offset %" PRIu64 ": unknown flags 0x%x", at,
                       flags & ~RAM_FLAGS_KNOWN);
            return false;
        }
        if (flags == RAM_FLAG_EOS && !addr) {
            return true;
        }
        if (flags == RAM_FLAG_MEM_SIZE && setup && first) {
            qemu_file_skip(f, img->list_len, "RAM block list");
            continue;
        }
        if ((kind != RAM_FLAG_ZERO && kind != RAM_FLAG_PAGE) ||
            (flags & ~(kind | RAM_FLAG_CONTINUE))) {
            error_setg(errp, "RAM record at offset %" PRIu64 ": flags 0x%x, expected a "
                       "ZERO (0x02) or PAGE (0x08) record", at, flags);
            return false;
        }
        if (!ram_read_page(img, f, at, addr, flags, errp)) {
            return false;
        }
    }
}

/* Walk [start, end) of the file, which the loader has just accepted. */
static bool ram_walk(Img *img, uint64_t start, uint64_t end, bool setup, Error **errp)
{
    QEMUFile *walk = qemu_file_new_mem_input(img->data + start, end - start, img->path);
    bool ok;

    img->ram_base = start;
    ok = ram_walk_records(img, walk, setup, errp) && (!img->ex || extract_flush(img, errp));
    qemu_fclose(walk);
    return ok;
}

/* Before the loader sees the setup payload at start (near the file's start). */
static bool ram_setup(Img *img, uint64_t start, Error **errp)
{
    QEMUFile *walk = qemu_file_new_mem_input(img->data, img->size, img->path);
    bool ok;

    /* Offsets in messages are the file's: read from 0 and step to start. */
    img->ram_base = 0;
    ok = qemu_file_skip(walk, start, "RAM setup") && ram_read_blocks(img, walk, errp) &&
         ram_loader_setup(img, errp) && (!img->ex || extract_open(img, errp));
    qemu_fclose(walk);
    return ok;
}

static bool ram_load(QEMUFile *f, void *opaque, int version_id, Error **errp)
{
    Img *img = opaque;
    bool setup = img->ram_sections++ == 0;
    ImgSection *s = section_begin(img, f, RAM_SECTION_NAME, 0, setup);
    uint64_t start = qemu_file_pos(f);

    if (setup && !ram_setup(img, start, errp)) {
        return false;
    }
    /* The checks -incoming makes, on the stream itself. */
    if (!img->ram_entry->ops->load_state(f, img->ram_entry->opaque, version_id, errp)) {
        return false;
    }
    img_drop_page_cache(img);
    section_end(s, f);
    if (!ram_walk(img, start, qemu_file_pos(f), setup, errp)) {
        return false;
    }
    if (s->type == QEMU_VM_SECTION_END) {
        img->ram_ended = true;
    }
    return true;
}

static const SaveStateHandlers ram_ops = {
    .save_setup = no_setup,
    .load_state = ram_load,
};

/* ---- loading the whole file --------------------------------------------------------- */

static bool img_after_eof(Img *img, SaveVMLoader *l, QEMUFile *f, Error **errp)
{
    g_autofree char *json = NULL;

    if (!savevm_loader_read_vmdesc(l, &json, errp)) {
        return false;
    }
    if (!json) {
        error_setg(errp, "no VMDESCRIPTION after the EOF marker at offset %" PRIu64,
                   img->eof_offset);
        return false;
    }
    if (qemu_file_pos(f) != img->size) {
        error_setg(errp, "%" PRIu64 " bytes of unexpected data after the VMDESCRIPTION",
                   img->size - qemu_file_pos(f));
        return false;
    }
    if (!img->ram_sections) {
        error_setg(errp, "the stream has no RAM section");
        return false;
    }
    if (!img->ram_ended) {
        error_setg(errp, "the RAM section never ends (no END section before EOF)");
        return false;
    }
    if (!ram_loader_complete(img->ram_loader, errp)) {
        return false;
    }
    for (guint i = 0; i < img->devs->len; i++) {
        ImgDevice *dev = img->devs->pdata[i];

        if (!dev->loaded) {
            error_setg(errp, "the VMDESCRIPTION describes section '%s' instance %u, which "
                       "the stream does not contain", dev->name, dev->instance_id);
            return false;
        }
    }
    return true;
}

static bool img_run_loader(Img *img, SaveStateRegistry *r, Error **errp)
{
    QEMUFile *f = qemu_file_new_mem_input(img->data, img->size, img->path);
    SaveVMLoader *l = savevm_loader_new(r, f, NULL);
    SaveVMLoadResult res = SAVEVM_LOAD_ERROR;
    bool ok = false;

    if (savevm_loader_read_header(l, errp)) {
        uint32_t len = be32_at(img->data + 9);

        memcpy(img->machine, img->data + 13, MIN(len, sizeof(img->machine) - 1));
        res = savevm_loader_run(l, errp);
    }
    if (res == SAVEVM_LOAD_STOPPED) {
        error_setg(errp, "a command in the stream stops it before its end");
    } else if (res == SAVEVM_LOAD_EOF) {
        img->eof_offset = qemu_file_pos(f) - 1;
        ok = img_after_eof(img, l, f, errp);
    }
    savevm_loader_free(l);
    qemu_fclose(f);
    return ok;
}

static bool img_load(Img *img, Error **errp)
{
    SaveStateRegistry *r = savevm_registry_new();
    Error *local = NULL;
    bool ok = false;

    img_find_vmdesc(img);
    if (!savevm_register(r, RAM_SECTION_NAME, 0, RAM_VERSION, &ram_ops, img, errp)) {
        goto out;
    }
    if (!img->vmdesc_problem &&
        (!img_parse_vmdesc(img, errp) || !register_devices(img, r, errp))) {
        goto out;
    }
    ok = img_run_loader(img, r, &local);
    /*
     * Without a description the loader stops at the first device section
     * ("unknown section"): the missing description is the real problem.
     * A problem before that point is reported as the loader found it.
     */
    if (!ok && img->vmdesc_problem && img->ram_ended) {
        error_free(local);
        local = NULL;
        error_setg(&local, "%s", img->vmdesc_problem);
    }
    error_propagate(errp, local);
out:
    savevm_registry_free(r);
    return ok;
}

static Img *img_new(void)
{
    Img *img = g_new0(Img, 1);

    img->sections = g_array_new(FALSE, TRUE, sizeof(ImgSection));
    img->blocks = g_ptr_array_new();
    img->devs = g_ptr_array_new_with_free_func(g_free);
    return img;
}

static void img_free(Img *img)
{
    if (img->ram_registry) {
        savevm_registry_free(img->ram_registry);
    }
    ram_loader_free(img->ram_loader);
    for (guint i = 0; i < img->blocks->len; i++) {
        ImgBlock *b = img->blocks->pdata[i];

        if (b->fd >= 0) {
            close(b->fd);
        }
        if (b->rb.host) {
            munmap(b->rb.host, b->length);
        }
        bitmap_free(b->seen);
        g_free(b);
    }
    g_ptr_array_free(img->blocks, TRUE);
    g_array_free(img->sections, TRUE);
    g_ptr_array_free(img->devs, TRUE);
    if (img->vmdesc) {
        g_object_unref(img->vmdesc);
    }
    g_free(img->vmdesc_problem);
    if (img->size) {
        munmap((void *)img->data, img->size);
    }
    g_free(img);
}

/* ---- info ----------------------------------------------------------------------- */

static uint64_t block_absent(const ImgBlock *b)
{
    return b->length / PAGE - b->zero_pages - b->normal_pages;
}

static void info_text(Img *img)
{
    printf("file: %s (%" PRIu64 " bytes)\n", img->path, img->size);
    printf("stream: QEVM version %d, machine type %s\n", QEMU_VM_FILE_VERSION, img->machine);
    printf("\nsections:\n  %-10s %-6s %4s  %-12s %8s %7s %12s\n", "offset", "type", "id",
           "name", "instance", "version", "size");
    for (guint i = 0; i < img->sections->len; i++) {
        ImgSection *s = &g_array_index(img->sections, ImgSection, i);
        g_autofree char *safe = g_strescape(s->idstr, NULL);
        bool is_long = s->type == QEMU_VM_SECTION_START || s->type == QEMU_VM_SECTION_FULL;

        printf("  %-10" PRIu64 " %-6s %4u  %-12s %8u %7u %12" PRIu64 "\n", s->offset,
               section_type_name(s->type), s->section_id, safe, s->instance_id,
               is_long ? s->version : RAM_VERSION, s->end - s->offset);
    }
    printf("  %-10" PRIu64 " EOF\n", img->eof_offset);
    printf("\nRAM: %" PRIu64 " bytes in %u block(s)\n  %-16s %14s %10s %10s %10s\n",
           img->ram_total, img->blocks->len, "block", "bytes", "zero", "normal", "absent");
    for (guint i = 0; i < img->blocks->len; i++) {
        ImgBlock *b = img->blocks->pdata[i];
        g_autofree char *safe = g_strescape(b->idstr, NULL);

        printf("  %-16s %14" PRIu64 " %10" PRIu64 " %10" PRIu64 " %10" PRIu64 "\n", safe,
               b->length, b->zero_pages, b->normal_pages, block_absent(b));
    }
    printf("\nVMDESCRIPTION: %u bytes at offset %" PRIu64 ", %u device(s)\n", img->vmdesc_len,
           img->vmdesc_offset, json_array_get_length(img->devices));
    for (guint i = 0; i < img->devs->len; i++) {
        ImgDevice *d = img->devs->pdata[i];
        g_autofree char *safe = g_strescape(d->name, NULL);

        printf("  %-12s instance %-3u version %-3d vmsd %s\n", safe, d->instance_id,
               d->version, json_object_get_string_member(d->desc, "vmsd_name"));
    }
}

static void json_int(JsonBuilder *b, const char *key, int64_t v)
{
    json_builder_set_member_name(b, key);
    json_builder_add_int_value(b, v);
}

static void json_str(JsonBuilder *b, const char *key, const char *v)
{
    json_builder_set_member_name(b, key);
    json_builder_add_string_value(b, v);
}

static void info_json_sections(Img *img, JsonBuilder *b)
{
    json_builder_set_member_name(b, "sections");
    json_builder_begin_array(b);
    for (guint i = 0; i < img->sections->len; i++) {
        ImgSection *s = &g_array_index(img->sections, ImgSection, i);

        json_builder_begin_object(b);
        json_int(b, "offset", s->offset);
        json_str(b, "type", section_type_name(s->type));
        json_int(b, "section_id", s->section_id);
        json_str(b, "name", s->idstr);
        json_int(b, "instance_id", s->instance_id);
        json_int(b, "version", s->type == QEMU_VM_SECTION_PART ||
                 s->type == QEMU_VM_SECTION_END ? RAM_VERSION : s->version);
        json_int(b, "size", s->end - s->offset);
        json_int(b, "payload_size", s->end - 5 - s->payload);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
}

static void info_json_ram(Img *img, JsonBuilder *b)
{
    json_builder_set_member_name(b, "ram");
    json_builder_begin_object(b);
    json_int(b, "total", img->ram_total);
    json_builder_set_member_name(b, "blocks");
    json_builder_begin_array(b);
    for (guint i = 0; i < img->blocks->len; i++) {
        ImgBlock *blk = img->blocks->pdata[i];

        json_builder_begin_object(b);
        json_str(b, "name", blk->idstr);
        json_int(b, "size", blk->length);
        json_builder_set_member_name(b, "pages");
        json_builder_begin_object(b);
        json_int(b, "zero", blk->zero_pages);
        json_int(b, "normal", blk->normal_pages);
        json_int(b, "absent", block_absent(blk));
        json_builder_end_object(b);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
}

static void info_json_vmdesc(Img *img, JsonBuilder *b)
{
    json_builder_set_member_name(b, "vmdesc");
    json_builder_begin_object(b);
    json_int(b, "offset", img->vmdesc_offset);
    json_int(b, "size", img->vmdesc_len);
    json_builder_set_member_name(b, "devices");
    json_builder_begin_array(b);
    for (guint i = 0; i < img->devs->len; i++) {
        ImgDevice *d = img->devs->pdata[i];

        json_builder_begin_object(b);
        json_str(b, "name", d->name);
        json_int(b, "instance_id", d->instance_id);
        json_str(b, "vmsd_name", json_object_get_string_member(d->desc, "vmsd_name"));
        json_int(b, "version", d->version);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
}

static void info_json(Img *img)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    g_autofree char *text = NULL;

    json_builder_begin_object(b);
    json_str(b, "file", img->path);
    json_int(b, "file_size", img->size);
    json_int(b, "stream_version", QEMU_VM_FILE_VERSION);
    json_str(b, "machine_type", img->machine);
    info_json_sections(img, b);
    json_int(b, "eof_offset", img->eof_offset);
    info_json_ram(img, b);
    info_json_vmdesc(img, b);
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    json_generator_set_pretty(gen, TRUE);
    text = json_generator_to_data(gen, NULL);
    printf("%s\n", text);
}

/* ---- commands ---------------------------------------------------------------------- */

static bool make_dir(const char *dir, Error **errp)
{
    struct stat st;

    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        error_setg_errno(errp, errno, "cannot create directory '%s'", dir);
        return false;
    }
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        error_setg(errp, "'%s' is not a directory", dir);
        return false;
    }
    return true;
}

static bool cmd_extract(Img *img, const char *dir, Error **errp)
{
    Extract ex = { .dir = (char *)dir, .phys_fd = -1 };
    bool ok;

    if (!make_dir(dir, errp)) {
        return false;
    }
    ex.created = g_ptr_array_new_with_free_func(g_free);
    ex.run = g_malloc(EXTRACT_RUN_BYTES);
    img->ex = &ex;
    ok = img_load(img, errp);
    extract_close(&ex, ok);
    img->ex = NULL;
    if (ok) {
        for (guint i = 0; i < img->blocks->len; i++) {
            ImgBlock *b = img->blocks->pdata[i];
            g_autofree char *name = block_file_name(b->idstr);

            printf("%s/%s: block '%s', %" PRIu64 " bytes\n", dir, name, b->idstr, b->length);
        }
        printf("%s/%s: guest-physical memory, %" PRIu64 " bytes\n", dir, PHYSMEM_NAME,
               ex.phys_size);
    }
    g_ptr_array_free(ex.created, TRUE);
    g_free(ex.run);
    return ok;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: amber-img info [--json] FILE\n"
            "       amber-img verify FILE\n"
            "       amber-img extract-ram FILE DIR\n"
            "\n"
            "Inspect a saved VM (amber's QEVM v3 migration stream, as written by\n"
            "'migrate file:FILE').\n"
            "  info         header, sections, RAM blocks and pages by kind, devices\n"
            "  verify       check the whole stream: prints OK, or the first problem\n"
            "  extract-ram  write DIR/<block> per RAM block and DIR/" PHYSMEM_NAME "\n"
            "               (guest-physical layout), sparse where pages are zero\n");
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : NULL;
    g_autoptr(GPtrArray) args = g_ptr_array_new();
    bool json = false, ok = false;
    Error *err = NULL;
    Img *img;

    if (!cmd || !strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(cmd ? stdout : stderr);
        return cmd ? 0 : 1;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("amber-img %s\n", AMBER_VERSION);
        return 0;
    }
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && !strcmp(cmd, "info")) {
            json = true;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "amber-img: unknown option '%s' for '%s'\n", argv[i], cmd);
            return 1;
        } else {
            g_ptr_array_add(args, argv[i]);
        }
    }
    if (strcmp(cmd, "info") && strcmp(cmd, "verify") && strcmp(cmd, "extract-ram")) {
        fprintf(stderr, "amber-img: unknown command '%s' (info, verify, extract-ram)\n", cmd);
        return 1;
    }
    if (args->len != (strcmp(cmd, "extract-ram") ? 1u : 2u)) {
        usage(stderr);
        return 1;
    }
    img = img_new();
    if (img_map(img, args->pdata[0], &err)) {
        if (!strcmp(cmd, "extract-ram")) {
            ok = cmd_extract(img, args->pdata[1], &err);
        } else {
            ok = img_load(img, &err);
        }
    }
    if (ok && !strcmp(cmd, "info")) {
        json ? info_json(img) : info_text(img);
    } else if (ok && !strcmp(cmd, "verify")) {
        printf("OK\n");
    }
    if (!ok) {
        fprintf(stderr, "amber-img: %s: %s\n", (char *)args->pdata[0],
                error_get_pretty(err));
        error_free(err);
    }
    img_free(img);
    return ok ? 0 : 1;
}
