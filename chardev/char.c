/*
 * Character devices: spec parsing, the shared output path, and the null,
 * stdio and file backends.  Unix sockets live in char-socket.c,
 * pseudo-terminals in char-pty.c.
 *
 * Output may come from any thread (the serial port writes from vCPU
 * threads), so it goes through one lock and never blocks: what the peer
 * cannot take at once is kept in a bounded buffer that the main loop
 * flushes when the fd becomes writable, and anything beyond that bound is
 * dropped.  Input and connection changes happen on the main loop only.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <glib-unix.h>

#include "char-internal.h"
#include "util/trace.h"

/* ---- spec parsing --------------------------------------------------------- */

static bool parse_onoff(const char *name, const char *val, bool *out, Error **errp)
{
    if (!strcmp(val, "on") || !strcmp(val, "yes") || !strcmp(val, "true")) {
        *out = true;
        return true;
    }
    if (!strcmp(val, "off") || !strcmp(val, "no") || !strcmp(val, "false")) {
        *out = false;
        return true;
    }
    error_setg(errp, "%s=%s: expected on or off", name, val);
    return false;
}

static bool parse_unix_option(ChardevConfig *cfg, const char *opt, bool *wait_set,
                              Error **errp)
{
    const char *eq = strchr(opt, '=');
    g_autofree char *key = eq ? g_strndup(opt, eq - opt) : g_strdup(opt);
    const char *val = eq ? eq + 1 : "on";

    if (!strcmp(key, "server")) {
        return parse_onoff(key, val, &cfg->server, errp);
    }
    if (!strcmp(key, "wait")) {
        *wait_set = true;
        return parse_onoff(key, val, &cfg->wait, errp);
    }
    if (!strcmp(key, "nowait") && !eq) {     /* QEMU's old spelling */
        *wait_set = true;
        cfg->wait = false;
        return true;
    }
    error_setg(errp, "unknown unix socket option '%s' (use server=on|off, wait=on|off)",
               key);
    return false;
}

static bool parse_unix(ChardevConfig *cfg, const char *rest, Error **errp)
{
    g_auto(GStrv) parts = g_strsplit(rest, ",", -1);
    bool wait_set = false;

    if (!parts[0] || !*parts[0]) {
        error_setg(errp, "unix: needs a socket path (unix:PATH[,server=on,wait=off])");
        return false;
    }
    if (strlen(parts[0]) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        error_setg(errp, "unix socket path '%s' is too long (at most %zu bytes)",
                   parts[0], sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        return false;
    }
    cfg->path = g_strdup(parts[0]);
    cfg->wait = true;               /* QEMU's default for a server */
    for (int i = 1; parts[i]; i++) {
        if (!parse_unix_option(cfg, parts[i], &wait_set, errp)) {
            return false;
        }
    }
    if (wait_set && !cfg->server) {
        error_setg(errp, "wait= only applies to a listening socket (server=on)");
        return false;
    }
    return true;
}

/*
 * fd:N[,server=on][,wait=off]: a unix socket the parent (libvirt) created,
 * bound and listened on, then passed as descriptor N.  Its checks (that N
 * is a listening socket) happen when it is opened.
 */
static bool parse_fd(ChardevConfig *cfg, const char *rest, Error **errp)
{
    g_auto(GStrv) parts = g_strsplit(rest, ",", -1);
    bool wait_set = false;
    guint64 fd;

    if (!parts[0] || !g_ascii_string_to_unsigned(parts[0], 10, 0, G_MAXINT, &fd, NULL)) {
        error_setg(errp, "fd: needs a descriptor number (fd:N,server=on,wait=off)");
        return false;
    }
    cfg->fd = (int)fd;
    cfg->wait = true;
    for (int i = 1; parts[i]; i++) {
        if (!parse_unix_option(cfg, parts[i], &wait_set, errp)) {
            return false;
        }
    }
    if (!cfg->server) {
        error_setg(errp, "fd:%d: only a listening socket can be passed (server=on)", cfg->fd);
        return false;
    }
    return true;
}

static bool no_argument(const char *backend, const char *colon, Error **errp)
{
    if (colon) {
        error_setg(errp, "chardev backend '%s' takes no argument", backend);
        return false;
    }
    return true;
}

bool chardev_parse_config(const char *spec, ChardevConfig *cfg, Error **errp)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->fd = -1;
    if (!spec || !*spec) {
        error_setg(errp, "empty chardev spec (use stdio, null, pty, file:PATH or unix:PATH)");
        return false;
    }
    const char *colon = strchr(spec, ':');
    g_autofree char *backend = colon ? g_strndup(spec, colon - spec) : g_strdup(spec);

    if (!strcmp(backend, "null") || !strcmp(backend, "none")) {
        cfg->kind = CHARDEV_NULL;
        return no_argument(backend, colon, errp);
    }
    if (!strcmp(backend, "stdio")) {
        cfg->kind = CHARDEV_STDIO;
        return no_argument(backend, colon, errp);
    }
    if (!strcmp(backend, "pty")) {
        cfg->kind = CHARDEV_PTY;
        return no_argument(backend, colon, errp);
    }
    if (!strcmp(backend, "file") || !strcmp(backend, "file-append")) {
        cfg->kind = CHARDEV_FILE;
        cfg->append = backend[4] != 0;
        if (!colon || !colon[1]) {
            error_setg(errp, "%s: needs a path (%s:PATH)", backend, backend);
            return false;
        }
        cfg->path = g_strdup(colon + 1);
        return true;
    }
    if (!strcmp(backend, "filefd") || !strcmp(backend, "filefd-append")) {
        guint64 fd;

        /* A descriptor open for writing that the command line was handed (-add-fd). */
        cfg->kind = CHARDEV_FILE;
        cfg->append = backend[6] != 0;
        if (!colon || !g_ascii_string_to_unsigned(colon + 1, 10, 0, G_MAXINT, &fd, NULL)) {
            error_setg(errp, "%s: needs a descriptor number (%s:N)", backend, backend);
            return false;
        }
        cfg->fd = (int)fd;
        return true;
    }
    if (!strcmp(backend, "unix")) {
        cfg->kind = CHARDEV_UNIX;
        if (!parse_unix(cfg, colon ? colon + 1 : "", errp)) {
            chardev_config_clear(cfg);
            return false;
        }
        return true;
    }
    if (!strcmp(backend, "fd")) {
        cfg->kind = CHARDEV_UNIX;
        return parse_fd(cfg, colon ? colon + 1 : "", errp);
    }
    error_setg(errp, "unknown chardev backend '%s' (use stdio, null, pty, file:PATH or "
               "unix:PATH[,server=on,wait=off])", backend);
    return false;
}

void chardev_config_clear(ChardevConfig *cfg)
{
    g_free(cfg->path);
    cfg->path = NULL;
}

bool chardev_check_spec(const char *spec, bool *is_stdio, Error **errp)
{
    ChardevConfig cfg;

    if (!chardev_parse_config(spec, &cfg, errp)) {
        return false;
    }
    if (is_stdio) {
        *is_stdio = cfg.kind == CHARDEV_STDIO;
    }
    chardev_config_clear(&cfg);
    return true;
}

ChardevLabel *chardev_label_new(const char *label, const char *spec, bool frontend_open)
{
    ChardevLabel *l = g_new0(ChardevLabel, 1);

    l->label = g_strdup(label);
    l->spec = g_strdup(spec);
    l->frontend_open = frontend_open;
    return l;
}

void chardev_label_free(void *label)
{
    ChardevLabel *l = label;

    if (l) {
        if (l->owned) {
            chardev_free(l->chr);
        }
        g_free(l->label);
        g_free(l->spec);
        g_free(l);
    }
}

/* A passed listening socket, as QEMU names it once it listens: by the path it is bound to. */
static char *passed_socket_filename(int fd)
{
    struct sockaddr_un sa;
    socklen_t len = sizeof(sa);

    memset(&sa, 0, sizeof(sa));
    if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0 || sa.sun_family != AF_UNIX ||
        !sa.sun_path[0]) {
        return g_strdup_printf("fd:%d,server=on", fd);      /* unnamed or gone */
    }
    return g_strdup_printf("unix:%.*s,server=on", (int)sizeof(sa.sun_path), sa.sun_path);
}

char *chardev_spec_filename(const char *spec)
{
    ChardevConfig cfg;
    char *name;

    if (!chardev_parse_config(spec, &cfg, NULL)) {
        return g_strdup(spec ? spec : "");
    }
    switch (cfg.kind) {
    case CHARDEV_NULL:
        name = g_strdup("null");
        break;
    case CHARDEV_STDIO:
        name = g_strdup("stdio");
        break;
    case CHARDEV_FILE:
        name = g_strdup("file");        /* QEMU does not show the path */
        break;
    case CHARDEV_PTY:
        name = g_strdup("pty");         /* the path exists once it is open */
        break;
    default:
        if (cfg.fd >= 0) {
            name = passed_socket_filename(cfg.fd);
        } else {
            name = g_strdup_printf("unix:%s%s", cfg.path, cfg.server ? ",server=on" : "");
        }
        break;
    }
    chardev_config_clear(&cfg);
    return name;
}

/* ---- what a chardev is connected to ---------------------------------------------- */

static bool is_socket_spec(const char *spec)
{
    ChardevConfig cfg;
    bool socket;

    if (!chardev_parse_config(spec, &cfg, NULL)) {
        return false;
    }
    socket = cfg.kind == CHARDEV_UNIX;
    chardev_config_clear(&cfg);
    return socket;
}

char *chardev_filename(Chardev *chr)
{
    g_autofree char *name = NULL;

    if (chr->cfg.kind == CHARDEV_PTY) {
        return g_strdup_printf("pty:%s", chr->pty_path);
    }
    name = chardev_spec_filename(chr->spec);
    if (chr->cfg.kind != CHARDEV_UNIX) {
        return g_steal_pointer(&name);
    }
    if (!chardev_is_connected(chr)) {
        return g_strdup_printf("disconnected:%s", name);
    }
    return g_steal_pointer(&name);
}

static void label_bind(ChardevLabel *l, Chardev *chr)
{
    l->chr = chr;
    if (chr->cfg.kind == CHARDEV_PTY) {
        printf("char device redirected to %s (label %s)\n", chr->pty_path, l->label);
        fflush(stdout);
    }
}

void chardev_labels_bind(GPtrArray *labels, Chardev *chr, const char *label)
{
    for (guint i = 0; labels && i < labels->len; i++) {
        ChardevLabel *l = labels->pdata[i];

        if (!g_strcmp0(l->label, label)) {
            label_bind(l, chr);
            return;
        }
    }
}

bool chardev_labels_open_unused(GPtrArray *labels, Error **errp)
{
    for (guint i = 0; labels && i < labels->len; i++) {
        ChardevLabel *l = labels->pdata[i];
        bool is_stdio;
        Chardev *chr;

        if (l->frontend_open || l->chr || !chardev_check_spec(l->spec, &is_stdio, NULL) ||
            is_stdio) {
            continue;
        }
        chr = chardev_new(l->spec, errp);
        if (!chr) {
            error_prepend(errp, "-chardev id=%s: ", l->label);
            return false;
        }
        l->owned = true;
        label_bind(l, chr);
    }
    return true;
}

void chardev_labels_unbind(GPtrArray *labels, Chardev *chr)
{
    for (guint i = 0; labels && i < labels->len; i++) {
        ChardevLabel *l = labels->pdata[i];

        if (l->chr == chr) {
            l->chr = NULL;
        }
    }
}

char *chardev_label_filename(const ChardevLabel *l)
{
    g_autofree char *name = NULL;

    if (l->chr) {
        return chardev_filename(l->chr);
    }
    name = chardev_spec_filename(l->spec);
    /* Nobody opened it, so nobody is connected to it either. */
    return is_socket_spec(l->spec) ? g_strdup_printf("disconnected:%s", name)
                                   : g_steal_pointer(&name);
}

const char *chardev_spec_type(const char *spec)
{
    ChardevConfig cfg;
    const char *type;

    if (!chardev_parse_config(spec, &cfg, NULL)) {
        return "chardev";
    }
    type = cfg.kind == CHARDEV_NULL ? "chardev-null" :
           cfg.kind == CHARDEV_STDIO ? "chardev-stdio" :
           cfg.kind == CHARDEV_FILE ? "chardev-file" :
           cfg.kind == CHARDEV_PTY ? "chardev-pty" : "chardev-socket";
    chardev_config_clear(&cfg);
    return type;
}

/* ---- output ------------------------------------------------------------------ */

/* Write what the fd takes without blocking; -1 (errno set) on a real error. */
static ssize_t write_nonblock(Chardev *chr, const uint8_t *buf, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n;
        if (chr->is_socket) {
            /* MSG_NOSIGNAL: a vanished peer must not kill the process. */
            n = send(chr->out_fd, buf + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        } else {
            n = write(chr->out_fd, buf + done, len - done);
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        if (n < 0) {
            return -1;
        }
        if (n == 0) {
            break;
        }
        done += n;
    }
    return done;
}

static bool is_hangup(int err)
{
    return err == EPIPE || err == ECONNRESET || err == ENOTCONN;
}

/* Push buffered output out; lock held.  false on an error that is not a hangup. */
static bool flush_locked(Chardev *chr)
{
    if (chr->out_fd < 0 || chr->out_dead || !chr->out_buf->len) {
        return true;
    }
    ssize_t n = write_nonblock(chr, chr->out_buf->data, chr->out_buf->len);
    if (n < 0) {
        int err = errno;
        g_byte_array_set_size(chr->out_buf, 0);
        chr->out_dead = is_hangup(err);
        return chr->out_dead;
    }
    g_byte_array_remove_range(chr->out_buf, 0, n);
    return true;
}

static void drop_out_watch_locked(Chardev *chr)
{
    if (chr->out_watch) {
        g_source_destroy(chr->out_watch);
        g_source_unref(chr->out_watch);
        chr->out_watch = NULL;
    }
}

static gboolean out_writable(gint fd, GIOCondition cond, gpointer opaque)
{
    Chardev *chr = opaque;
    gboolean again;

    pthread_mutex_lock(&chr->lock);
    flush_locked(chr);
    again = chr->out_buf->len > 0 && !chr->out_dead && chr->out_fd >= 0;
    if (!again) {
        g_source_unref(chr->out_watch);
        chr->out_watch = NULL;
    }
    pthread_mutex_unlock(&chr->lock);
    return again;
}

/*
 * Keep what did not fit and have the main loop flush it.  A write is kept
 * whole or dropped whole: each is one message (a QMP reply or event, an
 * HMP answer, a serial byte), and a message cut short would run into the
 * next one and leave a client's parser lost for good.  So a write is kept
 * when it fits within the bound, or when nothing is queued (what a write
 * began directly must end: the bound then gives way by one message).
 */
static void queue_locked(Chardev *chr, const uint8_t *buf, size_t len)
{
    size_t room = CHARDEV_OUT_MAX - MIN(chr->out_buf->len, CHARDEV_OUT_MAX);

    if (chr->out_buf->len && len > room) {
        trace(chardev_drop, "%s: %zu bytes, peer too slow", chr->spec, len);
        chr->dropped += len;
        return;
    }
    g_byte_array_append(chr->out_buf, buf, len);
    if (chr->out_buf->len && !chr->out_watch) {
        chr->out_watch = g_unix_fd_source_new(chr->out_fd, G_IO_OUT);
        g_source_set_callback(chr->out_watch, (GSourceFunc)(void (*)(void))out_writable,
                              chr, NULL);
        g_source_attach(chr->out_watch, NULL);
    }
}

bool chardev_write(Chardev *chr, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    bool ok = true;

    pthread_mutex_lock(&chr->lock);
    if (chr->out_fd < 0 || chr->out_dead) {
        goto out;                   /* no peer: the bytes are dropped */
    }
    if (!chr->out_buf->len) {
        ssize_t n = write_nonblock(chr, p, len);
        if (n < 0) {
            chr->out_dead = is_hangup(errno);
            ok = chr->out_dead;
            goto out;
        }
        p += n;
        len -= n;
    }
    if (len) {
        queue_locked(chr, p, len);
    }
out:
    pthread_mutex_unlock(&chr->lock);
    return ok;
}

bool chardev_is_connected(Chardev *chr)
{
    bool connected;

    pthread_mutex_lock(&chr->lock);
    connected = chr->out_fd >= 0 && !chr->out_dead;
    pthread_mutex_unlock(&chr->lock);
    return connected;
}

uint64_t chardev_dropped_bytes(Chardev *chr)
{
    uint64_t n;

    pthread_mutex_lock(&chr->lock);
    n = chr->dropped;
    pthread_mutex_unlock(&chr->lock);
    return n;
}

/* ---- input and peers (main thread) ----------------------------------------------- */

static void close_received_fds(Chardev *chr)
{
    for (int i = 0; i < chr->nfds; i++) {
        close(chr->fds[i]);
    }
    chr->nfds = 0;
}

void chardev_keep_received_fds(Chardev *chr, const int *fds, int n)
{
    /* As QEMU does: fds stay until the next batch arrives or the peer goes. */
    close_received_fds(chr);
    for (int i = 0; i < n; i++) {
        if (i < CHARDEV_MAX_FDS) {
            chr->fds[chr->nfds++] = fds[i];
        } else {
            close(fds[i]);
        }
    }
}

int chardev_take_fd(Chardev *chr)
{
    if (!chr->nfds) {
        return -1;
    }
    int fd = chr->fds[0];
    chr->nfds--;
    memmove(chr->fds, chr->fds + 1, chr->nfds * sizeof(int));
    return fd;
}

static void input_gone(Chardev *chr)
{
    trace(chardev_peer_gone, "%s", chr->spec);
    if (chr->cfg.kind == CHARDEV_STDIO) {
        chr->in_fd = -1;            /* stdout stays usable after stdin's EOF */
    } else {
        chardev_detach_peer(chr);
    }
    if (chr->h.closed) {
        chr->h.closed(chr->opaque);
    }
    if (chr->cfg.kind == CHARDEV_UNIX) {
        chardev_unix_peer_gone(chr);
    } else if (chr->cfg.kind == CHARDEV_PTY) {
        chardev_pty_peer_gone(chr);
    }
}

static gboolean in_readable(gint fd, GIOCondition cond, gpointer opaque)
{
    Chardev *chr = opaque;
    uint8_t buf[4096];
    ssize_t n;

    if (chr->is_socket) {
        n = chardev_unix_recv(chr, buf, sizeof(buf));
    } else {
        n = read(fd, buf, sizeof(buf));
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return G_SOURCE_CONTINUE;
    }
    if (n <= 0) {
        chr->in_watch = 0;          /* removed by returning G_SOURCE_REMOVE */
        input_gone(chr);
        return G_SOURCE_REMOVE;
    }
    if (chr->h.read) {
        chr->h.read(chr->opaque, buf, n);
    }
    return G_SOURCE_CONTINUE;
}

void chardev_attach_peer(Chardev *chr, int in_fd, int out_fd, bool is_socket)
{
    chr->in_fd = in_fd;
    if (in_fd >= 0) {
        chr->in_watch = g_unix_fd_add(in_fd, G_IO_IN | G_IO_HUP | G_IO_ERR,
                                      in_readable, chr);
    }
    pthread_mutex_lock(&chr->lock);
    chr->out_fd = out_fd;
    chr->out_dead = false;
    chr->is_socket = is_socket;
    g_byte_array_set_size(chr->out_buf, 0);
    pthread_mutex_unlock(&chr->lock);
}

void chardev_detach_peer(Chardev *chr)
{
    int in_fd = chr->in_fd, out_fd;

    if (chr->in_watch) {
        g_source_remove(chr->in_watch);
        chr->in_watch = 0;
    }
    pthread_mutex_lock(&chr->lock);
    drop_out_watch_locked(chr);
    g_byte_array_set_size(chr->out_buf, 0);
    out_fd = chr->out_fd;
    chr->out_fd = -1;
    chr->out_dead = false;
    pthread_mutex_unlock(&chr->lock);

    chr->in_fd = -1;
    if (in_fd >= 0) {
        close(in_fd);
    }
    if (out_fd >= 0 && out_fd != in_fd) {
        close(out_fd);
    }
    close_received_fds(chr);
}

void chardev_peer_arrived(Chardev *chr, int fd, bool is_socket)
{
    trace(chardev_accept, "%s", chr->spec);
    chardev_attach_peer(chr, fd, fd, is_socket);
    if (chr->h.opened) {
        chr->h.opened(chr->opaque);
    }
}

static gboolean opened_idle(gpointer opaque)
{
    Chardev *chr = opaque;

    chr->open_idle = 0;
    if (chr->h.opened && chardev_is_connected(chr)) {
        chr->h.opened(chr->opaque);
    }
    return G_SOURCE_REMOVE;
}

void chardev_schedule_opened(Chardev *chr)
{
    if (!chr->open_idle) {
        chr->open_idle = g_idle_add(opened_idle, chr);
    }
}

void chardev_set_handlers(Chardev *chr, const ChardevHandlers *h, void *opaque)
{
    if (h) {
        chr->h = *h;
    } else {
        memset(&chr->h, 0, sizeof(chr->h));
    }
    chr->opaque = opaque;
    /*
     * A chardev that is already open announces it from the main loop, not
     * from here, so the caller finishes setting itself up first.
     */
    if (chr->h.opened && chardev_is_connected(chr)) {
        chardev_schedule_opened(chr);
    }
}

/* ---- backends ------------------------------------------------------------------------ */

static bool open_stdio(Chardev *chr, Error **errp)
{
    int flags = fcntl(STDOUT_FILENO, F_GETFL);
    struct stat st;

    if (flags < 0) {
        error_setg_errno(errp, errno, "stdio: standard output is not open");
        return false;
    }
    /*
     * A terminal or pipe that stops reading must not stall a vCPU, so
     * stdout becomes non-blocking (restored at free); a regular file never
     * blocks for long and is left alone.
     */
    if (fstat(STDOUT_FILENO, &st) == 0 && !S_ISREG(st.st_mode) && !(flags & O_NONBLOCK)) {
        chr->stdout_saved_flags = flags;
        fcntl(STDOUT_FILENO, F_SETFL, flags | O_NONBLOCK);
    }
    chardev_attach_peer(chr, STDIN_FILENO, STDOUT_FILENO, false);
    return true;
}

/*
 * A file may be a pipe or FIFO (libvirt hands over virtlogd's pipe): a
 * reader that stalls must not block the writer, a vCPU at its serial port
 * or the main loop at a monitor.  Its output queues and drops as a
 * socket's does.  A regular file is not affected.
 */
static void file_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl >= 0) {
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    }
}

static bool open_file(Chardev *chr, Error **errp)
{
    int fd;

    if (chr->cfg.fd >= 0) {
        struct stat st;

        /* Its own copy: the descriptor handed over stays where it was (its fd set). */
        fd = fcntl(chr->cfg.fd, F_DUPFD_CLOEXEC, 0);
        if (fd < 0) {
            error_setg_errno(errp, errno, "cannot use descriptor %d", chr->cfg.fd);
            return false;
        }
        /* As a path would be opened: appended to, or emptied (a regular file). */
        if (chr->cfg.append) {
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_APPEND);
        } else if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
                   (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0)) {
            error_setg_errno(errp, errno, "cannot empty the file of descriptor %d",
                             chr->cfg.fd);
            close(fd);
            return false;
        }
        file_nonblock(fd);
        chardev_attach_peer(chr, -1, fd, false);
        return true;
    }
    fd = open(chr->cfg.path, O_WRONLY | O_CREAT | O_CLOEXEC |
              (chr->cfg.append ? O_APPEND : O_TRUNC), 0666);
    if (fd < 0) {
        error_setg_errno(errp, errno, "cannot open '%s' for writing", chr->cfg.path);
        return false;
    }
    file_nonblock(fd);
    chardev_attach_peer(chr, -1, fd, false);
    return true;
}

static bool open_backend(Chardev *chr, Error **errp)
{
    switch (chr->cfg.kind) {
    case CHARDEV_NULL:
        return true;
    case CHARDEV_STDIO:
        return open_stdio(chr, errp);
    case CHARDEV_FILE:
        return open_file(chr, errp);
    case CHARDEV_UNIX:
        return chardev_unix_open(chr, errp);
    case CHARDEV_PTY:
        return chardev_pty_open(chr, errp);
    }
    g_assert_not_reached();
}

Chardev *chardev_new(const char *spec, Error **errp)
{
    Chardev *chr = g_new0(Chardev, 1);

    pthread_mutex_init(&chr->lock, NULL);
    chr->out_buf = g_byte_array_new();
    chr->in_fd = chr->out_fd = chr->listen_fd = chr->pty_master = -1;
    chr->stdout_saved_flags = -1;
    chr->spec = g_strdup(spec);
    if (!chardev_parse_config(spec, &chr->cfg, errp) || !open_backend(chr, errp)) {
        chardev_free(chr);
        return NULL;
    }
    return chr;
}

static void close_stdio(Chardev *chr)
{
    if (chr->in_watch) {
        g_source_remove(chr->in_watch);
        chr->in_watch = 0;
    }
    pthread_mutex_lock(&chr->lock);
    drop_out_watch_locked(chr);
    chr->out_fd = -1;
    pthread_mutex_unlock(&chr->lock);
    if (chr->stdout_saved_flags >= 0) {
        fcntl(STDOUT_FILENO, F_SETFL, chr->stdout_saved_flags);
    }
}

void chardev_free(Chardev *chr)
{
    if (!chr) {
        return;
    }
    if (chr->open_idle) {
        g_source_remove(chr->open_idle);
    }
    /* Last chance for buffered output (a reply the monitor just queued). */
    pthread_mutex_lock(&chr->lock);
    flush_locked(chr);
    pthread_mutex_unlock(&chr->lock);

    if (chr->cfg.kind == CHARDEV_STDIO) {
        close_stdio(chr);
    } else {
        chardev_detach_peer(chr);
    }
    if (chr->cfg.kind == CHARDEV_UNIX) {
        chardev_unix_close(chr);
    } else if (chr->cfg.kind == CHARDEV_PTY) {
        chardev_pty_close(chr);
    }
    close_received_fds(chr);
    chardev_config_clear(&chr->cfg);
    g_byte_array_unref(chr->out_buf);
    pthread_mutex_destroy(&chr->lock);
    g_free(chr->spec);
    g_free(chr);
}

const char *chardev_spec(Chardev *chr)
{
    return chr->spec;
}
