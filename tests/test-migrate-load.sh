#!/usr/bin/env bash
# Migration under client load: fio's nbd engine writes (and verifies what
# it wrote) and reads through the filter while hydration runs from a slow
# origin.  Hydration keeps progressing under the load (it backs off but
# never stops; the pacing by shadow-served reads has measured them), the
# copy completes, fio's verification passes, verify
# finds every copied block equal to the origin, and the shadow holds
# exactly what the filter serves.
source "${abs_top_srcdir}/tests/functions.sh"
requires fio --version
requires python3 --version
requires nbdcopy --version

size=$((128 * 1024 * 1024))
ctl=$TESTDIR/proxy.ctl
random_file origin.img $size
truncate -s $size shadow.img
start_nbdkit origin --filter=delay --filter=rate file origin.img \
    rdelay=1ms rate=320M burstiness=0.2
start_nbdkit shadow file shadow.img
start_filter proxy nbd socket=$TESTDIR/origin.sock \
    shadow="$(uri $TESTDIR/shadow.sock)" shadow-state=$TESTDIR/state \
    shadow-control=$ctl shadow-block-size=64K

cat > load.fio <<FIO
[global]
ioengine=nbd
uri=$(uri $TESTDIR/proxy.sock)
bs=4k
iodepth=8
[writer]
rw=randwrite
size=24m
offset=8m
verify=crc32c
do_verify=1
[reader]
rw=randread
offset=64m
size=64m
time_based=1
runtime=8
FIO
fio load.fio --output=fio.out &
fio_pid=$!

# Hydration progresses while fio runs.
sleep 1
b1=$(ctl_json $ctl | json_get bytes_copied.background)
sleep 3
ctl_json $ctl > under-load.json
b2=$(json_get bytes_copied.background < under-load.json)
echo "background bytes under load: $b1 -> $b2"
python3 -c 'import json,sys; d=json.load(sys.stdin); print("copier:", d["copier"])' < under-load.json
# The sweep's pacing has measured the reads the shadow serves, with the
# sweep running and held (its first probe is in the first 1.5 s of load).
for k in shadow_read_latency_us shadow_read_quiet_us; do
    v=$(json_get copier.$k < under-load.json)
    python3 -c "import sys; sys.exit(0 if float('$v') > 0 else 1)" ||
        fail "copier.$k is $v after 4 s of reads under hydration"
done
wait $fio_pid || { cat fio.out; fail "fio failed (its verification or I/O)"; }
[ "$b2" -gt "$b1" ] || fail "hydration stalled under client load"
grep -q "err= 0" fio.out || { cat fio.out; fail "fio reported errors"; }

wait_phase $ctl synced 120
"$NBDSHADOW" verify $ctl || fail "verify failed after the load"
echo "$(ctl_json $ctl | json_get status_line)"
[ "$(ctl_json $ctl | json_get blocks_written)" -gt 0 ] || fail "no written blocks"

nbdcopy "$(uri $TESTDIR/proxy.sock)" through.img
stop_filter proxy
kill_pidfile $TESTDIR/shadow.pid
same_files through.img shadow.img
# Outside fio's 24 MiB the volume is still the origin's.
cmp -n $((8 * 1024 * 1024)) shadow.img origin.img || fail "head differs"
cmp -i $((32 * 1024 * 1024)) shadow.img origin.img || fail "tail differs"
