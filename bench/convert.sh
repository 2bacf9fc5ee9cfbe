#!/usr/bin/env bash
# Side-by-side benchmark of compressed convert (issue 14, docs/performance.md "convert -c"):
#  (a) `convert -c` of a raw image of semi-compressible data (4 KiB blocks: 35% base64 text,
#      35% log-like text, 20% noise, 10% zeros) to qcow2, qblock against
#      `qemu-img convert -c -m 8 -W` (same options for both; issue target: qblock >= 1.8x);
#  (b) `convert -O raw` of the compressed qcow2 (qemu-img's image from (a)) back to raw
#      (issue target: qblock >= 1.5x).
# The tools alternate (which goes first swaps every run), RUNS rounds each; prints every run,
# the medians, min-max and the speedup qemu-img/qblock, and the image sizes. Each tool's first
# output is judged by qemu-img check and compare against the source. The source stays in the
# page cache for both tools; the targets are written to BENCH_DIR and removed after each run.
#
# Usage: bench/convert.sh      (`make bench-convert` builds the release binary first)
# Environment: SIZE (default 1G), RUNS (default 5), CTYPE (zlib or zstd, default zlib),
#              QBLOCK (default build/release/bin/qblock), QEMU_IMG (default qemu-img),
#              CONVERT_ARGS (default "-m 8 -W", given to both tools), BENCH_DIR (default
#              /var/tmp), QUICK=1 (SIZE 64M, RUNS 1: a smoke test, not results).
set -euo pipefail
export LC_ALL=C

repo=$(cd "$(dirname "$0")/.." && pwd)
quick=${QUICK:-0}
if [[ $quick == 1 ]]; then
  size=${SIZE:-64M} runs=${RUNS:-1}
else
  size=${SIZE:-1G} runs=${RUNS:-5}
fi
ctype=${CTYPE:-zlib}
qblock=${QBLOCK:-$repo/build/release/bin/qblock}
qemu_img=${QEMU_IMG:-qemu-img}
read -r -a args <<<"${CONVERT_ARGS:--m 8 -W}"
bench_dir=${BENCH_DIR:-/var/tmp}

die() { echo "convert.sh: $*" >&2; exit 2; }
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$runs'"
[[ $ctype == zlib || $ctype == zstd ]] || die "CTYPE must be zlib or zstd, not '$ctype'"
[[ -x $qblock ]] || die "$qblock not found; run 'make bench-convert' (or 'make build')"
command -v "$qemu_img" >/dev/null || die "$qemu_img not found"
bytes=$(numfmt --from=iec "$size")

tmp=$(mktemp -d "$bench_dir/qblock-convert.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
src=$tmp/src.raw
python3 - "$src" "$bytes" <<'PY'
import base64, random, sys
path, size = sys.argv[1], int(sys.argv[2])
rng = random.Random(14)
noise = rng.randbytes(1 << 20)
text = b"".join(b"%08d GET /api/v1/items?id=%d status=200 bytes=%d\n" % (i, i * 37 % 9973, i * 13)
                for i in range(200))
blk = 4096
with open(path, "wb") as f:
    for _ in range(size // blk):
        r = rng.random()
        if r < 0.35:
            i = rng.randrange(len(noise) - 3072)
            f.write(base64.b64encode(noise[i:i + 3072]))
        elif r < 0.70:
            i = rng.randrange(len(text) - blk)
            f.write(text[i:i + blk])
        elif r < 0.90:
            i = rng.randrange(len(noise) - blk)
            f.write(noise[i:i + blk])
        else:
            f.write(bytes(blk))
PY

source "$repo/bench/stats.sh"
judge() {  # source [compare options...] target
  local s=$1 t=${*: -1}
  if [[ $t == *.qcow2 ]]; then "$qemu_img" check -q "$t" || die "$t: qemu-img check failed"; fi
  "$qemu_img" compare -q "${@:2:$#-2}" "$s" "$t" || die "$t differs from $s"
}

# One benchmark: name, output suffix, then the arguments after `convert` (the target last
# is appended). Fills $report.
bench() {
  local name=$1 ext=$2 in=$3 i q t qt=() tt=()
  shift 3
  for ((i = 1; i <= runs; i++)); do
    rm -f "$tmp/qb.$ext" "$tmp/qe.$ext"
    if ((i % 2)); then
      q=$(timed "$qblock" convert "$@" "$in" "$tmp/qb.$ext")
      t=$(timed "$qemu_img" convert "$@" "$in" "$tmp/qe.$ext")
    else
      t=$(timed "$qemu_img" convert "$@" "$in" "$tmp/qe.$ext")
      q=$(timed "$qblock" convert "$@" "$in" "$tmp/qb.$ext")
    fi
    if ((i == 1)); then
      judge "$src" -f raw -F "$ext" "$tmp/qb.$ext"
      judge "$src" -f raw -F "$ext" "$tmp/qe.$ext"
      sizes="qblock $(stat -c %s "$tmp/qb.$ext") bytes, qemu-img $(stat -c %s "$tmp/qe.$ext") bytes"
      [[ $ext == qcow2 ]] && cp "$tmp/qe.$ext" "$tmp/compressed.qcow2"
    fi
    qt+=("$q") tt+=("$t")
    printf '%s run %d: qblock %7.3f s   qemu-img %7.3f s\n' "$name" "$i" "$q" "$t"
    sync
  done
  local qm tm
  qm=$(median "${qt[@]}") tm=$(median "${tt[@]}")
  printf '%s median: qblock %.3f s (%s)   qemu-img %.3f s (%s)   speedup qemu-img/qblock %s\n' \
    "$name" "$qm" "$(minmax "${qt[@]}")" "$tm" "$(minmax "${tt[@]}")" \
    "$(ratio "$qm" "$tm")"
  echo "$name output sizes: $sizes"
}

echo "machine: $(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg), $(df -T "$tmp" | awk 'NR==2 {print $2 " on " $1}')"
echo "source: $size raw, semi-compressible ($(du -h "$src" | cut -f1) on disk), compression_type=$ctype"
echo "qblock:   $qblock convert ${args[*]}    qemu-img: $("$qemu_img" --version | head -1)"
[[ $quick == 1 ]] && echo "QUICK=1: a smoke test, not results"
cat "$src" >/dev/null  # into the page cache for both
bench "convert -c" qcow2 "$src" -f raw -c "${args[@]}" -O qcow2 -o compression_type=$ctype
bench "compressed->raw" raw "$tmp/compressed.qcow2" -f qcow2 "${args[@]}" -O raw
