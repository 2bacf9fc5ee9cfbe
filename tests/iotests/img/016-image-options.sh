# The image options the subcommands share (-f, --image-opts, --object, -U, -T), handled by one
# parser (tools/qblock/image_options.h): where -T is validated, that -f counts even when empty,
# when "--image-opts and --format are mutually exclusive" is reported relative to each
# command's other checks, and how long-option abbreviations resolve with each command's own
# set of long names.
. ./common.rc
# bench's run time varies from run to run: it is filtered.
_run() { echo "--- $*"; _img "$@" | sed 's/^Run completed in [0-9.]* seconds\./Run completed in T seconds./'; }
$QEMU_IMG create -q -f qcow2 a.qcow2 1M
qemu-io -c "write -P 1 0 64k" a.qcow2 >/dev/null
truncate -s 1M r.raw

_section "-T (source cache)"
_run check -T bogus a.qcow2
_run check -T '' a.qcow2
_run check -T none -q a.qcow2
_run check -T bogus --output=x a.qcow2
_run check -T bogus -r x a.qcow2
_run check -T bogus
_run check -T bogus --image-opts -f qcow2 a.qcow2
_run compare -T bogus a.qcow2 a.qcow2
_run compare -T bogus a.qcow2
_run compare -T bogus --image-opts -f qcow2 a.qcow2 a.qcow2
_run compare -T writeback a.qcow2 a.qcow2
_run convert -T bogus a.qcow2 o.raw
_run convert -T bogus --image-opts -f qcow2 a.qcow2 o.raw
_run map -T none a.qcow2

_section "-t (target cache) is looked at once the target exists"
_run convert -t bogus a.qcow2 t1.raw
ls t1.raw
_run convert -t bogus -O bogus a.qcow2 t2.raw
_run convert -t bogus nofile t3.raw
_run convert --image-opts -f qcow2 -t bogus a.qcow2 t4.raw
ls t2.raw t3.raw t4.raw 2>&1 | sed 's/^ls: //'

_section "an empty -f is still -f"
_run check --image-opts -f '' a.qcow2
_run map --image-opts -f '' a.qcow2
_run compare --image-opts -f '' a.qcow2 a.qcow2
_run convert --image-opts -f '' a.qcow2 o.raw
_run resize --image-opts -f '' r.raw 2M
_run measure --image-opts -f '' a.qcow2
_run measure -f '' --size 1M
_run bench --image-opts -f '' a.qcow2

_section "--image-opts against --format, in each command's order"
_run compare --image-opts -F qcow2 file.filename=a.qcow2 file.filename=a.qcow2
_run compare --image-opts -F qcow2 a.qcow2 a.qcow2
_run measure --image-opts -f qcow2 --size 1M
_run measure --image-opts -f qcow2 --size 1M a.qcow2
_run measure --image-opts -f qcow2 -O bogus a.qcow2
_run convert --image-opts -f qcow2 -O bogus a.qcow2 o.raw
_run convert --image-opts -f qcow2 -B x a.qcow2 o.raw
_run map --image-opts -f qcow2 --output=x a.qcow2
_run bench --image-opts -f qcow2 -n a.qcow2
_run resize --image-opts -f raw r.raw bogus
_run check --image-opts file.filename=a.qcow2 -q
_run check --image-opts a.qcow2

_section "long-option abbreviations follow each command's long names"
_run check --f qcow2 a.qcow2
_run check --fo qcow2 a.qcow2
_run check --form=qcow2 -q a.qcow2
_run check --forc -q a.qcow2
_run compare --f qcow2 a.qcow2 a.qcow2
_run compare --f a.qcow2 a.qcow2
_run map --f qcow2 a.qcow2
_run info --fo qcow2 a.qcow2
_run info --form qcow2 a.qcow2
_run measure --f -O qcow2 a.qcow2
_run convert --f -O raw a.qcow2 o2.raw
_run check --ima file.filename=a.qcow2 -q
_run resize --ob secret,id=s0,data=x -f raw r.raw 3M
_run bench --object x a.qcow2
_run bench --fo -c 1 a.qcow2

_section "-U and --object where they are accepted"
_run check -U -U -q a.qcow2
_run check --object secret,id=s0,data=x -q a.qcow2
_run map -U --output=json a.qcow2
_run compare --force-share a.qcow2 a.qcow2
_run measure -U -O qcow2 a.qcow2
_run resize -U -f raw r.raw 2M
_run create -U -f raw n.raw 1M
