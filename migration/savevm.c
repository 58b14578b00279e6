/*
 * Sections: the state-entry registry and the QEVM v3 framing, writer and
 * loader.  See include/migration/savevm.h.
 */
#include <inttypes.h>
#include <string.h>
#include <glib.h>

#include "migration/savevm.h"

#define CONFIG_NAME_MAX 256
/* The configuration's capabilities subsection (QEMU's). */
#define CONFIG_CAPS_NAME    "configuration/capabilities"
#define CONFIG_CAPS_VERSION 1
#define CONFIG_CAPS_MAX     64

struct SaveStateRegistry {
    GPtrArray *entries;             /* of SaveStateEntry *, registration order */
    uint32_t next_section_id;
};

const char *mig_command_name(uint16_t cmd)
{
    switch (cmd) {
    case MIG_CMD_OPEN_RETURN_PATH: return "OPEN_RETURN_PATH";
    case MIG_CMD_PING: return "PING";
    case MIG_CMD_POSTCOPY_ADVISE: return "POSTCOPY_ADVISE";
    case MIG_CMD_POSTCOPY_LISTEN: return "POSTCOPY_LISTEN";
    case MIG_CMD_POSTCOPY_RUN: return "POSTCOPY_RUN";
    case MIG_CMD_POSTCOPY_RAM_DISCARD: return "POSTCOPY_RAM_DISCARD";
    case MIG_CMD_PACKAGED: return "PACKAGED";
    case MIG_CMD_POSTCOPY_RESUME: return "POSTCOPY_RESUME";
    case MIG_CMD_RECV_BITMAP: return "RECV_BITMAP";
    case MIG_CMD_SWITCHOVER_START: return "SWITCHOVER_START";
    default: return "unknown";
    }
}

/* ---- registry ------------------------------------------------------------ */

SaveStateRegistry *savevm_registry_new(void)
{
    SaveStateRegistry *r = g_new0(SaveStateRegistry, 1);

    r->entries = g_ptr_array_new_with_free_func(g_free);
    return r;
}

void savevm_registry_free(SaveStateRegistry *r)
{
    if (r) {
        g_ptr_array_unref(r->entries);
        g_free(r);
    }
}

SaveStateEntry *savevm_find(SaveStateRegistry *r, const char *idstr, uint32_t instance_id)
{
    for (unsigned i = 0; i < r->entries->len; i++) {
        SaveStateEntry *se = r->entries->pdata[i];

        if (se->instance_id == instance_id && !strcmp(se->idstr, idstr)) {
            return se;
        }
    }
    return NULL;
}

static uint32_t next_instance(SaveStateRegistry *r, const char *idstr)
{
    uint32_t n = 0;

    for (unsigned i = 0; i < r->entries->len; i++) {
        SaveStateEntry *se = r->entries->pdata[i];

        if (!strcmp(se->idstr, idstr) && se->instance_id >= n) {
            n = se->instance_id + 1;
        }
    }
    return n;
}

static SaveStateEntry *entry_add(SaveStateRegistry *r, const char *idstr, int instance_id,
                                 int version_id, Error **errp)
{
    SaveStateEntry *se;
    uint32_t inst;

    if (!idstr || !*idstr || strlen(idstr) > 255) {
        error_setg(errp, "state entry name '%s' must be 1 to 255 bytes", idstr ? idstr : "");
        return NULL;
    }
    inst = instance_id == SAVEVM_INSTANCE_ANY ? next_instance(r, idstr) : (uint32_t)instance_id;
    if (savevm_find(r, idstr, inst)) {
        error_setg(errp, "state entry '%s' instance %u is already registered", idstr, inst);
        return NULL;
    }
    se = g_new0(SaveStateEntry, 1);
    g_strlcpy(se->idstr, idstr, sizeof(se->idstr));
    se->instance_id = inst;
    se->version_id = version_id;
    se->section_id = r->next_section_id++;
    g_ptr_array_add(r->entries, se);
    return se;
}

SaveStateEntry *savevm_register_vmsd(SaveStateRegistry *r, const char *idstr,
                                     int instance_id, const VMStateDescription *vmsd,
                                     void *opaque, Error **errp)
{
    SaveStateEntry *se = entry_add(r, idstr, instance_id, vmsd->version_id, errp);

    if (se) {
        se->vmsd = vmsd;
        se->opaque = opaque;
    }
    return se;
}

SaveStateEntry *savevm_register(SaveStateRegistry *r, const char *idstr, int instance_id,
                                int version_id, const SaveStateHandlers *ops,
                                void *opaque, Error **errp)
{
    SaveStateEntry *se;

    if (!ops->load_state || !(ops->save_state || ops->save_setup)) {
        error_setg(errp, "state entry '%s' needs load_state and a save callback", idstr);
        return NULL;
    }
    se = entry_add(r, idstr, instance_id, version_id, errp);
    if (se) {
        se->ops = ops;
        se->opaque = opaque;
    }
    return se;
}

void savevm_unregister(SaveStateRegistry *r, SaveStateEntry *se)
{
    g_ptr_array_remove(r->entries, se);
}

unsigned savevm_registry_count(SaveStateRegistry *r)
{
    return r->entries->len;
}

SaveStateEntry *savevm_registry_nth(SaveStateRegistry *r, unsigned i)
{
    return i < r->entries->len ? r->entries->pdata[i] : NULL;
}

bool savevm_entry_is_iterative(const SaveStateEntry *se)
{
    return se->ops && se->ops->save_setup;
}

/* ---- writing: framing ------------------------------------------------------ */

void savevm_put_header(QEMUFile *f)
{
    qemu_put_be32(f, QEMU_VM_FILE_MAGIC);
    qemu_put_be32(f, QEMU_VM_FILE_VERSION);
}

void savevm_put_configuration(QEMUFile *f, const char *machine_type,
                              const char *const *caps)
{
    size_t len = strlen(machine_type);
    uint32_t n = caps ? g_strv_length((char **)caps) : 0;

    qemu_put_byte(f, QEMU_VM_CONFIGURATION);
    qemu_put_be32(f, len);
    qemu_put_buffer(f, machine_type, len);
    if (!n) {
        return;
    }
    qemu_put_byte(f, QEMU_VM_SUBSECTION);
    qemu_put_byte(f, strlen(CONFIG_CAPS_NAME));
    qemu_put_buffer(f, CONFIG_CAPS_NAME, strlen(CONFIG_CAPS_NAME));
    qemu_put_be32(f, CONFIG_CAPS_VERSION);
    qemu_put_be32(f, n);
    for (uint32_t i = 0; i < n; i++) {
        qemu_put_byte(f, strlen(caps[i]));
        qemu_put_buffer(f, caps[i], strlen(caps[i]));
    }
    qemu_put_crc(f);
}

void savevm_put_section_header(QEMUFile *f, const SaveStateEntry *se, uint8_t type)
{
    size_t len = strlen(se->idstr);

    qemu_put_byte(f, type);
    qemu_put_be32(f, se->section_id);
    if (type == QEMU_VM_SECTION_START || type == QEMU_VM_SECTION_FULL) {
        qemu_put_byte(f, len);
        qemu_put_buffer(f, se->idstr, len);
        qemu_put_be32(f, se->instance_id);
        qemu_put_be32(f, se->version_id);
    }
}

void savevm_put_section_footer(QEMUFile *f, const SaveStateEntry *se)
{
    qemu_put_byte(f, QEMU_VM_SECTION_FOOTER);
    qemu_put_be32(f, se->section_id);
    qemu_put_crc(f);
}

void savevm_put_eof(QEMUFile *f)
{
    qemu_put_byte(f, QEMU_VM_EOF);
    qemu_put_crc(f);
}

void savevm_put_command(QEMUFile *f, uint16_t cmd, uint16_t len, const void *data)
{
    qemu_put_byte(f, QEMU_VM_COMMAND);
    qemu_put_be16(f, cmd);
    qemu_put_be16(f, len);
    if (len) {
        qemu_put_buffer(f, data, len);
    }
    qemu_put_crc(f);
}

/* ---- VMDESCRIPTION ----------------------------------------------------------- */

struct SaveVMDesc {
    JsonBuilder *b;
    char *json;
    size_t len;
};

SaveVMDesc *savevm_vmdesc_new(uint32_t page_size)
{
    SaveVMDesc *d = g_new0(SaveVMDesc, 1);

    d->b = json_builder_new();
    json_builder_begin_object(d->b);
    json_builder_set_member_name(d->b, "page_size");
    json_builder_add_int_value(d->b, page_size);
    json_builder_set_member_name(d->b, "devices");
    json_builder_begin_array(d->b);
    return d;
}

void savevm_vmdesc_free(SaveVMDesc *d)
{
    if (d) {
        g_object_unref(d->b);
        g_free(d->json);
        g_free(d);
    }
}

const char *savevm_vmdesc_json(SaveVMDesc *d, size_t *len)
{
    if (!d->json) {
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(JsonNode) root = NULL;
        gsize n;

        json_builder_end_array(d->b);
        json_builder_end_object(d->b);
        root = json_builder_get_root(d->b);
        json_generator_set_root(gen, root);
        d->json = json_generator_to_data(gen, &n);
        d->len = n;
    }
    if (len) {
        *len = d->len;
    }
    return d->json;
}

void savevm_put_vmdesc(QEMUFile *f, SaveVMDesc *d)
{
    size_t len;
    const char *json = savevm_vmdesc_json(d, &len);

    qemu_put_byte(f, QEMU_VM_VMDESCRIPTION);
    qemu_put_be32(f, len);
    qemu_put_buffer(f, json, len);
    qemu_put_crc(f);
}

static void desc_device_begin(JsonBuilder *b, const SaveStateEntry *se)
{
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "name");
    json_builder_add_string_value(b, se->idstr);
    json_builder_set_member_name(b, "instance_id");
    json_builder_add_int_value(b, se->instance_id);
}

/*
 * A callback section has no field list: it is described as one opaque
 * buffer of the size written, which is what a reader needs to step over it.
 */
static void desc_opaque_device(JsonBuilder *b, const SaveStateEntry *se, uint64_t size)
{
    desc_device_begin(b, se);
    json_builder_set_member_name(b, "vmsd_name");
    json_builder_add_string_value(b, se->idstr);
    json_builder_set_member_name(b, "version");
    json_builder_add_int_value(b, se->version_id);
    json_builder_set_member_name(b, "fields");
    json_builder_begin_array(b);
    if (size) {
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, "data");
        json_builder_set_member_name(b, "type");
        json_builder_add_string_value(b, "buffer");
        json_builder_set_member_name(b, "size");
        json_builder_add_int_value(b, size);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
}

/* ---- writing: phases ----------------------------------------------------------- */

static bool section_done(QEMUFile *f, const SaveStateEntry *se, bool ok, Error **errp)
{
    if (ok) {
        savevm_put_section_footer(f, se);
        ok = qemu_file_check(f, errp);
    }
    if (!ok) {
        error_prepend(errp, "saving section '%s' instance %u: ", se->idstr, se->instance_id);
    }
    return ok;
}

bool savevm_save_setup(SaveStateRegistry *r, QEMUFile *f, Error **errp)
{
    for (unsigned i = 0; i < r->entries->len; i++) {
        SaveStateEntry *se = r->entries->pdata[i];

        if (!savevm_entry_is_iterative(se)) {
            continue;
        }
        savevm_put_section_header(f, se, QEMU_VM_SECTION_START);
        if (!section_done(f, se, se->ops->save_setup(f, se->opaque, errp), errp)) {
            return false;
        }
    }
    return true;
}

int savevm_save_iterate(SaveStateRegistry *r, QEMUFile *f, Error **errp)
{
    int all_done = 1;

    for (unsigned i = 0; i < r->entries->len; i++) {
        SaveStateEntry *se = r->entries->pdata[i];
        int ret;

        if (!savevm_entry_is_iterative(se) || !se->ops->save_iterate) {
            continue;
        }
        savevm_put_section_header(f, se, QEMU_VM_SECTION_PART);
        ret = se->ops->save_iterate(f, se->opaque, errp);
        if (!section_done(f, se, ret >= 0, errp)) {
            return -1;
        }
        if (ret == 0) {
            all_done = 0;
        }
    }
    return all_done;
}

bool savevm_save_complete(SaveStateRegistry *r, QEMUFile *f, Error **errp)
{
    for (unsigned i = 0; i < r->entries->len; i++) {
        SaveStateEntry *se = r->entries->pdata[i];
        bool ok = true;

        if (!savevm_entry_is_iterative(se)) {
            continue;
        }
        savevm_put_section_header(f, se, QEMU_VM_SECTION_END);
        if (se->ops->save_complete) {
            ok = se->ops->save_complete(f, se->opaque, errp);
        }
        if (!section_done(f, se, ok, errp)) {
            return false;
        }
    }
    return true;
}

static bool save_device(QEMUFile *f, SaveStateEntry *se, SaveVMDesc *desc, Error **errp)
{
    JsonBuilder *b = desc ? desc->b : NULL;
    uint64_t start;
    bool ok;

    savevm_put_section_header(f, se, QEMU_VM_SECTION_FULL);
    start = qemu_file_transferred(f);
    if (se->vmsd) {
        if (b) {
            desc_device_begin(b, se);
        }
        ok = vmstate_save(f, se->vmsd, se->opaque, b, errp);
        if (ok && b) {
            json_builder_end_object(b);
        }
    } else {
        ok = se->ops->save_state(f, se->opaque, errp);
        if (ok && b) {
            desc_opaque_device(b, se, qemu_file_transferred(f) - start);
        }
    }
    return section_done(f, se, ok, errp);
}

bool savevm_save_devices(SaveStateRegistry *r, QEMUFile *f, SaveVMDesc *desc, Error **errp)
{
    for (unsigned i = 0; i < r->entries->len; i++) {
        SaveStateEntry *se = r->entries->pdata[i];

        if (!savevm_entry_is_iterative(se) && !save_device(f, se, desc, errp)) {
            return false;
        }
    }
    return true;
}

bool savevm_save_tail(SaveStateRegistry *r, QEMUFile *f, Error **errp)
{
    SaveVMDesc *desc = savevm_vmdesc_new(SAVEVM_PAGE_SIZE);
    bool ok = savevm_save_devices(r, f, desc, errp);

    if (ok) {
        savevm_put_eof(f);
        savevm_put_vmdesc(f, desc);
        qemu_fflush(f);
        ok = qemu_file_check(f, errp);
    }
    savevm_vmdesc_free(desc);
    return ok;
}

const char *const *savevm_stream_caps(bool mapped_ram, bool checksum)
{
    static const char *const mapped[] = { MAPPED_RAM_CAPABILITY, NULL };
    static const char *const summed[] = { CHECKSUM_CAPABILITY, NULL };
    static const char *const both[] = { MAPPED_RAM_CAPABILITY, CHECKSUM_CAPABILITY, NULL };

    if (mapped_ram) {
        return checksum ? both : mapped;
    }
    return checksum ? summed : NULL;
}

bool savevm_save_head(SaveStateRegistry *r, QEMUFile *f, const char *const *caps,
                      Error **errp)
{
    if (caps && g_strv_contains((const char *const *)caps, CHECKSUM_CAPABILITY)) {
        /* From the first byte: the magic is covered too. */
        qemu_file_crc_start(f);
    }
    savevm_put_header(f);
    savevm_put_configuration(f, AMBER_MACHINE_TYPE, caps);
    return savevm_save_setup(r, f, errp);
}

/* ---- loading ------------------------------------------------------------------- */

typedef struct LoadSection {
    SaveStateEntry *se;
    bool ended;
} LoadSection;

struct SaveVMLoader {
    SaveStateRegistry *r;
    QEMUFile *f;
    SaveVMLoadOptions opts;
    GHashTable *open;               /* section_id -> LoadSection, from START */
    GHashTable *seen;               /* SaveStateEntry * already loaded by START/FULL */
    bool mapped_ram;                /* the configuration lists mapped-ram */
    bool checksum;                  /* ... and x-checksum */
};

SaveVMLoader *savevm_loader_new(SaveStateRegistry *r, QEMUFile *f,
                                const SaveVMLoadOptions *opts)
{
    SaveVMLoader *l = g_new0(SaveVMLoader, 1);

    l->r = r;
    l->f = f;
    if (opts) {
        l->opts = *opts;
    }
    if (!l->opts.machine_type) {
        l->opts.machine_type = AMBER_MACHINE_TYPE;
    }
    l->open = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
    l->seen = g_hash_table_new(g_direct_hash, g_direct_equal);
    return l;
}

void savevm_loader_free(SaveVMLoader *l)
{
    if (l) {
        g_hash_table_unref(l->open);
        g_hash_table_unref(l->seen);
        g_free(l);
    }
}

/* The stream's sticky error, if any, as *errp. */
static bool stream_ok(SaveVMLoader *l, Error **errp)
{
    return qemu_file_check(l->f, errp);
}

/* Read len bytes of a name into a NUL-terminated buffer of 256. */
static bool read_name(SaveVMLoader *l, char *buf, size_t len, const char *what, Error **errp)
{
    qemu_get_buffer(l->f, buf, len, what);
    buf[len] = '\0';
    return stream_ok(l, errp);
}

/* A u8-length name of at most 255 bytes, escaped for messages on failure. */
static bool read_short_name(SaveVMLoader *l, char name[256], const char *what, Error **errp)
{
    uint8_t len = qemu_get_byte(l->f, what);

    return read_name(l, name, len, what, errp);
}

/*
 * The configuration's subsections: the capabilities the stream needs its
 * reader to know.  One that changes the layout and that amber does not
 * implement would make every later byte mean something else: refuse it.
 */
static bool read_config_caps(SaveVMLoader *l, Error **errp)
{
    char name[256];
    uint32_t version, n;

    if (qemu_peek_byte(l->f, 0) != QEMU_VM_SUBSECTION) {
        return true;
    }
    qemu_get_byte(l->f, "configuration subsection");
    if (!read_short_name(l, name, "configuration subsection name", errp)) {
        return false;
    }
    if (strcmp(name, CONFIG_CAPS_NAME)) {
        g_autofree char *safe = g_strescape(name, NULL);

        error_setg(errp, "configuration: unknown subsection '%s'", safe);
        return false;
    }
    version = qemu_get_be32(l->f, "configuration capabilities version");
    n = qemu_get_be32(l->f, "configuration capability count");
    if (!stream_ok(l, errp)) {
        return false;
    }
    if (version != CONFIG_CAPS_VERSION || n > CONFIG_CAPS_MAX) {
        error_setg(errp, "configuration: capabilities version %u with %u entries (version "
                   "%d, at most %d, expected)", version, n, CONFIG_CAPS_VERSION,
                   CONFIG_CAPS_MAX);
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (!read_short_name(l, name, "configuration capability", errp)) {
            return false;
        }
        if (!strcmp(name, MAPPED_RAM_CAPABILITY)) {
            l->mapped_ram = true;
        } else if (!strcmp(name, CHECKSUM_CAPABILITY)) {
            l->checksum = true;
        } else {
            g_autofree char *safe = g_strescape(name, NULL);

            error_setg(errp, "the stream was saved with capability '%s', which amber "
                       "cannot load", safe);
            return false;
        }
    }
    return true;
}

static bool read_header(SaveVMLoader *l, Error **errp)
{
    uint32_t magic, version;
    char name[CONFIG_NAME_MAX + 1];
    g_autofree char *safe = NULL;
    uint32_t len;
    uint8_t type;

    qemu_file_crc_start(l->f);
    magic = qemu_get_be32(l->f, "stream magic");
    version = qemu_get_be32(l->f, "stream version");

    if (!stream_ok(l, errp)) {
        return false;
    }
    if (magic != QEMU_VM_FILE_MAGIC) {
        error_setg(errp, "not a migration stream: bad magic 0x%08x (expected 0x%08x, "
                   "\"QEVM\")", magic, QEMU_VM_FILE_MAGIC);
        return false;
    }
    if (version != QEMU_VM_FILE_VERSION) {
        error_setg(errp, "unsupported stream version %u (expected %u)", version,
                   QEMU_VM_FILE_VERSION);
        return false;
    }
    type = qemu_get_byte(l->f, "configuration section");
    if (!stream_ok(l, errp)) {
        return false;
    }
    if (type != QEMU_VM_CONFIGURATION) {
        error_setg(errp, "expected the configuration section (0x%02x) after the header, "
                   "got 0x%02x", QEMU_VM_CONFIGURATION, type);
        return false;
    }
    len = qemu_get_be32(l->f, "configuration name length");
    if (!stream_ok(l, errp)) {
        return false;
    }
    if (len > CONFIG_NAME_MAX) {
        error_setg(errp, "configuration: machine type name of %u bytes (max %d)", len,
                   CONFIG_NAME_MAX);
        return false;
    }
    if (!read_name(l, name, len, "configuration machine type", errp)) {
        return false;
    }
    if (strlen(name) != len || strcmp(name, l->opts.machine_type)) {
        safe = g_strescape(name, NULL);
        error_setg(errp, "the stream is for machine type '%s', this machine is '%s'",
                   safe, l->opts.machine_type);
        return false;
    }
    return read_config_caps(l, errp);
}

/*
 * The header is summed before we know whether the stream has checksums:
 * the configuration that says so comes after it.
 */
bool savevm_loader_read_header(SaveVMLoader *l, Error **errp)
{
    if (!read_header(l, errp)) {
        return false;
    }
    if (!l->checksum && l->opts.require_checksum) {
        error_setg(errp, "x-checksum is set, and this stream carries no checksums (it was "
                   "saved without x-checksum)");
        return false;
    }
    if (!l->checksum) {
        qemu_file_crc_stop(l->f);
        return true;
    }
    return qemu_get_crc(l->f, "the configuration", errp);
}

bool savevm_loader_has_capability(SaveVMLoader *l, const char *name)
{
    return (!strcmp(name, MAPPED_RAM_CAPABILITY) && l->mapped_ram) ||
           (!strcmp(name, CHECKSUM_CAPABILITY) && l->checksum);
}

static bool check_footer(SaveVMLoader *l, uint32_t section_id, Error **errp)
{
    uint8_t b = qemu_get_byte(l->f, "section footer");
    uint32_t id;

    if (!stream_ok(l, errp)) {
        return false;
    }
    if (b != QEMU_VM_SECTION_FOOTER) {
        error_setg(errp, "footer for section %u expected, got 0x%02x", section_id, b);
        return false;
    }
    id = qemu_get_be32(l->f, "section footer id");
    if (!stream_ok(l, errp)) {
        return false;
    }
    if (id != section_id) {
        error_setg(errp, "footer for section %u carries section id %u", section_id, id);
        return false;
    }
    return !l->checksum || qemu_get_crc(l->f, "a section footer", errp);
}

static bool load_payload(SaveVMLoader *l, SaveStateEntry *se, int version, Error **errp)
{
    bool ok;

    if (se->vmsd) {
        ok = vmstate_load(l->f, se->vmsd, se->opaque, version, errp);
    } else if (version > se->version_id || version < 0) {
        error_setg(errp, "unsupported version %d (max %d)", version, se->version_id);
        ok = false;
    } else {
        ok = se->ops->load_state(l->f, se->opaque, version, errp) && stream_ok(l, errp);
    }
    if (!ok) {
        error_prepend(errp, "section '%s' instance %u: ", se->idstr, se->instance_id);
    }
    return ok;
}

/* Find and vet the entry a START/FULL header names. */
static SaveStateEntry *lookup_entry(SaveVMLoader *l, uint8_t type, uint32_t section_id,
                                    const char *name, uint32_t instance, Error **errp)
{
    SaveStateEntry *se = savevm_find(l->r, name, instance);
    g_autofree char *safe = g_strescape(name, NULL);
    bool iterative;

    if (!se) {
        error_setg(errp, "unknown section '%s' instance %u (section %u)", safe, instance,
                   section_id);
        return NULL;
    }
    iterative = savevm_entry_is_iterative(se);
    if ((type == QEMU_VM_SECTION_START) != iterative) {
        error_setg(errp, "section '%s' instance %u: %s refused, it is %siterative", safe,
                   instance, type == QEMU_VM_SECTION_START ? "START" : "FULL",
                   iterative ? "" : "not ");
        return NULL;
    }
    if (g_hash_table_contains(l->seen, se)) {
        error_setg(errp, "section '%s' instance %u appears twice", safe, instance);
        return NULL;
    }
    if (g_hash_table_contains(l->open, GUINT_TO_POINTER(section_id))) {
        error_setg(errp, "section id %u of '%s' instance %u is already in use", section_id,
                   safe, instance);
        return NULL;
    }
    return se;
}

static bool load_section_start_full(SaveVMLoader *l, uint8_t type, Error **errp)
{
    uint32_t section_id = qemu_get_be32(l->f, "section id");
    uint8_t len = qemu_get_byte(l->f, "section name length");
    char name[256];
    uint32_t instance, version;
    SaveStateEntry *se;

    if (!read_name(l, name, len, "section name", errp)) {
        return false;
    }
    instance = qemu_get_be32(l->f, "section instance id");
    version = qemu_get_be32(l->f, "section version");
    if (!stream_ok(l, errp)) {
        return false;
    }
    if (len == 0 || strlen(name) != len) {
        error_setg(errp, "section %u: invalid name of %u bytes", section_id, len);
        return false;
    }
    se = lookup_entry(l, type, section_id, name, instance, errp);
    if (!se || !load_payload(l, se, (int)MIN(version, (uint32_t)INT32_MAX), errp)) {
        return false;
    }
    g_hash_table_add(l->seen, se);
    if (type == QEMU_VM_SECTION_START) {
        LoadSection *ls = g_new0(LoadSection, 1);

        ls->se = se;
        g_hash_table_insert(l->open, GUINT_TO_POINTER(section_id), ls);
    }
    return check_footer(l, section_id, errp);
}

static bool load_section_part_end(SaveVMLoader *l, uint8_t type, Error **errp)
{
    uint32_t section_id = qemu_get_be32(l->f, "section id");
    const char *tname = type == QEMU_VM_SECTION_PART ? "PART" : "END";
    LoadSection *ls;

    if (!stream_ok(l, errp)) {
        return false;
    }
    ls = g_hash_table_lookup(l->open, GUINT_TO_POINTER(section_id));
    if (!ls) {
        error_setg(errp, "%s for section %u, which no START opened", tname, section_id);
        return false;
    }
    if (ls->ended) {
        error_setg(errp, "%s for section %u ('%s') after its END", tname, section_id,
                   ls->se->idstr);
        return false;
    }
    if (!load_payload(l, ls->se, ls->se->version_id, errp)) {
        return false;
    }
    ls->ended = type == QEMU_VM_SECTION_END;
    return check_footer(l, section_id, errp);
}

/* Returns 0 to go on, 1 to stop, -1 on error. */
static int load_command(SaveVMLoader *l, Error **errp)
{
    uint16_t cmd = qemu_get_be16(l->f, "command");
    uint16_t len = qemu_get_be16(l->f, "command length");
    g_autofree uint8_t *data = NULL;

    if (!stream_ok(l, errp)) {
        return -1;
    }
    data = g_malloc(len ? len : 1);
    qemu_get_buffer(l->f, data, len, "command payload");
    if (!stream_ok(l, errp) ||
        (l->checksum && !qemu_get_crc(l->f, "a command", errp))) {
        return -1;
    }
    if (l->checksum && cmd != MIG_CMD_SWITCHOVER_START) {
        /*
         * postcopy's commands bring bytes the stream's checksums do not
         * cover (a PACKAGED blob, pages over the return path's requests and a
         * second channel); a source with x-checksum never sends them.
         */
        error_setg(errp, "command %s (%u) in a stream with checksums (x-checksum), which "
                   "cannot switch to postcopy", mig_command_name(cmd), cmd);
        return -1;
    }
    if (l->opts.command) {
        int ret = l->opts.command(l->opts.command_opaque, l->f, cmd, data, len, errp);

        if (ret < 0) {
            error_prepend(errp, "command %s (%u): ", mig_command_name(cmd), cmd);
        }
        return ret;
    }
    if (cmd == MIG_CMD_SWITCHOVER_START && len == 0) {
        return 0;
    }
    error_setg(errp, "command %s (%u) with %u bytes is not supported here",
               mig_command_name(cmd), cmd, len);
    return -1;
}

void savevm_loader_set_file(SaveVMLoader *l, QEMUFile *f)
{
    l->f = f;
}

SaveVMLoadResult savevm_loader_run(SaveVMLoader *l, Error **errp)
{
    for (;;) {
        uint64_t at = qemu_file_pos(l->f);
        uint8_t type = qemu_get_byte(l->f, "section type");
        int ret;

        if (!stream_ok(l, errp)) {
            return SAVEVM_LOAD_ERROR;
        }
        switch (type) {
        case QEMU_VM_EOF:
            if (l->checksum && !qemu_get_crc(l->f, "the end-of-stream marker", errp)) {
                return SAVEVM_LOAD_ERROR;
            }
            return SAVEVM_LOAD_EOF;
        case QEMU_VM_SECTION_START:
        case QEMU_VM_SECTION_FULL:
            if (!load_section_start_full(l, type, errp)) {
                return SAVEVM_LOAD_ERROR;
            }
            break;
        case QEMU_VM_SECTION_PART:
        case QEMU_VM_SECTION_END:
            if (!load_section_part_end(l, type, errp)) {
                return SAVEVM_LOAD_ERROR;
            }
            break;
        case QEMU_VM_COMMAND:
            ret = load_command(l, errp);
            if (ret != 0) {
                return ret > 0 ? SAVEVM_LOAD_STOPPED : SAVEVM_LOAD_ERROR;
            }
            break;
        default:
            error_setg(errp, "unexpected section type 0x%02x at offset %" PRIu64, type, at);
            return SAVEVM_LOAD_ERROR;
        }
    }
}

/* A damaged length shows up as JSON that does not parse or is no object. */
static bool vmdesc_valid(const char *json, size_t len, Error **errp)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) gerr = NULL;
    JsonNode *root;

    if (!json_parser_load_from_data(parser, json, len, &gerr)) {
        error_setg(errp, "VMDESCRIPTION is not valid JSON: %s", gerr->message);
        return false;
    }
    root = json_parser_get_root(parser);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root) ||
        !json_object_has_member(json_node_get_object(root), "devices")) {
        error_setg(errp, "VMDESCRIPTION is not an object with \"devices\"");
        return false;
    }
    return true;
}

bool savevm_loader_read_vmdesc(SaveVMLoader *l, char **json, Error **errp)
{
    uint32_t len;

    int next;

    *json = NULL;
    next = qemu_peek_byte(l->f, 0);
    if (next < 0) {
        if (!stream_ok(l, errp)) {
            return false;
        }
        if (l->checksum) {
            /* Written with every checksummed stream: its absence is a cut. */
            error_setg(errp, "the stream ends without its VMDESCRIPTION");
            return false;
        }
        return true;                    /* no description: fine */
    }
    /* Only a description may follow EOF; anything else means the EOF
     * marker itself was damaged or the stream is not what it claims. */
    if (next != QEMU_VM_VMDESCRIPTION) {
        error_setg(errp, "unexpected data after the end of the stream (0x%02x at offset %"
                   PRIu64 ")", next, qemu_file_pos(l->f));
        return false;
    }
    qemu_file_skip(l->f, 1, "VMDESCRIPTION type");
    len = qemu_get_be32(l->f, "VMDESCRIPTION length");
    if (!stream_ok(l, errp)) {
        return false;
    }
    if (len > SAVEVM_VMDESC_MAX) {
        error_setg(errp, "VMDESCRIPTION of %u bytes is too large (max %u)", len,
                   SAVEVM_VMDESC_MAX);
        return false;
    }
    *json = g_malloc(len + 1);
    qemu_get_buffer(l->f, *json, len, "VMDESCRIPTION");
    (*json)[len] = '\0';
    if (!stream_ok(l, errp) ||
        (l->checksum && !qemu_get_crc(l->f, "the VMDESCRIPTION", errp)) ||
        !vmdesc_valid(*json, len, errp)) {
        g_free(*json);
        *json = NULL;
        return false;
    }
    return true;
}

bool savevm_load(SaveStateRegistry *r, QEMUFile *f, const SaveVMLoadOptions *opts,
                 char **vmdesc_json, Error **errp)
{
    SaveVMLoader *l = savevm_loader_new(r, f, opts);
    char *json = NULL;
    bool ok = false;
    SaveVMLoadResult res;

    if (!savevm_loader_read_header(l, errp)) {
        goto out;
    }
    if (l->opts.header_read) {
        l->opts.header_read(l->opts.header_opaque);
    }
    res = savevm_loader_run(l, errp);
    if (res == SAVEVM_LOAD_STOPPED) {
        error_setg(errp, "the stream stopped before its end (a command handler asked)");
        goto out;
    }
    if (res != SAVEVM_LOAD_EOF || !savevm_loader_read_vmdesc(l, &json, errp)) {
        goto out;
    }
    ok = true;
    if (vmdesc_json) {
        *vmdesc_json = json;
        json = NULL;
    }
out:
    g_free(json);
    savevm_loader_free(l);
    return ok;
}
