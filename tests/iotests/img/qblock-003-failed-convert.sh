# A convert that fails after it created its target removes the target: a half-copied image
# would pass for the converted one (qemu-img 7.2 leaves it, e.g. 1 MiB of a 4 MiB copy past
# the file-size limit). A target that existed before and was not touched (its lock is held,
# or -n) stays.
. ./common.rc
_exists() { if [ -e "$1" ]; then _sum "$1"; else echo "$1: absent"; fi; }
truncate -s 4M d.raw
qemu-io -f raw -c 'write -P 7 0 4M' d.raw >/dev/null
_section "copy past ulimit -f"
(ulimit -f 1024; _img convert -f raw -O qcow2 d.raw t.qcow2)
_exists t.qcow2
echo old > t.qcow2
(ulimit -f 1024; _img convert -f raw -O qcow2 d.raw t.qcow2)
_exists t.qcow2
_section "-n: the existing target stays"
$QEMU_IMG create -q -f qcow2 n.qcow2 4M
(ulimit -f 1024; _img convert -n -f raw -O qcow2 d.raw n.qcow2)
_exists n.qcow2 | sed 's/md5 .*/md5 .../'
