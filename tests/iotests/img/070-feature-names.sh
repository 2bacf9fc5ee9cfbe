# Unknown qcow2 feature bits (issue 15 item 5): unknown incompatible bits are refused and
# named from the image's feature-name table ("Unsupported qcow2 feature(s): Test_feature"),
# unnamed ones as a hex mask; a name of another type or a second name of the same bit does
# not count; unknown compatible bits are ignored and unknown autoclear bits cleared by a
# read-write open.
. ./common.rc

# _feat IMAGE [incompat=HEX] [compat=HEX] [autoclear=HEX] [name=TYPE:BIT:TEXT ...]: sets
# header feature bits and appends entries to the feature-name table extension.
_feat() {
    python3 - "$@" <<'PY'
import struct, sys
path = sys.argv[1]
with open(path, 'r+b') as f:
    data = bytearray(f.read(65536))
    hdr_len = struct.unpack('>I', data[100:104])[0]
    for arg in sys.argv[2:]:
        k, v = arg.split('=', 1)
        if k in ('incompat', 'compat', 'autoclear'):
            off = {'incompat': 72, 'compat': 80, 'autoclear': 88}[k]
            old = struct.unpack('>Q', data[off:off + 8])[0]
            struct.pack_into('>Q', data, off, old | int(v, 16))
            continue
        t, b, text = v.split(':', 2)
        pos = hdr_len
        while True:
            magic, length = struct.unpack('>II', data[pos:pos + 8])
            if magic == 0:
                break
            if magic == 0x6803f857:
                end = pos + 8 + length
                data[end:end] = struct.pack('>BB46s', int(t), int(b), text.encode())
                del data[65536:]
                length += 48
                struct.pack_into('>I', data, pos + 4, length)
            pos += 8 + ((length + 7) & ~7)
    f.seek(0)
    f.write(data)
PY
}
_case() {
    _section "$*"
    rm -f t.qcow2
    qemu-img create -q -f qcow2 t.qcow2 1M
    _feat t.qcow2 "$@"
    _img info t.qcow2
    _img check t.qcow2
    _img map t.qcow2
}

_case incompat=8000000000000000
_case incompat=8000000000000000 name=0:63:Test_feature
_case incompat=60 name=0:5:Test_feature
_case incompat=8000000000000020 name=0:5:Test_feature name=0:6:Other
_case incompat=20 name=0:5:Test_feature name=0:5:Duplicate
_case incompat=1e0 name=0:5:A name=0:7:B
_case incompat=20 name=1:5:Wrong_type
_case compat=2 name=1:1:Compat_thing

_section "unknown autoclear bits are cleared by a read-write open"
rm -f t.qcow2
qemu-img create -q -f qcow2 t.qcow2 1M
_feat t.qcow2 autoclear=4 compat=2 name=2:2:Autoclear_thing
_img resize t.qcow2 2M
od -A d -t x1 -j 72 -N 24 t.qcow2
