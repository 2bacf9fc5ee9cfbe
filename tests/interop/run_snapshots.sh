#!/usr/bin/env bash
# qcow2_random.sh with SNAPSHOT=1 (writes over clusters an internal snapshot shares) for
# cluster sizes 512/64k/2M, refcount widths 16/64 and backing none/qcow2, in parallel.
# Usage: run_snapshots.sh [OPS]      Environment: QBLOCK (the qblock binary).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ops=${1:-2000}
results=$(mktemp -d "${TMPDIR:-/var/tmp}/qblock-snapshots.XXXXXX")
trap 'rm -rf "$results"' EXIT
i=0
for cluster in 512 65536 2097152; do
  for refbits in 16 64; do
    for backing in none qcow2; do
      i=$((i + 1))
      ( SNAPSHOT=1 bash "$here/qcow2_random.sh" $((100 + i)) "$ops" $cluster 1.1 $refbits $backing \
          >"$results/$i.out" 2>&1 || touch "$results/$i.failed" ) &
    done
  done
  wait
done
failed=0
for ((k = 1; k <= i; k++)); do
  if [[ -e $results/$k.failed ]]; then
    failed=$((failed + 1)); echo "FAIL case $k:"; tail -5 "$results/$k.out" | sed 's/^/    /'
  else
    tail -1 "$results/$k.out"
  fi
done
echo "$((i - failed)) passed, $failed failed"
[[ $failed -eq 0 ]]
