# shellcheck shell=bash
# Shared helpers for the NBD client suites; source it from bash.
#
#   NBD_SERVER   server command, split on blanks (default: qemu-nbd)
#   NBD_KEEP     if set, keep the scratch directory
#
# Provides: $WORK (scratch directory, removed on exit), case bookkeeping (run_case, why,
# must, finish), and server management (start_server / stop_server) that records the exit
# status of the --fork daemon: the server runs under a small Python parent that makes itself
# a child subreaper (PR_SET_CHILD_SUBREAPER), so the daemonised grandchild is reparented to it
# and its exit status can be collected.

NBD_SERVER=${NBD_SERVER:-qemu-nbd}
read -r -a NBD_SERVER_CMD <<<"$NBD_SERVER"
NBD_FAILED=()
NBD_PASSED=0
NBD_WRAPPERS=()

WORK=$(mktemp -d "${TMPDIR:-/tmp}/qblock-nbd.XXXXXX") || exit 2
if (( ${#WORK} > 80 )); then
  echo "scratch directory $WORK is too long a path for Unix sockets; set TMPDIR" >&2
  rm -rf "$WORK"
  exit 2
fi

nbd_cleanup() {
  local pf pid w i
  for pf in "$WORK"/*.pid; do
    [[ -f $pf ]] || continue
    pid=$(cat "$pf" 2>/dev/null) || continue
    [[ $pid =~ ^[0-9]+$ ]] || continue
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null
      for ((i = 0; i < 30; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null
    fi
  done
  for w in "${NBD_WRAPPERS[@]}"; do
    kill -0 "$w" 2>/dev/null && kill -TERM "$w" 2>/dev/null
  done
  wait 2>/dev/null
  if [[ -n ${NBD_KEEP:-} ]]; then echo "# kept $WORK"; else rm -rf "$WORK"; fi
}
trap nbd_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- case bookkeeping ----------------------------------------------------------------------

# why MESSAGE: the reason the current case fails (the first one given wins).
why() { [[ -s $WORK/.why ]] || printf '%s' "$*" >"$WORK/.why"; }

# must DESCRIPTION CMD...: runs CMD; on failure records DESCRIPTION, the exit status and the
# last lines of the output, and returns 1. The output is left in $OUT either way.
must() {
  local desc=$1 rc
  shift
  OUT=$("$@" 2>&1)
  rc=$?
  if ((rc != 0)); then
    why "$desc: exit $rc: $(tail -n 3 <<<"$OUT" | tr '\n' ' ')"
    return 1
  fi
  return 0
}

# must_fail DESCRIPTION CMD...: CMD must fail; output in $OUT.
must_fail() {
  local desc=$1
  shift
  if OUT=$("$@" 2>&1); then
    why "$desc: succeeded, expected a failure"
    return 1
  fi
  return 0
}

# run_case NAME FUNCTION [ARGS...]: one line per case, "ok - NAME" or "FAIL - NAME: why".
run_case() {
  local name=$1 t0 dt
  shift
  if [[ " ${NBD_SKIP:-} " == *" $name "* ]]; then
    echo "skip - $name"
    return 0
  fi
  rm -f "$WORK/.why"
  t0=$(date +%s.%N)
  if "$@" >"$WORK/.case.log" 2>&1; then
    dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    echo "ok - $name$( [[ ${dt%.*} -ge 2 ]] && echo " [${dt}s]")"
    NBD_PASSED=$((NBD_PASSED + 1))
  else
    local reason
    reason=$(cat "$WORK/.why" 2>/dev/null)
    [[ -n $reason ]] || reason="failed: $(tail -n 3 "$WORK/.case.log" | tr '\n' ' ')"
    echo "FAIL - $name: $reason"
    NBD_FAILED+=("$name")
  fi
}

finish() {
  if ((${#NBD_FAILED[@]})); then
    echo "# FAILED ${#NBD_FAILED[@]} case(s): ${NBD_FAILED[*]} (passed $NBD_PASSED)"
    exit 1
  fi
  echo "# all $NBD_PASSED cases passed"
  exit 0
}

# --- servers -------------------------------------------------------------------------------

# The parent of every server: a child subreaper that runs the --fork command, records
# "RC PID" in NAME.started once that command returned, then waits for the daemon and records
# its exit ("exit N" / "signal N") in NAME.status.
NBD_REAPER_PY='
import ctypes, os, sys, subprocess, time
base, cmd = sys.argv[1], sys.argv[2:]
def put(suffix, text):
    with open(base + suffix + ".tmp", "w") as f:
        f.write(text + "\n")
    os.rename(base + suffix + ".tmp", base + suffix)
try:
    ok = ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0
except Exception:
    ok = False
if not ok:
    put(".started", "97 no-subreaper")
    sys.exit(0)
try:
    rc = subprocess.call(cmd, stdin=subprocess.DEVNULL)
except OSError as e:
    print(e, file=sys.stderr)
    rc = 127
pid = None
deadline = time.time() + 5
while rc == 0 and pid is None:
    try:
        with open(base + ".pid") as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        if time.time() > deadline:
            break
        time.sleep(0.02)
put(".started", f"{rc} {pid}")
if rc != 0 or pid is None:
    sys.exit(0)
while True:
    try:
        w, st = os.waitpid(-1, 0)
    except ChildProcessError:
        put(".status", "unknown (the daemon is not a descendant of its starter)")
        break
    except InterruptedError:
        continue
    if w == pid:
        if os.WIFEXITED(st):
            put(".status", f"exit {os.WEXITSTATUS(st)}")
        else:
            put(".status", f"signal {os.WTERMSIG(st)}")
        break
'

# start_server NAME [SERVER ARGS...]: starts $NBD_SERVER -k $WORK/NAME.sock --fork
# --pid-file $WORK/NAME.pid ARGS... (ARGS end with the image). Returns 1 (with a
# reason) when the server does not come up.
start_server() {
  local name=$1 i st
  shift
  local base=$WORK/$name
  rm -f "$base.sock" "$base.pid" "$base.started" "$base.status"
  echo "+ ${NBD_SERVER_CMD[*]} -k $base.sock --fork --pid-file $base.pid $*" >>"$base.log"
  python3 -c "$NBD_REAPER_PY" "$base" "${NBD_SERVER_CMD[@]}" -k "$base.sock" --fork \
    --pid-file "$base.pid" "$@" >>"$base.log" 2>&1 &
  NBD_WRAPPERS+=("$!")
  for ((i = 0; i < 300; i++)); do
    [[ -f $base.started ]] && break
    sleep 0.05
  done
  if [[ ! -f $base.started ]]; then
    why "server $name: --fork parent did not return within 15 s"
    return 1
  fi
  read -r st _ <"$base.started"
  if [[ $st != 0 ]]; then
    why "server $name did not start (exit $st): $(tail -n 2 "$base.log" | tr '\n' ' ')"
    return 1
  fi
  if [[ ! -S $base.sock ]]; then
    why "server $name: no socket at $base.sock after the --fork parent returned"
    return 1
  fi
  return 0
}

# uri NAME [EXPORT]: the nbd+unix URI of server NAME.
uri() { echo "nbd+unix:///${2:-}?socket=$WORK/$1.sock"; }

# stop_server NAME: SIGTERM; the daemon must exit 0 within 20 s and remove its socket.
stop_server() {
  local name=$1 i pid st
  local base=$WORK/$name
  pid=$(cat "$base.pid" 2>/dev/null)
  if [[ ! $pid =~ ^[0-9]+$ ]]; then
    why "server $name: no pid file"
    return 1
  fi
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 400; i++)); do
    [[ -f $base.status ]] && break
    sleep 0.05
  done
  if [[ ! -f $base.status ]]; then
    kill -KILL "$pid" 2>/dev/null
    why "server $name did not exit within 20 s of SIGTERM (killed)"
    return 1
  fi
  st=$(cat "$base.status")
  rm -f "$base.pid"
  if [[ $st != "exit 0" ]]; then
    why "server $name: $st after SIGTERM, expected exit 0 ($(tail -n 2 "$base.log" | tr '\n' ' '))"
    return 1
  fi
  if [[ -e $base.sock ]]; then
    why "server $name exited but left its socket $base.sock"
    return 1
  fi
  return 0
}

# check_clean IMAGE: qemu-img check must find nothing.
check_clean() {
  must "qemu-img check $(basename "$1")" qemu-img check "$1" || return 1
}

# pycheck CODE: runs Python CODE with `d` bound to the JSON read from stdin; CODE calls
# fail("...") on a mismatch, which becomes the case's reason.
pycheck() {
  local msg
  if ! msg=$(python3 -c "
import json, sys
def fail(m):
    print(m)
    sys.exit(1)
try:
    d = json.load(sys.stdin)
except ValueError as e:
    fail(f'unparsable JSON: {e}')
$1
" 2>&1); then
    why "$msg"
    return 1
  fi
}

# check_map JSON SIZE SPEC: JSON is `nbdinfo --map --json` (or `qemu-img map --output=json`
# with key=data) output; the extents must tile [0, SIZE) and every 64 KiB granule may only
# meet the types SPEC allows. SPEC: "START LENGTH TYPES; ...; * TYPES" with K/M suffixes,
# TYPES a comma list (for qemu-img map: data / nodata).
check_map() {
  local msg
  if ! msg=$(python3 - "$1" "$2" "$3" 2>&1 <<'PY'
import json, sys
def num(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:].upper(), 1)
    return int(float(s[:-1] if mult > 1 else s) * mult)
ext = json.load(open(sys.argv[1]))
size = num(sys.argv[2])
rules, default = [], None
for part in sys.argv[3].split(";"):
    f = part.split()
    if not f:
        continue
    if f[0] == "*":
        default = set(f[1].split(","))
    else:
        rules.append((num(f[0]), num(f[0]) + num(f[1]), set(f[2].split(","))))
norm = []
for e in ext:
    if "type" in e:
        norm.append((e["offset"], e["length"], str(e["type"])))
    else:   # qemu-img map
        norm.append((e["start"], e["length"], "data" if e["data"] else "nodata"))
pos = 0
for off, ln, _ in norm:
    if off != pos:
        print(f"extents do not tile the export: next extent at {off}, expected {pos}")
        sys.exit(1)
    pos += ln
if pos != size:
    print(f"extents cover {pos} bytes, export has {size}")
    sys.exit(1)
G = 64 << 10
for g in range(0, size, G):
    allowed = default
    for a, b, t in rules:
        if a <= g < b:
            allowed = t
    seen = {t for off, ln, t in norm if off < g + G and g < off + ln}
    if allowed is not None and not seen <= allowed:
        print(f"granule at {g} ({g >> 20} MiB + {(g & ((1 << 20) - 1)) >> 10} KiB) has type "
              f"{'/'.join(sorted(seen))}, expected {'/'.join(sorted(allowed))}")
        sys.exit(1)
PY
  ); then
    why "map $(basename "$1"): $msg"
    return 1
  fi
}
