#!/usr/bin/env bash
# Regression tests for the mutated qcow2 images in images/ (MUTATIONS.md says how each was made
# and what went wrong). Every image goes through the same commands with qblock and with QEMU
# 7.2's tools, each under a 10 s time limit and a 1 GiB file-size limit, on fresh copies:
#   info, info --output=json, check, map --output=json, convert -O raw,
#   io -c 'read 0 1M' -c 'write -P 1 0 64k' -c 'read -P 1 0 64k', check -r all.
# Judged per image and aspect (a failed aspect prints "FAIL image/aspect: why"):
#   crash   no qblock command is killed, times out or prints a sanitizer report;
#   open    info succeeds or is refused as qemu-img info is (same exit status);
#   json    info --output=json prints valid JSON when it succeeds;
#   check   check exits as qemu-img check does;
#   map     map exits as qemu-img map does;
#   convert convert exits as qemu-img convert does, and both raw outputs are identical;
#   io      a write reported as done reads back, and qemu-img check counts no more corruptions
#           in qblock's image afterwards than in QEMU's;
#   repair  check -r all exits as QEMU's does, and leaves no corruption where QEMU's leaves none.
# Aspects listed in KNOWN_FAILURES ("image/aspect" per line, '#' comments) are reported as xfail
# and do not fail the run; one that passes is reported as xpass.
# Environment: QBLOCK (the qblock binary), KEEP=1 keeps the work directory, ONLY=name runs one
# image.
set -uo pipefail
QBLOCK=${QBLOCK:?set QBLOCK to the qblock binary}
here=$(cd "$(dirname "$0")" && pwd)
images=$here/images
dir=$(mktemp -d "${TMPDIR:-/var/tmp}/qblock-mutations.XXXXXX")
if [[ ${KEEP:-0} == 1 ]]; then echo "work directory: $dir"; else trap 'rm -rf "$dir"' EXIT; fi
ulimit -f $((1024 * 1024)) # 1 GiB, in 1 KiB blocks
export LC_ALL=C

declare -A known
while read -r name _; do
  [[ -z $name || $name == \#* ]] || known[$name]=1
done < <(cat "$here/KNOWN_FAILURES" 2>/dev/null)

io_cmds=(-c 'read 0 1M' -c 'write -P 1 0 64k' -c 'read -P 1 0 64k')

# fresh ENGINE NAME: a new directory holding a copy of the image and of its backing files;
# prints the image's path.
fresh() {
  local d
  d=$(mktemp -d "$dir/$2.$1.XXXX")
  cp --sparse=always "$images/back.raw" "$images/mid.qcow2" "$d/"
  cp --sparse=always "$images/$2.qcow2" "$d/"
  echo "$d/$2.qcow2"
}

# run LOG CMD...: runs CMD under the time limit with its output in LOG; sets rc.
run() {
  local log=$1
  shift
  timeout -k 2 10 "$@" > "$log" 2>&1 < /dev/null
  rc=$?
}

# crashed LOG: whether the qblock command whose output is LOG (exit status rc) crashed; sets why.
crashed() {
  if ((rc == 124 || rc == 137)); then why="hang (timeout 10 s)"; return 0; fi
  if ((rc > 128)); then why="killed by signal $((rc - 128))"; return 0; fi
  if grep -qE 'Sanitizer|runtime error:|LeakSanitizer' "$1"; then
    why=$(grep -m1 -E 'Sanitizer|runtime error:' "$1")
    return 0
  fi
  return 1
}

# corruptions IMAGE: qemu-img check's corruption count, or "na" when it cannot check the image.
corruptions() {
  local out
  out=$(timeout -k 2 60 qemu-img check --output=json "$1" 2>/dev/null)
  [[ $out == *'"check-errors"'* ]] || { echo na; return; }
  if [[ $out =~ \"corruptions\":\ ([0-9]+) ]]; then echo "${BASH_REMATCH[1]}"; else echo 0; fi
}

passed=0 failed=0 xfailed=0
# verdict NAME ASPECT WHY: records one aspect's result (WHY empty: passed).
verdict() {
  local key=$1/$2
  if [[ -z $3 ]]; then
    if [[ -n ${known[$key]:-} ]]; then echo "xpass $key"; fi
    passed=$((passed + 1))
  elif [[ -n ${known[$key]:-} ]]; then
    echo "xfail $key: $3"
    xfailed=$((xfailed + 1))
  else
    echo "FAIL $key: $3"
    failed=$((failed + 1))
  fi
}

# same_status NAME ASPECT QBLOCK_RC QEMU_RC LOG: the exit statuses must agree.
same_status() {
  if (($3 == $4)); then verdict "$1" "$2" ""; else
    verdict "$1" "$2" "exit status $3, QEMU's $4: $(head -c 300 "$5" | tr '\n' ' ')"
  fi
}

# qblock_cmd NAME ASPECT LOG CMD...: runs a qblock command; records a crash; returns 1 on one.
qblock_cmd() {
  local name=$1 aspect=$2 log=$3
  shift 3
  run "$log" "$QBLOCK" "$@"
  if crashed "$log"; then
    crash_why+="$aspect: $why; "
    return 1
  fi
  return 0
}

test_image() {
  local name=$1 img qimg log q e
  crash_why=""
  img=$(fresh qblock "$name")
  q=$dir/$name.q
  e=$dir/$name.e

  qblock_cmd "$name" info "$q.info" info "$img" && {
    local qb_rc=$rc
    run "$e.info" qemu-img info "$img"
    same_status "$name" open "$qb_rc" "$rc" "$q.info"
  }
  qblock_cmd "$name" info-json "$q.json" info --output=json "$img" && {
    local qb_rc=$rc
    if ((qb_rc == 0)) && ! python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$q.json" \
      2> /dev/null; then
      verdict "$name" json "invalid JSON: $(head -c 200 "$q.json" | tr '\n' ' ')"
    else
      verdict "$name" json ""
    fi
  }
  qblock_cmd "$name" check "$q.check" check "$img" && {
    local qb_rc=$rc
    run "$e.check" qemu-img check "$img"
    same_status "$name" check "$qb_rc" "$rc" "$q.check"
  }
  qblock_cmd "$name" map "$q.map" map --output=json "$img" && {
    local qb_rc=$rc
    run "$e.map" qemu-img map --output=json "$img"
    same_status "$name" map "$qb_rc" "$rc" "$q.map"
  }
  qblock_cmd "$name" convert "$q.convert" convert -O raw "$img" "$q.raw" && {
    local qb_rc=$rc
    run "$e.convert" qemu-img convert -O raw "$img" "$e.raw"
    if ((qb_rc != rc)); then
      same_status "$name" convert "$qb_rc" "$rc" "$q.convert"
    elif ((rc == 0)) && ! cmp -s "$q.raw" "$e.raw"; then
      verdict "$name" convert "raw output differs from qemu-img convert's"
    else
      verdict "$name" convert ""
    fi
  }
  rm -f "$q.raw" "$e.raw"

  # io: qblock and qemu-io on separate copies, then qemu-img check on both.
  img=$(fresh qblock-io "$name")
  qimg=$(fresh qemu-io "$name")
  qblock_cmd "$name" io "$q.io" io "${io_cmds[@]}" "$img" && {
    run "$e.io" qemu-io "${io_cmds[@]}" "$qimg"
    local ours theirs
    ours=$(corruptions "$img")
    theirs=$(corruptions "$qimg")
    if grep -q 'wrote 65536/65536' "$q.io" && grep -q 'Pattern verification failed' "$q.io"; then
      verdict "$name" io "the write reported success and the read returned other data"
    elif [[ $theirs != na && $ours == na ]]; then
      verdict "$name" io "qemu-img check can no longer check qblock's image (QEMU's: $theirs)"
    elif [[ $theirs != na ]] && ((ours > theirs)); then
      verdict "$name" io "qemu-img check counts $ours corruptions after qblock's writes, $theirs after QEMU's"
    else
      verdict "$name" io ""
    fi
  }

  # repair: check -r all on separate copies, then qemu-img check on both.
  img=$(fresh qblock-repair "$name")
  qimg=$(fresh qemu-repair "$name")
  qblock_cmd "$name" repair "$q.repair" check -r all "$img" && {
    local qb_rc=$rc ours theirs
    run "$e.repair" qemu-img check -r all "$qimg"
    ours=$(corruptions "$img")
    theirs=$(corruptions "$qimg")
    if ((qb_rc != rc)); then
      same_status "$name" repair "$qb_rc" "$rc" "$q.repair"
    elif [[ $theirs == 0 && $ours != 0 ]]; then
      verdict "$name" repair "qemu-img check finds $ours corruptions after qblock's repair, none after QEMU's"
    else
      verdict "$name" repair ""
    fi
  }
  verdict "$name" crash "$crash_why"
}

for path in "$images"/*.qcow2; do
  name=$(basename "$path" .qcow2)
  [[ $name == mid ]] && continue
  [[ -n ${ONLY:-} && $name != "$ONLY" ]] && continue
  test_image "$name"
done
if ((xfailed > 0)); then
  echo "$passed passed, $failed failed, $xfailed xfail"
else
  echo "$passed passed, $failed failed"
fi
((failed == 0))
