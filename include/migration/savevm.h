/*
 * Sections: the registry of what a VM saves, and the QEVM v3 framing.
 *
 * Stream (big-endian):
 *   be32 0x5145564d "QEVM", be32 3
 *   u8 0x07 CONFIGURATION, be32 len, machine type ("amber-pc-1.0"),
 *     then, when a capability changes the stream's layout (mapped-ram),
 *     u8 0x05 SUBSECTION, u8 len, "configuration/capabilities", be32 1,
 *     be32 count, per capability u8 len and its name
 *   sections, each followed by u8 0x7e FOOTER, be32 section_id:
 *     START/FULL: u8 type, be32 section_id, u8 idlen, idstr,
 *                 be32 instance_id, be32 version_id, payload
 *     PART/END:   u8 type, be32 section_id, payload
 *   COMMAND frames: u8 0x08, be16 cmd, be16 len, payload
 *   u8 0x00 EOF
 *   u8 0x06 VMDESCRIPTION, be32 len, JSON describing every FULL section
 * and, with CHECKSUM_CAPABILITY, the be32 checksums said below.
 *
 * A state entry is either a state description (vmstate, one FULL section)
 * or callbacks: iterative ones (RAM: START, PARTs, END) or a plain
 * save/load pair (one FULL section).  Everything lives in a
 * SaveStateRegistry that its owner (the machine) passes down.
 *
 * The loader checks everything it reads and names what is wrong:
 * "section 'serial' instance 0: unsupported version 7 (max 1)",
 * "footer for section 3 expected, got 0x04".
 */
#ifndef AMBER_MIGRATION_SAVEVM_H
#define AMBER_MIGRATION_SAVEVM_H

#include <stdbool.h>
#include <stdint.h>
#include <json-glib/json-glib.h>

#include "util/error.h"
#include "migration/qemu-file.h"
#include "migration/vmstate.h"

#define QEMU_VM_FILE_MAGIC      0x5145564d
#define QEMU_VM_FILE_VERSION    3

#define QEMU_VM_EOF             0x00
#define QEMU_VM_SECTION_START   0x01
#define QEMU_VM_SECTION_PART    0x02
#define QEMU_VM_SECTION_END     0x03
#define QEMU_VM_SECTION_FULL    0x04
#define QEMU_VM_SUBSECTION      0x05
#define QEMU_VM_VMDESCRIPTION   0x06
#define QEMU_VM_CONFIGURATION   0x07
#define QEMU_VM_COMMAND         0x08
#define QEMU_VM_SECTION_FOOTER  0x7e

/*
 * amber's capability that adds checksums to the stream (docs/devel/
 * checksum.md): listed in CONFIGURATION, it makes the writer put a be32
 * CRC-32C (qemu_put_crc()) after the configuration, after every section's
 * footer, every COMMAND frame, the EOF byte and the VMDESCRIPTION, and
 * the `ram` section one after every page record; each covers the bytes
 * since the one before, so together they cover every byte of the stream.
 */
#define CHECKSUM_CAPABILITY     "x-checksum"
/* mapped-ram's name there (include/migration/mapped-ram.h). */
#define MAPPED_RAM_CAPABILITY   "mapped-ram"

/* The machine type in CONFIGURATION; a loader refuses any other. */
#define AMBER_MACHINE_TYPE      "amber-pc-1.0"
#define SAVEVM_PAGE_SIZE        4096
/* Largest VMDESCRIPTION a loader accepts. */
#define SAVEVM_VMDESC_MAX       (16u << 20)

/* COMMAND frames (postcopy sub-protocol). */
typedef enum MigCommand {
    MIG_CMD_OPEN_RETURN_PATH = 1,
    MIG_CMD_PING = 2,
    MIG_CMD_POSTCOPY_ADVISE = 3,
    MIG_CMD_POSTCOPY_LISTEN = 4,
    MIG_CMD_POSTCOPY_RUN = 5,
    MIG_CMD_POSTCOPY_RAM_DISCARD = 6,
    MIG_CMD_PACKAGED = 7,
    MIG_CMD_POSTCOPY_RESUME = 9,
    MIG_CMD_RECV_BITMAP = 10,
    MIG_CMD_SWITCHOVER_START = 11,
} MigCommand;
const char *mig_command_name(uint16_t cmd);     /* "PING", ...; "unknown" */

/* Return path messages (destination to source): be16 type, be16 len, payload. */
typedef enum MigRpMessage {
    MIG_RP_MSG_SHUT = 1,
    MIG_RP_MSG_PONG = 2,
    MIG_RP_MSG_REQ_PAGES_ID = 3,
    MIG_RP_MSG_REQ_PAGES = 4,
    MIG_RP_MSG_RECV_BITMAP = 5,
    MIG_RP_MSG_RESUME_ACK = 6,
} MigRpMessage;

/* ---- registry ------------------------------------------------------------ */

typedef struct SaveStateHandlers {
    /*
     * Iterative entries (RAM): save_setup goes in a START section,
     * save_iterate in PARTs (returns 1 when all is sent, 0 when more
     * remains, -1 on error), save_complete in the END section.
     */
    bool (*save_setup)(QEMUFile *f, void *opaque, Error **errp);
    int (*save_iterate)(QEMUFile *f, void *opaque, Error **errp);
    bool (*save_complete)(QEMUFile *f, void *opaque, Error **errp);
    /* Other entries: the payload of one FULL section. */
    bool (*save_state)(QEMUFile *f, void *opaque, Error **errp);
    /* The payload of any section of this entry. */
    bool (*load_state)(QEMUFile *f, void *opaque, int version_id, Error **errp);
} SaveStateHandlers;

typedef struct SaveStateEntry {
    char idstr[256];
    uint32_t instance_id;
    uint32_t section_id;
    int version_id;                     /* written; the newest a load accepts */
    const VMStateDescription *vmsd;     /* or: */
    const SaveStateHandlers *ops;
    void *opaque;
} SaveStateEntry;

typedef struct SaveStateRegistry SaveStateRegistry;

#define SAVEVM_INSTANCE_ANY (-1)        /* the next free instance of idstr */

SaveStateRegistry *savevm_registry_new(void);
void savevm_registry_free(SaveStateRegistry *r);
SaveStateEntry *savevm_register_vmsd(SaveStateRegistry *r, const char *idstr,
                                     int instance_id, const VMStateDescription *vmsd,
                                     void *opaque, Error **errp);
SaveStateEntry *savevm_register(SaveStateRegistry *r, const char *idstr, int instance_id,
                                int version_id, const SaveStateHandlers *ops,
                                void *opaque, Error **errp);
void savevm_unregister(SaveStateRegistry *r, SaveStateEntry *se);
SaveStateEntry *savevm_find(SaveStateRegistry *r, const char *idstr, uint32_t instance_id);
/* Entries in registration order (the order sections are written). */
unsigned savevm_registry_count(SaveStateRegistry *r);
SaveStateEntry *savevm_registry_nth(SaveStateRegistry *r, unsigned i);
bool savevm_entry_is_iterative(const SaveStateEntry *se);

/* ---- writing: framing ------------------------------------------------------ */

void savevm_put_header(QEMUFile *f);
/* caps: NULL-terminated names of the capabilities a reader must know, or NULL. */
void savevm_put_configuration(QEMUFile *f, const char *machine_type,
                              const char *const *caps);
/* START/FULL write the long header, PART/END the short one. */
void savevm_put_section_header(QEMUFile *f, const SaveStateEntry *se, uint8_t type);
void savevm_put_section_footer(QEMUFile *f, const SaveStateEntry *se);
void savevm_put_eof(QEMUFile *f);
void savevm_put_command(QEMUFile *f, uint16_t cmd, uint16_t len, const void *data);

/* The VMDESCRIPTION being built while device sections are written. */
typedef struct SaveVMDesc SaveVMDesc;
SaveVMDesc *savevm_vmdesc_new(uint32_t page_size);
void savevm_vmdesc_free(SaveVMDesc *d);
/* Close it and return its JSON text (owned by d). */
const char *savevm_vmdesc_json(SaveVMDesc *d, size_t *len);
/* u8 0x06, be32 len, the JSON. */
void savevm_put_vmdesc(QEMUFile *f, SaveVMDesc *d);

/* ---- writing: whole phases --------------------------------------------------- */

/* START section of every iterative entry (save_setup). */
bool savevm_save_setup(SaveStateRegistry *r, QEMUFile *f, Error **errp);
/* One PART section per iterative entry; 1 when all are done, 0 more, -1 error. */
int savevm_save_iterate(SaveStateRegistry *r, QEMUFile *f, Error **errp);
/* END section of every iterative entry (save_complete). */
bool savevm_save_complete(SaveStateRegistry *r, QEMUFile *f, Error **errp);
/* FULL section of every other entry, each described into desc (may be NULL). */
bool savevm_save_devices(SaveStateRegistry *r, QEMUFile *f, SaveVMDesc *desc, Error **errp);
/*
 * The end of every stream, after the iterative entries: the device sections,
 * EOF and their VMDESCRIPTION.  Flushes; the outcome includes the stream's
 * sticky error.
 */
bool savevm_save_tail(SaveStateRegistry *r, QEMUFile *f, Error **errp);
/*
 * The start of every stream: header, configuration and the START section
 * of every iterative entry.  A whole stream is this, savevm_save_iterate()
 * until it returns 1, savevm_save_complete() and savevm_save_tail(); the
 * migration thread does each step itself, for its cancel checks, rate
 * limit and the VM's stop between them.
 */
bool savevm_save_head(SaveStateRegistry *r, QEMUFile *f, const char *const *caps,
                      Error **errp);
/* The capabilities a stream so saved lists, for savevm_save_head(); NULL: none. */
const char *const *savevm_stream_caps(bool mapped_ram, bool checksum);

/* ---- reading --------------------------------------------------------------- */

/*
 * A COMMAND frame: data holds its len payload bytes (a handler may read
 * more from f, as PACKAGED does).  Returns 0 to go on, 1 to stop the
 * section loop (savevm_loader_run returns SAVEVM_LOAD_STOPPED), -1 on
 * error.  Without a handler only SWITCHOVER_START (empty) is accepted.
 */
typedef int (*SaveVMCommandFn)(void *opaque, QEMUFile *f, uint16_t cmd,
                               const uint8_t *data, uint16_t len, Error **errp);

typedef struct SaveVMLoadOptions {
    const char *machine_type;       /* NULL: AMBER_MACHINE_TYPE */
    SaveVMCommandFn command;
    void *command_opaque;
    /* savevm_load(): the header and configuration were good (may be NULL). */
    void (*header_read)(void *opaque);
    void *header_opaque;
    /* Refuse a stream without checksums (x-checksum set on a destination). */
    bool require_checksum;
} SaveVMLoadOptions;

typedef enum SaveVMLoadResult {
    SAVEVM_LOAD_ERROR = -1,
    SAVEVM_LOAD_EOF = 0,            /* the EOF marker was read */
    SAVEVM_LOAD_STOPPED = 1,        /* a command handler asked to stop */
} SaveVMLoadResult;

typedef struct SaveVMLoader SaveVMLoader;

SaveVMLoader *savevm_loader_new(SaveStateRegistry *r, QEMUFile *f,
                                const SaveVMLoadOptions *opts);
void savevm_loader_free(SaveVMLoader *l);
/*
 * Magic, version and the configuration section, with the capabilities it
 * lists (a capability amber does not know is refused).
 */
bool savevm_loader_read_header(SaveVMLoader *l, Error **errp);
/* After the header: the configuration listed capability `name`. */
bool savevm_loader_has_capability(SaveVMLoader *l, const char *name);
/* Sections and commands until EOF, a stop, or an error. */
SaveVMLoadResult savevm_loader_run(SaveVMLoader *l, Error **errp);
/*
 * Go on from another stream (a recovered postcopy's new connection): the
 * sections opened so far stay open.  The caller owns both files.
 */
void savevm_loader_set_file(SaveVMLoader *l, QEMUFile *f);
/*
 * After EOF: the VMDESCRIPTION JSON if the stream has one (*json NULL
 * otherwise; free with g_free).  False on a malformed one.
 */
bool savevm_loader_read_vmdesc(SaveVMLoader *l, char **json, Error **errp);

/*
 * Load a whole stream into the registered entries: header, sections to
 * EOF, VMDESCRIPTION.  vmdesc_json, when not NULL, receives the
 * VMDESCRIPTION (NULL when absent).
 */
bool savevm_load(SaveStateRegistry *r, QEMUFile *f, const SaveVMLoadOptions *opts,
                 char **vmdesc_json, Error **errp);

#endif
