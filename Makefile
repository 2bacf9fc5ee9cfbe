# qblock top-level targets. Each target installs what it needs first.
.PHONY: all deps build debug asan test unit-tests iotests format-check format demo bench bench-compare clean

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

clean:
	rm -rf build
