#!/usr/bin/env bash
# Self-test of common.filter: report, CSV and prompt forms that are hard to
# provoke from the tool (zero elapsed time gives "inf"/"nan" rates, 7.2's
# aio_write -z gives hour-long times).  Does not run the tool.
. "$(dirname "$0")/common.rc"

_filter_qemu_io <<EOT
512 bytes, 1 ops; 00.00 sec (162.222 KiB/sec and 324.4435 ops/sec)
64 KiB, 1 ops; 0:34:47.18 (31.399311 bytes/sec and 0.0005 ops/sec)
4 KiB, 1 ops; 123:05:11.50 (13.149069 bytes/sec and 0.0032 ops/sec)
0 bytes, 1 ops; 00.00 sec (0 bytes/sec and 102103.3286 ops/sec)
512 bytes, 1 ops; 00.00 sec (inf EiB/sec and inf ops/sec)
0 bytes, 1 ops; 00.00 sec (-nan bytes/sec and inf ops/sec)
0 bytes, 1 ops; 00.00 sec (nan bytes/sec and inf ops/sec)
3 GiB, 1 ops; 00.00 sec (883.339 GiB/sec and 294.4465 ops/sec)
1.500 KiB, 1 ops; 01.25 sec (1.199 KiB/sec and 0.8000 ops/sec)
1 bytes, 1 ops; 00.00 sec (292.256233 bytes/sec and 292.2562 ops/sec)
qemu-io> qemu-io> read 512/512 bytes at offset 0
qemu-io> 
512,1,0:00:00.00,8628534.834,16852.607
65536,1,0:34:47.18,31.399,0.000
0,1,0:00:00.00,-nan,inf
512,1,0:00:00.00,inf,inf
3221225472,1,0:00:00.00,8928255971617.838,2771.695
/usr/bin/qemu-io: invalid option -- 'x'
./qemu-io: option requires an argument -- 'c'
qemu-io: invalid option -- 'x'
read: invalid option -- 'x'
$TEST_DIR/t.raw: No such file or directory
can't open device $TEST_DIR/a.raw: Could not open '$TEST_DIR/a.raw'
read 1,2,3
1,2
EOT
echo "exit status: $?"
