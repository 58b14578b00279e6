/*
 * Injected faults on unix: and tcp: migrations (harness.h, peer.h).
 *
 * A migration over a socket meets the end of its peer (peer.h: SIGKILLed,
 * a reset, a shutdown) at a random point of the stream, or a fault on its
 * own socket calls: EINTR, EAGAIN and short calls are retried, ECONNRESET
 * and EPIPE fail it naming them.  Saving, amber connects
 * (channel_open_outgoing) to a listener a receiving peer accepts on, and
 * the peer ends at the write that passes a random byte of the stream.
 * Loading, amber accepts (channel_listener_accept, as incoming.c) a
 * sending peer that sends a stopped save's image up to a random byte and
 * then ends.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include <glib.h>

#include "harness.h"
#include "migration/channel.h"
#include "migration/savevm.h"
#include "peer.h"
#include "util/cutils.h"

/* ---- cases --------------------------------------------------------------------------------- */

typedef enum SockSide { SOCK_SAVE_STOPPED, SOCK_SAVE_BACKGROUND, SOCK_LOAD } SockSide;

typedef struct SockScenario {
    const char *name;
    SockSide side;
    bool tcp;
    int cases;
} SockScenario;

/* One case: a fault on amber's socket calls, or the peer's end. */
typedef struct SockCase {
    FaultPlan plan;                 /* a save's peer end: a hook at a write */
    PeerEnd end;
    uint64_t cut;                   /* a load: the bytes the sender sends */
    Peer peer;
    SaveJob *job;                   /* a save: its socket is watched after the end */
    short seen;                     /* what that socket showed then */
} SockCase;

typedef struct SockRun {
    const SockScenario *sc;
    ChannelListener *l;
    const char *uri;
    char *recv_path;                /* what a receiving peer got */
    char *image;                    /* a load: what the sending peer sends */
    uint64_t image_len;
    uint64_t vmdesc_at;             /* where its VMDESCRIPTION starts, after EOF */
    char *ref;                      /* a stopped save: its stream without faults */
    gsize ref_len;
    FaultStats counted;
    int fds;                        /* descriptors open between cases */
    Tally t;
    int late;                       /* saves a TCP peer's FIN let succeed */
} SockRun;

static int open_fds(void)
{
    GDir *d = g_dir_open("/proc/self/fd", 0, NULL);
    int n = 0;

    g_assert_nonnull(d);
    while (g_dir_read_name(d)) {
        n++;
    }
    g_dir_close(d);
    return n;
}

static void assert_fds(const SockRun *run, const char *what)
{
    int n = open_fds();

    if (n != run->fds) {
        g_error("%s: %d descriptors open after the case, %d before", what, n, run->fds);
    }
}

static void sock_case_for(SockCase *c, uint64_t seed, const SockRun *run)
{
    static const FaultKind kinds[] = { FAULT_EINTR, FAULT_SHORT, FAULT_EAGAIN, FAULT_ECONNRESET,
                                       FAULT_EPIPE };
    bool load = run->sc->side == SOCK_LOAD;
    unsigned nkinds = load ? 4 : 5;     /* a read never fails with EPIPE */
    uint64_t r = seed, len = run->image_len, k;

#define PICK(n) ((r = fault_mix(r)) % (n))
    *c = (SockCase){ .plan = { .seed = seed, .ops = load ? FAULT_OP_READ : FAULT_OP_WRITE },
                     .cut = len };
    /*
     * At a byte of the stream, not a call: how many calls a socket takes
     * varies from run to run (a write into a full buffer is short, a read
     * gets what has arrived), the bytes do not.
     */
    k = PICK(nkinds + 3);
    if (k < nkinds) {
        c->plan.kind = kinds[k];
        c->plan.times = 1 + PICK(3);
        c->plan.sticky = PICK(2);
        c->plan.at_byte = PICK(MAX(run->counted.bytes, 1));
    } else if (!load) {
        c->end = PEER_END_KILL + (k - nkinds);
        c->plan.kind = FAULT_HOOK;
        c->plan.at_byte = PICK(MAX(run->counted.bytes, 1));
    } else {
        c->end = PEER_END_KILL + (k - nkinds);
        switch (PICK(6)) {
        case 0:         /* in the header, or nothing at all */
            c->cut = PICK(MIN(64, len));
            break;
        case 1:
        case 2:         /* in the last records, the EOF mark, the description */
            c->cut = len - 1 - PICK(MIN(128, len));
            break;
        case 3:         /* all but the description */
            c->cut = run->vmdesc_at;
            break;
        default:
            c->cut = PICK(len);
            break;
        }
    }
#undef PICK
}

static char *sock_case_describe(const SockCase *c, const SockRun *run)
{
    if (c->end == PEER_END_NONE) {
        return fault_plan_describe(&c->plan);
    }
    if (run->sc->side != SOCK_LOAD) {
        return g_strdup_printf("the peer %s at the write past byte %" PRIu64 " of %" PRIu64
                               " (seed 0x%016" PRIx64 ")", peer_end_name(c->end),
                               c->plan.at_byte, run->counted.bytes, c->plan.seed);
    }
    return g_strdup_printf("the peer %s after byte %" PRIu64 " of %" PRIu64 "%s (seed 0x%016"
                           PRIx64 ")", peer_end_name(c->end), c->cut, run->image_len,
                           c->cut == run->vmdesc_at ? ", all but the VMDESCRIPTION" : "",
                           c->plan.seed);
}

static bool sock_listen(SockRun *run)
{
    g_autofree char *path = g_build_filename(settings.dir, "mig.sock", NULL);
    g_autofree char *uri = run->sc->tcp ? g_strdup("tcp:127.0.0.1:0")
                                        : g_strdup_printf("unix:%s", path);
    Error *err = NULL;

    run->l = channel_listen(uri, &err);
    if (!run->l) {
        g_test_skip(error_get_pretty(err));
        error_free(err);
        return false;
    }
    run->uri = channel_listener_uri(run->l);
    return true;
}

/*
 * The reaped peer ended as planned: SIGKILLed only when the case killed
 * it, any other exit clean (or a sender's PEER_EXIT_DROPPED): a peer that
 * crashed would make a case's failure look like the fault's.
 */
static void check_peer(const SockCase *c, const char *what)
{
    int st = c->peer.status;

    if (WIFSIGNALED(st) && !(c->end == PEER_END_KILL && WTERMSIG(st) == SIGKILL)) {
        g_error("%s: the peer died of signal %d", what, WTERMSIG(st));
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) != 0 && WEXITSTATUS(st) != PEER_EXIT_DROPPED) {
        g_error("%s: the peer exited with status %d", what, WEXITSTATUS(st));
    }
}

/* ---- saving to a peer that ends --------------------------------------------------------- */

/*
 * The hook at the chosen write: the receiving peer ends, and the write goes
 * on once the socket shows it (a hangup, a reset, or on TCP a FIN): the
 * case's verdict then does not depend on how fast the kernel passes it on.
 */
static void sock_peer_end(void *opaque)
{
    SockCase *c = opaque;
    struct pollfd pf = { .fd = c->job->fd, .events = POLLRDHUP };
    int n;

    peer_end_now(&c->peer, c->end);
    do {
        n = poll(&pf, 1, 60 * 1000);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
        g_error("the peer %s, and its socket here showed nothing in 60 s",
                peer_end_name(c->end));
    }
    c->seen = pf.revents;
}

/*
 * A save whose peer ended at a write must fail, saying the connection
 * broke.  One exception, which no plain stream can avoid (amber's saves
 * have no acknowledgment from the peer, as QEMU's without return-path): a
 * TCP peer that shut down, or closed with nothing unread, sends a FIN, not
 * a reset.  The kernel then takes writes into the send buffer, and the
 * peer's reset comes only once data reaches it, which waits for its
 * receive window: behind a peer that shut down with its window closed, up
 * to a send buffer of the stream (megabytes on loopback) is accepted, and
 * a save whose rest fits completes.  Such a save may succeed; it is
 * counted, and what the peer got is still checked.  True when the save
 * succeeded and the whole stream went out (the caller checks it).
 */
static bool sock_save_verdict(SockRun *run, SockCase *c, const FaultStats *st, bool ok,
                              Error **err, const char *what)
{
    const char *msg;

    if (c->end == PEER_END_NONE) {
        return verdict(&c->plan, st, ok, err, what, &run->t);
    }
    run->t.cases++;
    if (!st->hits) {
        if (!ok) {
            g_error("%s: the peer did not end, yet the save failed: %s", what,
                    error_get_pretty(*err));
        }
        return true;
    }
    run->t.injected++;
    if (ok) {
        if (!run->sc->tcp || (c->seen & (POLLHUP | POLLERR))) {
            g_error("%s: the peer %s, yet the save succeeded (%" PRIu64 " write calls, the "
                    "socket showed 0x%x)", what, peer_end_name(c->end), st->calls, c->seen);
        }
        g_test_message("%s: succeeded, the peer's FIN notwithstanding (%" PRIu64 " write "
                       "calls)", what, st->calls);
        run->late++;
        return false;
    }
    msg = error_get_pretty(*err);
    if (!strstr(msg, g_strerror(EPIPE)) && !strstr(msg, g_strerror(ECONNRESET))) {
        g_error("%s: the error '%s' says neither that the pipe broke nor that the connection "
                "was reset", what, msg);
    }
    g_test_message("%s: failed: %s", what, msg);
    run->t.failed++;
    g_clear_pointer(err, error_free);
    return false;
}

/* What the receiver got is the stream without faults, or (cut short) the start of it. */
static void check_received(const SockRun *run, bool whole, const char *what)
{
    g_autofree char *got = NULL;
    gsize len;

    g_assert_true(g_file_get_contents(run->recv_path, &got, &len, NULL));
    if (len > run->ref_len || memcmp(got, run->ref, len)) {
        g_error("%s: the peer received bytes the save without faults did not send", what);
    }
    if (whole && len != run->ref_len) {
        g_error("%s: the peer received %zu of the stream's %zu bytes", what, len,
                run->ref_len);
    }
}

static void sock_save_case(SockRun *run, SaveJob *j, uint64_t seed, int i)
{
    g_autofree char *plan_text = NULL, *what = NULL;
    SockCase c;
    Error *err = NULL;
    FaultStats st;
    bool ok, whole;

    sock_case_for(&c, seed, run);
    c.job = j;
    c.plan.hook = sock_peer_end;
    c.plan.hook_opaque = &c;
    plan_text = sock_case_describe(&c, run);
    what = g_strdup_printf("%s case %d: %s", run->sc->name, i, plan_text);
    g_test_message("%s", what);
    peer_receive(&c.peer, channel_listener_fd(run->l), run->recv_path);
    j->arm_on_open = &c.plan;
    ok = save_run(j, &err);
    st = faults_disarm();
    faults_reset();
    peer_reap(&c.peer);
    check_peer(&c, what);
    if (c.end == PEER_END_KILL && st.hits && !peer_was_killed(&c.peer)) {
        g_error("%s: the peer was not killed", what);
    }
    whole = sock_save_verdict(run, &c, &st, ok, &err, what);
    if (run->sc->side == SOCK_SAVE_STOPPED) {
        check_received(run, whole, what);
    } else {
        if (whole) {
            check_bg_image(j, run->recv_path, what);
        }
        check_guest(j, what);
    }
    assert_fds(run, what);
}

static void sock_save_scenario(SockRun *run)
{
    bool bg = run->sc->side == SOCK_SAVE_BACKGROUND;
    FaultPlan count = { .kind = FAULT_COUNT, .ops = FAULT_OP_WRITE };
    SaveJob j = { .uri = run->uri, .kind = bg ? SAVE_BACKGROUND : SAVE_STOPPED, .fd = -1 };
    Blocks src;
    Wave w;
    Peer peer;

    blocks_new(&src, RAM_BACKEND_RAM);
    if (bg && !bg_usable_or_skip(&src)) {
        blocks_free(&src);
        return;
    }
    fill(src.rb[0], bg ? 1 + NWRITERS * PART_PAGES : 0, 1);
    fill(src.rb[1], 0, 2);
    j.src = &src;
    if (bg) {
        j.wave = &w;
        j.ref[0] = g_malloc(MAIN_SIZE);
        j.ref[1] = g_malloc(ROM_SIZE);
        wave_start(&w, src.rb[0]->host);
        g_usleep(2000);
    }
    /* Without faults, counting the writes the cases choose from. */
    peer_receive(&peer, channel_listener_fd(run->l), run->recv_path);
    j.arm_on_open = &count;
    j.check_registered = bg;
    g_assert_true(save_run(&j, &error_abort));
    run->counted = faults_disarm();
    faults_reset();
    g_assert_cmpint(peer_reap(&peer), ==, 0);
    j.check_registered = false;
    if (bg) {
        check_bg_image(&j, run->recv_path, run->sc->name);
        check_guest(&j, run->sc->name);
    } else {
        g_assert_true(g_file_get_contents(run->recv_path, &run->ref, &run->ref_len, NULL));
    }
    run->fds = open_fds();
    for (int i = 0, n = case_count(run->sc->cases); i < n; i++) {
        sock_save_case(run, &j, case_seed(run->sc->name, i), i);
    }
    if (bg) {
        wave_stop(&w);
        g_free(j.ref[0]);
        g_free(j.ref[1]);
    }
    blocks_free(&src);
}

/* ---- loading from a peer that ends ------------------------------------------------------ */

static void *kill_at_cut(void *opaque)
{
    peer_kill_at_cut(opaque);
    return NULL;
}

/* The sender's connection, once it is there (the sender exiting first is an error). */
static Channel *accept_sender(SockRun *run, Peer *p)
{
    struct pollfd pf[2] = { { .fd = channel_listener_fd(run->l), .events = POLLIN },
                            { .fd = p->ack, .events = POLLIN } };

    while (!pf[0].revents) {
        if (poll(pf, 2, -1) < 0 && errno != EINTR) {
            g_error("poll: %s", g_strerror(errno));
        }
        if (!pf[0].revents && pf[1].revents) {
            g_error("the sending peer exited before it connected");
        }
    }
    return channel_listener_accept(run->l, &error_abort);
}

/* One load from a sending peer under c, into dst. */
static bool sock_load(SockRun *run, Blocks *src, Blocks *dst, SockCase *c, const char *what,
                      FaultStats *st, Error **errp)
{
    LoadJob lj = { .src = src, .dst = dst, .mode = LOAD_STREAM, .threads = 1 };
    pthread_t killer;
    Channel *ch;
    bool ok;

    peer_send(&c->peer, run->uri, run->image, c->cut, c->end);
    if (c->end == PEER_END_KILL) {
        pthread_create(&killer, NULL, kill_at_cut, &c->peer);
    }
    ch = accept_sender(run, &c->peer);
    faults_target_fd(ch->fd);
    faults_arm(&c->plan);
    ok = load_fd(&lj, ch->fd, run->uri, what, errp);
    *st = faults_disarm();
    faults_reset();
    if (ok) {
        ok = channel_close(ch, -1, errp);
    } else {
        channel_abort(ch);
    }
    if (c->end == PEER_END_KILL) {
        pthread_join(killer, NULL);
    }
    peer_reap(&c->peer);
    return ok;
}

/* A page of dst before the load: pc.ram's first 8 pages written by "the machine", zero else. */
static const uint8_t *page_before(int b, uint64_t p)
{
    static const uint8_t zero[PAGE];
    static uint8_t marked[PAGE];

    if (!marked[0]) {
        memset(marked, 0x77, PAGE);
    }
    return b == 0 && p < 8 ? marked : zero;
}

static void mark_before(Blocks *dst)
{
    memset(dst->rb[0]->host, 0x77, 8 * PAGE);
}

/*
 * After a failed load every page is the saved one or still what it was,
 * but for the one page being read when the stream broke: the stream's
 * pages are read straight into RAM no vCPU has run on (incoming.c then
 * ends the process), and qemu_get_buffer() zeroes what it read into when
 * it fails.
 */
static void assert_saved_or_before(const Blocks *src, const Blocks *dst, const char *what)
{
    int in_flight = 0;

    for (int b = 0; b < 2; b++) {
        for (uint64_t p = 0; p < src->rb[b]->used_length / PAGE; p++) {
            const uint8_t *s = src->rb[b]->host + p * PAGE, *d = dst->rb[b]->host + p * PAGE;

            if (!memcmp(d, s, PAGE) || !memcmp(d, page_before(b, p), PAGE)) {
                continue;
            }
            if (!buffer_is_zero(d, PAGE) || in_flight++) {
                g_error("%s: block %s page %" PRIu64 " is neither the saved page nor what it "
                        "was (nor the one page being read, zeroed)", what, src->rb[b]->idstr,
                        p);
            }
        }
    }
}

/*
 * A stream cut short must fail, saying it ended or was reset.  Only the
 * VMDESCRIPTION may be missing: it describes the devices and holds no
 * state, and a stream without checksums need not carry it (as in QEMU).
 * True when the load succeeded (the caller checks the RAM).
 */
static bool sock_load_end_verdict(SockRun *run, const SockCase *c, bool ok, Error **err,
                                  const char *what)
{
    const char *msg;

    run->t.cases++;
    run->t.injected++;
    if (ok && c->cut == run->vmdesc_at) {
        return true;
    }
    if (ok) {
        g_error("%s: the stream was cut, yet the load succeeded", what);
    }
    msg = error_get_pretty(*err);
    if (!strstr(msg, "unexpected end of stream") && !strstr(msg, g_strerror(ECONNRESET))) {
        g_error("%s: the error '%s' says neither that the stream ended nor that the "
                "connection was reset", what, msg);
    }
    g_test_message("%s: failed: %s", what, msg);
    run->t.failed++;
    g_clear_pointer(err, error_free);
    return false;
}

/* The offset of the image's VMDESCRIPTION (type, be32 length, JSON up to the end). */
static uint64_t find_vmdesc(const uint8_t *img, uint64_t len)
{
    for (uint64_t at = len - 5; at > 0; at--) {
        uint32_t n = (uint32_t)img[at + 1] << 24 | img[at + 2] << 16 | img[at + 3] << 8 |
                     img[at + 4];

        if (img[at] == QEMU_VM_VMDESCRIPTION && at + 5 + n == len) {
            return at;
        }
    }
    g_error("the image has no VMDESCRIPTION");
}

static void sock_load_case(SockRun *run, Blocks *src, uint64_t seed, int i)
{
    g_autofree char *plan_text = NULL, *what = NULL;
    SockCase c;
    Blocks dst;
    Error *err = NULL;
    FaultStats st;
    bool ok;

    sock_case_for(&c, seed, run);
    plan_text = sock_case_describe(&c, run);
    what = g_strdup_printf("%s case %d: %s", run->sc->name, i, plan_text);
    g_test_message("%s", what);
    blocks_new(&dst, RAM_BACKEND_RAM);
    mark_before(&dst);
    ok = sock_load(run, src, &dst, &c, what, &st, &err);
    check_peer(&c, what);
    if (c.end == PEER_END_KILL && !peer_was_killed(&c.peer)) {
        g_error("%s: the sending peer was not killed at its cut", what);
    }
    if (c.end != PEER_END_NONE ? sock_load_end_verdict(run, &c, ok, &err, what)
                               : verdict(&c.plan, &st, ok, &err, what, &run->t)) {
        assert_blocks_equal(src, &dst, what);
    }
    if (!ok) {
        assert_saved_or_before(src, &dst, what);
    }
    assert_released(&dst, what);
    blocks_free(&dst);
    assert_fds(run, what);
}

static void sock_load_scenario(SockRun *run)
{
    g_autofree char *file_uri = NULL;
    SaveJob j = { .kind = SAVE_STOPPED, .fd = -1 };
    g_autofree char *img = NULL;
    SockCase count;
    Blocks src, dst;
    FaultStats st;
    gsize len;

    /* The image the senders send: a stopped save's stream. */
    run->image = tmp_path("sent.img");
    file_uri = g_strdup_printf("file:%s", run->image);
    blocks_new(&src, RAM_BACKEND_RAM);
    fill(src.rb[0], 0, 1);
    fill(src.rb[1], 0, 2);
    j.src = &src;
    j.uri = file_uri;
    g_assert_true(save_run(&j, &error_abort));
    g_assert_true(g_file_get_contents(run->image, &img, &len, NULL));
    run->image_len = len;
    run->vmdesc_at = find_vmdesc((const uint8_t *)img, len);
    /* Without faults, counting the reads the cases choose from. */
    count = (SockCase){ .plan = { .kind = FAULT_COUNT, .ops = FAULT_OP_READ },
                        .cut = run->image_len };
    blocks_new(&dst, RAM_BACKEND_RAM);
    mark_before(&dst);
    g_assert_true(sock_load(run, &src, &dst, &count, run->sc->name, &st, &error_abort));
    assert_blocks_equal(&src, &dst, run->sc->name);
    blocks_free(&dst);
    run->counted = st;
    run->fds = open_fds();
    for (int i = 0, n = case_count(run->sc->cases); i < n; i++) {
        sock_load_case(run, &src, case_seed(run->sc->name, i), i);
    }
    blocks_free(&src);
}

static void unlink_free(char *path)
{
    if (path) {
        unlink(path);
        g_free(path);
    }
}

static void test_socket(gconstpointer data)
{
    SockRun run = { .sc = data };

    if (!sock_listen(&run)) {
        return;
    }
    if (run.sc->side == SOCK_LOAD) {
        sock_load_scenario(&run);
    } else {
        run.recv_path = tmp_path("received.img");
        sock_save_scenario(&run);
    }
    if (run.t.cases) {
        tally_report(run.sc->name, &run.t);
    }
    if (run.late) {
        g_test_message("%s: %d saves succeeded although the peer had sent its FIN",
                       run.sc->name, run.late);
    }
    faults_reset();
    channel_listener_free(run.l);
    unlink_free(run.recv_path);
    unlink_free(run.image);
    g_free(run.ref);
}

void faults_add_socket_tests(void)
{
    static const SockScenario socks[] = {
        { "save/stopped/unix", SOCK_SAVE_STOPPED, false, 24 },
        { "save/stopped/tcp", SOCK_SAVE_STOPPED, true, 24 },
        { "save/background/unix", SOCK_SAVE_BACKGROUND, false, 16 },
        { "save/background/tcp", SOCK_SAVE_BACKGROUND, true, 16 },
        { "load/unix", SOCK_LOAD, false, 24 },
        { "load/tcp", SOCK_LOAD, true, 24 },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(socks); i++) {
        g_autofree char *name = g_strdup_printf("/faults/%s", socks[i].name);

        g_test_add_data_func(name, &socks[i], test_socket);
    }
}
