/*
 * vCPU 0's set-up, in ring 3: read the multiboot information, parse the
 * command line, find the TSC rate, start the other vCPUs, and lay the
 * working set out in per-vCPU partitions (see docs/guest.md).
 */
#include "guest.h"

#define MAX_RANGES 32
#define MiB (1024 * 1024ull)

struct mb_info {
    uint32_t flags;
    uint32_t mem_lower, mem_upper;      /* KiB, flags bit 0 */
    uint32_t boot_device;
    uint32_t cmdline;                   /* flags bit 2 */
    uint32_t mods_count, mods_addr;     /* flags bit 3 */
    uint32_t syms[4];
    uint32_t mmap_length, mmap_addr;    /* flags bit 6 */
};

struct mb_mmap {
    uint32_t size;                      /* of the rest of the entry */
    uint64_t addr;
    uint64_t len;
    uint32_t type;
} __attribute__((packed));

struct mb_module {
    uint32_t start, end, string, reserved;
};

struct range {
    uint64_t start, end;                /* [start, end) */
};

struct ranges {
    struct range r[MAX_RANGES];
    int n;
};

struct boot {
    char cmdline[1024];
    struct ranges ram;                  /* type-1 memory */
    struct ranges rsv;                  /* what the guest itself occupies */
    struct ranges free;                 /* ram - rsv, ascending */
    uint64_t ram_bytes;
    uint64_t unmapped_bytes;            /* RAM above the identity map */
};

static struct boot B;

static void __attribute__((noreturn)) fail(uint32_t code, const char *what,
                                           const char *detail, const char *why)
{
    struct line l = { .len = 0 };

    line_str(&l, "amber-guest: ");
    line_str(&l, what);
    if (detail) {
        line_str(&l, " '");
        line_str(&l, detail);
        line_str(&l, "'");
    }
    if (why) {
        line_str(&l, ": ");
        line_str(&l, why);
    }
    con_put_line(&l);
    guest_exit(code);
}

static void range_add(struct ranges *rs, uint64_t start, uint64_t end)
{
    if (end <= start) {
        return;
    }
    if (rs->n == MAX_RANGES) {
        fail(EXIT_FAULT, "memory map has too many entries", NULL, NULL);
    }
    rs->r[rs->n++] = (struct range){ start, end };
}

static uint64_t align_up(uint64_t v)
{
    return (v + PAGE_SIZE - 1) & ~(uint64_t)(PAGE_SIZE - 1);
}

static uint64_t align_down(uint64_t v)
{
    return v & ~(uint64_t)(PAGE_SIZE - 1);
}

/* Page-aligned outward: anything touching a page reserves all of it. */
static void reserve(uint64_t start, uint64_t len)
{
    range_add(&B.rsv, align_down(start), align_up(start + len));
}

static void read_boot_info(void)
{
    const struct mb_info *mbi = (const struct mb_info *)(uintptr_t)boot_mbi;
    uint64_t limit = (uint64_t)mapped_gib << 30;

    reserve(0, 1 * MiB);        /* real-mode area, BIOS, AP trampoline */
    reserve((uintptr_t)_image_start, (uintptr_t)_end - (uintptr_t)_image_start);
    reserve(boot_mbi, sizeof(*mbi));

    if (mbi->flags & (1u << 2)) {
        const char *s = (const char *)(uintptr_t)mbi->cmdline;
        size_t n = strlen(s);

        if (n >= sizeof(B.cmdline)) {
            fail(EXIT_BAD_PARAM, "command line too long", NULL,
                 "at most 1023 characters");
        }
        memcpy(B.cmdline, s, n + 1);
        reserve(mbi->cmdline, n + 1);
    }
    if (mbi->flags & (1u << 3)) {
        const struct mb_module *m = (const void *)(uintptr_t)mbi->mods_addr;

        reserve(mbi->mods_addr, mbi->mods_count * sizeof(*m));
        for (uint32_t i = 0; i < mbi->mods_count && i < 8; i++) {
            reserve(m[i].start, m[i].end - m[i].start);
        }
    }
    if (mbi->flags & (1u << 6)) {
        uintptr_t p = mbi->mmap_addr, end = p + mbi->mmap_length;

        reserve(mbi->mmap_addr, mbi->mmap_length);
        while (p + sizeof(struct mb_mmap) <= end) {
            const struct mb_mmap *e = (const void *)p;

            if (e->type == 1) {
                range_add(&B.ram, e->addr, e->addr + e->len);
            }
            p += e->size + 4;
        }
    } else if (mbi->flags & 1u) {
        range_add(&B.ram, 0, mbi->mem_lower * 1024ull);
        range_add(&B.ram, 1 * MiB, 1 * MiB + mbi->mem_upper * 1024ull);
    } else {
        fail(EXIT_FAULT, "the boot loader gave no memory map", NULL,
             "multiboot flags bit 6 or bit 0 is required");
    }

    for (int i = 0; i < B.ram.n; i++) {
        struct range *r = &B.ram.r[i];

        B.ram_bytes += r->end - r->start;
        if (r->end > limit) {
            B.unmapped_bytes += r->end - (r->start > limit ? r->start : limit);
        }
    }
}

/* Add [s, e) minus the reserved ranges from index `from` on. */
static void carve(uint64_t s, uint64_t e, int from)
{
    for (int i = from; i < B.rsv.n; i++) {
        const struct range *r = &B.rsv.r[i];

        if (r->end <= s || r->start >= e) {
            continue;
        }
        if (r->start > s) {
            carve(s, r->start, i + 1);
        }
        if (r->end < e) {
            carve(r->end, e, i + 1);
        }
        return;
    }
    range_add(&B.free, s, e);
}

static void find_free_ram(void)
{
    uint64_t limit = (uint64_t)mapped_gib << 30;

    for (int i = 0; i < B.ram.n; i++) {
        uint64_t s = align_up(B.ram.r[i].start);
        uint64_t e = align_down(B.ram.r[i].end);

        if (e > limit) {
            e = limit;
        }
        if (s < e) {
            carve(s, e, 0);
        }
    }
    /* Insertion sort: partitions are laid out in ascending address order. */
    for (int i = 1; i < B.free.n; i++) {
        struct range t = B.free.r[i];
        int j = i;

        for (; j > 0 && B.free.r[j - 1].start > t.start; j--) {
            B.free.r[j] = B.free.r[j - 1];
        }
        B.free.r[j] = t;
    }
}

/* ---- command line ---- */

static bool parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    unsigned base = 10;

    if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
        n -= 2;
    }
    if (n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        unsigned d;

        if (c >= '0' && c <= '9') {
            d = c - '0';
        } else if (base == 16 && c >= 'a' && c <= 'f') {
            d = c - 'a' + 10;
        } else if (base == 16 && c >= 'A' && c <= 'F') {
            d = c - 'A' + 10;
        } else {
            return false;
        }
        if (v > (UINT64_MAX - d) / base) {
            return false;
        }
        v = v * base + d;
    }
    *out = v;
    return true;
}

static bool word_is(const char *s, size_t n, const char *w)
{
    size_t i = 0;

    for (; i < n && w[i]; i++) {
        if (s[i] != w[i]) {
            return false;
        }
    }
    return i == n && !w[i];
}

struct num_param {
    const char *name;
    uint64_t *dst;
    uint64_t min, max;
};

static void parse_param(char *tok, size_t n)
{
    const struct num_param nums[] = {
        { "rate", &G.p.rate, 0, 1000000000000ull },
        { "ws_mib", &G.p.ws_mib, 1, 1ull << 40 },
        { "report", &G.p.report_ms, 10, 3600000 },
        { "seed", &G.p.seed, 0, UINT64_MAX },
        { "tsc_khz", &G.p.tsc_khz, 1000, 100000000 },
        { "passes", &G.p.passes, 1, 0xfffffffeull },
        { "duration", &G.p.duration_ms, 1, 1ull << 40 },
        { "cpus", &G.p.cpus, 1, GUEST_MAX_VCPUS },
    };
    size_t k = 0;

    while (k < n && tok[k] != '=') {
        k++;
    }
    tok[n] = 0;                         /* for the messages */
    if (k == n) {
        fail(EXIT_BAD_PARAM, "bad parameter", tok, "expected name=value");
    }
    if (word_is(tok, k, "workload")) {
        const char *v = tok + k + 1;
        size_t vn = n - k - 1;

        if (word_is(v, vn, "wave")) {
            G.p.workload = WORKLOAD_WAVE;
        } else if (word_is(v, vn, "random")) {
            G.p.workload = WORKLOAD_RANDOM;
        } else if (word_is(v, vn, "idle")) {
            G.p.workload = WORKLOAD_IDLE;
        } else {
            fail(EXIT_BAD_PARAM, "bad parameter", tok,
                 "workload is one of wave, random, idle");
        }
        return;
    }
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        uint64_t v;

        if (!word_is(tok, k, nums[i].name)) {
            continue;
        }
        if (!parse_u64(tok + k + 1, n - k - 1, &v)) {
            fail(EXIT_BAD_PARAM, "bad parameter", tok, "expected a number");
        }
        if (v < nums[i].min || v > nums[i].max) {
            fail(EXIT_BAD_PARAM, "bad parameter", tok, "value out of range");
        }
        *nums[i].dst = v;
        return;
    }
    fail(EXIT_BAD_PARAM, "unknown parameter", tok,
         "known: workload= rate= ws_mib= report= seed= tsc_khz= passes= duration=");
}

static void parse_cmdline(void)
{
    char *s = B.cmdline;
    bool first = true;

    G.p.workload = WORKLOAD_WAVE;
    G.p.report_ms = 1000;
    G.p.seed = 1;
    while (*s) {
        size_t n = 0;

        while (*s == ' ' || *s == '\t') {
            s++;
        }
        while (s[n] && s[n] != ' ' && s[n] != '\t') {
            n++;
        }
        if (n == 0) {
            break;
        }
        char *next = s[n] ? s + n + 1 : s + n;
        bool has_eq = false;

        for (size_t i = 0; i < n; i++) {
            has_eq |= s[i] == '=';
        }
        /* Boot loaders put the image's own name first (QEMU, GRUB). */
        if (!(first && !has_eq)) {
            parse_param(s, n);
        }
        first = false;
        s = next;
    }
}

/* ---- time ---- */

/* Count PIT channel 2 down from 20 ms (gate via port 0x61) against the TSC. */
static uint64_t calibrate_tsc_khz(void)
{
    const uint32_t ticks = 1193182 / 50;
    uint8_t saved = inb(0x61);
    uint64_t t0, t1, spins = 0;

    outb(0x61, (saved & ~0x02) | 0x01);         /* gate on, speaker off */
    outb(0x43, 0xb0);                           /* ch 2, lo/hi, mode 0 */
    outb(0x42, ticks & 0xff);
    outb(0x42, ticks >> 8);
    t0 = rdtsc();
    while (!(inb(0x61) & 0x20)) {               /* OUT2 high at zero */
        if (++spins > 50000000) {
            outb(0x61, saved);
            return 0;
        }
    }
    t1 = rdtsc();
    outb(0x61, saved);
    return (t1 - t0) / 20;
}

static void delay_us(uint64_t us)
{
    uint64_t end = rdtsc() + us * G.p.tsc_khz / 1000;

    while (rdtsc() < end) {
        cpu_relax();
    }
}

/* ---- other vCPUs ---- */

static volatile uint32_t *lapic(uint32_t off)
{
    return (volatile uint32_t *)(uintptr_t)(LAPIC_BASE + off);
}

static void send_ipi(uint32_t icr_low)
{
    *lapic(0x310) = 0;
    *lapic(0x300) = icr_low;
    for (int i = 0; i < 1000000 && (*lapic(0x300) & (1u << 12)); i++) {
        cpu_relax();
    }
}

/*
 * INIT-SIPI-SIPI to all others, then count who checks in: each AP takes
 * an index in ring 0 (ap_next) and bumps G.checked_in in ring 3.  With
 * cpus=N (amber passes it) the count is final once N-1 APs are in, or
 * after 60 s; without it, once nobody new arrived for 100 ms.  Then the
 * gate is closed (ap_next pushed out of range) so a late AP parks in ring 0.
 */
static uint32_t start_aps(void)
{
    const uint32_t sipi = 0x000c4600 | (GUEST_TRAMPOLINE >> 12);
    uint64_t quiet = ms_to_cycles(100), now = rdtsc();
    uint64_t hard = now + ms_to_cycles(G.p.cpus ? 60000 : 3000);
    uint64_t deadline = G.p.cpus ? hard : now + quiet;
    uint32_t seen = 0, taken;

    memcpy((void *)GUEST_TRAMPOLINE, ap_tramp_start, ap_tramp_end - ap_tramp_start);
    __atomic_store_n(&ap_next, 1, __ATOMIC_SEQ_CST);
    *lapic(0xf0) = 0x1ff;               /* software-enable the LAPIC */
    send_ipi(0x000c4500);               /* INIT, all excluding self */
    delay_us(10000);
    send_ipi(sipi);
    delay_us(200);
    send_ipi(sipi);

    while ((now = rdtsc()) < deadline && now < hard) {
        uint32_t n = G.checked_in;

        if (n != seen && !G.p.cpus) {
            seen = n;
            deadline = now + quiet;
        }
        if (n >= GUEST_MAX_VCPUS - 1 || (G.p.cpus && n >= G.p.cpus - 1)) {
            break;
        }
        cpu_relax();
    }
    taken = __atomic_fetch_add(&ap_next, 1u << 20, __ATOMIC_SEQ_CST) - 1;
    if (taken > GUEST_MAX_VCPUS - 1) {
        taken = GUEST_MAX_VCPUS - 1;
    }
    /* Those that took an index are a few instructions from checking in. */
    deadline = rdtsc() + ms_to_cycles(1000);
    while (G.checked_in < taken && rdtsc() < deadline) {
        cpu_relax();
    }
    return 1 + (G.checked_in < taken ? G.checked_in : taken);
}

/* ---- partitions ---- */

static struct guest_record *record(uint32_t v)
{
    return (struct guest_record *)(uintptr_t)(GUEST_RECORDS_ADDR + 256 * (1 + v));
}

static uint64_t make_partitions(void)
{
    struct guest_header *h = (struct guest_header *)(uintptr_t)GUEST_RECORDS_ADDR;
    uint64_t free_pages = 0, ws, part, foff = 0;
    int fi = 0;

    for (int i = 0; i < B.free.n; i++) {
        free_pages += (B.free.r[i].end - B.free.r[i].start) / PAGE_SIZE;
    }
    ws = free_pages;
    if (G.p.ws_mib && G.p.ws_mib * (MiB / PAGE_SIZE) < ws) {
        ws = G.p.ws_mib * (MiB / PAGE_SIZE);
    }
    part = ws / G.ncpus;
    if (part > (1ull << STAMP_INDEX_BITS)) {
        part = 1ull << STAMP_INDEX_BITS;
    }
    if (part == 0) {
        fail(EXIT_BAD_PARAM, "working set too small", NULL,
             "needs at least one page per vCPU");
    }
    memset(h, 0, GUEST_RECORDS_SIZE);
    for (uint32_t v = 0; v < G.ncpus; v++) {
        struct guest_record *rec = record(v);
        uint64_t left = part;

        while (left) {
            uint64_t avail = (B.free.r[fi].end - B.free.r[fi].start) / PAGE_SIZE - foff;
            uint64_t take = avail < left ? avail : left;

            if (rec->nseg == GUEST_MAX_SEGS) {
                fail(EXIT_FAULT, "free RAM is too fragmented", NULL,
                     "a partition would need more than 12 ranges");
            }
            rec->seg[rec->nseg].addr = B.free.r[fi].start + foff * PAGE_SIZE;
            rec->seg[rec->nseg].npages = take;
            rec->nseg++;
            left -= take;
            foff += take;
            if (foff * PAGE_SIZE == B.free.r[fi].end - B.free.r[fi].start) {
                fi++;
                foff = 0;
            }
        }
        rec->vcpu = v;
        rec->npages = part;
        rec->pos = 0;
        rec->pass = 1;
        G.cpu[v].rec = rec;
        G.cpu[v].index = v;
    }
    h->version = GUEST_LAYOUT_VERSION;
    h->ncpus = G.ncpus;
    h->workload = G.p.workload;
    h->page_size = PAGE_SIZE;
    h->ws_pages = part * G.ncpus;
    h->part_pages = part;
    h->tsc_khz = G.p.tsc_khz;
    h->seed = G.p.seed;
    h->ram_bytes = B.ram_bytes;
    barrier();
    /* wave publishes its records itself, once its partition is cleared */
    for (uint32_t v = 0; v < G.ncpus && G.p.workload != WORKLOAD_WAVE; v++) {
        record(v)->magic = GUEST_RECORD_MAGIC;
    }
    barrier();
    h->magic = GUEST_HEADER_MAGIC;
    return part;
}

static const char *workload_name(uint32_t w)
{
    return w == WORKLOAD_WAVE ? "wave" : w == WORKLOAD_RANDOM ? "random" : "idle";
}

static void banner(uint64_t part)
{
    struct line l = { .len = 0 };

    line_str(&l, "amber-guest: ");
    line_u64(&l, G.ncpus);
    line_str(&l, G.ncpus == 1 ? " vcpu, RAM " : " vcpus, RAM ");
    line_u64(&l, B.ram_bytes / MiB);
    line_str(&l, " MiB, workload=");
    line_str(&l, workload_name(G.p.workload));
    line_str(&l, ", ws ");
    line_u64(&l, part * G.ncpus * PAGE_SIZE / MiB);
    line_str(&l, " MiB (");
    line_u64(&l, part);
    line_str(&l, " pages per vcpu), tsc_khz ");
    line_u64(&l, G.p.tsc_khz);
    con_put_line(&l);
    if (B.unmapped_bytes) {
        l.len = 0;
        line_str(&l, "amber-guest: ");
        line_u64(&l, B.unmapped_bytes / MiB);
        line_str(&l, " MiB of RAM above 64 GiB left unused");
        con_put_line(&l);
    }
}

void bsp_setup(void)
{
    uint64_t part;

    memset(&G, 0, sizeof(G));
    memset(&B, 0, sizeof(B));
    con_init();
    read_boot_info();
    parse_cmdline();
    find_free_ram();
    if (!G.p.tsc_khz) {
        G.p.tsc_khz = calibrate_tsc_khz();
        if (!G.p.tsc_khz) {
            fail(EXIT_FAULT, "cannot calibrate the TSC against the PIT", NULL,
                 "pass tsc_khz=");
        }
    }
    G.ncpus = start_aps();
    part = make_partitions();
    banner(part);
    workload_prepare();
    __atomic_store_n(&G.go, 1, __ATOMIC_RELEASE);
}

void ap_checkin(uint32_t index)
{
    __atomic_fetch_add(&G.checked_in, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&G.go, __ATOMIC_ACQUIRE)) {
        cpu_relax();
    }
    if (index >= G.ncpus) {
        for (;;) {                      /* arrived after the count closed */
            cpu_relax();
        }
    }
}
