#!/usr/bin/env bash
# Interactive mode: commands read from stdin when no -c is given.  The
# "qemu-io> " prompts are removed by the filter.
. "$(dirname "$0")/common.rc"

_make_raw t.raw 1M

_section "commands from stdin"
printf 'write -P 1 0 512\nread -P 1 0 512\nlength\ninfo\n' | _run_io -f raw t.raw

_section "empty lines, white space, errors; exit status 1 after a failure"
printf '\n   \n  read   -P 1   0 512  \nfrob\nread -P 2 0 512\n\nlength x\nread -x 0 1\nlength\n' | _run_io -f raw t.raw

_section "quit stops reading"
printf 'length\nquit\nlength\nfrob\n' | _run_io -f raw t.raw
printf 'q\nwrite -P 3 0 512\n' | _run_io -f raw t.raw
printf 'read -P 1 0 512\n' | _run_io -f raw t.raw

_section "last line without a newline is executed"
printf 'length\nread -P 1 0 512' | _run_io -f raw t.raw

_section "empty input"
printf '' | _run_io -f raw t.raw
printf '\n' | _run_io -f raw t.raw

_section "-c given: stdin is not read"
printf 'frob\n' | _run_io -f raw -c 'length' t.raw

_section "no file: open and close interactively"
printf 'length\nopen -o driver=raw t.raw\nlength\nopen t.raw\nclose\nread 0 1\nopen -r -o driver=raw t.raw\nwrite 0 1\nread -P 1 0 512\n' | _run_io

_section "aio and hexdump interactively"
printf 'aio_write -P 0x61 0 16\naio_flush\naio_read -v 0 16\naio_flush\naio_read -P 0x62 0 16\naio_flush\nreadv -v 8 4 4\n' | _run_io -f raw t.raw

_section "help interactively"
printf 'help\nhelp length\nhelp frob\n' | _run_io -f raw t.raw
