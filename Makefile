# qblock top-level targets. Each target installs what it needs first.
.PHONY: all deps build debug asan test unit-tests iotests format-check format demo bench bench-compare bench-nbd bench-rbd bench-l2-cache bench-convert bench-lifecycle bench-mirror bench-encrypted fuzz clean

JOBS ?= $(shell nproc)

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	cmake --preset release >/dev/null
	cmake --build --preset release -j $(JOBS)

debug: deps
	cmake --preset debug >/dev/null
	cmake --build --preset debug -j $(JOBS)

asan: deps
	cmake --preset asan >/dev/null
	cmake --build --preset asan -j $(JOBS)

# Debug and asan builds, every unit test and golden-output test under both.
test: deps format-check debug asan
	ctest --preset debug -j $(JOBS)
	ctest --preset asan -j $(JOBS)

format-check:
	@files=$$(git ls-files '*.cc' '*.h'); \
	if [ -n "$$files" ]; then clang-format --dry-run -Werror $$files; fi

format:
	@git ls-files '*.cc' '*.h' | xargs -r clang-format -i

demo: build
	bash scripts/demo.sh

bench: build
	bash bench/raw_write.sh

# qcow2 allocation workloads W1-W6 against qemu-img bench (RUNS, WORKLOADS, QUICK=1, BENCH_DIR).
bench-compare: build
	bash bench/compare.sh

# NBD server: qblock nbd against qemu-nbd through fio's nbd engine (RUNS, RUNTIME, WORKLOADS,
# DEPTHS, QUICK=1, BENCH_DIR, OUT).
bench-nbd: build
	bash bench/nbd.sh

# Ceph RBD: W1/W2 on qcow2-on-RBD against QEMU's rbd driver, 4 KiB writes to raw RBD against
# fio's rbd engine, on a throw-away cluster (RUNS, WORKLOADS, OBJECTSTORE, SCALE, QUICK=1).
bench-rbd: build
	bash bench/rbd.sh

# qcow2 L2 cache: random-like 4 KiB reads over a 64 GiB fully mapped image with
# l2-cache-size=1M, qblock bench against qemu-img bench (RUNS, COUNT, DEPTHS, L2_CACHE, QUICK=1).
bench-l2-cache: build
	bash bench/l2_cache.sh

# Compressed convert: convert -c of a semi-compressible raw image and the compressed qcow2 back
# to raw, qblock against qemu-img -m 8 -W (SIZE, RUNS, CTYPE, CONVERT_ARGS, QUICK=1, BENCH_DIR).
bench-convert: build
	bash bench/convert.sh

# Lifecycle verbs: commit of a 1 GiB overlay and snapshot -c of a 64 GiB image with 8 GiB
# allocated, qblock against qemu-img (RUNS, QUICK=1, BENCH_DIR).
bench-lifecycle: build
	bash bench/lifecycle.sh

# Live mirror: blockdev-mirror of an 8 GiB image (4 GiB data, 4 GiB zeros), idle and with fio
# writing at depth 16, qblock storage-daemon against qemu-storage-daemon (RUNS, FIO_RUNTIME,
# QUICK=1, BENCH_DIR).
bench-mirror: build
	bash bench/mirror.sh

# Encrypted qcow2: LUKS aes-256-xts images served over NBD by qblock storage-daemon and by
# qemu-storage-daemon, driven by qemu-img bench and fio (RUNS, WORKLOADS, QUICK=1, BENCH_DIR).
bench-encrypted: build
	bash bench/encrypted.sh

# libFuzzer on every fuzz target (fuzz/*_fuzz.cc), one after the other: FUZZ_SECONDS each
# (default 60), or FUZZ_RUNS executions each (passed as -runs=; then no time limit unless
# FUZZ_SECONDS is given too), e.g. `make fuzz FUZZ_RUNS=10000000`; FUZZ_TARGETS picks some.
# Each starts from its seed corpus fuzz/corpus/<name> (<name>: the target without _fuzz; for
# qcow2_image also the bad-input corpus of tests/corpus, generated into build/fuzz/seeds) and
# its dictionary, with a 1 s timeout and a 2 GiB memory limit; new inputs go to
# build/fuzz/corpus/<name>; a crash, timeout or out-of-memory input goes to
# build/fuzz/artifacts/<name>/ and fails the run. The final stats show the exec/s.
FUZZ_RUNS ?=
FUZZ_SECONDS ?= $(if $(FUZZ_RUNS),0,60)
FUZZ_TARGETS ?= $(sort $(basename $(notdir $(wildcard fuzz/*_fuzz.cc))))
FUZZ_MAX_LEN_nbd_server_fuzz = 65536
FUZZ_MAX_LEN_qcow2_image_fuzz = 1048576
FUZZ_DICT_qcow2_image_fuzz = fuzz/qcow2.dict
FUZZ_SEEDS_qcow2_image_fuzz = build/fuzz/seeds/qcow2_bad_input

fuzz_name = $(patsubst %_fuzz,%,$(1))
# fuzz_run TARGET: the recipe lines that fuzz one target.
define fuzz_run
	mkdir -p build/fuzz/corpus/$(call fuzz_name,$(1)) build/fuzz/artifacts/$(call fuzz_name,$(1))
	build/fuzz/bin/$(1) -max_total_time=$(FUZZ_SECONDS) $(if $(FUZZ_RUNS),-runs=$(FUZZ_RUNS)) \
	  -timeout=1 -rss_limit_mb=2048 -print_final_stats=1 \
	  -max_len=$(or $(FUZZ_MAX_LEN_$(1)),65536) $(if $(FUZZ_DICT_$(1)),-dict=$(FUZZ_DICT_$(1))) \
	  -artifact_prefix=build/fuzz/artifacts/$(call fuzz_name,$(1))/ \
	  build/fuzz/corpus/$(call fuzz_name,$(1)) fuzz/corpus/$(call fuzz_name,$(1)) \
	  $(FUZZ_SEEDS_$(1))

endef

fuzz: deps
	cmake --preset fuzz >/dev/null
	cmake --build --preset fuzz -j $(JOBS) $(addprefix --target ,$(FUZZ_TARGETS))
	$(if $(filter qcow2_image_fuzz,$(FUZZ_TARGETS)),@[ -s $(FUZZ_SEEDS_qcow2_image_fuzz)/cases ] || \
	  bash tests/corpus/make_corpus.sh $(FUZZ_SEEDS_qcow2_image_fuzz) >/dev/null)
	$(foreach t,$(FUZZ_TARGETS),$(call fuzz_run,$(t)))
clean:
	rm -rf build
