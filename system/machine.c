/*
 * The machine: creation, start, pause/resume, reset, destroy, requests
 * from vCPU threads to the main thread, and guest-physical access.
 */
#include <inttypes.h>
#include <string.h>
#include <glib.h>

#include "machine-int.h"
#include "util/main-loop.h"

static const char *const shutdown_cause_names[] = {
    [SHUTDOWN_CAUSE_NONE] = "none",
    [SHUTDOWN_CAUSE_HOST_QMP_QUIT] = "host-qmp-quit",
    [SHUTDOWN_CAUSE_HOST_SIGNAL] = "host-signal",
    [SHUTDOWN_CAUSE_GUEST_SHUTDOWN] = "guest-shutdown",
    [SHUTDOWN_CAUSE_GUEST_RESET] = "guest-reset",
    [SHUTDOWN_CAUSE_GUEST_PANIC] = "guest-panic",
};

const char *shutdown_cause_name(ShutdownCause cause)
{
    if ((unsigned)cause >= G_N_ELEMENTS(shutdown_cause_names)) {
        return "unknown";
    }
    return shutdown_cause_names[cause];
}

void ram_backend_options_free(RamBackendOptions *o)
{
    if (o) {
        g_free(o->id);
        g_free(o->mem_path);
        g_free(o);
    }
}

static void backend_options_free_cb(gpointer p)
{
    ram_backend_options_free(p);
}

void machine_options_free(MachineOptions *opts)
{
    if (!opts) {
        return;
    }
    g_free(opts->accel);
    g_free(opts->kernel);
    g_free(opts->append);
    g_free(opts->initrd);
    g_free(opts->name);
    g_free(opts->memory_backend);
    g_free(opts->serial);
    if (opts->backends) {
        g_ptr_array_set_free_func(opts->backends, backend_options_free_cb);
        g_ptr_array_unref(opts->backends);
    }
    g_free(opts);
}

static bool check_options(const MachineOptions *o, Error **errp)
{
    if (o->smp < 1 || o->smp > AMBER_MAX_CPUS) {
        error_setg(errp, "invalid number of vCPUs %d: amber supports 1 to %d", o->smp,
                   AMBER_MAX_CPUS);
        return false;
    }
    if (o->accel && !accel_find(o->accel)) {
        error_setg(errp, "unknown accelerator '%s' (amber supports: kvm)", o->accel);
        return false;
    }
    if (!o->memory_backend && o->ram_size < (2ULL << 20)) {
        error_setg(errp, "RAM size %" PRIu64 " is too small: amber needs at least 2 MiB",
                   o->ram_size);
        return false;
    }
    return true;
}

static const RamBackendOptions *find_backend(const MachineOptions *o, Error **errp)
{
    for (guint i = 0; o->backends && i < o->backends->len; i++) {
        const RamBackendOptions *b = g_ptr_array_index(o->backends, i);
        if (b->id && strcmp(b->id, o->memory_backend) == 0) {
            return b;
        }
    }
    error_setg(errp, "memory backend '%s' not found (define it with "
               "-object memory-backend-ram|memfd|file,id=%s,size=...)",
               o->memory_backend, o->memory_backend);
    return NULL;
}

/* Guest RAM from -m, or from the -object named by -machine memory-backend. */
static bool create_ram(Machine *m, Error **errp)
{
    MachineOptions *o = m->opts;
    RAMBlock *rb;
    if (o->memory_backend) {
        const RamBackendOptions *b = find_backend(o, errp);
        if (!b) {
            return false;
        }
        RamBackendOptions eff = *b;

        /* A backend's own dump= wins; otherwise the machine's dump-guest-core. */
        if (eff.dump == RAM_DUMP_DEFAULT && o->no_guest_core) {
            eff.dump = RAM_DUMP_OFF;
        }
        rb = ram_block_new(b->id, &eff, errp);
        if (rb) {
            o->ram_size = b->size;      /* the backend's size is the RAM size */
        }
    } else {
        RamBackendOptions anon = { .kind = RAM_BACKEND_RAM, .size = o->ram_size,
                                   .dump = o->no_guest_core ? RAM_DUMP_OFF : RAM_DUMP_ON };
        rb = ram_block_new("pc.ram", &anon, errp);
    }
    if (!rb) {
        return false;
    }
    if (!ram_map_guest(&m->ram, rb, errp)) {
        ram_block_free(rb);
        return false;
    }
    for (int i = 0; i < m->ram.nregions; i++) {
        if (!m->accel_ops->map_region(m->accel, &m->ram.regions[i], errp)) {
            return false;
        }
    }
    return true;
}

/* Power-on state of every vCPU and of the VM, for machine_reset. */
static bool capture_reset_state(Machine *m, Error **errp)
{
    for (int i = 0; i < m->ncpus; i++) {
        m->reset_vcpu_state[i] = g_malloc0(m->accel_ops->vcpu_state_size);
        if (!cpu_get_state(m->cpus[i], m->reset_vcpu_state[i], errp)) {
            return false;
        }
    }
    m->reset_vm_state = g_malloc0(m->accel_ops->vm_state_size);
    return m->accel_ops->get_vm_state(m->accel, m->reset_vm_state, errp);
}

Machine *machine_create(MachineOptions *opts, Error **errp)
{
    Machine *m = g_new0(Machine, 1);
    m->opts = opts;
    pthread_mutex_init(&m->dev_lock, NULL);
    pthread_mutex_init(&m->cpu_lock, NULL);
    pthread_cond_init(&m->cpu_cond, NULL);
    pthread_mutex_init(&m->req_lock, NULL);
    m->runstate = RUN_STATE_PRELAUNCH;
    if (!check_options(opts, errp)) {
        goto fail;
    }
    m->ncpus = opts->smp;
    m->accel_ops = accel_find(opts->accel);
    m->accel = m->accel_ops->init_vm(m, m->ncpus, errp);
    if (!m->accel || !create_ram(m, errp) || !cpus_create(m, errp)) {
        goto fail;
    }
    m->tsc_khz = m->accel_ops->tsc_khz(m->accel);
    if (!capture_reset_state(m, errp) || !devices_realize(m, errp) ||
        !loader_load_guest(m, errp)) {
        goto fail;
    }
    return m;

fail:
    machine_destroy(m);
    return NULL;
}

bool machine_start(Machine *m, Error **errp)
{
    if (m->started) {
        return true;
    }
    if (!cpus_start(m, errp)) {
        return false;
    }
    m->started = true;
    if (!m->opts->start_paused && machine_runstate(m) == RUN_STATE_PRELAUNCH) {
        machine_set_runstate(m, RUN_STATE_RUNNING);
        cpus_resume(m);
    }
    return true;
}

void machine_destroy(Machine *m)
{
    if (!m) {
        return;
    }
    cpus_destroy(m);
    devices_unrealize(m);
    if (m->accel) {
        m->accel_ops->destroy_vm(m->accel);
    }
    ram_block_list_clear(&m->ram);
    machine_soft_dirty_free(m);
    pthread_mutex_lock(&m->req_lock);
    if (m->notify_source) {
        g_source_remove(m->notify_source);
        m->notify_source = 0;
    }
    pthread_mutex_unlock(&m->req_lock);
    for (int i = 0; i < AMBER_MAX_CPUS; i++) {
        g_free(m->reset_vcpu_state[i]);
    }
    g_free(m->reset_vm_state);
    machine_options_free(m->opts);
    pthread_cond_destroy(&m->cpu_cond);
    pthread_mutex_destroy(&m->cpu_lock);
    pthread_mutex_destroy(&m->dev_lock);
    pthread_mutex_destroy(&m->req_lock);
    g_free(m);
}

bool machine_pause(Machine *m, Error **errp)
{
    cpus_pause(m);
    return true;
}

void machine_resume(Machine *m)
{
    if (m->started) {
        cpus_resume(m);
    }
}

bool machine_reset(Machine *m, Error **errp)
{
    cpus_pause(m);
    for (int i = 0; i < m->ncpus; i++) {
        if (!cpu_put_state(m->cpus[i], m->reset_vcpu_state[i], errp)) {
            return false;
        }
    }
    if (!m->accel_ops->put_vm_state(m->accel, m->reset_vm_state, errp)) {
        return false;
    }
    devices_reset(m);
    if (!loader_load_guest(m, errp)) {
        return false;
    }
    /* The loader wrote behind the accelerator's dirty log. */
    machine_mark_all_dirty(m);
    pthread_mutex_lock(&m->cpu_lock);
    for (int i = 0; i < m->ncpus; i++) {
        m->cpus[i]->stopped_for_good = false;
    }
    pthread_mutex_unlock(&m->cpu_lock);
    if (m->started && runstate_is_running(machine_runstate(m))) {
        cpus_resume(m);
    }
    return true;
}

/* ---- requests from vCPU threads ------------------------------------------ */

static gboolean deliver_requests(gpointer opaque)
{
    Machine *m = opaque;
    pthread_mutex_lock(&m->req_lock);
    m->notify_source = 0;
    MachineRequestNotify fn = m->notify;
    void *fn_opaque = m->notify_opaque;
    pthread_mutex_unlock(&m->req_lock);
    if (fn) {
        fn(m, fn_opaque);
    }
    return G_SOURCE_REMOVE;
}

/* With req_lock held: have the main loop call the notifier once. */
static void schedule_notify(Machine *m)
{
    if (m->notify && !m->notify_source) {
        m->notify_source = main_loop_call_soon(deliver_requests, m);
    }
}

void machine_request_shutdown(Machine *m, ShutdownCause cause, int exit_code)
{
    pthread_mutex_lock(&m->req_lock);
    if (m->shutdown_req == SHUTDOWN_CAUSE_NONE) {
        m->shutdown_req = cause;
        m->shutdown_exit_code = exit_code;
    }
    schedule_notify(m);
    pthread_mutex_unlock(&m->req_lock);
}

void machine_request_reset(Machine *m)
{
    pthread_mutex_lock(&m->req_lock);
    m->reset_req = true;
    schedule_notify(m);
    pthread_mutex_unlock(&m->req_lock);
}

void machine_set_request_notify(Machine *m, MachineRequestNotify fn, void *opaque)
{
    pthread_mutex_lock(&m->req_lock);
    m->notify = fn;
    m->notify_opaque = opaque;
    if (m->shutdown_req != SHUTDOWN_CAUSE_NONE || m->reset_req) {
        schedule_notify(m);
    }
    pthread_mutex_unlock(&m->req_lock);
}

ShutdownCause machine_take_shutdown_request(Machine *m, int *exit_code)
{
    pthread_mutex_lock(&m->req_lock);
    ShutdownCause c = m->shutdown_req;
    if (exit_code) {
        *exit_code = m->shutdown_exit_code;
    }
    m->shutdown_req = SHUTDOWN_CAUSE_NONE;
    m->shutdown_exit_code = 0;
    pthread_mutex_unlock(&m->req_lock);
    return c;
}

bool machine_take_reset_request(Machine *m)
{
    pthread_mutex_lock(&m->req_lock);
    bool r = m->reset_req;
    m->reset_req = false;
    pthread_mutex_unlock(&m->req_lock);
    return r;
}

/* ---- accessors -------------------------------------------------------------- */

RunState machine_runstate(Machine *m)
{
    return (RunState)__atomic_load_n(&m->runstate, __ATOMIC_ACQUIRE);
}

void machine_set_runstate(Machine *m, RunState s)
{
    __atomic_store_n(&m->runstate, (int)s, __ATOMIC_RELEASE);
}

int machine_ncpus(Machine *m)
{
    return m->ncpus;
}

CPUState *machine_cpu(Machine *m, int index)
{
    return index >= 0 && index < m->ncpus ? m->cpus[index] : NULL;
}

const MachineOptions *machine_options(Machine *m)
{
    return m->opts;
}

RamBlockList *machine_ram(Machine *m)
{
    return &m->ram;
}

const AccelOps *machine_accel_ops(Machine *m)
{
    return m->accel_ops;
}

AccelState *machine_accel(Machine *m)
{
    return m->accel;
}

uint32_t machine_tsc_khz(Machine *m)
{
    return m->tsc_khz;
}

bool machine_get_vm_state(Machine *m, void *state, Error **errp)
{
    return m->accel_ops->get_vm_state(m->accel, state, errp);
}

bool machine_put_vm_state(Machine *m, const void *state, Error **errp)
{
    return m->accel_ops->put_vm_state(m->accel, state, errp);
}

void *machine_gpa_to_hva(Machine *m, uint64_t gpa, uint64_t len)
{
    return ram_gpa_to_hva(&m->ram, gpa, len);
}

bool machine_read_phys(Machine *m, uint64_t gpa, void *buf, uint64_t len, Error **errp)
{
    void *p = machine_gpa_to_hva(m, gpa, len);
    if (!p) {
        error_setg(errp, "guest-physical range 0x%" PRIx64 "+0x%" PRIx64 " is not RAM",
                   gpa, len);
        return false;
    }
    memcpy(buf, p, len);
    return true;
}

bool machine_write_phys(Machine *m, uint64_t gpa, const void *buf, uint64_t len,
                        Error **errp)
{
    void *p = machine_gpa_to_hva(m, gpa, len);
    if (!p) {
        error_setg(errp, "guest-physical range 0x%" PRIx64 "+0x%" PRIx64 " is not RAM",
                   gpa, len);
        return false;
    }
    memcpy(p, buf, len);
    /* After the copy: whoever takes the bit then finds the new bytes. */
    machine_mark_dirty(m, gpa, len);
    return true;
}
