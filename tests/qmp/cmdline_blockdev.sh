#!/bin/bash
# --blockdev's refusals compared between qemu-storage-daemon 7.2 and `qblock storage-daemon`:
# a JSON value is type-checked like blockdev-add's arguments (tests/qmp/blockdev_types.qmp);
# dotted keys only get the checks of required members (their text values are not type-checked
# yet). Each daemon must refuse and exit.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
QBLOCK=${QBLOCK:-$HERE/../../build/debug/bin/qblock}
. "$HERE/daemon_pair.rc"

run() {  # run NAME DAEMON...
  local name=$1 value
  shift
  export DIR=$TOP/$name
  mkdir -p "$DIR"
  qemu-img create -q -f qcow2 "$DIR/a.qcow2" 64M
  while IFS= read -r value; do
    value=${value//\$DIR/$DIR}
    echo ">>> --blockdev ${value//$DIR/\$DIR}"
    timeout 10 "$@" --blockdev "$value" 2>&1 | sed "s|$DIR|\$DIR|g; s|^[^:]*: ||"
    echo "exit status: ${PIPESTATUS[0]}"
  done >"$TOP/$name.out" <<'CASES'
{"driver":"file","node-name":"p1","filename":42}
{"driver":"file","node-name":"p1","filename":"$DIR/a.qcow2","cache":{"direct":"yes"}}
{"driver":"file","node-name":"p1","filename":"$DIR/a.qcow2","aio":"bogus"}
{"driver":"file","node-name":"p1","filename":"$DIR/a.qcow2","bogus-opt":1}
{"driver":"file","node-name":"p1","filename":"$DIR/a.qcow2","discard":"on"}
{"driver":"qcow2","node-name":"q1","file":{"driver":"file","filename":"$DIR/a.qcow2"},"l2-cache-size":"1M"}
{"driver":"qcow2","node-name":"q1","file":{"driver":"file","filename":"$DIR/a.qcow2","bogus":1}}
{"driver":"qcow2","node-name":"q1","file":3}
{"driver":"raw","node-name":"r1","file":{"driver":"file","filename":"$DIR/a.qcow2"},"offset":"5"}
driver=file,node-name=p1
CASES
}

compare_daemons "--blockdev refusals"
