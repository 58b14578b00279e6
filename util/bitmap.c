/*
 * Bitmaps of unsigned long: range, search and bulk operations.
 * The concurrency rules are in include/util/bitmap.h.
 */
#include "util/bitmap.h"

#include <glib.h>

unsigned long *bitmap_new(size_t nbits)
{
    return g_new0(unsigned long, BITS_TO_LONGS(nbits) ? BITS_TO_LONGS(nbits) : 1);
}

void bitmap_free(unsigned long *map)
{
    g_free(map);
}

/* Mask of the bits of word w that lie in [start, end). */
static unsigned long range_mask(size_t w, size_t start, size_t end)
{
    size_t lo = w * BITS_PER_LONG, hi = lo + BITS_PER_LONG;
    unsigned long mask = ~0UL;

    if (start > lo) {
        mask &= ~0UL << (start - lo);
    }
    if (end < hi) {
        mask &= ~0UL >> (hi - end);
    }
    return mask;
}

/*
 * Apply op to every word overlapping [start, start + nr) with the mask of
 * the bits in range.  One function for the four range operations keeps the
 * word-boundary arithmetic in one place.
 */
typedef enum { RANGE_SET, RANGE_CLEAR, RANGE_SET_ATOMIC, RANGE_CLEAR_ATOMIC } RangeOp;

/*
 * The scans (find, count) read each word once with a relaxed atomic load:
 * free on x86, and it makes them safe to run while other threads change
 * bits atomically (they then see some recent value of each word).
 */
static inline unsigned long load_word(const unsigned long *map, size_t w)
{
    return __atomic_load_n(&map[w], __ATOMIC_RELAXED);
}

static void bitmap_range_op(unsigned long *map, size_t start, size_t nr, RangeOp op)
{
    size_t end = start + nr, w;

    if (nr == 0) {
        return;
    }
    for (w = BIT_WORD(start); w <= BIT_WORD(end - 1); w++) {
        unsigned long mask = range_mask(w, start, end);

        switch (op) {
        case RANGE_SET:
            map[w] |= mask;
            break;
        case RANGE_CLEAR:
            map[w] &= ~mask;
            break;
        case RANGE_SET_ATOMIC:
            __atomic_fetch_or(&map[w], mask, __ATOMIC_SEQ_CST);
            break;
        case RANGE_CLEAR_ATOMIC:
            __atomic_fetch_and(&map[w], ~mask, __ATOMIC_SEQ_CST);
            break;
        }
    }
}

void bitmap_set(unsigned long *map, size_t start, size_t nr)
{
    bitmap_range_op(map, start, nr, RANGE_SET);
}

void bitmap_clear(unsigned long *map, size_t start, size_t nr)
{
    bitmap_range_op(map, start, nr, RANGE_CLEAR);
}

void bitmap_set_atomic(unsigned long *map, size_t start, size_t nr)
{
    bitmap_range_op(map, start, nr, RANGE_SET_ATOMIC);
}

void bitmap_clear_atomic(unsigned long *map, size_t start, size_t nr)
{
    bitmap_range_op(map, start, nr, RANGE_CLEAR_ATOMIC);
}

void bitmap_zero(unsigned long *map, size_t nbits)
{
    bitmap_clear(map, 0, nbits);
}

bool bitmap_empty(const unsigned long *map, size_t nbits)
{
    return find_next_bit(map, nbits, 0) == nbits;
}

/* Shared by both searches: invert is ~0UL to look for clear bits. */
static size_t find_next(const unsigned long *map, size_t size, size_t offset,
                        unsigned long invert)
{
    size_t w;
    unsigned long word;

    if (offset >= size) {
        return size;
    }
    w = BIT_WORD(offset);
    word = (load_word(map, w) ^ invert) & (~0UL << (offset % BITS_PER_LONG));
    for (;;) {
        if (word) {
            size_t found = w * BITS_PER_LONG + __builtin_ctzl(word);
            return found < size ? found : size;
        }
        w++;
        if (w * BITS_PER_LONG >= size) {
            return size;
        }
        word = load_word(map, w) ^ invert;
    }
}

size_t find_next_bit(const unsigned long *map, size_t size, size_t offset)
{
    return find_next(map, size, offset, 0);
}

size_t find_next_zero_bit(const unsigned long *map, size_t size, size_t offset)
{
    return find_next(map, size, offset, ~0UL);
}

size_t bitmap_count_range(const unsigned long *map, size_t start, size_t nr)
{
    size_t end = start + nr, w, count = 0;

    if (nr == 0) {
        return 0;
    }
    for (w = BIT_WORD(start); w <= BIT_WORD(end - 1); w++) {
        count += __builtin_popcountl(load_word(map, w) & range_mask(w, start, end));
    }
    return count;
}

void bitmap_or(unsigned long *dst, const unsigned long *src1,
               const unsigned long *src2, size_t nbits)
{
    size_t w, n = BITS_TO_LONGS(nbits);

    for (w = 0; w < n; w++) {
        dst[w] = src1[w] | src2[w];
    }
}

void bitmap_complement(unsigned long *dst, const unsigned long *src, size_t nbits)
{
    size_t w, n = BITS_TO_LONGS(nbits);

    for (w = 0; w < n; w++) {
        dst[w] = ~src[w];
    }
    if (nbits % BITS_PER_LONG) {
        dst[n - 1] &= (1UL << (nbits % BITS_PER_LONG)) - 1;
    }
}

size_t bitmap_take_range_atomic(unsigned long *dst, unsigned long *map,
                                size_t start, size_t nr)
{
    size_t i, n = BITS_TO_LONGS(nr), count = 0;

    g_assert(start % BITS_PER_LONG == 0);
    for (i = 0; i < n; i++) {
        size_t w = BIT_WORD(start) + i;
        unsigned long mask = range_mask(w, start, start + nr);
        unsigned long taken;

        if (mask == ~0UL) {
            taken = __atomic_exchange_n(&map[w], 0UL, __ATOMIC_SEQ_CST);
        } else {
            taken = __atomic_fetch_and(&map[w], ~mask, __ATOMIC_SEQ_CST) & mask;
        }
        dst[i] = taken;
        count += __builtin_popcountl(taken);
    }
    return count;
}
