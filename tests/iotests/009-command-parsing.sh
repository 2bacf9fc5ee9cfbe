#!/usr/bin/env bash
# Generic command-line parsing of qemu-io commands: argument counts, unknown
# commands and options, missing option arguments, aliases, quit, white space.
. "$(dirname "$0")/common.rc"

_make_raw t.raw 1M

_section "bad argument count: exactly N"
_run_io -f raw \
    -c 'length x' \
    -c 'info x y' \
    -c 'flush x' \
    -c 'close x' \
    -c 'aio_flush x' \
    -c 'map x' \
    -c 'sleep' \
    -c 'sleep 1 2' \
    -c 'break' \
    -c 'break a' \
    -c 'break a b c' \
    -c 'resume' \
    -c 'remove_break a b' \
    t.raw

_section "bad argument count: at least N"
_run_io -f raw \
    -c 'read' \
    -c 'read 0' \
    -c 'write 0' \
    -c 'readv 0' \
    -c 'writev' \
    -c 'aio_read 0' \
    -c 'aio_write' \
    -c 'discard 0' \
    -c 'open' \
    -c 'read -P' \
    -c 'write -P 1' \
    t.raw

_section "bad argument count: between N and M"
_run_io -f raw \
    -c 'alloc' \
    -c 'alloc 0 1 2' \
    -c 'truncate' \
    -c 'truncate -m off 1M x' \
    -c 'help a b' \
    t.raw

_section "the argument count includes option words"
# (Not "truncate -m falloc": qemu-io 7.2 crashes with SIGSEGV on it.)
_run_io -f raw -c 'read -q 0' -c 'read -q -v 0' -c 'write -P 1' t.raw

_section "positional count checked by the command: usage line"
_run_io -f raw \
    -c 'read -q 0 1 2' \
    -c 'read 0 1 2' \
    -c 'write 0 1 2' \
    -c 'discard 0 1 2' \
    -c 'read -P 1 -s 0' \
    t.raw

_section "unknown commands"
_run_io -f raw -c 'frob' -c 'READ 0 1' -c 'read0 1' -c 'aio' -c 'x' -c 'help frob' t.raw

_section "unknown options (message on stderr, usage on stdout)"
_run_io -f raw \
    -c 'read -x 0 1' \
    -c 'write -x 0 1' \
    -c 'writev -x 0 1' \
    -c 'discard -x 0 1' \
    -c 'truncate -x 1' \
    -c 'open -x t.raw' \
    -c 'read -a 0 1' \
    -c 'r -x 0 1' \
    -c 'w -x 0 1' \
    -c 'd -x 0 1' \
    -c 't -x 1' \
    t.raw

_section "option missing its argument"
_run_io -f raw \
    -c 'read 0 1 -P' \
    -c 'read -v -P' \
    -c 'read -s' \
    -c 'read -q -l' \
    -c 'write -q -P' \
    -c 'write -q -s' \
    -c 'truncate -m' \
    -c 'truncate 1 -m' \
    -c 'readv -q -P' \
    -c 'aio_read -q -P' \
    -c 'open -r -o' \
    -c 'o -r -t' \
    t.raw

_section "options after positional words are parsed too (GNU getopt permutes)"
_run_io -f raw \
    -c 'read 0 -q 1' \
    -c 'read 0 1 -q' \
    -c 'write 0 512 -P 1' \
    -c 'read 0 16 -v' \
    -c 'read 0 -P 0 16' \
    -c 'read -P 1 0 512' \
    t.raw

_section "-- ends the options"
_run_io -f raw \
    -c 'read -- 0 16' \
    -c 'read 0 16 --' \
    -c 'write 0 16 -- -P' \
    -c 'read -q -- -1 1' \
    -c 'alloc -- 0' \
    t.raw

_section "bundled options and attached arguments"
_run_io -f raw \
    -c 'write -qP 0x12 0 512' \
    -c 'read -qP0x12 0 512' \
    -c 'read -vqP 0x12 0 16' \
    -c 'read -P0x12 -s0 -l16 0 512' \
    -c 'read -CP 0x12 0 512' \
    t.raw

_section "white space"
_run_io -f raw -c '   read   -P 0x12    0   512   ' -c '' -c '   ' -c 'length' t.raw
_run_io -f raw -c '' t.raw

_section "aliases"
_run_io -f raw \
    -c 'w -P 1 0 512' \
    -c 'r -P 1 0 512' \
    -c 'f' \
    -c 'l' \
    -c 'i' \
    -c 'd 0 512' \
    -c 'r -P 0 0 512' \
    -c 'a 0' \
    -c 't 2M' \
    -c 'l' \
    -c 't 1M' \
    -c '? l' \
    -c 'c' \
    -c 'o -o driver=raw t.raw' \
    -c 'l' \
    -c 'q' \
    -c 'l' \
    t.raw

_section "the typed name is used in messages"
_run_io -f raw -c 'w' -c 'a' -c 'r' -c 'l x' -c 't' -c 'o' -c 'r -x 0 1' -c 'o -x' t.raw

_section "quit stops later commands"
_run_io -f raw -c 'length' -c 'quit' -c 'length' -c 'frob' t.raw
_run_io -f raw -c 'frob' -c 'quit' -c 'length' t.raw
_run_io -f raw -c 'quit now please' -c 'length' t.raw
_run_io -f raw -c 'q' -c 'read 0 1' t.raw

_section "flush"
_run_io -f raw -c 'write -P 3 0 4k' -c 'flush' -c 'f' -c 'read -P 3 0 4k' t.raw
