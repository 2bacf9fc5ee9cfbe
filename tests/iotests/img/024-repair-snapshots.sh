# check -r all on damaged snapshot tables (qcow2-format.md §8.1), as qemu-img 7.2 repairs them:
# extra data over 1 KiB is cut to its first 1 KiB, the entries that make the table exceed
# 64 MiB are dropped (their clusters become leaks), v3 entries with less than the 16 bytes of
# extra data v3 requires are completed (disk_size = the virtual size), and the table is then
# written to new clusters with 24 bytes of extra data per entry (unknown extra data kept). Plain
# check and -r leaks only report. Entries whose L1 table is unusable stay (reported, not
# repaired). The images are made by qemu-img and edited here; each case is checked on fresh
# copies, then the repaired table, a re-check and the snapshot list are printed.
. ./common.rc
_filter_dates() {
    sed -e 's/[0-9]\{4\}-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]/DATE/'
}
# _edit IMG PYTHON: rewrites the snapshot table of IMG in place (at the same offset) after
# PYTHON changed the list `e` of entries (dicts: l1o, l1s, vms, extra, eds = the declared extra
# size if not len(extra), id, name) or set `nb` (the header's count).
_edit() {
    python3 - "$1" "$2" <<'EOF'
import struct, sys
f = open(sys.argv[1], 'r+b')
f.seek(60); nb, off = struct.unpack('>IQ', f.read(12))
e, pos = [], off
for i in range(nb):
    f.seek(pos)
    l1o, l1s, idl, nl, ds, dn, vmc, vms, eds = struct.unpack('>QIHHIIQII', f.read(40))
    extra = f.read(eds); ident = f.read(idl); name = f.read(nl)
    e.append(dict(l1o=l1o, l1s=l1s, ds=ds, dn=dn, vmc=vmc, vms=vms, eds=None, extra=extra,
                  id=ident, name=name))
    pos += (40 + eds + idl + nl + 7) // 8 * 8
exec(sys.argv[2])
out = b''
for x in e:
    eds = x['eds'] if x['eds'] is not None else len(x['extra'])
    b = struct.pack('>QIHHIIQII', x['l1o'], x['l1s'], len(x['id']), len(x['name']), x['ds'],
                    x['dn'], x['vmc'], x['vms'], eds) + x['extra'] + x['id'] + x['name']
    out += b + b'\0' * (-len(b) % 8)
f.seek(off); f.write(out)
f.seek(60); f.write(struct.pack('>I', globals().get('nb_new', len(e))))
EOF
}
# _table IMG: the header's snapshot fields and each entry (without its dates).
_table() {
    python3 - "$1" <<'EOF'
import struct, sys
f = open(sys.argv[1], 'rb')
f.seek(60); nb, off = struct.unpack('>IQ', f.read(12))
print('nb_snapshots %d, snapshots_offset %#x' % (nb, off))
pos = off
for i in range(min(nb, 4)):
    f.seek(pos)
    l1o, l1s, idl, nl, ds, dn, vmc, vms, eds = struct.unpack('>QIHHIIQII', f.read(40))
    extra = f.read(eds); ident = f.read(idl); name = f.read(nl)
    print('  entry %d at %#x: l1 %#x/%d, id %r, name %r, vm_state_size %d, extra %d: %s' %
          (i, pos, l1o, l1s, ident.decode(), name.decode(), vms, eds, extra[:40].hex()))
    pos += (40 + eds + idl + nl + 7) // 8 * 8
EOF
}
# _case NAME: info; check; check -r leaks; check -r all, then the table, a re-check and the
# snapshot list of the repaired image.
_case() {
    local r
    _img info "$1.qcow2" | _filter_dates | grep -v '^disk size\|^image\|^file format'
    for r in "" "-r leaks" "-r all"; do
        cp "$1.qcow2" t.qcow2
        echo "--- check $r"
        _img check $r t.qcow2
    done
    echo "--- after check -r all"
    _table t.qcow2
    qemu-img check t.qcow2 2>&1 | tail -n 1
    qemu-img info t.qcow2 | _filter_dates | sed -n '/^Snapshot list/,/^Format/p'
}

qemu-img create -q -f qcow2 base.qcow2 16M
qemu-io -c 'write -P 5 0 128k' base.qcow2 >/dev/null
qemu-img snapshot -c s1 base.qcow2
qemu-io -c 'write -P 6 64k 64k' base.qcow2 >/dev/null
qemu-img snapshot -c s2 base.qcow2
qemu-img snapshot -c s3 base.qcow2
_table base.qcow2

_section incomplete v3 entries: no extra data, 8 bytes of it
cp base.qcow2 incomplete.qcow2
_edit incomplete.qcow2 "e[1]['extra'] = b''; e[2]['extra'] = struct.pack('>Q', 0x1234)"
_case incomplete

_section extra data over 1 KiB
cp base.qcow2 extra.qcow2
_edit extra.qcow2 "e[1]['extra'] += bytes(range(256)) * 7 + bytes(200)"
_case extra

_section extra_data_size 0xffffffff: the table runs past 64 MiB from entry 1
cp base.qcow2 overhang.qcow2
_edit overhang.qcow2 "e[1]['eds'] = 0xffffffff"
_case overhang

_section unknown extra data, a VM state over 4 GiB, an incomplete entry
cp base.qcow2 unknown.qcow2
_edit unknown.qcow2 "e[0]['extra'] = struct.pack('>QQQ', 0x100001234, 0x2000000, 7) + b'ABCDEFGHIJKLMNOP'; e[0]['vms'] = 0x55; e[1]['extra'] = b''; e[2]['extra'] = struct.pack('>QQ', 0x200000000, 0x3000000)"
_case unknown

_section unusable L1 tables: unaligned, too large
cp base.qcow2 badl1.qcow2
_edit badl1.qcow2 "e[0]['l1o'] = 0x70200; e[2]['l1s'] = 0x500000"
_case badl1

_section v2: no extra data, and extra data over 1 KiB
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 16M
qemu-io -c 'write -P 5 0 64k' v2.qcow2 >/dev/null
qemu-img snapshot -c s1 v2.qcow2
qemu-img snapshot -c s2 v2.qcow2
_edit v2.qcow2 "e[0]['extra'] = b''; e[1]['extra'] += bytes(2000)"
_case v2

_section an L1 entry with only reserved bits names the header cluster as its L2 table
qemu-img create -q -f qcow2 l1.qcow2 1G
qemu-io -c 'write 0 64k' l1.qcow2 >/dev/null
printf '\x00\x00\x00\x00\x00\x00\x00\x18' | dd of=l1.qcow2 bs=1 seek=$((0x30008)) conv=notrunc status=none
_img check l1.qcow2
cp l1.qcow2 t.qcow2
_img check -r all t.qcow2

# What QEMU's open refuses of the table, a check opens and reports. (-r all on the first image
# drops the 4464 entries over 65536, then frees the table's cluster as a leak: the table lies
# more than a cluster past the end of the file, so nothing references it. qemu-img 7.2 also
# discards that cluster, which wipes the remaining snapshots; qblock does not.)
_section "more than 65536 snapshots; an unaligned snapshot table"
cp v2.qcow2 many.qcow2
_edit many.qcow2 "nb_new = 70000"
_img info many.qcow2
_img check many.qcow2
_img check -r leaks many.qcow2
cp base.qcow2 unaligned.qcow2
printf '\x00\x00\x00\x00\x00\x0d\x00\x08' | dd of=unaligned.qcow2 bs=1 seek=64 conv=notrunc status=none
_img info unaligned.qcow2
_img check unaligned.qcow2
_img check -r all unaligned.qcow2
