#!/usr/bin/env bash
# The shadow loses power with many updates acknowledged but not flushed,
# and comes back accepting only one connection (nbdkit's limit filter)
# where the filter keeps two (multi-conn).  The filter writes the
# updates again over the connection that is up, while the other one's
# reconnects keep being refused.  A refused reconnect says nothing about
# the data: the replay must go on, not start over from the log's head at
# each attempt.  The attempts come at most 2 s apart and the replay here
# takes about 5 s (160 logged writes, 16 at once, 500 ms each), so a
# replay that started over at each attempt would never finish, and the
# client's flush behind it would wait forever (the client here does one
# as it disconnects).
source "${abs_top_srcdir}/tests/functions.sh"
requires qemu-io --version
requires nbdcopy --version
requires python3 --version

requires_volatile
volatile=$VOLATILE_FILTER
size=$((32 * 1024 * 1024))
ctl=$TESTDIR/proxy.ctl
random_file origin.img $size
cp origin.img expected.img
truncate -s $size shadow.img

start_nbdkit shadow --filter="$volatile" file shadow.img
start_filter proxy -D shadow.commit_interval_ms=60000 file origin.img \
    shadow="$(uri $TESTDIR/shadow.sock)" shadow-state=$TESTDIR/state \
    shadow-control=$ctl shadow-connections=2 shadow-retry-hold=0
wait_phase $ctl synced 60
ctl_json $ctl > status.json
[ "$(json_get errors.shadows.0.connections_up < status.json)" = 2 ] ||
    fail "expected two connections to the shadow: $(json_get errors.shadows.0 < status.json)"
# Empty the log of the copies: what it holds at the cut is the writes.
qemu-io -f raw "$(uri $TESTDIR/proxy.sock)" -c flush >/dev/null ||
    fail "a client's flush failed"

# 160 disjoint 64 KiB writes, none flushed (writeback); the client stays
# connected (a disconnect commits) while the shadow loses power.
cmds=()
for (( i=0; i<160; i++ )); do
    w="write -P $((i % 200 + 1)) $((i * 196608 + 4096)) 65536"
    qemu-io -f raw expected.img -c "$w" >/dev/null
    cmds+=(-c "$w")
done
qemu-io -t writeback -f raw "$(uri $TESTDIR/proxy.sock)" "${cmds[@]}" \
    -c "sleep 4000" >writes.out 2>&1 &
writer=$!
cleanup_fn "kill $writer 2>/dev/null"
for (( i=0; i<100; i++ )); do
    n=$(ctl_json $ctl | json_get client_writes.ops)
    [ "$n" -ge 160 ] && break
    sleep 0.1
done
[ "$n" -ge 160 ] || fail "the client's writes did not all complete: $n"
kill -9 "$(cat shadow.pid)"
rm -f shadow.pid
sleep 0.3
# One connection at a time, every write 500 ms.
start_nbdkit shadow --filter=limit --filter=delay --filter="$volatile" \
    file shadow.img limit=1 wdelay=500ms
wait_log proxy.log "acknowledged but had not flushed when the connection was lost" 20
for (( i=0; i<400; i++ )); do
    grep -q "acknowledged updates written again" proxy.log && break
    sleep 0.1
done
grep -q "acknowledged updates written again" proxy.log || {
    ctl_json $ctl > status.json
    fail "the replay did not finish within 40 s while the second connection was refused: $(json_get errors.shadows.0 < status.json)"
}
# The client's writes were done; it flushes as it disconnects.
wait $writer || { cat writes.out >&2; fail "the client's writes failed"; }
ctl_json $ctl > status.json
[ "$(json_get errors.shadows.0.connections_up < status.json)" = 1 ] ||
    fail "the limit filter should have kept one connection out: $(json_get errors.shadows.0 < status.json)"
[ "$(json_get errors.shadows.0.replayed < status.json)" -ge 160 ] ||
    fail "not every update was written again: $(json_get errors.shadows.0 < status.json)"

timeout 60 qemu-io -f raw "$(uri $TESTDIR/proxy.sock)" -c flush >/dev/null ||
    fail "a client's flush after the replay failed"
nbdcopy "$(uri $TESTDIR/proxy.sock)" served.img
cmp expected.img served.img ||
    fail "after the replay clients read other data than they wrote ($(cmp -l expected.img served.img | wc -l) bytes differ)"
stop_filter proxy
kill_pidfile $TESTDIR/shadow.pid
same_files expected.img shadow.img
