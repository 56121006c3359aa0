#!/usr/bin/env bash
# Two shadows (an nbdkit file export and a single-connection qemu-nbd):
# every block goes to both, client writes included; both end identical to
# the expected image, and verify checks each of them.
source "${abs_top_srcdir}/tests/functions.sh"
requires qemu-nbd --version
requires qemu-io --version
requires python3 --version

size=$((32 * 1024 * 1024))
ctl=$TESTDIR/proxy.ctl
random_file origin.img $size
cp origin.img expected.img
truncate -s $size a.img
truncate -s $size b.img
start_nbdkit a file a.img
start_qemu_nbd b b.img
start_filter proxy file origin.img shadow="$(uri $TESTDIR/a.sock)" \
    shadow="$(uri $TESTDIR/b.sock)" shadow-state=$TESTDIR/state \
    shadow-control=$ctl shadow-rate=8M

for w in "write -P 0x31 100000 300000" "write -z 5000000 70000" \
         "write -P 0x32 20000001 12345"; do
    qemu-io -f raw "$(uri $TESTDIR/proxy.sock)" -c "$w" -c flush >/dev/null
    qemu-io -f raw expected.img -c "$w" >/dev/null
done
"$NBDSHADOW" rate 0 $ctl
wait_phase $ctl synced 60
ctl_json $ctl | json_get errors.shadows | python3 -c '
import json, sys
s = json.load(sys.stdin)
assert len(s) == 2, s
for x in s:
    assert x["connected"] and x["bytes_written"] > 0, x
print("both shadows written:", [x["bytes_written"] for x in s])'
"$NBDSHADOW" verify $ctl || fail "verify failed"
stop_filter proxy
kill_pidfile $TESTDIR/a.pid
kill_pidfile $TESTDIR/b.pid
same_files expected.img a.img
same_files expected.img b.img
