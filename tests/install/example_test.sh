#!/usr/bin/env bash
# Builds examples/ out of tree against the *installed* qblock package and runs it: installs the
# build tree into a temporary prefix, configures and builds the example with find_package(qblock)
# using the same compiler (linked with the shared and with the static library), runs it on an
# image in the temporary directory and checks its output;
# then builds the same source with pkg-config and checks that too. Cleans up on exit.
# Usage: example_test.sh BUILD_DIR SOURCE_DIR CXX_COMPILER VERSION
set -euo pipefail

build_dir=$1
source_dir=$2
cxx=$3
version=$4

tmp=$(mktemp -d "${TMPDIR:-/tmp}/qblock-example.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

fail() {
  echo "example_test: $*" >&2
  exit 1
}

expected() {
  cat <<OUT
qblock $version
created 67108864 byte qcow2 image
wrote 65536 bytes at 1048576
read back: same bytes
map:
           0      1048576 zero
     1048576        65536 data allocated
     1114112     65994752 zero
OUT
}

check_run() {
  local program=$1 image=$2
  rm -f "$image"
  local out
  out=$("$program" "$image") || fail "$program failed"
  if [ "$out" != "$(expected)" ]; then
    diff <(expected) <(echo "$out") >&2 || true
    fail "unexpected output from $program"
  fi
}

cmake --install "$build_dir" --prefix "$tmp/prefix" >"$tmp/install.log" ||
  { cat "$tmp/install.log" >&2; fail "cmake --install failed"; }

# CMake package.
cmake -S "$source_dir/examples" -B "$tmp/build" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_BUILD_TYPE=Debug -DCMAKE_PREFIX_PATH="$tmp/prefix" >"$tmp/configure.log" 2>&1 ||
  { cat "$tmp/configure.log" >&2; fail "configuring the example failed"; }
cmake --build "$tmp/build" >"$tmp/build.log" 2>&1 ||
  { cat "$tmp/build.log" >&2; fail "building the example failed"; }
check_run "$tmp/build/qblock_example" "$tmp/cmake.qcow2"
check_run "$tmp/build/qblock_example_static" "$tmp/static.qcow2"

# pkg-config.
pc=$(find "$tmp/prefix" -name qblock.pc | head -n 1)
[ -n "$pc" ] || fail "qblock.pc not installed"
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$pc")
libdir=$(pkg-config --variable=libdir qblock)
# shellcheck disable=SC2046  # pkg-config prints several words on purpose
"$cxx" $(pkg-config --cflags qblock) -o "$tmp/example_pc" "$source_dir/examples/image_example.cc" \
  $(pkg-config --libs qblock) "-Wl,-rpath,$libdir" 2>"$tmp/pc.log" ||
  { cat "$tmp/pc.log" >&2; fail "building the example with pkg-config failed"; }
check_run "$tmp/example_pc" "$tmp/pc.qcow2"

echo "example_test: OK (CMake package, shared and static; pkg-config)"
