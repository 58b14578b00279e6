/*
 * A fuzz target: LLVMFuzzerTestOneInput() takes one input and must neither
 * crash nor leak, whatever the bytes (libFuzzer's contract).  Each target
 * also writes its seed inputs, made with amber's own writers, so the
 * corpora under tests/fuzz/corpus/ come from real streams and commands:
 *
 *   build/tests/fuzz/replay-fuzz-stream --seeds tests/fuzz/corpus/fuzz-stream
 *
 * Built two ways (tests/fuzz/meson.build): with libFuzzer in a clang build
 * configured with -Dfuzzing=true (`make fuzz`), and in every build with
 * replay.c's main, which runs each file of a corpus once (`make check`).
 */
#ifndef AMBER_TESTS_FUZZ_FUZZ_H
#define AMBER_TESTS_FUZZ_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#include "migration/savevm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Write the target's seeds into dir (existing) as files; false on failure. */
bool fuzz_write_seeds(const char *dir);
/*
 * Registers the sections of a machine on KVM (two vCPUs and the VM-wide
 * chips; kvm-sections.c) in r, each over its own state: zeroed for a load,
 * plausible for a seed.  The array owns the states: unref it once r is done.
 */
GPtrArray *fuzz_register_kvm_sections(SaveStateRegistry *r, bool seed);
/* For fuzz_write_seeds: dir/name holds len bytes of data. */
bool fuzz_seed(const char *dir, const char *name, const void *data, size_t len);
/* The same for n texts, named prefix-0, prefix-1, ... */
bool fuzz_seed_strings(const char *dir, const char *prefix, const char *const *texts,
                       size_t n);

#endif
