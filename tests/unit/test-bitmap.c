/*
 * Bitmaps: single bits, ranges across word boundaries, searches, counts,
 * OR, take-and-clear, and the atomic operations under several threads.
 * Every result is checked against a plain bool array.
 */
#include "util/bitmap.h"

#include <pthread.h>
#include <string.h>
#include <glib.h>

#define NBITS 300       /* not a multiple of the word size on purpose */

/* Edges where word arithmetic goes wrong. */
static const size_t edges[] = { 0, 1, 31, 63, 64, 65, 127, 128, 129, 191, 192, 250 };
static const size_t lengths[] = { 0, 1, 2, 63, 64, 65, 127, 128, 129, 170 };

static void check_against(const unsigned long *map, const bool *ref, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (test_bit(i, map) != ref[i]) {
            g_error("bit %zu is %d, expected %d", i, test_bit(i, map), ref[i]);
        }
    }
}

static void test_single(void)
{
    unsigned long *map = bitmap_new(NBITS);
    static const size_t bits[] = { 0, 1, 63, 64, 127, 128, NBITS - 1 };
    size_t i;

    g_assert_true(bitmap_empty(map, NBITS));
    for (i = 0; i < G_N_ELEMENTS(bits); i++) {
        set_bit(bits[i], map);
        g_assert_true(test_bit(bits[i], map));
        g_assert_true(test_bit_atomic(bits[i], map));
    }
    g_assert_cmpuint(bitmap_count_range(map, 0, NBITS), ==, G_N_ELEMENTS(bits));
    for (i = 0; i < G_N_ELEMENTS(bits); i++) {
        clear_bit(bits[i], map);
        g_assert_false(test_bit(bits[i], map));
    }
    g_assert_true(bitmap_empty(map, NBITS));
    bitmap_free(map);
}

typedef void (*RangeFn)(unsigned long *map, size_t start, size_t nr);

/* set_fn then clear_fn on a sub-range, on top of a background pattern. */
static void check_ranges(RangeFn set_fn, RangeFn clear_fn)
{
    size_t e, l, i;

    for (e = 0; e < G_N_ELEMENTS(edges); e++) {
        for (l = 0; l < G_N_ELEMENTS(lengths); l++) {
            size_t start = edges[e], nr = lengths[l];
            unsigned long *map = bitmap_new(NBITS);
            bool ref[NBITS] = { false };

            if (start + nr > NBITS) {
                bitmap_free(map);
                continue;
            }
            /* Background: every third bit, so neighbours must survive. */
            for (i = 0; i < NBITS; i += 3) {
                set_bit(i, map);
                ref[i] = true;
            }
            set_fn(map, start, nr);
            for (i = start; i < start + nr; i++) {
                ref[i] = true;
            }
            check_against(map, ref, NBITS);
            g_assert_cmpuint(bitmap_count_range(map, start, nr), ==, nr);

            clear_fn(map, start + nr / 3, nr / 2);
            for (i = start + nr / 3; i < start + nr / 3 + nr / 2; i++) {
                ref[i] = false;
            }
            check_against(map, ref, NBITS);
            bitmap_free(map);
        }
    }
}

static void test_ranges(void)
{
    check_ranges(bitmap_set, bitmap_clear);
}

static void test_ranges_atomic(void)
{
    check_ranges(bitmap_set_atomic, bitmap_clear_atomic);
}

/* A pseudo-random pattern with runs, so searches cross words. */
static void fill_pattern(unsigned long *map, bool *ref, size_t n, guint32 seed)
{
    GRand *r = g_rand_new_with_seed(seed);
    size_t i = 0;

    while (i < n) {
        size_t run = g_rand_int_range(r, 1, 90);
        bool v = g_rand_boolean(r);

        for (; run && i < n; run--, i++) {
            ref[i] = v;
            if (v) {
                set_bit(i, map);
            }
        }
    }
    g_rand_free(r);
}

static void test_find(void)
{
    guint32 seed;

    for (seed = 1; seed <= 20; seed++) {
        unsigned long *map = bitmap_new(NBITS);
        bool ref[NBITS] = { false };
        size_t off, i;

        fill_pattern(map, ref, NBITS, seed);
        for (off = 0; off <= NBITS; off++) {
            size_t want_set = NBITS, want_zero = NBITS;

            for (i = off; i < NBITS; i++) {
                if (ref[i] && want_set == NBITS) {
                    want_set = i;
                }
                if (!ref[i] && want_zero == NBITS) {
                    want_zero = i;
                }
            }
            g_assert_cmpuint(find_next_bit(map, NBITS, off), ==, want_set);
            g_assert_cmpuint(find_next_zero_bit(map, NBITS, off), ==, want_zero);
        }
        bitmap_free(map);
    }
}

/* Bits past size in the last word must never be reported. */
static void test_find_past_size(void)
{
    unsigned long *map = bitmap_new(128);

    set_bit(100, map);
    g_assert_cmpuint(find_next_bit(map, 70, 0), ==, 70);
    g_assert_cmpuint(find_first_bit(map, 101), ==, 100);
    bitmap_set(map, 0, 70);
    g_assert_cmpuint(find_next_zero_bit(map, 70, 0), ==, 70);
    g_assert_cmpuint(find_next_zero_bit(map, 71, 0), ==, 70);
    g_assert_cmpuint(find_next_bit(map, 128, 200), ==, 128);
    bitmap_free(map);
}

static void test_count(void)
{
    unsigned long *map = bitmap_new(NBITS);
    bool ref[NBITS] = { false };
    size_t s, n, i;

    fill_pattern(map, ref, NBITS, 7);
    for (s = 0; s < NBITS; s += 7) {
        for (n = 0; s + n <= NBITS; n += 11) {
            size_t want = 0;

            for (i = s; i < s + n; i++) {
                want += ref[i];
            }
            g_assert_cmpuint(bitmap_count_range(map, s, n), ==, want);
        }
    }
    bitmap_free(map);
}

static void test_or(void)
{
    unsigned long *a = bitmap_new(NBITS), *b = bitmap_new(NBITS);
    unsigned long *d = bitmap_new(NBITS);
    bool ra[NBITS] = { false }, rb[NBITS] = { false }, rd[NBITS];
    size_t i;

    fill_pattern(a, ra, NBITS, 3);
    fill_pattern(b, rb, NBITS, 4);
    for (i = 0; i < NBITS; i++) {
        rd[i] = ra[i] || rb[i];
    }
    bitmap_or(d, a, b, NBITS);
    check_against(d, rd, NBITS);
    bitmap_or(a, a, b, NBITS);      /* in place */
    check_against(a, rd, NBITS);
    bitmap_free(a);
    bitmap_free(b);
    bitmap_free(d);
}

static void test_take_range(void)
{
    unsigned long *map = bitmap_new(NBITS);
    unsigned long dst[BITS_TO_LONGS(NBITS)];
    bool ref[NBITS] = { false };
    size_t i, want = 0, start = 64, nr = 150;

    fill_pattern(map, ref, NBITS, 11);
    for (i = start; i < start + nr; i++) {
        want += ref[i];
    }
    memset(dst, 0xff, sizeof(dst));
    g_assert_cmpuint(bitmap_take_range_atomic(dst, map, start, nr), ==, want);
    for (i = 0; i < nr; i++) {
        g_assert_cmpint(test_bit(i, dst), ==, ref[start + i]);
    }
    /* dst bits past nr in its last word are cleared. */
    g_assert_cmpuint(find_next_bit(dst, BITS_TO_LONGS(nr) * BITS_PER_LONG, nr), ==,
                     BITS_TO_LONGS(nr) * BITS_PER_LONG);
    /* The range is now clear; outside it nothing changed. */
    for (i = start; i < start + nr; i++) {
        ref[i] = false;
    }
    check_against(map, ref, NBITS);
    bitmap_free(map);
}

/* --- threads --- */

#define NTHREADS 4
#define TBITS 20000

typedef struct {
    unsigned long *map;
    size_t wins;
    int index;
    size_t taken;
    unsigned long *seen;        /* for the take test: bits already taken */
    gint *stop;
} ThreadArg;

static void *race_test_and_set(void *opaque)
{
    ThreadArg *a = opaque;
    size_t i;

    for (i = 0; i < TBITS; i++) {
        if (!test_and_set_bit_atomic(i, a->map)) {
            a->wins++;
        }
    }
    return NULL;
}

/* Exactly one thread wins each bit: the ownership rule migration relies on. */
static void test_atomic_ownership(void)
{
    unsigned long *map = bitmap_new(TBITS);
    ThreadArg args[NTHREADS] = { { 0 } };
    pthread_t th[NTHREADS];
    size_t total = 0, i;

    for (i = 0; i < NTHREADS; i++) {
        args[i].map = map;
        pthread_create(&th[i], NULL, race_test_and_set, &args[i]);
    }
    for (i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        total += args[i].wins;
    }
    g_assert_cmpuint(total, ==, TBITS);
    g_assert_cmpuint(bitmap_count_range(map, 0, TBITS), ==, TBITS);

    /* And test_and_clear: exactly one clears each bit. */
    for (i = 0; i < TBITS; i++) {
        g_assert_true(test_and_clear_bit_atomic(i, map));
        g_assert_false(test_and_clear_bit_atomic(i, map));
    }
    bitmap_free(map);
}

/* Threads set interleaved bits of the same words: no update may be lost. */
static void *interleaved_set(void *opaque)
{
    ThreadArg *a = opaque;
    size_t i;

    for (i = a->index; i < TBITS; i += NTHREADS) {
        set_bit_atomic(i, a->map);
    }
    for (i = a->index; i < TBITS; i += 2 * NTHREADS) {
        clear_bit_atomic(i, a->map);
    }
    return NULL;
}

static void test_atomic_interleaved(void)
{
    unsigned long *map = bitmap_new(TBITS);
    ThreadArg args[NTHREADS] = { { 0 } };
    pthread_t th[NTHREADS];
    size_t i;

    for (i = 0; i < NTHREADS; i++) {
        args[i].map = map;
        args[i].index = i;
        pthread_create(&th[i], NULL, interleaved_set, &args[i]);
    }
    for (i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
    }
    for (i = 0; i < TBITS; i++) {
        /* Cleared iff (i % NTHREADS) + k*2*NTHREADS == i for some k. */
        bool cleared = (i % (2 * NTHREADS)) < NTHREADS;
        g_assert_cmpint(test_bit(i, map), ==, !cleared);
    }
    bitmap_free(map);
}

static void *producer(void *opaque)
{
    ThreadArg *a = opaque;
    size_t i;

    for (i = a->index; i < TBITS; i += NTHREADS) {
        set_bit_atomic(i, a->map);
    }
    return NULL;
}

static void take_all(ThreadArg *a)
{
    unsigned long chunk[BITS_TO_LONGS(1024)];
    size_t start, i;

    for (start = 0; start < TBITS; start += 1024) {
        size_t nr = MIN(1024, TBITS - start);

        a->taken += bitmap_take_range_atomic(chunk, a->map, start, nr);
        for (i = find_first_bit(chunk, nr); i < nr; i = find_next_bit(chunk, nr, i + 1)) {
            /* A bit taken twice would mean a page sent twice or lost. */
            g_assert_false(test_bit(start + i, a->seen));
            set_bit(start + i, a->seen);
        }
    }
}

static void *consumer(void *opaque)
{
    ThreadArg *a = opaque;

    while (!g_atomic_int_get(a->stop)) {
        take_all(a);
    }
    return NULL;
}

/* Take-and-clear racing with setters: every bit is taken exactly once. */
static void test_take_concurrent(void)
{
    unsigned long *map = bitmap_new(TBITS);
    ThreadArg args[NTHREADS] = { { 0 } }, cons = { 0 };
    pthread_t th[NTHREADS], cth;
    gint stop = 0;
    size_t i;

    cons.map = map;
    cons.seen = bitmap_new(TBITS);
    cons.stop = &stop;
    pthread_create(&cth, NULL, consumer, &cons);
    for (i = 0; i < NTHREADS; i++) {
        args[i].map = map;
        args[i].index = i;
        pthread_create(&th[i], NULL, producer, &args[i]);
    }
    for (i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
    }
    g_atomic_int_set(&stop, 1);
    pthread_join(cth, NULL);
    take_all(&cons);        /* whatever the consumer had not reached */
    g_assert_cmpuint(cons.taken, ==, TBITS);
    g_assert_true(bitmap_empty(map, TBITS));
    g_assert_cmpuint(bitmap_count_range(cons.seen, 0, TBITS), ==, TBITS);
    bitmap_free(cons.seen);
    bitmap_free(map);
}

#define ROUNDS 300

typedef struct {
    unsigned long *map;
    int index;
    size_t count;
    gint *stop;
    pthread_barrier_t *go;      /* start together, so the threads overlap */
} CountArg;

/* Producer: set its bits again and again, counting clear->set transitions. */
static void *producer_rounds(void *opaque)
{
    CountArg *a = opaque;
    size_t i;
    int r;

    pthread_barrier_wait(a->go);
    for (r = 0; r < ROUNDS; r++) {
        for (i = a->index; i < TBITS; i += NTHREADS) {
            a->count += !test_and_set_bit_atomic(i, a->map);
        }
    }
    return NULL;
}

static size_t take_count(unsigned long *map)
{
    unsigned long chunk[BITS_TO_LONGS(512)];
    size_t start, n = 0;

    for (start = 0; start < TBITS; start += 512) {
        n += bitmap_take_range_atomic(chunk, map, start, MIN(512, TBITS - start));
    }
    return n;
}

static void *consumer_rounds(void *opaque)
{
    CountArg *a = opaque;

    pthread_barrier_wait(a->go);
    while (!g_atomic_int_get(a->stop)) {
        a->count += take_count(a->map);
    }
    return NULL;
}

/*
 * Every clear->set transition a producer makes is taken exactly once by
 * the consumer: a take that lost a concurrent set would leave the counts
 * unequal.
 */
static void test_take_counts(void)
{
    unsigned long *map = bitmap_new(TBITS);
    CountArg prod[NTHREADS] = { { 0 } }, cons = { 0 };
    pthread_t th[NTHREADS], cth;
    size_t set = 0, i;
    gint stop = 0;
    pthread_barrier_t go;

    pthread_barrier_init(&go, NULL, NTHREADS + 1);
    cons.map = map;
    cons.stop = &stop;
    cons.go = &go;
    pthread_create(&cth, NULL, consumer_rounds, &cons);
    for (i = 0; i < NTHREADS; i++) {
        prod[i].map = map;
        prod[i].index = i;
        prod[i].go = &go;
        pthread_create(&th[i], NULL, producer_rounds, &prod[i]);
    }
    for (i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        set += prod[i].count;
    }
    g_atomic_int_set(&stop, 1);
    pthread_join(cth, NULL);
    cons.count += take_count(map);
    g_assert_cmpuint(cons.count, ==, set);
    pthread_barrier_destroy(&go);
    bitmap_free(map);
}

/* Threads set and clear short ranges sharing words: no update lost. */
static void *range_rounds(void *opaque)
{
    CountArg *a = opaque;
    size_t i;
    int r;

    pthread_barrier_wait(a->go);
    for (r = 0; r < ROUNDS; r++) {
        /* Thread t owns bits [8k + 2t, 8k + 2t + 2): four owners per byte. */
        for (i = 0; i + 8 <= TBITS; i += 8) {
            bitmap_set_atomic(a->map, i + 2 * a->index, 2);
        }
        for (i = 0; i + 8 <= TBITS; i += 8) {
            if (bitmap_count_range(a->map, i + 2 * a->index, 2) != 2) {
                a->count++;     /* a set was lost */
            }
            bitmap_clear_atomic(a->map, i + 2 * a->index, 2);
        }
        for (i = 0; i + 8 <= TBITS; i += 8) {
            if (bitmap_count_range(a->map, i + 2 * a->index, 2) != 0) {
                a->count++;     /* a clear was lost */
            }
        }
    }
    return NULL;
}

static void test_ranges_atomic_concurrent(void)
{
    unsigned long *map = bitmap_new(TBITS);
    CountArg args[NTHREADS] = { { 0 } };
    pthread_t th[NTHREADS];
    pthread_barrier_t go;
    size_t i;

    pthread_barrier_init(&go, NULL, NTHREADS);
    for (i = 0; i < NTHREADS; i++) {
        args[i].map = map;
        args[i].index = i;
        args[i].go = &go;
        pthread_create(&th[i], NULL, range_rounds, &args[i]);
    }
    for (i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        g_assert_cmpuint(args[i].count, ==, 0);
    }
    pthread_barrier_destroy(&go);
    g_assert_true(bitmap_empty(map, TBITS));
    bitmap_free(map);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/bitmap/single", test_single);
    g_test_add_func("/bitmap/ranges", test_ranges);
    g_test_add_func("/bitmap/ranges-atomic", test_ranges_atomic);
    g_test_add_func("/bitmap/find", test_find);
    g_test_add_func("/bitmap/find-past-size", test_find_past_size);
    g_test_add_func("/bitmap/count", test_count);
    g_test_add_func("/bitmap/or", test_or);
    g_test_add_func("/bitmap/take-range", test_take_range);
    g_test_add_func("/bitmap/atomic-ownership", test_atomic_ownership);
    g_test_add_func("/bitmap/atomic-interleaved", test_atomic_interleaved);
    g_test_add_func("/bitmap/take-concurrent", test_take_concurrent);
    g_test_add_func("/bitmap/take-counts", test_take_counts);
    g_test_add_func("/bitmap/ranges-atomic-concurrent", test_ranges_atomic_concurrent);
    return g_test_run();
}
