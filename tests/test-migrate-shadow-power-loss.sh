#!/usr/bin/env bash
# The shadow loses power in the middle of a migration while the filter
# lives on: its server keeps writes in a volatile cache until a flush
# (tests/volatile-filter.c), and kill -9 of it drops everything it
# acknowledged but had not flushed.  The filter reconnects when it comes
# back; it must write those updates again (wlog.h), or blocks it copied
# or clients wrote just before the cut would read back old data and the
# next commit would record them durable.
#
# Checked: what clients read through the filter after the cut equals
# what they wrote (before any verify), a range they rewrote many times
# included, verify finds nothing to repair,
# the shadow file ends equal to the expected image, and status counts
# the replay.
source "${abs_top_srcdir}/tests/functions.sh"
requires qemu-io --version
requires nbdcopy --version
requires python3 --version

requires_volatile
volatile=$VOLATILE_FILTER
size=$((64 * 1024 * 1024))
ctl=$TESTDIR/proxy.ctl
random_file origin.img $size
cp origin.img expected.img
truncate -s $size shadow.img

start_nbdkit shadow --filter="$volatile" file shadow.img
# Commits only when a client asks (or every 60 s): the power cut then
# finds the copies and writes since the last one unflushed.
start_filter proxy -D shadow.commit_interval_ms=60000 file origin.img \
    shadow="$(uri $TESTDIR/shadow.sock)" shadow-state=$TESTDIR/state \
    shadow-control=$ctl shadow-rate=16M shadow-retry-hold=0.5

# Client writes, none flushed, some to blocks not copied yet (their
# edges come from the origin), some unaligned.  The client stays
# connected (a disconnect commits) while the shadow loses power, and
# uses writeback caching (qemu-io's default flushes after each write).
writes=("write -P 0x51 1000000 200000" "write -z 9000000 300000"
        "write -P 0x52 30000001 4321" "write -P 0x53 50331648 1048576")
# And one range written over and over, each time a little shifted: the
# replay writes several entries at once, but of two that overlap the
# later must land last.
for (( i=0; i<24; i++ )); do
    writes+=("write -P $((0x60 + i)) $((20971520 + (i % 3) * 4096)) 196608")
done
sleep 1
cmds=()
for w in "${writes[@]}"; do
    qemu-io -f raw expected.img -c "$w" >/dev/null
    cmds+=(-c "$w")
done
qemu-io -t writeback -f raw "$(uri $TESTDIR/proxy.sock)" "${cmds[@]}" \
    -c "sleep 4000" >/dev/null &
writer=$!
cleanup_fn "kill $writer 2>/dev/null"
sleep 2
kill -9 "$(cat shadow.pid)"
rm -f shadow.pid
sleep 0.5
# Writes whose first byte is even now wait 50 ms: of the range's last
# two versions, 0x76 would land after 0x77 unless the replay waits for
# the older before it sends the newer.
start_nbdkit shadow --filter="$volatile" file shadow.img \
    volatile-slow-even-ms=50
wait $writer || fail "the client's writes failed"
"$NBDSHADOW" rate 0 $ctl
wait_phase $ctl synced 60

ctl_json $ctl > status.json
[ "$(json_get errors.shadows.0.replays < status.json)" -ge 1 ] ||
    fail "no replay counted: $(json_get errors.shadows.0 < status.json)"
[ "$(json_get errors.shadows.0.replayed < status.json)" -ge 1 ] ||
    fail "nothing written again: $(json_get errors.shadows.0 < status.json)"
grep -q "it acknowledged but had not flushed when the connection was lost" proxy.log ||
    fail "the filter did not say it wrote updates again"

# Before any verify: clients read what they wrote.
nbdcopy "$(uri $TESTDIR/proxy.sock)" served.img
cmp expected.img served.img ||
    fail "after the shadow's power cut clients read other data than they wrote ($(cmp -l expected.img served.img | wc -l) bytes differ)"

"$NBDSHADOW" verify $ctl || fail "verify failed"
ctl_json $ctl > status.json
[ "$(json_get verify.mismatches < status.json)" = 0 ] ||
    fail "verify had to repair blocks the power cut lost: $(json_get verify < status.json)"
stop_filter proxy
kill_pidfile $TESTDIR/shadow.pid  # a clean stop writes the cache down
same_files expected.img shadow.img
