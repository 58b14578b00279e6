/*
 * The machine's non-RAM state as one image (include/system/machine-state.h).
 *
 * The image is a list of slots, one per section: each holds a plain
 * struct (a vCPU's KvmVcpuImage, a piece of KvmVmState, a device's state),
 * the description that saves and loads it, and whether a load has filled
 * it.  The description registered for a slot is the owner's, with its
 * post_load wrapped to mark the slot loaded, so the sections in the
 * stream are exactly the owners' and complete() can name what is missing.
 *
 * Nothing here touches KVM or a device until apply(), and apply() starts
 * only once complete() is satisfied: a bad stream leaves the machine as
 * it was.
 */
#include <inttypes.h>
#include <stddef.h>
#include <string.h>
#include <glib.h>

#include "machine-int.h"
#include "accel/kvm-vmstate.h"
#include "migration/savevm.h"
#include "system/machine-state.h"

typedef struct StateSlot {
    const char *idstr;                  /* section name */
    uint32_t instance;
    const VMStateDescription *orig;     /* the owner's description */
    VMStateDescription vmsd;            /* orig, with the hooks below */
    bool loaded;                        /* filled by a load or a capture */
    bool surplus;                       /* a vCPU this machine lacks (loading only) */
    const DeviceInfo *dev;              /* device slots */
    void *dev_opaque;
    max_align_t data[];                 /* the state orig describes */
} StateSlot;

struct MachineStateImage {
    Machine *m;
    int ncpus;
    bool captured;
    /* [0, ncpus) always; up to AMBER_MAX_CPUS once registered for loading. */
    StateSlot *cpu[AMBER_MAX_CPUS];
    StateSlot *clock;
    StateSlot *pic[2];
    StateSlot *ioapic;
    StateSlot *pit;
    GPtrArray *devices;                 /* of StateSlot *, in realize order */
};

/* A TSC rate further than this from the saved one makes guest time drift. */
#define TSC_KHZ_TOLERANCE_PPM 250

static StateSlot *slot_of(void *data)
{
    return (StateSlot *)((char *)data - offsetof(StateSlot, data));
}

static bool slot_pre_save(void *opaque, Error **errp)
{
    StateSlot *s = slot_of(opaque);

    if (s->surplus) {
        error_setg(errp, "vCPU %u is not part of this machine: register the state "
                   "for saving only after machine_state_capture()", s->instance);
        return false;
    }
    return !s->orig->pre_save || s->orig->pre_save(opaque, errp);
}

static bool slot_post_load(void *opaque, int version_id, Error **errp)
{
    StateSlot *s = slot_of(opaque);

    if (s->orig->post_load && !s->orig->post_load(opaque, version_id, errp)) {
        return false;
    }
    s->loaded = true;
    return true;
}

static StateSlot *slot_new(const char *idstr, uint32_t instance,
                           const VMStateDescription *vmsd, size_t size)
{
    StateSlot *s = g_malloc0(sizeof(*s) + size);

    s->idstr = idstr;
    s->instance = instance;
    s->orig = vmsd;
    s->vmsd = *vmsd;
    s->vmsd.pre_save = slot_pre_save;
    s->vmsd.post_load = slot_post_load;
    return s;
}

static StateSlot *cpu_slot_new(uint32_t index)
{
    StateSlot *s = slot_new("cpu", index, &vmstate_kvm_cpu, sizeof(KvmVcpuImage));
    KvmVcpuImage *ci = (void *)s->data;

    ci->index = index;
    return s;
}

static StateSlot *irqchip_slot_new(const char *idstr, uint32_t instance,
                                   const VMStateDescription *vmsd, uint32_t chip_id)
{
    StateSlot *s = slot_new(idstr, instance, vmsd, sizeof(struct kvm_irqchip));
    struct kvm_irqchip *chip = (void *)s->data;

    /* Not in the stream: which chip a payload belongs to is its section's name. */
    chip->chip_id = chip_id;
    return s;
}

MachineStateImage *machine_state_image_new(Machine *m)
{
    MachineStateImage *img = g_new0(MachineStateImage, 1);

    /* The descriptions here are KVM's; another accelerator brings its own. */
    g_assert(m->accel_ops->vcpu_state_size == sizeof(KvmVcpuState));
    g_assert(m->accel_ops->vm_state_size == sizeof(KvmVmState));
    img->m = m;
    img->ncpus = m->ncpus;
    for (int i = 0; i < img->ncpus; i++) {
        img->cpu[i] = cpu_slot_new(i);
    }
    img->clock = slot_new("kvmclock", 0, &vmstate_kvm_clock,
                          sizeof(struct kvm_clock_data));
    img->pic[0] = irqchip_slot_new("pic", 0, &vmstate_kvm_pic, KVM_IRQCHIP_PIC_MASTER);
    img->pic[1] = irqchip_slot_new("pic", 1, &vmstate_kvm_pic, KVM_IRQCHIP_PIC_SLAVE);
    img->ioapic = irqchip_slot_new("ioapic", 0, &vmstate_kvm_ioapic, KVM_IRQCHIP_IOAPIC);
    img->pit = slot_new("pit", 0, &vmstate_kvm_pit, sizeof(struct kvm_pit_state2));
    img->devices = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; m->devices && i < m->devices->len; i++) {
        DeviceInstance *d = &g_array_index(m->devices, DeviceInstance, i);
        const DeviceInfo *info = d->info;

        if (!info->vmsd) {
            continue;
        }
        g_assert(info->get_state && info->put_state && info->state_size);
        StateSlot *s = slot_new(info->name, 0, info->vmsd, info->state_size);
        s->dev = info;
        s->dev_opaque = d->opaque;
        g_ptr_array_add(img->devices, s);
    }
    return img;
}

void machine_state_image_free(MachineStateImage *img)
{
    if (!img) {
        return;
    }
    for (int i = 0; i < AMBER_MAX_CPUS; i++) {
        g_free(img->cpu[i]);
    }
    g_free(img->clock);
    g_free(img->pic[0]);
    g_free(img->pic[1]);
    g_free(img->ioapic);
    g_free(img->pit);
    g_ptr_array_unref(img->devices);
    g_free(img);
}

/* Every slot that belongs to the machine (not the surplus vCPUs), in section order. */
static GPtrArray *machine_slots(MachineStateImage *img)
{
    GPtrArray *a = g_ptr_array_new();

    for (int i = 0; i < img->ncpus; i++) {
        g_ptr_array_add(a, img->cpu[i]);
    }
    g_ptr_array_add(a, img->clock);
    g_ptr_array_add(a, img->pic[0]);
    g_ptr_array_add(a, img->pic[1]);
    g_ptr_array_add(a, img->ioapic);
    g_ptr_array_add(a, img->pit);
    for (guint i = 0; i < img->devices->len; i++) {
        g_ptr_array_add(a, img->devices->pdata[i]);
    }
    return a;
}

static bool check_paused(Machine *m, const char *what, Error **errp)
{
    for (int i = 0; i < m->ncpus; i++) {
        if (!cpu_is_paused(m->cpus[i])) {
            error_setg(errp, "cannot %s the machine's state while vCPU %d is running: "
                       "pause the machine first", what, i);
            return false;
        }
    }
    return true;
}

/* ---- capture ----------------------------------------------------------------- */

static void capture_devices(MachineStateImage *img)
{
    for (guint i = 0; i < img->devices->len; i++) {
        StateSlot *s = img->devices->pdata[i];

        s->dev->get_state(s->dev_opaque, s->data);
    }
}

static bool capture_accel(Machine *m, MachineStateImage *img, Error **errp)
{
    KvmVmState vm;

    for (int i = 0; i < img->ncpus; i++) {
        KvmVcpuImage *ci = (void *)img->cpu[i]->data;

        if (!cpu_get_state(m->cpus[i], &ci->st, errp)) {
            return false;
        }
    }
    if (!machine_get_vm_state(m, &vm, errp)) {
        return false;
    }
    memcpy(img->clock->data, &vm.clock, sizeof(vm.clock));
    memcpy(img->pic[0]->data, &vm.pic_master, sizeof(vm.pic_master));
    memcpy(img->pic[1]->data, &vm.pic_slave, sizeof(vm.pic_slave));
    memcpy(img->ioapic->data, &vm.ioapic, sizeof(vm.ioapic));
    memcpy(img->pit->data, &vm.pit, sizeof(vm.pit));
    return true;
}

/*
 * Devices first, then KVM, all under the device lock: an interrupt a
 * device raised is then already in the irqchip state read after it, and
 * no input (serial bytes from the main loop) slips in between.
 */
bool machine_state_capture(Machine *m, MachineStateImage *img, Error **errp)
{
    g_assert(img->m == m);
    if (!check_paused(m, "capture", errp)) {
        return false;
    }
    machine_lock_devices(m);
    capture_devices(img);
    bool ok = capture_accel(m, img, errp);
    machine_unlock_devices(m);
    if (!ok) {
        error_prepend(errp, "capturing the machine's state: ");
        return false;
    }
    g_autoptr(GPtrArray) slots = machine_slots(img);
    for (guint i = 0; i < slots->len; i++) {
        ((StateSlot *)slots->pdata[i])->loaded = true;
    }
    img->captured = true;
    return true;
}

/* ---- registration ----------------------------------------------------------------- */

static bool register_slot(SaveStateRegistry *r, StateSlot *s, Error **errp)
{
    return savevm_register_vmsd(r, s->idstr, s->instance, &s->vmsd, s->data, errp) != NULL;
}

bool machine_state_register(Machine *m, MachineStateImage *img, SaveStateRegistry *r,
                            Error **errp)
{
    g_assert(img->m == m);
    /*
     * Loading: accept vCPUs beyond the machine's so that complete() can
     * say "the stream has 4 vCPUs, this machine has 2" instead of the
     * loader stopping at an unknown section.
     */
    if (!img->captured) {
        for (int i = img->ncpus; i < AMBER_MAX_CPUS; i++) {
            if (!img->cpu[i]) {
                img->cpu[i] = cpu_slot_new(i);
                img->cpu[i]->surplus = true;
            }
        }
    }
    for (int i = 0; i < AMBER_MAX_CPUS && img->cpu[i]; i++) {
        if (!register_slot(r, img->cpu[i], errp)) {
            return false;
        }
    }
    g_autoptr(GPtrArray) slots = machine_slots(img);
    for (guint i = img->ncpus; i < slots->len; i++) {
        if (!register_slot(r, slots->pdata[i], errp)) {
            return false;
        }
    }
    return true;
}

/* ---- completeness ----------------------------------------------------------------- */

/* The vCPU count of the stream against the machine's, naming the first mismatch. */
static bool check_cpus(MachineStateImage *img, Error **errp)
{
    int n = 0, surplus = -1, missing = -1;

    for (int i = 0; i < AMBER_MAX_CPUS; i++) {
        StateSlot *s = img->cpu[i];

        if (s && s->loaded) {
            n++;
            surplus = (s->surplus && surplus < 0) ? i : surplus;
        } else if (i < img->ncpus && missing < 0) {
            missing = i;
        }
    }
    if (n > img->ncpus) {
        error_setg(errp, "the stream has %d vCPUs, this machine has %d (start it with "
                   "-smp %d)", n, img->ncpus, n);
        return false;
    }
    if (surplus >= 0) {
        error_setg(errp, "the stream has state for vCPU %d, which this machine (%d vCPUs) "
                   "does not have", surplus, img->ncpus);
        return false;
    }
    if (missing >= 0) {
        error_setg(errp, "the stream has no state for vCPU %d (it has %d vCPU%s, this "
                   "machine has %d)", missing, n, n == 1 ? "" : "s", img->ncpus);
        return false;
    }
    return true;
}

bool machine_state_complete(MachineStateImage *img, Error **errp)
{
    if (!check_cpus(img, errp)) {
        return false;
    }
    g_autoptr(GPtrArray) slots = machine_slots(img);
    for (guint i = 0; i < slots->len; i++) {
        StateSlot *s = slots->pdata[i];

        if (!s->loaded) {
            error_setg(errp, "the stream has no section '%s' instance %u", s->idstr,
                       s->instance);
            return false;
        }
    }
    return true;
}

/* ---- apply ------------------------------------------------------------------------- */

/* KVM here cannot rescale the TSC: a guest restored elsewhere keeps the host's rate. */
static void check_tsc_khz(Machine *m, const KvmVcpuState *st)
{
    uint64_t have = machine_tsc_khz(m), saved = st->tsc_khz;

    if (!have || !saved) {
        return;
    }
    uint64_t diff = have > saved ? have - saved : saved - have;
    if (diff * 1000000 > saved * TSC_KHZ_TOLERANCE_PPM) {
        warn_report("the saved guest TSC ran at %" PRIu64 " kHz, this host's at %" PRIu64
                    " kHz: guest time will drift", saved, have);
    }
}

static bool apply_accel(Machine *m, MachineStateImage *img, Error **errp)
{
    KvmVmState vm;

    /* vCPUs first, each on its own thread; then PIT, clock, irqchips. */
    for (int i = 0; i < img->ncpus; i++) {
        const KvmVcpuImage *ci = (const void *)img->cpu[i]->data;

        if (i == 0) {
            check_tsc_khz(m, &ci->st);
        }
        if (!cpu_put_state(m->cpus[i], &ci->st, errp)) {
            return false;
        }
    }
    memcpy(&vm.clock, img->clock->data, sizeof(vm.clock));
    memcpy(&vm.pic_master, img->pic[0]->data, sizeof(vm.pic_master));
    memcpy(&vm.pic_slave, img->pic[1]->data, sizeof(vm.pic_slave));
    memcpy(&vm.ioapic, img->ioapic->data, sizeof(vm.ioapic));
    memcpy(&vm.pit, img->pit->data, sizeof(vm.pit));
    return machine_put_vm_state(m, &vm, errp);
}

/*
 * Devices after the irqchips: a device's put_state drives its interrupt
 * line at the saved level, which the restored irqchip must then see.
 */
static bool apply_devices(Machine *m, MachineStateImage *img, Error **errp)
{
    bool ok = true;

    machine_lock_devices(m);
    for (guint i = 0; ok && i < img->devices->len; i++) {
        StateSlot *s = img->devices->pdata[i];

        ok = s->dev->put_state(s->dev_opaque, s->data, errp);
    }
    machine_unlock_devices(m);
    return ok;
}

bool machine_state_apply(Machine *m, MachineStateImage *img, Error **errp)
{
    g_assert(img->m == m);
    if (!machine_state_complete(img, errp) || !check_paused(m, "restore", errp)) {
        return false;
    }
    if (!apply_accel(m, img, errp) || !apply_devices(m, img, errp)) {
        error_prepend(errp, "restoring the machine's state: ");
        return false;
    }
    return true;
}
