/*
 * The device questions a client (libvirt) asks once a guest is started:
 * chardevs, block devices, I/O threads, the balloon, display passwords.
 * amber's machine has COM1 and no disk, NIC, balloon or display, so most
 * answers are empty lists or QEMU's own refusal for a missing device;
 * none needs a guest, so all work under -machine none as well.
 */
#include "chardev/char.h"
#include "qapi-commands.h"
#include "system/cli.h"

ChardevInfoList *qmp_query_chardev(Amber *s, Error **errp)
{
    ChardevInfoList *head = NULL, **tail = &head;

    for (guint i = 0; s->chardevs && i < s->chardevs->len; i++) {
        ChardevLabel *c = s->chardevs->pdata[i];
        ChardevInfo *info = g_new0(ChardevInfo, 1);

        info->label = g_strdup(c->label);
        info->filename = chardev_label_filename(c);
        info->frontend_open = c->frontend_open;
        *tail = g_new0(ChardevInfoList, 1);
        (*tail)->value = info;
        tail = &(*tail)->next;
    }
    return head;
}

/* As QEMU lists them: the sets by descending id, each one's fds in -add-fd order. */
FdsetInfoList *qmp_query_fdsets(Amber *s, Error **errp)
{
    FdsetInfoList *head = NULL;

    for (guint i = 0; s->fds && i < s->fds->len; i++) {
        const CliFd *f = s->fds->pdata[i];
        FdsetFdInfo *info = g_new0(FdsetFdInfo, 1);
        FdsetInfoList **at = &head;
        FdsetFdInfoList **fds;

        while (*at && (*at)->value->fdset_id > f->set) {
            at = &(*at)->next;
        }
        if (!*at || (*at)->value->fdset_id != f->set) {
            FdsetInfoList *l = g_new0(FdsetInfoList, 1);

            l->value = g_new0(FdsetInfo, 1);
            l->value->fdset_id = f->set;
            l->next = *at;
            *at = l;
        }
        for (fds = &(*at)->value->fds; *fds; fds = &(*fds)->next) {
        }
        info->fd = f->fd;
        info->has_opaque = f->opaque != NULL;
        info->opaque = g_strdup(f->opaque);
        *fds = g_new0(FdsetFdInfoList, 1);
        (*fds)->value = info;
    }
    return head;
}

BlockInfoList *qmp_query_block(Amber *s, Error **errp)
{
    return NULL;                /* no disk */
}

BlockDeviceInfoList *qmp_query_named_block_nodes(Amber *s, bool has_flat, bool flat,
                                                 Error **errp)
{
    return NULL;                /* no block layer */
}

IOThreadInfoList *qmp_query_iothreads(Amber *s, Error **errp)
{
    return NULL;                /* nothing would run in one */
}

BalloonInfo *qmp_query_balloon(Amber *s, Error **errp)
{
    /* QEMU's class and words: libvirt reads DeviceNotActive as "no balloon". */
    error_set(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE, "No balloon device has been activated");
    return NULL;
}

/* QEMU's classes for a display that is not there: GenericError for VNC, DeviceNotActive for SPICE. */
static void no_display(DisplayProtocol protocol, const char *what, Error **errp)
{
    if (protocol == DISPLAY_PROTOCOL_SPICE) {
        error_set(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE,
                  "SPICE is not in use: amber has no display, so there is no password "
                  "to %s", what);
    } else {
        error_setg(errp, "amber has no VNC display: there is no password to %s", what);
    }
}

void qmp_set_password(Amber *s, DisplayProtocol protocol, const char *password,
                      bool has_connected, SetPasswordAction connected,
                      bool has_display, const char *display, Error **errp)
{
    no_display(protocol, "set", errp);
}

void qmp_expire_password(Amber *s, DisplayProtocol protocol, const char *time,
                         bool has_display, const char *display, Error **errp)
{
    no_display(protocol, "expire", errp);
}
