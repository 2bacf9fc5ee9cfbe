#!/usr/bin/env bash
# Runs qcow2_random.sh over the interoperability matrix: compat 0.10/1.1 × cluster sizes
# 512/4k/64k/2M × refcount widths 1/16/64 (v3 only; v2 is always 16) × backing
# none/qcow2/raw, and extended L2 entries (compat 1.1, 16-bit refcounts) × cluster sizes
# 16k/64k/2M × the same backings. Prints one line per case (in matrix order) and the closing
# "N passed, M failed" line.
# Usage: run_matrix.sh [OPS] [SEED]
# Environment: QBLOCK (the qblock binary); JOBS (cases run at once, default 6: the cases
# mostly wait for flushes, so they overlap well even on two cores).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ops=${1:-200}
seed=${2:-1}
jobs=${JOBS:-6}
results=$(mktemp -d "${TMPDIR:-/var/tmp}/qblock-matrix.XXXXXX")
trap 'rm -rf "$results"' EXIT
cases=()
for compat in 0.10 1.1; do
  for cluster in 512 4096 65536 2097152; do
    for refbits in 1 16 64; do
      [[ $compat == 0.10 && $refbits != 16 ]] && continue
      for backing in none qcow2 raw; do
        seed=$((seed + 1))
        cases+=("$seed $cluster $compat $refbits $backing std")
      done
    done
  done
done
for cluster in 16384 65536 2097152; do
  for backing in none qcow2 raw; do
    seed=$((seed + 1))
    cases+=("$seed $cluster 1.1 16 $backing ext")
  done
done
# run_case INDEX SEED CLUSTER COMPAT REFBITS BACKING std|ext: the case's verdict line into
# INDEX.line
run_case() {
  local i=$1 seed=$2 cluster=$3 compat=$4 refbits=$5 backing=$6 l2=$7 out ext=
  [[ $l2 == ext ]] && ext=1
  if out=$(EXTENDED_L2=$ext bash "$here/qcow2_random.sh" "$seed" "$ops" "$cluster" "$compat" "$refbits" "$backing" 2>&1); then
    echo "$out" | tail -1 >"$results/$i.line"
  else
    { echo "FAIL ${ext:+extended_l2 }seed=$seed cluster=$cluster compat=$compat refcount_bits=$refbits backing=$backing"
      echo "$out" | tail -5 | sed 's/^/    /'; } >"$results/$i.line"
    touch "$results/$i.failed"
  fi
}
for i in "${!cases[@]}"; do
  while [[ $(jobs -rp | wc -l) -ge $jobs ]]; do wait -n; done
  # shellcheck disable=SC2086 # the case is a word list
  run_case "$i" ${cases[$i]} &
done
wait
failed=0
for i in "${!cases[@]}"; do
  cat "$results/$i.line"
  [[ -e $results/$i.failed ]] && failed=$((failed + 1))
done
echo "$((${#cases[@]} - failed)) passed, $failed failed"
[[ $failed -eq 0 ]]
