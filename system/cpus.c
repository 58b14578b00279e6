/*
 * vCPU threads.  Each vCPU is a small state machine (created, running,
 * paused, stopped) under the machine's cpu_lock.  The thread leaves the
 * guest only through a kick, which KVM reports after completing any I/O
 * exit, so a paused vCPU's state is always consistent.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <glib.h>

#include "machine-int.h"

static bool any_cpu_in_state(Machine *m, CpuRunState s)
{
    for (int i = 0; i < m->ncpus; i++) {
        if (m->cpus[i] && m->cpus[i]->thread_started && m->cpus[i]->state == s) {
            return true;
        }
    }
    return false;
}

static void cpu_fatal(CPUState *cpu)
{
    Machine *m = cpu->m;
    machine_set_runstate(m, RUN_STATE_INTERNAL_ERROR);
    machine_request_shutdown(m, SHUTDOWN_CAUSE_GUEST_PANIC, 1);
}

/* Called with cpu_lock held; returns with it held. */
static void cpu_run_guest(CPUState *cpu)
{
    Machine *m = cpu->m;
    cpu->state = CPU_STATE_RUNNING;
    pthread_mutex_unlock(&m->cpu_lock);
    AccelRunResult r = m->accel_ops->run(cpu->accel);
    if (r == ACCEL_RUN_FATAL) {
        cpu_fatal(cpu);
    }
    pthread_mutex_lock(&m->cpu_lock);
    if (r == ACCEL_RUN_FATAL) {
        cpu->stopped_for_good = true;
    }
    if (r != ACCEL_RUN_KICKED) {
        cpu->want_run = false;
    }
}

static void *cpu_thread_fn(void *arg)
{
    CPUState *cpu = arg;
    Machine *m = cpu->m;
    g_autofree char *name = g_strdup_printf("CPU %d/KVM", cpu->index);
    pthread_setname_np(pthread_self(), name);
    m->accel_ops->vcpu_thread_init(cpu->accel);

    pthread_mutex_lock(&m->cpu_lock);
    cpu->tid = (int)syscall(SYS_gettid);
    for (;;) {
        if (cpu->work_pending) {
            pthread_mutex_unlock(&m->cpu_lock);
            cpu->work_fn(cpu, cpu->work_data);
            pthread_mutex_lock(&m->cpu_lock);
            cpu->work_pending = false;
            pthread_cond_broadcast(&m->cpu_cond);
            continue;
        }
        if (cpu->quit) {
            break;
        }
        if (!cpu->want_run || cpu->stopped_for_good) {
            CpuRunState parked = cpu->stopped_for_good ? CPU_STATE_STOPPED
                                                       : CPU_STATE_PAUSED;
            if (cpu->state != parked) {
                cpu->state = parked;
                pthread_cond_broadcast(&m->cpu_cond);
            }
            pthread_cond_wait(&m->cpu_cond, &m->cpu_lock);
            continue;
        }
        cpu_run_guest(cpu);
    }
    cpu->state = CPU_STATE_STOPPED;
    pthread_cond_broadcast(&m->cpu_cond);
    pthread_mutex_unlock(&m->cpu_lock);
    return NULL;
}

bool cpus_create(Machine *m, Error **errp)
{
    for (int i = 0; i < m->ncpus; i++) {
        CPUState *cpu = g_new0(CPUState, 1);
        cpu->m = m;
        cpu->index = i;
        cpu->state = CPU_STATE_CREATED;
        m->cpus[i] = cpu;
        cpu->accel = m->accel_ops->create_vcpu(m->accel, i, errp);
        if (!cpu->accel) {
            return false;
        }
    }
    return true;
}

bool cpus_start(Machine *m, Error **errp)
{
    for (int i = 0; i < m->ncpus; i++) {
        CPUState *cpu = m->cpus[i];
        pthread_mutex_lock(&m->cpu_lock);
        cpu->state = CPU_STATE_PAUSED;
        pthread_mutex_unlock(&m->cpu_lock);
        int err = pthread_create(&cpu->thread, NULL, cpu_thread_fn, cpu);
        if (err) {
            cpu->state = CPU_STATE_CREATED;
            error_setg_errno(errp, err, "cannot create the thread of vCPU %d", i);
            return false;
        }
        cpu->thread_started = true;
    }
    return true;
}

/* Kick every vCPU out of the guest and wait until none is running. */
void cpus_pause(Machine *m)
{
    pthread_mutex_lock(&m->cpu_lock);
    for (int i = 0; i < m->ncpus; i++) {
        CPUState *cpu = m->cpus[i];
        if (cpu) {
            cpu->want_run = false;
            if (cpu->state == CPU_STATE_RUNNING) {
                m->accel_ops->kick(cpu->accel);
            }
        }
    }
    while (any_cpu_in_state(m, CPU_STATE_RUNNING)) {
        pthread_cond_wait(&m->cpu_cond, &m->cpu_lock);
    }
    pthread_mutex_unlock(&m->cpu_lock);
}

void cpus_resume(Machine *m)
{
    pthread_mutex_lock(&m->cpu_lock);
    for (int i = 0; i < m->ncpus; i++) {
        if (m->cpus[i]) {
            m->cpus[i]->want_run = true;
        }
    }
    pthread_cond_broadcast(&m->cpu_cond);
    pthread_mutex_unlock(&m->cpu_lock);
}

void cpus_destroy(Machine *m)
{
    pthread_mutex_lock(&m->cpu_lock);
    for (int i = 0; i < m->ncpus; i++) {
        CPUState *cpu = m->cpus[i];
        if (cpu) {
            cpu->quit = true;
            cpu->want_run = false;
            if (cpu->state == CPU_STATE_RUNNING) {
                m->accel_ops->kick(cpu->accel);
            }
        }
    }
    pthread_cond_broadcast(&m->cpu_cond);
    pthread_mutex_unlock(&m->cpu_lock);
    for (int i = 0; i < m->ncpus; i++) {
        CPUState *cpu = m->cpus[i];
        if (!cpu) {
            continue;
        }
        if (cpu->thread_started) {
            pthread_join(cpu->thread, NULL);
        }
        if (cpu->accel) {
            m->accel_ops->destroy_vcpu(cpu->accel);
        }
        g_free(cpu);
        m->cpus[i] = NULL;
    }
}

/*
 * Run fn on the vCPU's own thread between two guest entries and wait for
 * it.  A running vCPU is kicked out for the call and then goes on running;
 * before the threads exist, fn runs on the calling thread.
 */
void cpu_run_on(CPUState *cpu, void (*fn)(CPUState *cpu, void *data), void *data)
{
    Machine *m = cpu->m;
    pthread_mutex_lock(&m->cpu_lock);
    if (!cpu->thread_started || cpu->state == CPU_STATE_STOPPED ||
        pthread_equal(cpu->thread, pthread_self())) {
        pthread_mutex_unlock(&m->cpu_lock);
        fn(cpu, data);
        return;
    }
    while (cpu->work_pending) {
        pthread_cond_wait(&m->cpu_cond, &m->cpu_lock);
    }
    cpu->work_fn = fn;
    cpu->work_data = data;
    cpu->work_pending = true;
    pthread_cond_broadcast(&m->cpu_cond);
    if (cpu->state == CPU_STATE_RUNNING) {
        m->accel_ops->kick(cpu->accel);
    }
    while (cpu->work_pending && cpu->state != CPU_STATE_STOPPED) {
        pthread_cond_wait(&m->cpu_cond, &m->cpu_lock);
    }
    bool lost = cpu->work_pending;
    cpu->work_pending = false;
    pthread_mutex_unlock(&m->cpu_lock);
    if (lost) {
        fn(cpu, data);      /* the thread ended first: nobody else touches the vCPU */
    }
}

int cpu_index(CPUState *cpu)
{
    return cpu->index;
}

int cpu_thread_id(CPUState *cpu)
{
    pthread_mutex_lock(&cpu->m->cpu_lock);
    int tid = cpu->tid;
    pthread_mutex_unlock(&cpu->m->cpu_lock);
    return tid;
}

bool cpu_is_paused(CPUState *cpu)
{
    pthread_mutex_lock(&cpu->m->cpu_lock);
    bool paused = cpu->state != CPU_STATE_RUNNING;
    pthread_mutex_unlock(&cpu->m->cpu_lock);
    return paused;
}

typedef struct StateCall {
    void *state;
    bool put;
    bool ok;
    Error *err;
} StateCall;

static void do_state_call(CPUState *cpu, void *data)
{
    StateCall *c = data;
    const AccelOps *ops = cpu->m->accel_ops;
    c->ok = c->put ? ops->put_vcpu_state(cpu->accel, c->state, &c->err)
                   : ops->get_vcpu_state(cpu->accel, c->state, &c->err);
}

bool cpu_get_state(CPUState *cpu, void *state, Error **errp)
{
    StateCall c = { .state = state };
    cpu_run_on(cpu, do_state_call, &c);
    if (!c.ok) {
        error_propagate(errp, c.err);
    }
    return c.ok;
}

bool cpu_put_state(CPUState *cpu, const void *state, Error **errp)
{
    StateCall c = { .state = (void *)state, .put = true };
    cpu_run_on(cpu, do_state_call, &c);
    if (!c.ok) {
        error_propagate(errp, c.err);
    }
    return c.ok;
}
