# A creation that fails once the file exists (here a preallocation past the file-size limit):
# qemu-img 7.2 words the EFBIG as "The image size is too large for file format ...", removes
# a qcow2 image it could not finish, and leaves a raw file empty. Option errors come before
# the file is touched, so an existing file stays as it was (qblock checks every qcow2 option
# first; qemu-img removes the file for some of them, which the goldens leave out).
. ./common.rc
_exists() { if [ -e "$1" ]; then _sum "$1"; else echo "$1: absent"; fi; }
for fmt in qcow2 raw; do
    for prealloc in full falloc; do
        _section "$fmt preallocation=$prealloc past ulimit -f"
        (ulimit -f 1024; _img create -q -f $fmt -o preallocation=$prealloc new.img 64M)
        _exists new.img
        echo old > old.img
        (ulimit -f 1024; _img create -q -f $fmt -o preallocation=$prealloc old.img 64M)
        _exists old.img
        rm -f new.img old.img
    done
done

_section "option errors leave an existing file untouched"
echo old > old.img
_img create -q -f qcow2 -o foo=bar old.img 64M
_exists old.img
_img create -q -f qcow2 -o backing_file=missing.qcow2,backing_fmt=qcow2 old.img 64M
_exists old.img
_img create -q -f raw -o preallocation=bogus old.img 64M
_exists old.img

_section "convert: target creation that fails, and raw options"
truncate -s 4M d.raw
(ulimit -f 1024; _img convert -f raw -O raw d.raw t.raw)
_exists t.raw
(ulimit -f 1024; _img resize -f raw d.raw 8M)
_img convert -f raw -O raw -o preallocation=bogus d.raw t.raw
_exists t.raw
_img convert -f raw -O raw -o preallocation=metadata d.raw t.raw
_exists t.raw
