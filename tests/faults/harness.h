/*
 * The fault test's harness, shared by its scenario files:
 * tests/unit/test-faults.c (the harness itself, files and exec:, main) and
 * tests/faults/socket-cases.c (unix: and tcp: with a peer process).
 *
 * A save or a load runs as amber's migration thread or incoming.c runs it,
 * on two RAM blocks (pc.ram and a smaller pc.rom); a background snapshot's
 * guest is writer threads keeping the wave in pc.ram.  The checks say what
 * a user would check after a fault: the result, the error's words, the
 * guest still running, nothing left protected or registered.  Everything
 * here runs on the test's main thread, but for the writers and what a save
 * or a load starts itself.
 */
#ifndef AMBER_TESTS_FAULTS_HARNESS_H
#define AMBER_TESTS_FAULTS_HARNESS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "faults.h"
#include "migration/bg-engine.h"
#include "../unit/test-ram-helpers.h"

#define PAGE            RAM_PAGE_SIZE
#define MAIN_SIZE       (4u << 20)
#define ROM_SIZE        (256u << 10)
#define NWRITERS        2
#define PART_PAGES      256             /* per writer, after pc.ram's page 0 */

/* ---- the run's settings ------------------------------------------------------------------ */

typedef struct Settings {
    uint64_t seed;                  /* AMBER_FAULTS_SEED */
    int cases;                      /* AMBER_FAULTS_CASES: 0, each scenario's own */
    uint64_t only;                  /* AMBER_FAULTS_ONLY: one case seed, 0: all */
    char *dir;                      /* the run's temporary directory */
} Settings;

extern Settings settings;

/* Case i's seed in a scenario (or AMBER_FAULTS_ONLY's). */
uint64_t case_seed(const char *scenario, int i);
/* How many cases a scenario runs: dflt, unless the settings say otherwise. */
int case_count(int dflt);
/* A new empty file in the run's directory; g_free the path. */
char *tmp_path(const char *name);

/* ---- blocks ------------------------------------------------------------------------------ */

typedef TestBlocks Blocks;

void blocks_new(Blocks *b, RamBackendKind kind);
void blocks_free(Blocks *b);
/* Data pages, zero pages written, and pages never touched, from page first on. */
void fill(RAMBlock *rb, uint64_t first, unsigned salt);
void assert_blocks_equal(const Blocks *a, const Blocks *b, const char *what);
/* No page write-protected, no range registered with a userfaultfd. */
void assert_released(const Blocks *b, const char *what);

/* ---- the guest: the wave ----------------------------------------------------------------- */

/*
 * Writers play vCPUs: each owns PART_PAGES pages of pc.ram from page 1 and
 * writes them in order, pass after pass, stamping each page's first and
 * last 8 bytes and keeping (pass, index) of its latest store in page 0.
 * Parked (the test's "vCPUs paused") they stand between two stores.
 */
typedef struct Wave Wave;

typedef struct Writer {
    Wave *w;
    int id;
    pthread_t tid;
    uint64_t pages;                 /* atomic: stores made */
} Writer;

struct Wave {
    uint8_t *base;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int pause_req;                  /* atomic */
    int parked;
    int stop;                       /* atomic */
    Writer writers[NWRITERS];
};

void wave_start(Wave *w, uint8_t *base);
void wave_stop(Wave *w);

/* ---- saving, as the migration thread does ------------------------------------------------ */

typedef enum SaveKind { SAVE_STOPPED, SAVE_BACKGROUND } SaveKind;

typedef struct SaveJob {
    Blocks *src;
    const char *uri;
    SaveKind kind;
    bool mapped;
    int threads;                    /* mapped-ram writer threads */
    const FaultPlan *arm_on_open;   /* armed once the channel is open, its fd a target */
    pid_t child;                    /* exec: the shell */
    int fd;                         /* the channel's descriptor, while it is open */

    /* background */
    Wave *wave;
    uint8_t *ref[2];                /* the blocks at the instant */
    bool check_registered;          /* once: the smaps check sees a registration */
    BgSnapshot *ctx;
    RamSaver *rs;
    QEMUFile *f;
    bool ram_done;
} SaveJob;

/* One save of j->src to j->uri, in migration.c's outgoing_run() steps. */
bool save_run(SaveJob *j, Error **errp);
/* A background snapshot's image at path loaded is the blocks at the instant. */
void check_bg_image(SaveJob *j, const char *path, const char *what);
/* After a background case: the guest runs, its RAM is the wave, nothing is protected. */
void check_guest(SaveJob *j, const char *what);
/* Whether a background snapshot can run here; if not the test is skipped, saying why. */
bool bg_usable_or_skip(Blocks *b);

/* ---- loading, as incoming.c does --------------------------------------------------------- */

typedef enum LoadMode { LOAD_STREAM, LOAD_EAGER, LOAD_LAZY, LOAD_MAP } LoadMode;

typedef struct LoadJob {
    Blocks *src;                    /* what was saved */
    Blocks *dst;
    const char *path;
    LoadMode mode;
    int threads;
    uint64_t seed;                  /* the touchers' */
} LoadJob;

/* Load the stream on fd (named name) into lj->dst; false with errp. */
bool load_fd(LoadJob *lj, int fd, const char *name, const char *what, Error **errp);

/* ---- verdicts ---------------------------------------------------------------------------- */

typedef struct Tally {
    int cases, injected, failed;
} Tally;

/*
 * What the user sees of a run under plan p: a failing kind that hit must
 * fail it, naming the errno; anything else must succeed.  True when it
 * succeeded (the caller then checks the result).
 */
bool verdict(const FaultPlan *p, const FaultStats *st, bool ok, Error **err, const char *what,
             Tally *t);
/* The scenario's counts; at least half its cases must have met their fault. */
void tally_report(const char *scenario, const Tally *t);

/* ---- scenarios elsewhere ----------------------------------------------------------------- */

/* /faults/save/{stopped,background}/{unix,tcp}, /faults/load/{unix,tcp} */
void faults_add_socket_tests(void);

#endif
