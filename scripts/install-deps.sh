#!/usr/bin/env bash
# Installs every Debian package qblock's build, tests and benchmarks need.
# Idempotent and non-interactive; skips apt entirely when everything is present.
set -euo pipefail

packages=(
  build-essential g++ cmake ninja-build ccache pkg-config git
  clang-14 libclang-rt-14-dev clang-format
  liburing-dev libexpected-dev libfmt-dev nlohmann-json3-dev libcli11-dev
  zlib1g-dev libzstd-dev libdeflate-dev libssl-dev libgnutls28-dev libnbd-dev nettle-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  qemu-utils util-linux qemu-system-x86
  libnbd-bin fio gnutls-bin python3
  # The rbd protocol driver (librbd) and its tests: a throw-away Ceph cluster, QEMU's rbd driver.
  librbd-dev ceph-mon ceph-osd ceph-common qemu-block-extra
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
