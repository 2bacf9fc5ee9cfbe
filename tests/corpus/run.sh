#!/usr/bin/env bash
# qcow2 bad-input corpus: every malformed image from make_corpus.sh is opened read-only and then
# read-write by `qblock io` with a fixed command list. Checks per image:
#   - no crash: exit status 0 or 1 (no signal, no timeout), no sanitizer report in the output;
#   - a read-only open never changes the file; a refused read-write open never changes the file;
#   - a read-write open that succeeds never makes `qemu-img check` report more corruptions.
# Cases listed in KNOWN_FAILURES (one name per line, '#' comments) are reported as xfail and do
# not fail the run; one that passes is reported as xpass.
# Environment: QBLOCK (the qblock binary), KEEP=1 to keep the work directory.
set -uo pipefail
QBLOCK=${QBLOCK:?set QBLOCK to the qblock binary}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d "${TMPDIR:-/var/tmp}/qblock-corpus.XXXXXX")
if [[ ${KEEP:-0} == 1 ]]; then echo "work directory: $dir"; else trap 'rm -rf "$dir"' EXIT; fi
"$here/make_corpus.sh" "$dir" >/dev/null || { echo "make_corpus.sh failed"; exit 1; }
cd "$dir" || exit 1

declare -A known
if [[ -f $here/KNOWN_FAILURES ]]; then
  while read -r name _; do
    [[ -z $name || $name == \#* ]] || known[$name]=1
  done < "$here/KNOWN_FAILURES"
fi

cmds=(-c 'read 0 64k' -c 'write -P 1 0 64k' -c 'read 1M 64k' -c 'write -z 2M 64k'
      -c 'discard 0 64k' -c map)

# corruptions IMAGE: qemu-img check's corruption count, or "na" when it cannot check the image.
corruptions() {
  local out
  out=$(timeout 60 qemu-img check --output=json "$1" 2>/dev/null)
  [[ $out == *'"check-errors"'* ]] || { echo na; return; }
  if [[ $out =~ \"corruptions\":\ ([0-9]+) ]]; then echo "${BASH_REMATCH[1]}"; else echo 0; fi
}

# run MODE IMAGE: runs qblock io; sets rc, out; returns 1 (and sets why) on a crash.
run() {
  local log=$2.$1.log
  if [[ $1 == ro ]]; then
    timeout 20 "$QBLOCK" io -f qcow2 -r "${cmds[@]}" "$2" > "$log" 2>&1
  else
    timeout 20 "$QBLOCK" io -f qcow2 "${cmds[@]}" "$2" > "$log" 2>&1
  fi
  rc=$?
  out=$(<"$log")
  if ((rc == 124)); then why="$1: hang (timeout 20 s)"; return 1; fi
  if ((rc > 128)); then why="$1: killed by signal $((rc - 128))"; return 1; fi
  if ((rc != 0 && rc != 1)); then why="$1: exit status $rc"; return 1; fi
  if grep -qE 'Sanitizer|runtime error' "$log"; then
    why="$1: $(grep -m1 -E 'Sanitizer|runtime error' "$log")"
    return 1
  fi
  return 0
}

# check NAME: all checks for one image; sets why and note; returns 1 on failure.
check() {
  local img=$1.qcow2 before after
  cp "$img" "$1.orig"
  before=$(corruptions "$img")
  run ro "$img" || return 1
  if ! cmp -s "$img" "$1.orig"; then why="ro: read-only open changed the file"; return 1; fi
  local ro_state=opened
  [[ $out == *"can't open device"* ]] && ro_state=refused
  run rw "$img" || return 1
  if [[ $out == *"can't open device"* ]]; then
    if ! cmp -s "$img" "$1.orig"; then why="rw: refused open changed the file"; return 1; fi
    note="ro $ro_state, rw refused"
    return 0
  fi
  # The commands write at most 192 KiB of guest data; a much larger file means that an
  # L1/L2/refcount entry past EOF was followed.
  local grown=$(($(stat -c %s "$img") - $(stat -c %s "$1.orig")))
  if ((grown > 1048576)); then why="rw: file grew by $grown bytes"; return 1; fi
  after=$(corruptions "$img")
  note="ro $ro_state, rw opened, corruptions $before -> $after"
  if [[ $before != na ]]; then
    if [[ $after == na ]]; then why="rw: qemu-img check can no longer open the image"; return 1; fi
    if ((after > before)); then why="rw: corruptions $before -> $after"; return 1; fi
  fi
  return 0
}

passed=0 failed=0 xfailed=0
while read -r name; do
  why="" note=""
  if check "$name"; then
    if [[ -n ${known[$name]:-} ]]; then echo "xpass $name ($note)"; else echo "ok $name ($note)"; fi
    passed=$((passed + 1))
  elif [[ -n ${known[$name]:-} ]]; then
    echo "xfail $name: $why"
    xfailed=$((xfailed + 1))
  else
    echo "FAIL $name: $why"
    failed=$((failed + 1))
  fi
done < cases
if ((xfailed > 0)); then
  echo "$passed passed, $failed failed, $xfailed xfail"
else
  echo "$passed passed, $failed failed"
fi
((failed == 0))
