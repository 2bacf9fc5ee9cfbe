# qblock top-level targets. Each target installs what it needs first.
.PHONY: all deps build debug asan test unit-tests iotests format-check format demo bench bench-compare bench-nbd bench-l2-cache fuzz clean

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

# qcow2 L2 cache: random-like 4 KiB reads over a 64 GiB fully mapped image with
# l2-cache-size=1M, qblock bench against qemu-img bench (RUNS, COUNT, DEPTHS, L2_CACHE, QUICK=1).
bench-l2-cache: build
	bash bench/l2_cache.sh

# libFuzzer on the NBD server's handshake and request parser, FUZZ_SECONDS long (default 60),
# starting from the seed corpus; new inputs go to build/fuzz/corpus.
FUZZ_SECONDS ?= 60
fuzz: deps
	cmake --preset fuzz >/dev/null
	cmake --build --preset fuzz -j $(JOBS) --target nbd_server_fuzz
	mkdir -p build/fuzz/corpus/nbd_server
	build/fuzz/bin/nbd_server_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	  build/fuzz/corpus/nbd_server fuzz/corpus/nbd_server

clean:
	rm -rf build
