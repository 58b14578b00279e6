/*
 * State descriptions: what a device saves, declared once, next to the
 * device.  A description lists fields by offset in the device's struct;
 * from it come save, load and the VMDESCRIPTION JSON entry that QEMU's
 * scripts/analyze-migration.py reads.
 *
 *   static const VMStateField uart_fields[] = {
 *       VMSTATE_UINT8(lcr, Uart),
 *       VMSTATE_UINT8_BOUNDED(fifo_head, Uart, UART_FIFO - 1),
 *       VMSTATE_UINT32(fifo_len, Uart),
 *       VMSTATE_VARRAY_UINT8(fifo, Uart, fifo_len),
 *       VMSTATE_UINT64_V(rx_bytes, Uart, 2),       (in the stream from version 2)
 *       VMSTATE_END_OF_LIST()
 *   };
 *   static const VMStateDescription uart_vmsd = {
 *       .name = "serial", .version_id = 2, .minimum_version_id = 1,
 *       .fields = uart_fields,
 *       .subsections = (const VMStateDescription *const[]) { &uart_tx_vmsd, NULL },
 *   };
 *
 * Encoding (QEMU's): integers big-endian at their size, int as int32,
 * bool as one byte 0/1, buffers raw, nested structs inline, arrays element
 * by element (a variable array's length is its own, earlier, field).
 * After the fields, each needed subsection: u8 0x05, u8 name length, name,
 * be32 version, its fields and subsections.
 *
 * Loading treats the stream as hostile: every variable length is checked
 * against its maximum before any element is read, bounded fields against
 * their bound, bools must be 0 or 1, versions against the description.
 * A load that fails may leave the struct partly written; post_load is
 * only called after a complete load.
 */
#ifndef AMBER_MIGRATION_VMSTATE_H
#define AMBER_MIGRATION_VMSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-glib/json-glib.h>

#include "util/error.h"
#include "migration/qemu-file.h"

typedef struct VMStateDescription VMStateDescription;

typedef enum VMStateType {
    VMS_TYPE_U8,            /* "uint8" */
    VMS_TYPE_U16,           /* "uint16" */
    VMS_TYPE_U32,           /* "uint32" */
    VMS_TYPE_U64,           /* "uint64" */
    VMS_TYPE_I32,           /* "int32": int / int32_t */
    VMS_TYPE_I64,           /* "int64" */
    VMS_TYPE_BOOL,          /* "bool" */
    VMS_TYPE_BUFFER,        /* "buffer": `size` opaque bytes */
    VMS_TYPE_STRUCT,        /* "struct": described by `vmsd` */
} VMStateType;

typedef struct VMStateField {
    const char *name;                   /* NULL ends the list */
    VMStateType type;
    size_t offset;                      /* of the field (first element) */
    size_t size;                        /* bytes of one element in memory */
    uint32_t num;                       /* fixed element count; 0 = one, not an array */
    /* Variable arrays: the count is the value of another field, saved earlier. */
    bool has_num_field;
    size_t num_offset;
    uint8_t num_size;                   /* 1, 2, 4 or 8 */
    bool num_signed;
    uint32_t max;                       /* variable arrays: most elements accepted */
    /* Bounded integers: a loaded value must lie in [0, value_max]. */
    bool has_value_max;
    uint64_t value_max;
    const VMStateDescription *vmsd;     /* VMS_TYPE_STRUCT */
    int version_id;                     /* in the stream from this version on */
} VMStateField;

struct VMStateDescription {
    const char *name;                   /* vmsd_name; subsections: "parent/what" */
    int version_id;                     /* what save writes */
    int minimum_version_id;             /* oldest load accepts */
    const VMStateField *fields;         /* ended by VMSTATE_END_OF_LIST() */
    const VMStateDescription *const *subsections;      /* NULL-terminated */
    /* Subsections: written only when needed() says so (NULL: always). */
    bool (*needed)(void *opaque);
    bool (*pre_save)(void *opaque, Error **errp);
    /* Before loading: the place to set defaults for absent subsections. */
    bool (*pre_load)(void *opaque, Error **errp);
    /* After a complete load: check invariants that span fields. */
    bool (*post_load)(void *opaque, int version_id, Error **errp);
};

/*
 * Write opaque's state at vmsd->version_id.  With vmdesc (positioned
 * inside a JSON object) also add "vmsd_name", "version", "fields" and,
 * when any was written, "subsections", describing exactly what was
 * written.  The outcome includes the stream's sticky error.
 */
bool vmstate_save(QEMUFile *f, const VMStateDescription *vmsd, void *opaque,
                  JsonBuilder *vmdesc, Error **errp);
/* Read state written at version_id (checked against the description). */
bool vmstate_load(QEMUFile *f, const VMStateDescription *vmsd, void *opaque,
                  int version_id, Error **errp);
/* "uint32", "struct", ... as in VMDESCRIPTION. */
const char *vmstate_type_name(VMStateType type);

/* ---- declaring fields ------------------------------------------------------ */

/* Compile-time checks that the declared type matches the struct member. */
#define VMS_BUILD_CHECK(cond) (0 * sizeof(struct { int vms_check_ : (cond) ? 1 : -1; }))
#define VMS_MEMBER(S, f) (((S *)0)->f)
#define VMS_IS(S, f, T) __builtin_types_compatible_p(typeof(VMS_MEMBER(S, f)), T)
#define VMS_ELEM_IS(S, f, T) __builtin_types_compatible_p(typeof(VMS_MEMBER(S, f)[0]), T)
#define VMS_IS_SIGNED(S, f) (VMS_IS(S, f, int8_t) || VMS_IS(S, f, int16_t) || \
                             VMS_IS(S, f, int32_t) || VMS_IS(S, f, int64_t) || \
                             VMS_IS(S, f, long))
#define VMS_NELEMS(S, f) (sizeof(VMS_MEMBER(S, f)) / sizeof(VMS_MEMBER(S, f)[0]))

#define VMSTATE_SINGLE_V(f, S, T, kind, v) {                                \
    .name = #f, .type = (kind), .size = sizeof(T), .version_id = (v),       \
    .offset = offsetof(S, f) + VMS_BUILD_CHECK(VMS_IS(S, f, T)),            \
}
#define VMSTATE_BOUNDED_V(f, S, T, kind, maxv, v) {                         \
    .name = #f, .type = (kind), .size = sizeof(T), .version_id = (v),       \
    .offset = offsetof(S, f) + VMS_BUILD_CHECK(VMS_IS(S, f, T)),            \
    .has_value_max = true, .value_max = (maxv),                             \
}
#define VMSTATE_ARRAY_V(f, S, n, T, kind, v) {                              \
    .name = #f, .type = (kind), .size = sizeof(T), .version_id = (v),       \
    .num = (n),                                                             \
    .offset = offsetof(S, f) + VMS_BUILD_CHECK(VMS_ELEM_IS(S, f, T) &&      \
                                               (n) <= VMS_NELEMS(S, f)),    \
}
/* Count in field nf; at most as many as the array holds. */
#define VMSTATE_VARRAY_V(f, S, nf, T, kind, v) {                            \
    .name = #f, .type = (kind), .size = sizeof(T), .version_id = (v),       \
    .offset = offsetof(S, f) + VMS_BUILD_CHECK(VMS_ELEM_IS(S, f, T)),       \
    .has_num_field = true, .num_offset = offsetof(S, nf),                   \
    .num_size = sizeof(VMS_MEMBER(S, nf)),                                  \
    .num_signed = VMS_IS_SIGNED(S, nf),                                     \
    .max = VMS_NELEMS(S, f),                                                \
}

#define VMSTATE_UINT8_V(f, S, v)  VMSTATE_SINGLE_V(f, S, uint8_t, VMS_TYPE_U8, v)
#define VMSTATE_UINT16_V(f, S, v) VMSTATE_SINGLE_V(f, S, uint16_t, VMS_TYPE_U16, v)
#define VMSTATE_UINT32_V(f, S, v) VMSTATE_SINGLE_V(f, S, uint32_t, VMS_TYPE_U32, v)
#define VMSTATE_UINT64_V(f, S, v) VMSTATE_SINGLE_V(f, S, uint64_t, VMS_TYPE_U64, v)
#define VMSTATE_INT32_V(f, S, v)  VMSTATE_SINGLE_V(f, S, int32_t, VMS_TYPE_I32, v)
#define VMSTATE_INT64_V(f, S, v)  VMSTATE_SINGLE_V(f, S, int64_t, VMS_TYPE_I64, v)
#define VMSTATE_BOOL_V(f, S, v)   VMSTATE_SINGLE_V(f, S, bool, VMS_TYPE_BOOL, v)

#define VMSTATE_UINT8(f, S)  VMSTATE_UINT8_V(f, S, 0)
#define VMSTATE_UINT16(f, S) VMSTATE_UINT16_V(f, S, 0)
#define VMSTATE_UINT32(f, S) VMSTATE_UINT32_V(f, S, 0)
#define VMSTATE_UINT64(f, S) VMSTATE_UINT64_V(f, S, 0)
#define VMSTATE_INT32(f, S)  VMSTATE_INT32_V(f, S, 0)
#define VMSTATE_INT(f, S)    VMSTATE_INT32_V(f, S, 0)
#define VMSTATE_INT64(f, S)  VMSTATE_INT64_V(f, S, 0)
#define VMSTATE_BOOL(f, S)   VMSTATE_BOOL_V(f, S, 0)

/* An index or count: loading rejects values above maxv. */
#define VMSTATE_UINT8_BOUNDED(f, S, maxv)  \
    VMSTATE_BOUNDED_V(f, S, uint8_t, VMS_TYPE_U8, maxv, 0)
#define VMSTATE_UINT16_BOUNDED(f, S, maxv) \
    VMSTATE_BOUNDED_V(f, S, uint16_t, VMS_TYPE_U16, maxv, 0)
#define VMSTATE_UINT32_BOUNDED(f, S, maxv) \
    VMSTATE_BOUNDED_V(f, S, uint32_t, VMS_TYPE_U32, maxv, 0)
#define VMSTATE_INT32_BOUNDED(f, S, maxv)  \
    VMSTATE_BOUNDED_V(f, S, int32_t, VMS_TYPE_I32, maxv, 0)

#define VMSTATE_UINT8_ARRAY(f, S, n)  VMSTATE_ARRAY_V(f, S, n, uint8_t, VMS_TYPE_U8, 0)
#define VMSTATE_UINT16_ARRAY(f, S, n) VMSTATE_ARRAY_V(f, S, n, uint16_t, VMS_TYPE_U16, 0)
#define VMSTATE_UINT32_ARRAY(f, S, n) VMSTATE_ARRAY_V(f, S, n, uint32_t, VMS_TYPE_U32, 0)
#define VMSTATE_UINT64_ARRAY(f, S, n) VMSTATE_ARRAY_V(f, S, n, uint64_t, VMS_TYPE_U64, 0)
#define VMSTATE_INT32_ARRAY(f, S, n)  VMSTATE_ARRAY_V(f, S, n, int32_t, VMS_TYPE_I32, 0)
#define VMSTATE_BOOL_ARRAY(f, S, n)   VMSTATE_ARRAY_V(f, S, n, bool, VMS_TYPE_BOOL, 0)

#define VMSTATE_VARRAY_UINT8(f, S, nf)  VMSTATE_VARRAY_V(f, S, nf, uint8_t, VMS_TYPE_U8, 0)
#define VMSTATE_VARRAY_UINT16(f, S, nf) VMSTATE_VARRAY_V(f, S, nf, uint16_t, VMS_TYPE_U16, 0)
#define VMSTATE_VARRAY_UINT32(f, S, nf) VMSTATE_VARRAY_V(f, S, nf, uint32_t, VMS_TYPE_U32, 0)
#define VMSTATE_VARRAY_UINT64(f, S, nf) VMSTATE_VARRAY_V(f, S, nf, uint64_t, VMS_TYPE_U64, 0)

/* A fixed byte array (uint8_t[N] or char[N]) saved whole, as "buffer". */
#define VMSTATE_BUFFER_V(f, S, v) {                                         \
    .name = #f, .type = VMS_TYPE_BUFFER, .version_id = (v),                 \
    .size = sizeof(VMS_MEMBER(S, f)),                                       \
    .offset = offsetof(S, f) + VMS_BUILD_CHECK(sizeof(VMS_MEMBER(S, f)[0]) == 1), \
}
#define VMSTATE_BUFFER(f, S) VMSTATE_BUFFER_V(f, S, 0)

/* A nested struct of type T described by d. */
#define VMSTATE_STRUCT_V(f, S, d, T, v) {                                   \
    .name = #f, .type = VMS_TYPE_STRUCT, .size = sizeof(T), .vmsd = &(d),   \
    .version_id = (v), .offset = offsetof(S, f) + VMS_BUILD_CHECK(VMS_IS(S, f, T)), \
}
#define VMSTATE_STRUCT(f, S, d, T) VMSTATE_STRUCT_V(f, S, d, T, 0)
#define VMSTATE_STRUCT_ARRAY(f, S, n, d, T) {                               \
    .name = #f, .type = VMS_TYPE_STRUCT, .size = sizeof(T), .vmsd = &(d),   \
    .num = (n), .offset = offsetof(S, f) +                                  \
        VMS_BUILD_CHECK(VMS_ELEM_IS(S, f, T) && (n) <= VMS_NELEMS(S, f)),   \
}
#define VMSTATE_STRUCT_VARRAY(f, S, nf, d, T) {                             \
    .name = #f, .type = VMS_TYPE_STRUCT, .size = sizeof(T), .vmsd = &(d),   \
    .offset = offsetof(S, f) + VMS_BUILD_CHECK(VMS_ELEM_IS(S, f, T)),       \
    .has_num_field = true, .num_offset = offsetof(S, nf),                   \
    .num_size = sizeof(VMS_MEMBER(S, nf)),                                  \
    .num_signed = VMS_IS_SIGNED(S, nf),                                     \
    .max = VMS_NELEMS(S, f),                                                \
}

#define VMSTATE_END_OF_LIST() { .name = NULL }

#endif
