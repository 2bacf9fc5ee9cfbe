#!/usr/bin/env bash
# Runs qcow2_random.sh over the interoperability matrix: compat 0.10/1.1 × cluster sizes
# 512/4k/64k/2M × refcount widths 1/16/64 (v3 only; v2 is always 16) × backing
# none/qcow2/raw. Prints one line per case and the closing "N passed, M failed" line.
# Usage: run_matrix.sh [OPS] [SEED]     Environment: QBLOCK (the qblock binary).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ops=${1:-200}
seed=${2:-1}
passed=0 failed=0
for compat in 0.10 1.1; do
  for cluster in 512 4096 65536 2097152; do
    for refbits in 1 16 64; do
      [[ $compat == 0.10 && $refbits != 16 ]] && continue
      for backing in none qcow2 raw; do
        seed=$((seed + 1))
        if out=$(bash "$here/qcow2_random.sh" "$seed" "$ops" "$cluster" "$compat" "$refbits" "$backing" 2>&1); then
          passed=$((passed + 1))
          echo "$out" | tail -1
        else
          failed=$((failed + 1))
          echo "FAIL seed=$seed cluster=$cluster compat=$compat refcount_bits=$refbits backing=$backing"
          echo "$out" | tail -5 | sed 's/^/    /'
        fi
      done
    done
  done
done
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
