/*
 * State descriptions: save, load and describe a struct from its
 * VMStateDescription.  See include/migration/vmstate.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <glib.h>

#include "migration/vmstate.h"

#define QEMU_VM_SUBSECTION 0x05

const char *vmstate_type_name(VMStateType type)
{
    static const char *const names[] = {
        [VMS_TYPE_U8] = "uint8", [VMS_TYPE_U16] = "uint16",
        [VMS_TYPE_U32] = "uint32", [VMS_TYPE_U64] = "uint64",
        [VMS_TYPE_I32] = "int32", [VMS_TYPE_I64] = "int64",
        [VMS_TYPE_BOOL] = "bool", [VMS_TYPE_BUFFER] = "buffer",
        [VMS_TYPE_STRUCT] = "struct",
    };
    return names[type];
}

/* A field is in the stream at `version` when it was added by then. */
static bool field_present(const VMStateField *fd, int version)
{
    return fd->version_id <= version;
}

static bool field_is_array(const VMStateField *fd)
{
    return fd->num > 0 || fd->has_num_field;
}

/*
 * The element count of an array field, checked against its maximum.  On
 * the load side the count field came from the stream, so this is where a
 * hostile length stops.
 */
static bool field_count(const VMStateField *fd, const void *opaque, uint32_t *count,
                        Error **errp)
{
    const uint8_t *p = (const uint8_t *)opaque + fd->num_offset;
    int64_t n;

    if (!fd->has_num_field) {
        *count = fd->num ? fd->num : 1;
        return true;
    }
    switch (fd->num_size) {
    case 1: n = fd->num_signed ? *(const int8_t *)p : *(const uint8_t *)p; break;
    case 2: n = fd->num_signed ? *(const int16_t *)p : *(const uint16_t *)p; break;
    case 4: n = fd->num_signed ? *(const int32_t *)p : *(const uint32_t *)p; break;
    default: n = fd->num_signed ? *(const int64_t *)p : (int64_t)MIN(*(const uint64_t *)p,
                                                                      (uint64_t)INT64_MAX);
    }
    if (n < 0 || n > fd->max) {
        error_setg(errp, "field '%s': length %" PRId64 " exceeds maximum %u",
                   fd->name, n, fd->max);
        return false;
    }
    *count = n;
    return true;
}

/* ---- save ---------------------------------------------------------------- */

static void put_scalar(QEMUFile *f, const VMStateField *fd, const void *p)
{
    switch (fd->type) {
    case VMS_TYPE_U8:   qemu_put_byte(f, *(const uint8_t *)p); break;
    case VMS_TYPE_U16:  qemu_put_be16(f, *(const uint16_t *)p); break;
    case VMS_TYPE_U32:  qemu_put_be32(f, *(const uint32_t *)p); break;
    case VMS_TYPE_U64:  qemu_put_be64(f, *(const uint64_t *)p); break;
    case VMS_TYPE_I32:  qemu_put_be32(f, (uint32_t)*(const int32_t *)p); break;
    case VMS_TYPE_I64:  qemu_put_be64(f, (uint64_t)*(const int64_t *)p); break;
    case VMS_TYPE_BOOL: qemu_put_byte(f, *(const bool *)p ? 1 : 0); break;
    case VMS_TYPE_BUFFER: qemu_put_buffer(f, p, fd->size); break;
    case VMS_TYPE_STRUCT: g_assert_not_reached();
    }
}

/* Bytes one element takes in the stream. */
static size_t wire_size(const VMStateField *fd)
{
    return fd->type == VMS_TYPE_BOOL ? 1 : fd->size;
}

static void desc_field_begin(JsonBuilder *b, const VMStateField *fd, const char *key,
                             int64_t value)
{
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "name");
    json_builder_add_string_value(b, fd->name);
    if (key) {
        json_builder_set_member_name(b, key);
        json_builder_add_int_value(b, value);
    }
    json_builder_set_member_name(b, "type");
    json_builder_add_string_value(b, vmstate_type_name(fd->type));
}

static void desc_field_end(JsonBuilder *b, uint64_t size)
{
    json_builder_set_member_name(b, "size");
    json_builder_add_int_value(b, size);
    json_builder_end_object(b);
}

/*
 * Nested structs: each element is described on its own ("index"), since
 * its subsections and variable arrays may differ from its neighbours'.
 */
static bool save_struct_field(QEMUFile *f, const VMStateField *fd, void *opaque,
                              uint32_t count, JsonBuilder *vmdesc, Error **errp)
{
    for (uint32_t i = 0; i < count; i++) {
        void *elem = (uint8_t *)opaque + fd->offset + (size_t)i * fd->size;
        uint64_t start = qemu_file_transferred(f);

        if (vmdesc) {
            desc_field_begin(vmdesc, fd, count > 1 ? "index" : NULL, i);
            json_builder_set_member_name(vmdesc, "struct");
            json_builder_begin_object(vmdesc);
        }
        if (!vmstate_save(f, fd->vmsd, elem, vmdesc, errp)) {
            error_prepend(errp, "field '%s': ", fd->name);
            return false;
        }
        if (vmdesc) {
            json_builder_end_object(vmdesc);
            desc_field_end(vmdesc, qemu_file_transferred(f) - start);
        }
    }
    return true;
}

static bool save_field(QEMUFile *f, const VMStateField *fd, void *opaque,
                       JsonBuilder *vmdesc, Error **errp)
{
    const uint8_t *base = (const uint8_t *)opaque + fd->offset;
    uint32_t count;

    /* Never write what a loader would refuse, nor read past the array. */
    if (!field_count(fd, opaque, &count, errp)) {
        return false;
    }
    if (count == 0) {
        return true;        /* nothing in the stream, nothing described */
    }
    if (fd->type == VMS_TYPE_STRUCT) {
        return save_struct_field(f, fd, opaque, count, vmdesc, errp);
    }
    if (vmdesc) {
        desc_field_begin(vmdesc, fd, count > 1 ? "array_len" : NULL, count);
        desc_field_end(vmdesc, wire_size(fd));
    }
    for (uint32_t i = 0; i < count; i++) {
        put_scalar(f, fd, base + (size_t)i * fd->size);
    }
    return true;
}

static bool save_subsections(QEMUFile *f, const VMStateDescription *vmsd, void *opaque,
                             JsonBuilder *vmdesc, Error **errp)
{
    bool any = false;

    for (int i = 0; vmsd->subsections && vmsd->subsections[i]; i++) {
        const VMStateDescription *sub = vmsd->subsections[i];
        size_t len = strlen(sub->name);

        if (sub->needed && !sub->needed(opaque)) {
            continue;
        }
        if (len > 255) {
            error_setg(errp, "subsection name '%s' is longer than 255 bytes", sub->name);
            return false;
        }
        if (vmdesc && !any) {
            json_builder_set_member_name(vmdesc, "subsections");
            json_builder_begin_array(vmdesc);
        }
        any = true;
        qemu_put_byte(f, QEMU_VM_SUBSECTION);
        qemu_put_byte(f, len);
        qemu_put_buffer(f, sub->name, len);
        qemu_put_be32(f, sub->version_id);
        if (vmdesc) {
            json_builder_begin_object(vmdesc);
        }
        if (!vmstate_save(f, sub, opaque, vmdesc, errp)) {
            error_prepend(errp, "subsection '%s': ", sub->name);
            return false;
        }
        if (vmdesc) {
            json_builder_end_object(vmdesc);
        }
    }
    if (vmdesc && any) {
        json_builder_end_array(vmdesc);
    }
    return true;
}

bool vmstate_save(QEMUFile *f, const VMStateDescription *vmsd, void *opaque,
                  JsonBuilder *vmdesc, Error **errp)
{
    if (vmsd->pre_save && !vmsd->pre_save(opaque, errp)) {
        return false;
    }
    if (vmdesc) {
        json_builder_set_member_name(vmdesc, "vmsd_name");
        json_builder_add_string_value(vmdesc, vmsd->name);
        json_builder_set_member_name(vmdesc, "version");
        json_builder_add_int_value(vmdesc, vmsd->version_id);
        json_builder_set_member_name(vmdesc, "fields");
        json_builder_begin_array(vmdesc);
    }
    for (const VMStateField *fd = vmsd->fields; fd && fd->name; fd++) {
        if (field_present(fd, vmsd->version_id) &&
            !save_field(f, fd, opaque, vmdesc, errp)) {
            return false;
        }
    }
    if (vmdesc) {
        json_builder_end_array(vmdesc);
    }
    if (!save_subsections(f, vmsd, opaque, vmdesc, errp)) {
        return false;
    }
    return qemu_file_check(f, errp);
}

/* ---- load ---------------------------------------------------------------- */

static bool check_bound(const VMStateField *fd, int64_t v, Error **errp)
{
    if (fd->has_value_max && (v < 0 || (uint64_t)v > fd->value_max)) {
        error_setg(errp, "field '%s': value %" PRId64 " out of range (max %" PRIu64 ")",
                   fd->name, v, fd->value_max);
        return false;
    }
    return true;
}

static bool get_scalar(QEMUFile *f, const VMStateField *fd, void *p, const char *what,
                       Error **errp)
{
    int64_t v = 0;
    uint8_t b;

    switch (fd->type) {
    case VMS_TYPE_U8:  v = *(uint8_t *)p = qemu_get_byte(f, what); break;
    case VMS_TYPE_U16: v = *(uint16_t *)p = qemu_get_be16(f, what); break;
    case VMS_TYPE_U32: v = *(uint32_t *)p = qemu_get_be32(f, what); break;
    case VMS_TYPE_U64:
        *(uint64_t *)p = qemu_get_be64(f, what);
        v = (int64_t)MIN(*(uint64_t *)p, (uint64_t)INT64_MAX);
        break;
    case VMS_TYPE_I32: v = *(int32_t *)p = (int32_t)qemu_get_be32(f, what); break;
    case VMS_TYPE_I64: v = *(int64_t *)p = (int64_t)qemu_get_be64(f, what); break;
    case VMS_TYPE_BOOL:
        b = qemu_get_byte(f, what);
        if (b > 1) {
            error_setg(errp, "field '%s': invalid bool value %u", fd->name, b);
            return false;
        }
        *(bool *)p = b;
        break;
    case VMS_TYPE_BUFFER:
        qemu_get_buffer(f, p, fd->size, what);
        break;
    case VMS_TYPE_STRUCT:
        g_assert_not_reached();
    }
    return check_bound(fd, v, errp);
}

static bool load_field(QEMUFile *f, const VMStateDescription *vmsd,
                       const VMStateField *fd, void *opaque, Error **errp)
{
    uint8_t *base = (uint8_t *)opaque + fd->offset;
    char what[160];
    uint32_t count;

    if (!field_count(fd, opaque, &count, errp)) {
        return false;
    }
    snprintf(what, sizeof(what), "%s.%s", vmsd->name, fd->name);
    for (uint32_t i = 0; i < count; i++) {
        void *elem = base + (size_t)i * fd->size;

        if (fd->type != VMS_TYPE_STRUCT) {
            if (!get_scalar(f, fd, elem, what, errp)) {
                return false;
            }
        } else if (!vmstate_load(f, fd->vmsd, elem, fd->vmsd->version_id, errp)) {
            error_prepend(errp, "field '%s'%s: ", fd->name,
                          field_is_array(fd) ? " element" : "");
            return false;
        }
        if (qemu_file_get_error(f)) {
            break;          /* a truncated array stops at the first short read */
        }
    }
    return qemu_file_check(f, errp);
}

static bool check_version(const VMStateDescription *vmsd, int version_id, Error **errp)
{
    if (version_id > vmsd->version_id) {
        error_setg(errp, "unsupported version %d (max %d)", version_id, vmsd->version_id);
        return false;
    }
    if (version_id < vmsd->minimum_version_id) {
        error_setg(errp, "version %d is too old (min %d)", version_id,
                   vmsd->minimum_version_id);
        return false;
    }
    return true;
}

/*
 * Which subsection of vmsd the stream holds next: its index, -1 when the
 * next bytes are not a subsection of ours, -2 on error.  A 0x05 byte may
 * also be the start of whatever follows us (the enclosing struct's next
 * field), so only a name we know, or one carrying our "name/" prefix,
 * counts as ours.
 */
static int peek_subsection(QEMUFile *f, const VMStateDescription *vmsd, Error **errp)
{
    char name[256];
    int len;
    size_t prefix = strlen(vmsd->name);

    if (qemu_peek_byte(f, 0) != QEMU_VM_SUBSECTION) {
        return -1;
    }
    len = qemu_peek_byte(f, 1);
    if (len < 0 || qemu_peek_buffer(f, name, len, 2) != (size_t)len) {
        /* Nothing valid can follow a cut here: say where the stream ended. */
        qemu_file_set_error(f, -EIO, "unexpected end of stream at offset %" PRIu64
                            " reading a subsection header of %s", qemu_file_pos(f),
                            vmsd->name);
        qemu_file_check(f, errp);
        return -2;
    }
    name[len] = '\0';
    for (int i = 0; vmsd->subsections[i]; i++) {
        if (strlen(vmsd->subsections[i]->name) == (size_t)len &&
            !memcmp(vmsd->subsections[i]->name, name, len)) {
            return i;
        }
    }
    if ((size_t)len > prefix && !strncmp(name, vmsd->name, prefix) && name[prefix] == '/') {
        g_autofree char *safe = g_strescape(name, NULL);

        error_setg(errp, "unknown subsection '%s'", safe);
        return -2;
    }
    return -1;
}

static bool load_subsections(QEMUFile *f, const VMStateDescription *vmsd, void *opaque,
                             Error **errp)
{
    uint64_t seen = 0;
    int i;

    if (!vmsd->subsections) {
        return true;
    }
    while ((i = peek_subsection(f, vmsd, errp)) >= 0) {
        const VMStateDescription *sub = vmsd->subsections[i];
        int version;

        if (i < 64 && (seen & (1ULL << i))) {
            error_setg(errp, "subsection '%s' appears twice", sub->name);
            return false;
        }
        seen |= i < 64 ? 1ULL << i : 0;
        qemu_file_skip(f, 2 + strlen(sub->name), "subsection header");
        version = (int)qemu_get_be32(f, "subsection version");
        if (!qemu_file_check(f, errp)) {
            return false;
        }
        if (!check_version(sub, version, errp) ||
            !vmstate_load(f, sub, opaque, version, errp)) {
            error_prepend(errp, "subsection '%s': ", sub->name);
            return false;
        }
    }
    return i == -1;
}

bool vmstate_load(QEMUFile *f, const VMStateDescription *vmsd, void *opaque,
                  int version_id, Error **errp)
{
    if (!check_version(vmsd, version_id, errp)) {
        return false;
    }
    if (vmsd->pre_load && !vmsd->pre_load(opaque, errp)) {
        return false;
    }
    for (const VMStateField *fd = vmsd->fields; fd && fd->name; fd++) {
        if (field_present(fd, version_id) && !load_field(f, vmsd, fd, opaque, errp)) {
            return false;
        }
    }
    if (!load_subsections(f, vmsd, opaque, errp) || !qemu_file_check(f, errp)) {
        return false;
    }
    if (vmsd->post_load && !vmsd->post_load(opaque, version_id, errp)) {
        return false;
    }
    return true;
}
