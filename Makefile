# Front door: make, make check, make demo, make bench.  Each target installs
# what is missing first (scripts/install-deps.sh is idempotent).
PY := /usr/bin/python3
BUILD := build
ASAN_BUILD := build-asan
TSAN_BUILD := build-tsan

.PHONY: all deps build check check-unit check-asan check-tsan check-functional demo bench clean

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

check: check-unit check-asan check-tsan check-functional

demo: build
	@scripts/demo.sh $(BUILD)

bench: build
	$(PY) tests/bench/run.py --build $(BUILD) --doc --bg-rounds 3

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD)
