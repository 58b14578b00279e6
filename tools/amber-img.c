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
 * sizes, and one for "ram" (img-ram.c), which hands each RAM section to
 * the RAM loader of -incoming and walks the same bytes again for what the
 * loader does not keep.  A stream saved with mapped-ram (the capability in
 * its configuration) is read the same way: only where the RAM pages are
 * differs.
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

#include "img.h"
#include "migration/mapped-ram.h"
#include "migration/ram.h"
#include "util/cutils.h"

#define PAGE                SAVEVM_PAGE_SIZE
#define IMG_MAX_DESC_DEPTH  16

/* A device the VMDESCRIPTION describes, registered so the loader accepts it. */
typedef struct ImgDevice {
    Img *img;
    JsonObject *desc;
    const char *name;
    uint32_t instance_id;
    int version;
    bool loaded;
} ImgDevice;

/* ---- opening --------------------------------------------------------------- */

static bool img_map(Img *img, const char *path, Error **errp)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    img->path = path;
    img->fd = fd;
    if (fd < 0) {
        error_setg_errno(errp, errno, "cannot open '%s'", path);
        return false;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        error_setg(errp, "'%s' is not a regular file", path);
        return false;
    }
    img->data = (const uint8_t *)"";
    if (st.st_size) {
        void *p = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE | MAP_NORESERVE, fd, 0);

        if (p == MAP_FAILED) {
            error_setg_errno(errp, errno, "cannot map '%s'", path);
            return false;
        }
        madvise(p, st.st_size, MADV_SEQUENTIAL);
        img->data = p;
        img->size = st.st_size;
    }
    return true;
}

/*
 * Looks for the VMDESCRIPTION's start in [lo, hi]: true when found or
 * found truncated (img says which), false to search further down.
 */
static bool img_vmdesc_in(Img *img, int64_t lo, int64_t hi)
{
    /* memrchr: a range with no 0x06 is scanned at memory speed. */
    for (int64_t p = hi; p >= lo; p--) {
        const uint8_t *d = memrchr(img->data + lo, QEMU_VM_VMDESCRIPTION, p - lo + 1);
        uint64_t left;
        uint32_t len;

        if (!d) {
            return false;
        }
        p = d - img->data;
        left = img->size - p - 5;
        if (d[5] != '{') {
            continue;
        }
        len = be32_at(d + 1);
        /* Or followed by its checksum (x-checksum), which the loader checks. */
        if (len == left || (uint64_t)len + 4 == left) {
            img->vmdesc_offset = p;
            img->vmdesc_len = len;
            return true;
        }
        if (len > left && len <= SAVEVM_VMDESC_MAX) {
            img->vmdesc_problem = g_strdup_printf(
                "the VMDESCRIPTION at offset %" PRId64 " is truncated: %" PRIu64
                " of its %u bytes are in the file", p, left, len);
            return true;
        }
    }
    return false;
}

/*
 * The VMDESCRIPTION is the last thing in the file: u8 0x06, be32 len,
 * len bytes of JSON that start with '{'.  JSON text never holds a raw
 * 0x06, so the last 0x06 whose length reaches exactly to the end of the
 * file is it.  Without it the device sections cannot be stepped over.
 *
 * A hole holds no 0x06, and reading one through the mapping faults in a
 * page of zeros: a cut-off mapped-ram image (mostly holes) would fault in
 * up to 16 MiB to say it has no description.  So only the data extents
 * (SEEK_DATA/SEEK_HOLE; a file system without them reports one extent,
 * the whole file) are searched, last first.
 */
static void img_find_vmdesc(Img *img)
{
    int64_t lowest = MAX((int64_t)img->size - SAVEVM_VMDESC_MAX - 6, 0);
    int64_t top = (int64_t)img->size - 6;
    g_autoptr(GArray) ext = g_array_new(FALSE, FALSE, sizeof(int64_t));

    for (int64_t off = lowest; off <= top;) {
        int64_t data = lseek(img->fd, off, SEEK_DATA);
        int64_t hole = data < 0 ? -1 : lseek(img->fd, data, SEEK_HOLE);

        if (data < 0 || hole < 0) {
            /* ENXIO: no data past off.  Anything else: search it all. */
            if (data < 0 && errno == ENXIO) {
                break;
            }
            data = off;
            hole = img->size;
        }
        g_array_append_val(ext, data);
        g_array_append_val(ext, hole);
        off = hole;
    }
    for (int i = (int)ext->len - 2; i >= 0; i -= 2) {
        int64_t lo = g_array_index(ext, int64_t, i);
        int64_t hi = MIN(g_array_index(ext, int64_t, i + 1) - 1, top);

        if (lo <= hi && img_vmdesc_in(img, lo, hi)) {
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
ImgSection *img_section_begin(Img *img, QEMUFile *f, const char *idstr,
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

void img_section_end(ImgSection *s, QEMUFile *f)
{
    /* The footer the loader checks next, and with x-checksum its checksum. */
    s->end = qemu_file_pos(f) + 5 + (qemu_file_crc_on(f) ? 4 : 0);
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
    ImgSection *s = img_section_begin(dev->img, f, dev->name, dev->instance_id, true);

    if (version_id != dev->version) {
        error_setg(errp, "version %d, the VMDESCRIPTION says %d", version_id, dev->version);
        return false;
    }
    if (!skip_described(f, dev->desc, 0, errp)) {
        return false;
    }
    img_section_end(s, f);
    dev->loaded = true;
    return true;
}

/* The loader only takes entries that can also save; amber-img never does. */
static bool no_save(QEMUFile *f, void *opaque, Error **errp)
{
    error_setg(errp, "amber-img does not write streams");
    return false;
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
    if (!img_ram_check_end(img->ram, errp)) {
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
        img->mapped_ram = savevm_loader_has_capability(l, MAPPED_RAM_CAPABILITY);
        img->checksum = savevm_loader_has_capability(l, CHECKSUM_CAPABILITY);
        res = savevm_loader_run(l, errp);
    }
    if (res == SAVEVM_LOAD_STOPPED) {
        error_setg(errp, "a command in the stream stops it before its end");
    } else if (res == SAVEVM_LOAD_EOF) {
        img->eof_offset = qemu_file_pos(f) - 1 - (img->checksum ? 4 : 0);
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
    if (!img_ram_register(img->ram, r, errp)) {
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
    if (!ok && img->vmdesc_problem && img_ram_ended(img->ram)) {
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

    img->fd = -1;
    img->sections = g_array_new(FALSE, TRUE, sizeof(ImgSection));
    img->ram = img_ram_new(img);
    img->devs = g_ptr_array_new_with_free_func(g_free);
    return img;
}

static void img_free(Img *img)
{
    img_ram_free(img->ram);
    g_array_free(img->sections, TRUE);
    g_ptr_array_free(img->devs, TRUE);
    if (img->vmdesc) {
        g_object_unref(img->vmdesc);
    }
    g_free(img->vmdesc_problem);
    if (img->size) {
        munmap((void *)img->data, img->size);
    }
    if (img->fd >= 0) {
        close(img->fd);
    }
    g_free(img);
}

/* ---- info ----------------------------------------------------------------------- */

static void info_text(Img *img)
{
    printf("file: %s (%" PRIu64 " bytes)\n", img->path, img->size);
    printf("stream: QEVM version %d, machine type %s\n", QEMU_VM_FILE_VERSION, img->machine);
    if (img->mapped_ram || img->checksum) {
        printf("capabilities:%s%s\n", img->mapped_ram ? " " MAPPED_RAM_CAPABILITY : "",
               img->checksum ? " " CHECKSUM_CAPABILITY : "");
    }
    printf("\nsections:\n  %-10s %-6s %4s  %-12s %8s %7s %12s\n", "offset", "type", "id",
           "name", "instance", "version", "size");
    for (guint i = 0; i < img->sections->len; i++) {
        ImgSection *s = &g_array_index(img->sections, ImgSection, i);
        g_autofree char *safe = g_strescape(s->idstr, NULL);
        bool is_long = s->type == QEMU_VM_SECTION_START || s->type == QEMU_VM_SECTION_FULL;

        printf("  %-10" PRIu64 " %-6s %4u  %-12s %8u %7u %12" PRIu64 "\n", s->offset,
               section_type_name(s->type), s->section_id, safe, s->instance_id,
               is_long ? s->version : RAM_SECTION_VERSION, s->end - s->offset);
    }
    printf("  %-10" PRIu64 " EOF\n", img->eof_offset);
    img_ram_info_text(img->ram);
    printf("\nVMDESCRIPTION: %u bytes at offset %" PRIu64 ", %u device(s)\n", img->vmdesc_len,
           img->vmdesc_offset, json_array_get_length(img->devices));
    for (guint i = 0; i < img->devs->len; i++) {
        ImgDevice *d = img->devs->pdata[i];
        g_autofree char *safe = g_strescape(d->name, NULL);

        printf("  %-12s instance %-3u version %-3d vmsd %s\n", safe, d->instance_id,
               d->version, json_object_get_string_member(d->desc, "vmsd_name"));
    }
}

static void info_json_sections(Img *img, JsonBuilder *b)
{
    json_builder_set_member_name(b, "sections");
    json_builder_begin_array(b);
    for (guint i = 0; i < img->sections->len; i++) {
        ImgSection *s = &g_array_index(img->sections, ImgSection, i);

        json_builder_begin_object(b);
        img_json_int(b, "offset", s->offset);
        img_json_str(b, "type", section_type_name(s->type));
        img_json_int(b, "section_id", s->section_id);
        img_json_str(b, "name", s->idstr);
        img_json_int(b, "instance_id", s->instance_id);
        img_json_int(b, "version", s->type == QEMU_VM_SECTION_PART ||
                     s->type == QEMU_VM_SECTION_END ? RAM_SECTION_VERSION : s->version);
        img_json_int(b, "size", s->end - s->offset);
        img_json_int(b, "payload_size", s->end - 5 - s->payload);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
}

static void info_json_vmdesc(Img *img, JsonBuilder *b)
{
    json_builder_set_member_name(b, "vmdesc");
    json_builder_begin_object(b);
    img_json_int(b, "offset", img->vmdesc_offset);
    img_json_int(b, "size", img->vmdesc_len);
    json_builder_set_member_name(b, "devices");
    json_builder_begin_array(b);
    for (guint i = 0; i < img->devs->len; i++) {
        ImgDevice *d = img->devs->pdata[i];

        json_builder_begin_object(b);
        img_json_str(b, "name", d->name);
        img_json_int(b, "instance_id", d->instance_id);
        img_json_str(b, "vmsd_name", json_object_get_string_member(d->desc, "vmsd_name"));
        img_json_int(b, "version", d->version);
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
    img_json_str(b, "file", img->path);
    img_json_int(b, "file_size", img->size);
    img_json_int(b, "stream_version", QEMU_VM_FILE_VERSION);
    img_json_str(b, "machine_type", img->machine);
    /* Only when there is one: a plain stream's description stays as it was. */
    if (img->mapped_ram || img->checksum) {
        json_builder_set_member_name(b, "capabilities");
        json_builder_begin_array(b);
        if (img->mapped_ram) {
            json_builder_add_string_value(b, MAPPED_RAM_CAPABILITY);
        }
        if (img->checksum) {
            json_builder_add_string_value(b, CHECKSUM_CAPABILITY);
        }
        json_builder_end_array(b);
    }
    info_json_sections(img, b);
    img_json_int(b, "eof_offset", img->eof_offset);
    img_ram_info_json(img->ram, b);
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
    bool ok;

    if (!make_dir(dir, errp)) {
        return false;
    }
    img_ram_extract_to(img->ram, dir);
    ok = img_load(img, errp);
    img_ram_extract_done(img->ram, ok);
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
            "'migrate file:FILE', with or without mapped-ram).\n"
            "  info         header, sections, RAM blocks and pages by kind, devices\n"
            "  verify       check the whole stream: prints OK, or the first problem\n"
            "               (with x-checksum, every checksum and every page)\n"
            "  extract-ram  write DIR/<block> per RAM block and DIR/physmem.raw\n"
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
            img->verify = !strcmp(cmd, "verify");
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
