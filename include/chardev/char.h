/*
 * Character devices: the byte pipes that the serial port and the
 * monitors talk through.  Specs follow QEMU's words:
 *   stdio | null | pty | file:PATH | unix:PATH[,server=on][,wait=off]
 * and amber's own for the file backend: file-append:PATH (QEMU's
 * append=on), filefd:N and filefd-append:N (a descriptor open for writing,
 * from -add-fd; emptied, or appended to).
 * A unix server accepts one client at a time; a new client may connect
 * after the previous one left.  All I/O is driven by the GLib main loop
 * of the main thread (the default GMainContext).
 */
#ifndef AMBER_CHARDEV_CHAR_H
#define AMBER_CHARDEV_CHAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <glib.h>

#include "util/error.h"

typedef struct Chardev Chardev;

typedef struct ChardevHandlers {
    /* Bytes arrived from the peer. */
    void (*read)(void *opaque, const uint8_t *buf, size_t len);
    /* A client connected (unix server) or the chardev opened (stdio). */
    void (*opened)(void *opaque);
    /* The peer went away (EOF or error). */
    void (*closed)(void *opaque);
} ChardevHandlers;

Chardev *chardev_new(const char *spec, Error **errp);
void chardev_free(Chardev *chr);
/* Handlers run on the main thread; NULL members are allowed. */
void chardev_set_handlers(Chardev *chr, const ChardevHandlers *h, void *opaque);
/*
 * Write all of buf, or drop it when no peer is connected.  Thread-safe
 * (the serial port writes from vCPU threads).  Returns false on a write
 * error other than "no peer".
 */
bool chardev_write(Chardev *chr, const void *buf, size_t len);
/* Receive SCM_RIGHTS fds that arrived with the last read (unix only): -1 if none. */
int chardev_take_fd(Chardev *chr);
bool chardev_is_connected(Chardev *chr);
const char *chardev_spec(Chardev *chr);
/* pty: the slave a user opens (/dev/pts/N); NULL for other backends. */
const char *chardev_pty_path(Chardev *chr);
/*
 * What the chardev is connected to now, in QEMU's words: "pty:/dev/pts/N",
 * "unix:PATH,server=on" with a client, "disconnected:unix:PATH,server=on"
 * without one, else as chardev_spec_filename().  A new string.
 */
char *chardev_filename(Chardev *chr);

/*
 * Check a spec's syntax without opening anything (the command line does
 * this before it starts the VM).  *is_stdio (may be NULL) says whether it
 * names stdio, which only one user may have.
 */
bool chardev_check_spec(const char *spec, bool *is_stdio, Error **errp);
/*
 * Whether fd is a socket that listens (fd:N hands one over): checked when
 * the command line is read, so a wrong descriptor fails before anything starts.
 */
bool chardev_check_listening_fd(int fd, Error **errp);
/*
 * A chardev as query-chardev and the object tree describe it: its label
 * (-chardev id, or the name QEMU gives one made by -qmp, -monitor,
 * -serial), its spec and whether a monitor or COM1 uses it.
 */
typedef struct ChardevLabel {
    char *label;
    char *spec;
    bool frontend_open;
    Chardev *chr;               /* the open chardev; NULL until it is opened */
    bool owned;                 /* chr was opened for no user and is freed with the label */
} ChardevLabel;

ChardevLabel *chardev_label_new(const char *label, const char *spec, bool frontend_open);
void chardev_label_free(void *label);
/*
 * chr was opened for a monitor or COM1: the label named `label` now
 * describes it.  A pty says where it is, as QEMU does: "char device
 * redirected to /dev/pts/N (label LABEL)" on stdout.  Unbind before chr is
 * freed.  labels may be NULL.
 */
void chardev_labels_bind(GPtrArray *labels, Chardev *chr, const char *label);
void chardev_labels_unbind(GPtrArray *labels, Chardev *chr);
/*
 * Open each -chardev nothing uses, as QEMU does (a socket listens, a pty
 * has its path); they belong to their labels.  Not stdio, which only one
 * chardev may have and a user of it would then lose.
 */
bool chardev_labels_open_unused(GPtrArray *labels, Error **errp);
/* query-chardev's filename: chardev_filename() once bound, else from the spec. */
char *chardev_label_filename(const ChardevLabel *l);
/*
 * QEMU's words for what a valid spec connects to ("null", "stdio",
 * "file", "unix:PATH,server=on"), as a new string; and the QOM type of
 * such a chardev ("chardev-socket", ...).
 */
char *chardev_spec_filename(const char *spec);
const char *chardev_spec_type(const char *spec);

/* Output bytes dropped so far because the peer was too slow. */
uint64_t chardev_dropped_bytes(Chardev *chr);

#endif
