#!/usr/bin/env bash
# help: the command list, the extended help of every command, unknown
# commands, the ? alias, help without an open image.
. "$(dirname "$0")/common.rc"

_make_raw t.raw 1M

_section "help (with and without an open image)"
_run_io -f raw -c 'help' t.raw
_run_io -c 'help'

_section "help for each command"
for cmd in abort aio_flush aio_read aio_write alloc break close discard flush \
           help info length map open quit read readv remove_break reopen \
           resume sigraise sleep truncate wait_break write writev; do
    echo "--- help $cmd"
    _run_io -c "help $cmd"
done

_section "help with aliases uses the typed name"
_run_io -c 'help r' -c '? w' -c '? ?' -c 'help q' -c 'help o' -c 'help c' -c 'help a' -c 'help i' -c 'help f' -c 'help d' -c 'help t' -c 'help l'

_section "help errors"
_run_io -c 'help frob' -c 'help a b' -c '? frob' -c 'help READ'
_run_io -c 'help frob'
