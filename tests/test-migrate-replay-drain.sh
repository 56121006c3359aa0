#!/usr/bin/env bash
# A shadow with two connections (multi-conn) loses one of them while a
# client's write is still in flight on the other.  The filter then
# writes again what the shadow acknowledged since its last flush (the
# write log), which holds the client's previous write to the same range.
# The replay must wait for the write in flight: it completes, enters the
# log after the older one, and both are written again in order.  Had the
# replay begun at once, its copy of the older write would land after the
# newer one (every write takes 200 ms on this shadow, and the
# connection is dropped 50 ms after the newer write went out), and the
# client would read back data it had overwritten.
#
# The loss is injected by the filter itself (-D shadow.drop_conn_at):
# 50 ms after the second write at the given offset is issued, it drops
# another connection of the shadow as if it were lost.
source "${abs_top_srcdir}/tests/functions.sh"
requires qemu-io --version
requires nbdinfo --version
requires python3 --version
requires nbdcopy --version

size=$((8 * 1024 * 1024))
ctl=$TESTDIR/proxy.ctl
# Inside a block, not at its start, so that no copy writes there.
offset=$((4 * 1024 * 1024 + 8192))
random_file origin.img $size
cp origin.img expected.img
truncate -s $size shadow.img

start_nbdkit shadow --filter=delay file shadow.img wdelay=200ms
[ "$(nbdinfo --json "$(uri $TESTDIR/shadow.sock)" | json_get exports.0.can_multi_conn)" = true ] ||
    fail "the shadow should advertise multi-conn"
start_filter proxy -D shadow.drop_conn_at=$offset \
    -D shadow.commit_interval_ms=60000 file origin.img \
    shadow="$(uri $TESTDIR/shadow.sock)" shadow-state=$TESTDIR/state \
    shadow-control=$ctl shadow-connections=2 shadow-retry-hold=0
wait_phase $ctl synced 60
# A client's flush commits, which flushes the shadow and empties the log
# of the copies; commits are otherwise held back (60 s), so that the log
# holds the first write below when the connection is lost.
qemu-io -f raw "$(uri $TESTDIR/proxy.sock)" -c flush >/dev/null ||
    fail "a client's flush failed"

qemu-io -f raw expected.img -c "write -P 0x22 $offset 65536" >/dev/null
# Writeback: no flush between the two writes.
qemu-io -t writeback -f raw "$(uri $TESTDIR/proxy.sock)" \
    -c "write -P 0x11 $offset 65536" -c "write -P 0x22 $offset 65536" \
    >writes.out 2>&1 || { cat writes.out >&2; fail "the client's writes failed"; }

wait_log proxy.log "connection lost: dropped by -D shadow.drop_conn_at" 10
wait_log proxy.log "acknowledged updates written again" 30
ctl_json $ctl > status.json
[ "$(json_get errors.shadows.0.replays < status.json)" -ge 1 ] ||
    fail "no replay counted: $(json_get errors.shadows.0 < status.json)"

# qemu-io exits 1 when the pattern differs: look at what it says.
qemu-io -f raw "$(uri $TESTDIR/proxy.sock)" -c "read -P 0x22 $offset 65536" \
    >read.out 2>&1 || true
if grep -q "Pattern verification failed" read.out; then
    cat read.out >&2
    fail "after the replay the client read its older write back"
fi
grep -q "read 65536/65536 bytes" read.out || { cat read.out >&2; fail "the read failed"; }
nbdcopy "$(uri $TESTDIR/proxy.sock)" served.img
same_files expected.img served.img
stop_filter proxy
kill_pidfile $TESTDIR/shadow.pid
same_files expected.img shadow.img
