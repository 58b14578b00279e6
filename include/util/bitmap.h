/*
 * Bitmaps stored in arrays of unsigned long; bit n is bit (n % BITS_PER_LONG)
 * of word n / BITS_PER_LONG.
 *
 * Concurrency (migration uses these from the saver, the fault thread and
 * the vCPU-side dirty log merge at once):
 *  - Functions with "atomic" in their name are safe against each other on
 *    the same words, from any number of threads.  The read-modify-write
 *    ones (set/clear/test-and-set/test-and-clear/range/take) are full
 *    barriers (sequentially consistent); test_bit_atomic() is an acquire
 *    load.  test_and_set_bit_atomic() returning false means this caller
 *    won the bit: exactly one of several racing callers gets false.
 *  - find_next_bit, find_next_zero_bit, find_first_bit and
 *    bitmap_count_range read each word with a relaxed atomic load: they may
 *    run while other threads change bits atomically, and see a recent
 *    value of each word (no ordering beyond that).
 *  - All other functions are plain memory accesses: use them only while no
 *    other thread writes the words they touch (e.g. the whole bitmap is
 *    owned by one thread, or a lock is held).
 */
#ifndef AMBER_UTIL_BITMAP_H
#define AMBER_UTIL_BITMAP_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#define BITS_PER_LONG       (sizeof(unsigned long) * CHAR_BIT)
#define BITS_TO_LONGS(n)    (((n) + BITS_PER_LONG - 1) / BITS_PER_LONG)
#define BIT_WORD(nr)        ((nr) / BITS_PER_LONG)
#define BIT_MASK(nr)        (1UL << ((nr) % BITS_PER_LONG))

/* A zeroed bitmap of nbits bits (never NULL; aborts on out-of-memory). */
unsigned long *bitmap_new(size_t nbits);
void bitmap_free(unsigned long *map);

/* --- single bits, non-atomic --- */
static inline void set_bit(size_t nr, unsigned long *map)
{
    map[BIT_WORD(nr)] |= BIT_MASK(nr);
}

static inline void clear_bit(size_t nr, unsigned long *map)
{
    map[BIT_WORD(nr)] &= ~BIT_MASK(nr);
}

static inline bool test_bit(size_t nr, const unsigned long *map)
{
    return (map[BIT_WORD(nr)] & BIT_MASK(nr)) != 0;
}

/* --- single bits, atomic --- */
static inline void set_bit_atomic(size_t nr, unsigned long *map)
{
    __atomic_fetch_or(&map[BIT_WORD(nr)], BIT_MASK(nr), __ATOMIC_SEQ_CST);
}

static inline void clear_bit_atomic(size_t nr, unsigned long *map)
{
    __atomic_fetch_and(&map[BIT_WORD(nr)], ~BIT_MASK(nr), __ATOMIC_SEQ_CST);
}

static inline bool test_bit_atomic(size_t nr, const unsigned long *map)
{
    return (__atomic_load_n(&map[BIT_WORD(nr)], __ATOMIC_ACQUIRE) &
            BIT_MASK(nr)) != 0;
}

/* Set the bit; return its previous value (false: this caller set it). */
static inline bool test_and_set_bit_atomic(size_t nr, unsigned long *map)
{
    unsigned long old = __atomic_fetch_or(&map[BIT_WORD(nr)], BIT_MASK(nr),
                                          __ATOMIC_SEQ_CST);
    return (old & BIT_MASK(nr)) != 0;
}

/* Clear the bit; return its previous value (true: this caller cleared it). */
static inline bool test_and_clear_bit_atomic(size_t nr, unsigned long *map)
{
    unsigned long old = __atomic_fetch_and(&map[BIT_WORD(nr)], ~BIT_MASK(nr),
                                           __ATOMIC_SEQ_CST);
    return (old & BIT_MASK(nr)) != 0;
}

/* --- ranges [start, start + nr) --- */
void bitmap_set(unsigned long *map, size_t start, size_t nr);
void bitmap_clear(unsigned long *map, size_t start, size_t nr);
/* Atomic per word (other bits of the edge words are left untouched). */
void bitmap_set_atomic(unsigned long *map, size_t start, size_t nr);
void bitmap_clear_atomic(unsigned long *map, size_t start, size_t nr);

/* Clear all nbits bits (non-atomic). */
void bitmap_zero(unsigned long *map, size_t nbits);
/* Whether none of the first nbits bits is set (non-atomic). */
bool bitmap_empty(const unsigned long *map, size_t nbits);

/* --- searching (non-atomic reads) --- */
/* Index of the first set bit >= offset and < size; size if there is none. */
size_t find_next_bit(const unsigned long *map, size_t size, size_t offset);
/* Index of the first clear bit >= offset and < size; size if there is none. */
size_t find_next_zero_bit(const unsigned long *map, size_t size, size_t offset);

static inline size_t find_first_bit(const unsigned long *map, size_t size)
{
    return find_next_bit(map, size, 0);
}

/* Number of set bits in [start, start + nr) (non-atomic). */
size_t bitmap_count_range(const unsigned long *map, size_t start, size_t nr);

/* dst = src1 | src2 over nbits bits (non-atomic; dst may alias a source). */
void bitmap_or(unsigned long *dst, const unsigned long *src1,
               const unsigned long *src2, size_t nbits);

/* dst = ~src over nbits bits, the bits past nbits left clear (dst may be src). */
void bitmap_complement(unsigned long *dst, const unsigned long *src, size_t nbits);

/*
 * Take-and-clear a chunk: for bits [start, start + nr) of map, atomically
 * exchange each word with zero (only the bits in the range), storing the
 * taken bits in dst, so that dst bit i is map bit start + i.  start must be
 * a multiple of BITS_PER_LONG; dst needs BITS_TO_LONGS(nr) words and its
 * bits past nr in the last word are cleared.  A bit set concurrently by
 * another thread is either taken now or left for the next call, never lost.
 * Returns the number of bits taken.
 */
size_t bitmap_take_range_atomic(unsigned long *dst, unsigned long *map,
                                size_t start, size_t nr);

#endif
