#!/usr/bin/env bash
# shadow-connections=N: a shadow that advertises multi-conn (nbdkit's
# file plugin) gets N connections, one that does not (the same behind
# nbdkit's multi-conn filter with multi-conn-mode=disable) gets one.
# Client writes and flushes run while the copier hydrates; the
# multi-conn shadow is killed (-9) and restarted mid-way, and all its
# connections come back.  Both shadows end identical to the expected
# image, status counts the connections, and the CLI shows them.
source "${abs_top_srcdir}/tests/functions.sh"
requires qemu-io --version
requires python3 --version
requires nbdkit --filter=multi-conn null --version

size=$((48 * 1024 * 1024))
ctl=$TESTDIR/proxy.ctl
random_file origin.img $size
cp origin.img expected.img
truncate -s $size a.img
truncate -s $size b.img
start_nbdkit a file a.img
start_nbdkit b --filter=multi-conn file b.img multi-conn-mode=disable
[ "$(nbdinfo --json "$(uri $TESTDIR/a.sock)" | json_get exports.0.can_multi_conn)" = true ] ||
    fail "shadow a should advertise multi-conn"
[ "$(nbdinfo --json "$(uri $TESTDIR/b.sock)" | json_get exports.0.can_multi_conn)" = false ] ||
    fail "shadow b should not advertise multi-conn"
# A small write log (256 KiB instead of 64 MiB): early flushes, and
# writes waiting for them, happen all the time.
start_filter proxy -D shadow.write_log_kib=256 file origin.img \
    shadow="$(uri $TESTDIR/a.sock)" shadow="$(uri $TESTDIR/b.sock)" \
    shadow-state=$TESTDIR/state \
    shadow-control=$ctl shadow-rate=8M shadow-connections=4

# check_connections WANT_A: the filter's connections to each shadow, as
# status says and as the servers see them.
check_connections ()
{
    ctl_json $ctl | json_get errors.shadows > shadows.json
    python3 - "$1" <<'EOF' || fail "connections in status: $(cat shadows.json)"
import json, sys
a, b = json.load(open("shadows.json"))
assert a["connections"] == 4 and a["connections_up"] == int(sys.argv[1]), a
assert b["connections"] == 1 and b["connections_up"] == 1, b
EOF
    [ "$(ss -xHn state connected src "$TESTDIR/a.sock" | wc -l)" = "$1" ] ||
        fail "shadow a serves $(ss -xHn state connected src "$TESTDIR/a.sock" | wc -l) connections, want $1"
    [ "$(ss -xHn state connected src "$TESTDIR/b.sock" | wc -l)" = 1 ] ||
        fail "shadow b serves more than one connection"
}
check_connections 4
"$NBDSHADOW" status $ctl > status.txt
grep -q "(connected, 4 of 4 connections up)" status.txt ||
    fail "the CLI does not show the connections: $(cat status.txt)"

# Writes with flushes through the filter while it hydrates; the
# multi-conn shadow dies and comes back in the middle.
writes=("write -P 0x41 100000 300000" "write -z 5000000 70000"
        "write -P 0x42 20000001 12345" "write -P 0x43 33554432 1048576"
        "write -P 0x44 47000000 65536")
for (( i=0; i<${#writes[@]}; i++ )); do
    w=${writes[$i]}
    qemu-io -f raw expected.img -c "$w" >/dev/null
    if (( i != 2 )); then
        qemu-io -f raw "$(uri $TESTDIR/proxy.sock)" -c "$w" -c flush >/dev/null ||
            fail "client write '$w' failed"
        continue
    fi
    # This write and its flush wait while shadow a is away.
    kill -9 "$(cat a.pid)"
    rm -f a.pid
    qemu-io -f raw "$(uri $TESTDIR/proxy.sock)" -c "$w" -c flush >/dev/null &
    writer=$!
    sleep 1
    start_nbdkit a file a.img
    wait $writer || fail "client write '$w' failed while shadow a was away"
done

"$NBDSHADOW" rate 0 $ctl
wait_phase $ctl synced 60
for (( i=0; i<100; i++ )); do
    [ "$(ctl_json $ctl | json_get errors.shadows.0.connections_up)" = 4 ] && break
    sleep 0.1
done
check_connections 4
[ "$(ctl_json $ctl | json_get errors.shadows.0.reconnects)" -ge 4 ] ||
    fail "every connection to shadow a should have reconnected"
"$NBDSHADOW" verify $ctl || fail "verify failed"
stop_filter proxy
kill_pidfile $TESTDIR/a.pid
kill_pidfile $TESTDIR/b.pid
same_files expected.img a.img
same_files expected.img b.img
