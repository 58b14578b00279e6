# Front door: make, make check, make demo, make bench.  Each target installs
# what is missing first (scripts/install-deps.sh is idempotent).
PY := /usr/bin/python3
BUILD := build
ASAN_BUILD := build-asan
TSAN_BUILD := build-tsan
FUZZ_BUILD := build-fuzz
# make fuzz SECONDS=N: how long each fuzz target runs.
SECONDS ?= 60

.PHONY: all deps build check check-unit check-asan check-tsan check-functional \
        check-functional-asan check-functional-tsan demo bench fuzz soak clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja: | deps
	./configure --builddir=$(BUILD)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

$(ASAN_BUILD)/build.ninja: | deps
	./configure --builddir=$(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false

check-unit: build
	meson test -C $(BUILD) --print-errorlogs --suite unit

# The unit tests again under ASan+UBSan: any report fails the run.
check-asan: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    meson test -C $(ASAN_BUILD) --print-errorlogs --suite unit

$(TSAN_BUILD)/build.ninja: | deps
	./configure --builddir=$(TSAN_BUILD) -Db_sanitize=thread -Db_lundef=false

# The unit tests under ThreadSanitizer.  GLib's slice allocator recycles
# memory between threads behind TSan's back: plain malloc keeps it honest.
check-tsan: deps $(TSAN_BUILD)/build.ninja
	ninja -C $(TSAN_BUILD)
	G_SLICE=always-malloc TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	    meson test -C $(TSAN_BUILD) --print-errorlogs --suite unit --timeout-multiplier 3

check-functional: build
	AMBER_BUILD=$(abspath $(BUILD)) $(PY) -m pytest -q -ra tests/functional

# The migration tests again with amber itself built with the sanitizers: the
# engine's threads against real vCPUs, faults, cancels and broken streams.
# Every VM's output is checked for reports (tests/functional/vm.py).
# TSan runs about twice as slowly, so it takes the snapshot tests and the
# postcopy tests whose threads meet most (switch, faults, kills, pause, resume).
PC := tests/functional/test_postcopy.py
PCR := tests/functional/test_postcopy_recovery.py
MR := tests/functional/test_mapped_ram.py
TSAN_FUNCTIONAL := tests/functional/test_bgsnapshot.py tests/functional/test_stream_errors.py \
                   $(PC)::test_postcopy_runs_on_destination $(PC)::test_faulted_pages_are_requested \
                   $(PC)::test_source_killed_after_switch $(PC)::test_destination_killed_after_switch \
                   $(PCR)::test_migrate_pause_by_command $(PCR)::test_cut_during_recovery \
                   $(PCR)::test_preempt_channel_comes_back \
                   $(MR)::test_lazy_restore_runs_at_once $(MR)::test_truncated_during_a_lazy_load
ASAN_FUNCTIONAL := tests/functional/test_bgsnapshot.py tests/functional/test_stream_errors.py \
                   $(PC) $(PCR) tests/functional/test_direct_io.py \
                   tests/functional/test_saverestore.py $(MR) tests/functional/test_qemu_cli.py \
                   tests/functional/test_migrate_compat.py tests/functional/test_img_checksum.py
check-functional-asan: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    AMBER_BUILD=$(abspath $(ASAN_BUILD)) AMBER_SANITIZER=address \
	    $(PY) -m pytest -q -ra $(ASAN_FUNCTIONAL)

check-functional-tsan: deps $(TSAN_BUILD)/build.ninja
	ninja -C $(TSAN_BUILD)
	G_SLICE=always-malloc TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	    AMBER_BUILD=$(abspath $(TSAN_BUILD)) AMBER_SANITIZER=thread \
	    $(PY) -m pytest -q -ra $(TSAN_FUNCTIONAL)

check: check-unit check-asan check-tsan check-functional check-functional-asan \
       check-functional-tsan

# The libFuzzer targets of tests/fuzz/, built with clang, ASan and UBSan,
# each run for SECONDS from the committed corpus (tests/fuzz/README.md).
$(FUZZ_BUILD)/build.ninja:
	@scripts/install-deps.sh --fuzz
	CC=clang ./configure --builddir=$(FUZZ_BUILD) -Dfuzzing=true \
	    -Db_sanitize=address,undefined -Db_lundef=false

fuzz: $(FUZZ_BUILD)/build.ninja
	@scripts/install-deps.sh --fuzz
	ninja -C $(FUZZ_BUILD)
	scripts/fuzz.sh $(FUZZ_BUILD) $(SECONDS)

# make soak N=1000: N randomized snapshots of the engine (writer threads for
# vCPUs, any host), then N randomized guest migrations (tests/functional/
# test_soak.py: skipped, saying so, without /dev/kvm).  make check runs 20.
N ?= 1000
soak: build
	$(BUILD)/tests/unit/test-bg-snapshot --soak $(N)
	AMBER_BUILD=$(abspath $(BUILD)) AMBER_SOAK_CYCLES=$(N) $(PY) -m pytest -q -ra \
	    tests/functional/test_soak.py

demo: build
	@scripts/demo.sh $(BUILD)

bench: build
	$(PY) tests/bench/run.py --build $(BUILD) --doc --bg-rounds 3 --wf-rounds 3 --bl-rounds 3

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)
