/*
 * Statistics counters: written by a worker thread, read at any time by
 * another (query-migrate on the main thread).  Relaxed atomics: a reader
 * needs each value whole, not ordered with anything else.
 */
#ifndef AMBER_UTIL_STAT_H
#define AMBER_UTIL_STAT_H

#include <stdint.h>

static inline void stat_add(uint64_t *p, uint64_t n)
{
    __atomic_add_fetch(p, n, __ATOMIC_RELAXED);
}

static inline uint64_t stat_get(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void stat_set(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

#endif
