/*
 * Postcopy, source side: the state its files share (source.c: the switch and
 * the page service; source-recover.c: pause and resume).  Private to them.
 */
#ifndef AMBER_MIGRATION_POSTCOPY_SOURCE_INT_H
#define AMBER_MIGRATION_POSTCOPY_SOURCE_INT_H

#include "postcopy.h"

/* Pages per PART section in the postcopy phase. */
#define POSTCOPY_PART_PAGES 4096
/* Pages taken from `todo` at once: one bitmap word. */
#define POSTCOPY_CHUNK      64

typedef struct PageRequest {
    int block;
    uint64_t page, npages;
} PageRequest;

struct PostcopySource {
    MigrationState *ms;
    RamBlockList *ram;
    RamSaver *rs;
    RamDirty *todo;
    bool requested;                 /* atomic: migrate-start-postcopy */
    bool switched;                  /* atomic */

    /* return path */
    MigrationIO rp_io;
    QEMUFile *rp_f;
    GThread *rp_thread;
    int rp_cancel_fd;

    pthread_mutex_t lock;           /* everything below */
    pthread_cond_t cond;
    GArray *queue;                  /* PageRequest */
    uint64_t queue_max;             /* the guest's pages: no destination asks for more at once */
    bool rp_ended;
    bool advised;                   /* PONG POSTCOPY_PING_ADVISED came */
    bool shut;                      /* SHUT came, with shut_value */
    uint32_t shut_value;
    Error *rp_err;
    bool rp_cause;                  /* rp_err is the destination's doing, not I/O */
    bool cancelled;

    bool flush_main;                /* atomic: a requested page may wait in f's buffer */
    /* the push; with the preempt thread, under todo_lock */
    pthread_mutex_t todo_lock;
    int push_block;
    uint64_t push_page;

    /* postcopy-preempt: the second channel and its writer */
    Channel *pch;
    MigrationIO p_io;
    QEMUFile *pf;
    RamSaver *prs;                  /* its records (a CONTINUE of their own) */
    GThread *p_thread;
    bool p_stop;                    /* under lock */
    MigrationLink p_link;           /* pch while its writer runs: a pause shuts it down */
    Error *p_err;                   /* the writer's, read after the join */

    /* recovery (source-recover.c) */
    char *resume_uri;               /* under lock: `migrate` with resume asked */
    Channel *rch;                   /* the connection since the last resume, or NULL */
    MigrationIO r_io;
    QEMUFile *rf;
    int bitmaps_due;                /* under lock: RECV_BITMAPs still to come */
    bool resume_acked;              /* under lock */
    int cur_fd;                     /* atomic: the connection migrate-pause shuts down */
    bool orig_counted;              /* the first stream's bytes are in ms->bytes_base */

    /* figures, atomics */
    uint64_t requests;
    uint64_t bytes_at_switch;
    int64_t switch_us;              /* the package is out */
    SaveVMDesc *desc;
};


/* source.c, for source-recover.c */
/* Start the return-path reader on a dup() of fd; stop it (the socket is shut down). */
bool rp_start(PostcopySource *ps, int fd, Error **errp);
void rp_stop(PostcopySource *ps);
/* The second channel's writer and channel: gone (its error, if any). */
bool stop_preempt(PostcopySource *ps, Error **errp);
/* postcopy-preempt: the second channel to uri, and the destination's answer on it. */
bool preempt_connect(PostcopySource *ps, const char *uri, Error **errp);
bool preempt_wait_ack(PostcopySource *ps, int cancel_fd, Error **errp);
void preempt_start(PostcopySource *ps);

/* source-recover.c */
/*
 * The postcopy phase failed with err (taken): pause, wait for `migrate`
 * with resume, reconnect, exchange what the destination holds, and return
 * the new stream in *f.  False (with errp) when the migration ends instead
 * (exit), or a failure that leaves nothing to resume.
 */
bool postcopy_pause_and_resume(PostcopySource *ps, QEMUFile **f, Error *err, Error **errp);
/* The return-path thread read RECV_BITMAP for block `name`: the bitmap follows on f. */
bool rp_recv_bitmap(PostcopySource *ps, QEMUFile *f, const char *name, Error **errp);
/* ... and RESUME_ACK. */
void rp_resume_ack(PostcopySource *ps, uint32_t value);

#endif
