/*
 * The machine's non-RAM state through a real stream: the built-in guest
 * runs on two vCPUs, is paused and captured, its sections go through the
 * savevm writer into memory and back through the loader into a new
 * machine (RAM copied across), which must continue the guest where it
 * stopped.  Streams that lack a vCPU, carry one too many, or a count or
 * size over its bound are refused with a message and leave the machine
 * as it was.
 */
#include <inttypes.h>
#include <string.h>
#include <glib.h>

#include "test-helpers.h"

#include "kvm-payload.h"
#include "accel/kvm-vmstate.h"
#include "hw/serial.h"
#include "migration/savevm.h"
#include "system/machine-state.h"

#define RAM_SIZE (32ULL << 20)
/*
 * A capped rate (a pass of 128 pages per vCPU every 6.4 ms) keeps pass
 * numbers meaningful: a guest that restarted instead of continuing could
 * not get past the saved pass without first going back to pass 1.
 */
#define GUEST_ARGS "workload=wave ws_mib=1 rate=20000 report=60000"

/* docs/guest.md: header and per-vCPU progress records. */
#define REC_BASE 0x101000
#define HDR_MAGIC 0x3154534752424d41ull
#define REC_MAGIC 0x5550435652424d41ull
#define PAGE 4096

static bool skip_without_kvm(void)
{
    if (!kvm_usable()) {
        g_test_skip("/dev/kvm is not available");
        return true;
    }
    return false;
}

static Machine *guest_machine(int smp)
{
    MachineOptions *o = g_new0(MachineOptions, 1);
    Error *err = NULL;

    o->ram_size = RAM_SIZE;
    o->smp = smp;
    o->accel = g_strdup("kvm");
    o->append = g_strdup(GUEST_ARGS);
    o->serial = g_strdup("null");
    o->backends = g_ptr_array_new();
    Machine *m = machine_create(o, &err);
    if (!m) {
        g_error("machine_create: %s", error_get_pretty(err));
    }
    return m;
}

static uint64_t rd64(Machine *m, uint64_t gpa)
{
    volatile uint64_t *p = machine_gpa_to_hva(m, gpa, 8);
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* pass << 32 | pos of vCPU v, or 0 while its record is not published. */
static uint64_t progress(Machine *m, int v)
{
    uint64_t rec = REC_BASE + 256 * (1 + v);
    return rd64(m, rec) == REC_MAGIC ? rd64(m, rec + 8) : 0;
}

/* Wait (10 s at most) until every vCPU's progress is above above[v]. */
static bool wait_progress(Machine *m, const uint64_t *above)
{
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;

    for (;;) {
        bool all = true;
        for (int v = 0; v < machine_ncpus(m); v++) {
            all &= progress(m, v) > above[v];
        }
        if (all) {
            return true;
        }
        if (g_get_monotonic_time() > deadline) {
            return false;
        }
        g_usleep(1000);
    }
}

static uint64_t stamp(uint64_t pass, int v, uint64_t i)
{
    return pass ? pass << 32 | (uint64_t)(v & 0xff) << 24 | i : 0;
}

/*
 * The wave invariant of docs/guest.md on a paused machine's RAM: pages
 * before the record's position carry this pass, pages after it the
 * previous one, the page at it either.  Returns the violations.
 */
static int wave_violations(Machine *m, int v)
{
    uint64_t rec = REC_BASE + 256 * (1 + v);
    uint64_t pp = rd64(m, rec + 8), pass = pp >> 32, pos = (uint32_t)pp;
    uint32_t nseg = (uint32_t)(rd64(m, rec + 16) >> 32);
    uint64_t i = 0;
    int bad = 0;

    g_assert_cmphex(rd64(m, rec), ==, REC_MAGIC);
    g_assert_cmpuint(nseg, >=, 1);
    g_assert_cmpuint(nseg, <=, 12);
    for (uint32_t s = 0; s < nseg; s++) {
        uint64_t addr = rd64(m, rec + 64 + 16 * s), n = rd64(m, rec + 72 + 16 * s);
        for (uint64_t k = 0; k < n; k++, i++) {
            uint64_t a = rd64(m, addr + k * PAGE), b = rd64(m, addr + k * PAGE + PAGE - 8);
            uint64_t now = stamp(pass, v, i), before = stamp(pass - 1, v, i);
            bool ok = i < pos ? (a == now && b == now)
                    : i > pos ? (a == before && b == before)
                    : ((a == now || a == before) && (b == now || b == before));
            bad += !ok;
        }
    }
    return bad;
}

/* Sections of a machine's image, as a whole stream in memory. */
static GBytes *save_stream(SaveStateRegistry *r)
{
    QEMUFile *f = qemu_file_new_mem_output("test stream");
    Error *err = NULL;
    size_t len;

    if (!test_save_stream(r, f, &err)) {
        g_error("save: %s", error_get_pretty(err));
    }
    const uint8_t *data = qemu_file_mem_data(f, &len);
    GBytes *b = g_bytes_new(data, len);
    g_assert_cmpint(qemu_fclose(f), ==, 0);
    return b;
}

static bool load_stream(SaveStateRegistry *r, GBytes *stream, char **vmdesc, Error **errp)
{
    size_t len;
    const void *data = g_bytes_get_data(stream, &len);
    QEMUFile *f = qemu_file_new_mem_input(data, len, "test stream");
    bool ok = savevm_load(r, f, NULL, vmdesc, errp);

    qemu_fclose(f);
    return ok;
}

/*
 * Follow every vCPU until it is `passes` passes beyond saved[v]; no sample
 * may fall below what was saved.
 */
static void follow_progress(Machine *m, const uint64_t *saved, unsigned passes)
{
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    bool all;

    do {
        all = true;
        for (int v = 0; v < machine_ncpus(m); v++) {
            uint64_t p = progress(m, v);
            if (p < saved[v]) {
                g_error("vCPU %d went back from pass %" PRIu64 " pos %" PRIu64 " to pass %"
                        PRIu64 " pos %" PRIu64, v, saved[v] >> 32, saved[v] & 0xffffffff,
                        p >> 32, p & 0xffffffff);
            }
            all &= p >= saved[v] + ((uint64_t)passes << 32);
        }
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(200);
    } while (!all);
}

typedef struct Saved {
    GBytes *stream;
    uint8_t *ram;
    uint64_t progress[AMBER_MAX_CPUS];
    struct kvm_regs regs[AMBER_MAX_CPUS];
    KvmVmState vm;
    SerialState serial;
} Saved;

/* Run the guest on smp vCPUs until each is past its second pass, pause, save. */
static void save_running_guest(int smp, Saved *out)
{
    Machine *m = guest_machine(smp);
    uint64_t zero[AMBER_MAX_CPUS] = { 0 };
    Error *err = NULL;

    g_assert_true(machine_start(m, NULL));
    g_assert_true(wait_progress(m, zero));
    uint64_t three[AMBER_MAX_CPUS];
    for (int v = 0; v < smp; v++) {
        three[v] = 3ull << 32;
    }
    g_assert_true(wait_progress(m, three));
    g_assert_true(machine_pause(m, NULL));

    /*
     * State the guest itself leaves alone, so that a restore that skipped
     * it shows: an interrupt line raised at the irqchips, and a received
     * byte with its interrupt enabled in the UART (the line stays high).
     */
    SerialDevice *ser = machine_find_device(m, "serial");
    machine_set_irq(m, 5, 1);
    machine_lock_devices(m);
    serial_io_ops.write(ser, UART_IER, UART_IER_RDI, 1);
    serial_receive(ser, (const uint8_t *)"x", 1);
    out->serial = *serial_state(ser);
    machine_unlock_devices(m);
    g_assert_cmpuint(out->serial.irq_level, ==, 1);
    g_assert_true(machine_get_vm_state(m, &out->vm, NULL));

    MachineStateImage *img = machine_state_image_new(m);
    SaveStateRegistry *r = savevm_registry_new();
    if (!machine_state_capture(m, img, &err) ||
        !machine_state_register(m, img, r, &err)) {
        g_error("capture: %s", error_get_pretty(err));
    }
    /* Sections in order: vCPUs, then the VM, then devices. */
    g_assert_cmpstr(savevm_registry_nth(r, 0)->idstr, ==, "cpu");
    g_assert_cmpstr(savevm_registry_nth(r, smp)->idstr, ==, "kvmclock");
    g_assert_cmpstr(savevm_registry_nth(r, savevm_registry_count(r) - 1)->idstr, ==,
                    "i8042");
    out->stream = save_stream(r);
    out->ram = g_memdup2(machine_gpa_to_hva(m, 0, RAM_SIZE), RAM_SIZE);
    for (int v = 0; v < smp; v++) {
        KvmVcpuState *st = g_new0(KvmVcpuState, 1);
        g_assert_true(cpu_get_state(machine_cpu(m, v), st, NULL));
        out->regs[v] = st->regs;
        g_free(st);
        out->progress[v] = progress(m, v);
        g_assert_cmpint(wave_violations(m, v), ==, 0);
    }
    savevm_registry_free(r);
    machine_state_image_free(img);
    machine_destroy(m);
}

static void saved_free(Saved *s)
{
    g_bytes_unref(s->stream);
    g_free(s->ram);
}

static void test_round_trip(void)
{
    if (skip_without_kvm()) {
        return;
    }
    Saved s;
    save_running_guest(2, &s);

    Machine *m = guest_machine(2);
    memcpy(machine_gpa_to_hva(m, 0, RAM_SIZE), s.ram, RAM_SIZE);
    MachineStateImage *img = machine_state_image_new(m);
    SaveStateRegistry *r = savevm_registry_new();
    Error *err = NULL;
    g_autofree char *vmdesc = NULL;
    g_assert_true(machine_state_register(m, img, r, &err));
    g_assert_false(machine_state_complete(img, NULL));      /* nothing loaded yet */
    if (!load_stream(r, s.stream, &vmdesc, &err) ||
        !machine_state_complete(img, &err) || !machine_state_apply(m, img, &err)) {
        g_error("restore: %s", error_get_pretty(err));
    }
    /* The description names the sections and their nested structs. */
    g_assert_nonnull(vmdesc);
    g_assert_nonnull(strstr(vmdesc, "\"kvm_segment\""));
    g_assert_nonnull(strstr(vmdesc, "\"serial\""));
    g_assert_nonnull(strstr(vmdesc, "\"pit\""));

    for (int v = 0; v < 2; v++) {
        KvmVcpuState *st = g_new0(KvmVcpuState, 1);
        g_assert_true(cpu_get_state(machine_cpu(m, v), st, NULL));
        g_assert_cmpmem(&st->regs, sizeof(st->regs), &s.regs[v], sizeof(s.regs[v]));
        g_free(st);
        g_assert_cmphex(progress(m, v), ==, s.progress[v]);
    }
    KvmVmState vm;
    g_assert_true(machine_get_vm_state(m, &vm, NULL));
    g_assert_cmpmem(&vm.pic_master, sizeof(vm.pic_master), &s.vm.pic_master,
                    sizeof(s.vm.pic_master));
    g_assert_cmpmem(&vm.ioapic, sizeof(vm.ioapic), &s.vm.ioapic, sizeof(s.vm.ioapic));
    const SerialState *ser = serial_state(machine_find_device(m, "serial"));
    g_assert_cmpmem(ser, sizeof(*ser), &s.serial, sizeof(s.serial));
    g_assert_true(machine_start(m, NULL));
    /* Every vCPU goes on from where it was saved, never back to an earlier pass. */
    follow_progress(m, s.progress, 2);
    g_assert_true(machine_pause(m, NULL));
    for (int v = 0; v < 2; v++) {
        g_assert_cmpint(wave_violations(m, v), ==, 0);
    }
    savevm_registry_free(r);
    machine_state_image_free(img);
    machine_destroy(m);
    saved_free(&s);
}

typedef struct Target {
    Machine *m;
    MachineStateImage *img;
    SaveStateRegistry *r;
    struct kvm_regs regs;          /* vCPU 0 before the load */
} Target;

static void target_init(Target *t, int smp)
{
    KvmVcpuState *st = g_new0(KvmVcpuState, 1);

    t->m = guest_machine(smp);
    t->img = machine_state_image_new(t->m);
    t->r = savevm_registry_new();
    g_assert_true(machine_state_register(t->m, t->img, t->r, NULL));
    g_assert_true(cpu_get_state(machine_cpu(t->m, 0), st, NULL));
    t->regs = st->regs;
    g_free(st);
}

/* Nothing reached the machine: vCPU 0 still has its boot registers. */
static void target_assert_untouched(Target *t)
{
    KvmVcpuState *st = g_new0(KvmVcpuState, 1);

    g_assert_true(cpu_get_state(machine_cpu(t->m, 0), st, NULL));
    g_assert_cmpmem(&st->regs, sizeof(st->regs), &t->regs, sizeof(t->regs));
    g_free(st);
}

static void target_free(Target *t)
{
    savevm_registry_free(t->r);
    machine_state_image_free(t->img);
    machine_destroy(t->m);
}

static void assert_error_has(Error *err, const char *what)
{
    g_assert_nonnull(err);
    if (!strstr(error_get_pretty(err), what)) {
        g_error("expected '%s' in: %s", what, error_get_pretty(err));
    }
}

/* A loaded stream that complete() and apply() refuse, naming what is wrong. */
static void assert_incomplete(Target *t, GBytes *stream, const char *what)
{
    Error *err = NULL;

    if (!load_stream(t->r, stream, NULL, &err)) {
        g_error("load: %s", error_get_pretty(err));
    }
    g_assert_false(machine_state_complete(t->img, &err));
    assert_error_has(err, what);
    error_free(err);
    err = NULL;
    g_assert_false(machine_state_apply(t->m, t->img, &err));
    assert_error_has(err, what);
    error_free(err);
    target_assert_untouched(t);
}

/* A stream without vCPU 1's section, and a 2-vCPU stream into a 1-vCPU machine. */
static void test_cpu_count(void)
{
    if (skip_without_kvm()) {
        return;
    }
    Saved s;
    save_running_guest(2, &s);

    Target one;
    target_init(&one, 1);
    assert_incomplete(&one, s.stream, "stream has 2 vCPUs, this machine has 1");
    target_free(&one);

    /* The same stream without the section of vCPU 1. */
    Machine *m = guest_machine(2);
    MachineStateImage *img = machine_state_image_new(m);
    SaveStateRegistry *r = savevm_registry_new();
    g_assert_true(machine_state_capture(m, img, NULL));
    g_assert_true(machine_state_register(m, img, r, NULL));
    savevm_unregister(r, savevm_find(r, "cpu", 1));
    GBytes *lacking = save_stream(r);
    savevm_registry_free(r);
    machine_state_image_free(img);
    machine_destroy(m);

    Target two;
    target_init(&two, 2);
    assert_incomplete(&two, lacking, "no state for vCPU 1");
    target_free(&two);
    g_bytes_unref(lacking);
    saved_free(&s);
}

#define SENTINEL 0x5e17e1a5u

/*
 * A stream of vCPU 0 alone whose nmsrs (or xsave_size) is `value`: a
 * sentinel in the field right after it (the first MSR's index, the first
 * XSAVE bytes) shows where that be32 is in the bytes, and it is patched.
 */
static GBytes *patched_cpu_stream(Machine *src, bool xsave, uint32_t value)
{
    KvmVcpuImage *ci = g_new0(KvmVcpuImage, 1);
    SaveStateRegistry *r = savevm_registry_new();
    const uint32_t be_sentinel = GUINT32_TO_BE(SENTINEL);

    g_assert_true(cpu_get_state(machine_cpu(src, 0), &ci->st, NULL));
    if (xsave) {
        memcpy(ci->st.xsave, &be_sentinel, 4);  /* a buffer goes out raw */
    } else {
        g_assert_cmpuint(ci->st.nmsrs, >, 0);
        ci->st.msrs[0].index = SENTINEL;        /* be32 right after nmsrs */
    }
    g_assert_nonnull(savevm_register_vmsd(r, "cpu", 0, &vmstate_kvm_cpu, ci, NULL));
    GBytes *b = save_stream(r);
    gsize len;
    uint8_t *data = g_bytes_unref_to_data(b, &len);
    uint8_t *at = memmem(data, len, &be_sentinel, 4);
    g_assert_nonnull(at);
    g_assert_true(at - 4 > data);
    const uint32_t be_value = GUINT32_TO_BE(value);
    memcpy(at - 4, &be_value, 4);
    savevm_registry_free(r);
    g_free(ci);
    return g_bytes_new_take(data, len);
}

/* Counts and sizes over their bounds stop the load itself. */
static void test_bounds(void)
{
    if (skip_without_kvm()) {
        return;
    }
    Target t;
    target_init(&t, 1);
    static const struct {
        bool xsave;
        uint32_t value;
        const char *message;
    } cases[] = {
        { false, KVM_STATE_MAX_MSRS + 1, "field 'nmsrs': value 129 out of range (max 128)" },
        { false, 0xffffffffu, "field 'nmsrs'" },
        { true, KVM_STATE_XSAVE_MAX + 1, "field 'xsave_size': value 16385 out of range" },
        { true, 1024, "XSAVE area of 1024 bytes, at least 4096 expected" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        GBytes *bad = patched_cpu_stream(t.m, cases[i].xsave, cases[i].value);
        Error *err = NULL;

        g_assert_false(load_stream(t.r, bad, NULL, &err));
        assert_error_has(err, "section 'cpu' instance 0");
        assert_error_has(err, cases[i].message);
        error_free(err);
        g_assert_false(machine_state_complete(t.img, NULL));
        target_assert_untouched(&t);
        g_bytes_unref(bad);
    }
    target_free(&t);
}

/* ---- descriptions alone (no KVM needed) ------------------------------------------ */

static bool round_trip(const VMStateDescription *vmsd, void *in, void *out, Error **errp)
{
    QEMUFile *f = qemu_file_new_mem_output("desc");
    bool ok = vmstate_save(f, vmsd, in, NULL, errp);
    size_t len;
    const uint8_t *data = qemu_file_mem_data(f, &len);

    if (ok) {
        QEMUFile *in_f = qemu_file_new_mem_input(data, len, "desc");
        ok = vmstate_load(in_f, vmsd, out, vmsd->version_id, errp);
        qemu_fclose(in_f);
    }
    qemu_fclose(f);
    return ok;
}

/* An XSAVE area over 4096 bytes (AMX hosts) and sregs2 round-trip whole. */
static void test_cpu_description(void)
{
    KvmVcpuImage *a = g_new0(KvmVcpuImage, 1), *b = g_new0(KvmVcpuImage, 1);
    Error *err = NULL;

    a->index = b->index = 3;
    a->st.lapic.regs[0x23] = 3;                 /* APIC ID 3 in bits 31:24 */
    a->st.has_sregs2 = true;
    a->st.sregs2.cs.selector = 0x10;
    a->st.sregs2.pdptrs[3] = 0x1234;
    a->st.xsave_size = 8192;
    for (int i = 0; i < 8192; i++) {
        a->st.xsave[i] = i * 7;
    }
    a->st.nmsrs = 2;
    a->st.msrs[1].index = 0x10;
    a->st.msrs[1].data = 0xabcdef;
    a->st.xcrs.nr_xcrs = 1;
    a->st.xcrs.xcrs[0].value = 7;
    a->st.events.interrupt.nr = 0x30;
    a->st.ncpuid = 1;
    a->st.cpuid[0].function = 0xd;
    if (!round_trip(&vmstate_kvm_cpu, a, b, &err)) {
        g_error("round trip: %s", error_get_pretty(err));
    }
    g_assert_cmpmem(&a->st, sizeof(a->st), &b->st, sizeof(b->st));

    /* Section instance and APIC ID must agree. */
    b->index = 2;
    g_assert_false(round_trip(&vmstate_kvm_cpu, a, b, &err));
    assert_error_has(err, "local APIC has ID 3");
    error_free(err);
    g_free(a);
    g_free(b);
}

static void test_serial_description(void)
{
    SerialDevice *dev = serial_new(NULL, NULL, NULL, NULL);
    SerialState a = *serial_state(dev), b;
    Error *err = NULL;
    static const uint8_t in[] = "hi";

    serial_io_ops.write(dev, UART_FCR, UART_FCR_ENABLE, 1);
    serial_receive(dev, in, 2);
    serial_get_state(dev, &a);
    g_assert_cmpuint(a.rx_count, ==, 2);
    g_assert_true(round_trip(&vmstate_serial, &a, &b, NULL));
    g_assert_cmpmem(&a, sizeof(a), &b, sizeof(b));
    g_assert_true(serial_put_state(dev, &b, NULL));
    g_assert_cmpuint(serial_io_ops.read(dev, UART_RBR, 1), ==, 'h');

    a.rx_count = SERIAL_FIFO_SIZE + 1;          /* over its bound */
    g_assert_false(round_trip(&vmstate_serial, &a, &b, &err));
    assert_error_has(err, "rx_count");
    error_free(err);
    err = NULL;
    a.rx_count = 2;
    a.fcr = 0;                                  /* an 8250 holds one byte */
    g_assert_false(round_trip(&vmstate_serial, &a, &b, &err));
    assert_error_has(err, "receive FIFO");
    error_free(err);
    serial_free(dev);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/machine-state/cpu-description", test_cpu_description);
    g_test_add_func("/machine-state/serial-description", test_serial_description);
    g_test_add_func("/machine-state/round-trip", test_round_trip);
    g_test_add_func("/machine-state/cpu-count", test_cpu_count);
    g_test_add_func("/machine-state/bounds", test_bounds);
    return g_test_run();
}
