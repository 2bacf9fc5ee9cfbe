# qblock's own texts, which qemu-img has no counterpart for: `qblock --help` lists every
# command with one line each (main.cc's command table), the entry point's errors, and each
# command's --help text (the option parser prints it and exits 0). The commands are taken from
# the --help listing itself, so a command that is listed but not dispatched fails here.
. ./common.rc
_run() { echo "--- qblock $*"; _img "$@"; }
_run --help
_run -h
_run
_run bogus
_run help
for c in $($QEMU_IMG --help | sed -n 's/^  \([a-z]*\)  .*/\1/p'); do
    _run "$c" --help
done
