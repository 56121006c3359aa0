#!/usr/bin/env bash
# A block is corrupted directly on the shadow, behind the filter's back,
# after it was copied.  verify finds it, copies it again, and the shadow
# ends equal to the origin; a block a client wrote is not "repaired".
source "${abs_top_srcdir}/tests/functions.sh"
requires python3 --version
requires qemu-io --version

size=$((16 * 1024 * 1024))
ctl=$TESTDIR/proxy.ctl
random_file origin.img $size
truncate -s $size shadow.img
start_nbdkit shadow file shadow.img
start_filter proxy file origin.img shadow="$(uri $TESTDIR/shadow.sock)" \
    shadow-state=$TESTDIR/state shadow-control=$ctl
wait_phase $ctl synced 30

# A client writes one block; something else corrupts two others.
qemu-io -f raw "$(uri $TESTDIR/proxy.sock)" -c "write -P 0x77 0 64k" \
    -c flush >/dev/null
dd if=/dev/urandom of=shadow.img bs=64k count=1 seek=10 conv=notrunc,fsync status=none
dd if=/dev/zero of=shadow.img bs=512 count=1 seek=$((200 * 128 + 3)) conv=notrunc,fsync status=none

# Exit 0: every mismatch was repaired (the report says how many).
"$NBDSHADOW" verify $ctl | tee verify.out || fail "verify could not repair"
grep -q "2 mismatches, 2 re-copied" verify.out || fail "report: $(cat verify.out)"
ctl_json $ctl > v.json
echo "verify: $(json_get verify < v.json)"
[ "$(json_get verify.mismatches < v.json)" = 2 ] || fail "expected 2 mismatches"
[ "$(json_get verify.recopied < v.json)" = 2 ] || fail "expected 2 re-copies"
# A second verify finds nothing.
"$NBDSHADOW" verify $ctl || fail "second verify failed"
stop_filter proxy
kill_pidfile $TESTDIR/shadow.pid
qemu-io -f raw origin.img -c "write -P 0x77 0 64k" >/dev/null
same_files origin.img shadow.img
