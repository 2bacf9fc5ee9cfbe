#!/usr/bin/env bash
# qemu-io invocation: options and their errors, usage text, --image-opts.
. "$(dirname "$0")/common.rc"

_make_raw t.raw 1M

_section "unknown option: message on stderr, full usage on stdout"
_run_io -x
_run_io -f raw -x -c 'length' t.raw
_run_io --bogus
_run_io --bogus=1 t.raw

_section "option missing its argument"
_run_io -c
_run_io -f
_run_io t.raw -t

_section "-h / --help"
_run_io -h
_run_io --help -c 'length' t.raw

_section "more than one file argument"
_run_io -f raw t.raw t.raw
_run_io -f raw -c 'length' t.raw t.raw t.raw

_section "--image-opts"
_run_io --image-opts -c 'length' -c 'read -P 0 0 512' driver=raw,file.filename=t.raw
_run_io --image-opts -c 'length' driver=raw,file.driver=file,file.filename=t.raw
_run_io --image-opts -f raw -c 'length' t.raw
_run_io -f raw --image-opts -c 'length' driver=raw,file.filename=t.raw
_run_io --image-opts -f '' -c 'length' driver=raw,file.filename=t.raw
_run_io --image-opts -c 'length' driver=raw,file.filename=nofile.raw
_run_io --image-opts -c 'length' driver=raw,file.filename=t.raw,foo=bar

_section "bad cache / discard / aio / format"
_run_io -f raw -t bogus -c 'length' t.raw
_run_io -f raw --cache=bogus -c 'length' t.raw
_run_io -f raw -d bogus -c 'length' t.raw
_run_io -f raw --discard=bogus -c 'length' t.raw
_run_io -f raw -i bogus -c 'length' t.raw
_run_io -f raw --aio=bogus -c 'length' t.raw
_run_io -f bogus -c 'length' t.raw
_run_io --format=bogus -c 'length' t.raw
_run_io -f raw -k -c 'length' t.raw
_run_io -f raw -i native -c 'length' t.raw

_section "good cache / discard / aio values"
_run_io -f raw -t writeback -c 'length' t.raw
_run_io -f raw -t unsafe -d unmap -c 'length' t.raw
_run_io -f raw -t writethrough -d on -c 'length' t.raw
_run_io -f raw -d ignore -i threads -c 'length' t.raw
_run_io -f raw --cache=writeback --discard=off --aio=threads -c 'length' t.raw

_section "other flags"
_run_io -f raw -C -c 'read -P 0 0 512' t.raw
_run_io -f raw --copy-on-read -c 'read -P 0 0 512' t.raw
_run_io -f raw -m -c 'write -P 0x12 0 512' -c 'read -P 0x12 0 512' t.raw
_run_io -f raw --misalign -c 'readv -P 0x12 0 100 412' t.raw
_run_io -f raw --snapshot -c 'write -P 0x13 0 512' t.raw
_run_io --format raw --read-only --force-share --cmd 'read -P 0x12 0 512' t.raw

_section "the -c commands run in order, after the file is opened"
_run_io -c 'length' -f raw t.raw -c 'info' -c 'read -P 0x12 0 1'

_section "a file that cannot be opened: exit 1, no command runs"
_run_io -f raw -c 'length' -c 'help' nofile.raw
_run_io -c 'length' nofile.raw
