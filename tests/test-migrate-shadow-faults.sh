#!/usr/bin/env bash
# Two ways a shadow can come back wrong after a lost connection, and
# what the filter must do about each (engine.c, engine-loss.c):
#
# 1. It comes back without write zeroes (nbdkit's nozero filter).  The
#    filter emulates zeroes with writes only on shadows that never had
#    them, and its write log replays zero entries as zeroes: it must
#    refuse the connection (say so once), keep requests waiting, and
#    take the shadow again once it returns as it was; the migration
#    then completes and the shadow equals the origin.  In the same
#    outage it comes back with the wrong size, then without multi-conn
#    (it has two connections): each refused, each said once.
#
# 2. It comes back but fails every write, so the updates it may have
#    lost cannot be written again (nbdkit's error filter, while a file
#    exists).  After shadow-reconnect-timeout seconds the filter gives
#    the log up: status says updates_lost, and every client flush fails,
#    even once the shadow works again, since no flush may claim those
#    updates durable.  A restarted filter copies again what was not
#    committed and ends with the shadow equal to the origin.
#
# 3. It lost power and comes back failing some writes now and then (the
#    error filter at 15% while a file exists; each failure costs a
#    second before the retry, so the rate is modest; writes whose first
#    byte is even are slow).  The replay has several writes in flight; a
#    failed one is tried again, and no later write that overlaps it may
#    land before it.  Clients must read what they wrote, including a
#    range they rewrote many times before the cut, and the shadow must
#    end equal to it.
source "${abs_top_srcdir}/tests/functions.sh"
requires qemu-io --version
requires nbdcopy --version
requires python3 --version
requires nbdkit --filter=multi-conn --filter=nozero null --version

size=$((32 * 1024 * 1024))
random_file origin.img $size

# --- 1. Capabilities shrank. ---
truncate -s $size caps.img
start_nbdkit caps file caps.img
start_filter capsproxy file origin.img \
    shadow="$(uri $TESTDIR/caps.sock)" shadow-state=$TESTDIR/caps-state \
    shadow-control=$TESTDIR/caps.ctl shadow-rate=4M shadow-retry-hold=0.5
sleep 1
kill -9 "$(cat caps.pid)"
rm -f caps.pid
start_nbdkit caps --filter=nozero file caps.img zeromode=none
wait_log capsproxy.log "no longer offers the write zeroes it had" 20
sleep 1                         # several reconnect attempts
[ "$(grep -c "no longer offers" capsproxy.log)" = 1 ] ||
    fail "the refusal was logged more than once per outage"
[ "$(ctl_json $TESTDIR/caps.ctl | json_get errors.shadows.0.connected)" = false ] ||
    fail "the filter took a shadow that lost write zeroes"
# The same outage goes on with two other ways to be the wrong export:
# each is said once when it first shows, not at every attempt.
kill_pidfile $TESTDIR/caps.pid
truncate -s $((size * 2)) wrong-size.img
start_nbdkit caps file wrong-size.img
wait_log capsproxy.log "size $((size * 2)) differs from the origin's $size: not using it" 20
sleep 3                         # past BACKOFF_MAX: another attempt
[ "$(grep -c "differs from the origin" capsproxy.log)" = 1 ] ||
    fail "the wrong size was logged more than once per outage"
kill_pidfile $TESTDIR/caps.pid
start_nbdkit caps --filter=multi-conn file caps.img multi-conn-mode=disable
wait_log capsproxy.log "no longer advertises multi-conn, which its 2 connections need" 20
sleep 3                         # past BACKOFF_MAX: another attempt
[ "$(grep -c "no longer advertises multi-conn" capsproxy.log)" = 1 ] ||
    fail "the lost multi-conn was logged more than once per outage"
[ "$(ctl_json $TESTDIR/caps.ctl | json_get errors.shadows.0.connected)" = false ] ||
    fail "the filter took a shadow that is not the export it was"
kill_pidfile $TESTDIR/caps.pid
start_nbdkit caps file caps.img
"$NBDSHADOW" rate 0 $TESTDIR/caps.ctl
wait_phase $TESTDIR/caps.ctl synced 60
"$NBDSHADOW" verify $TESTDIR/caps.ctl || fail "verify failed after the refusal"
stop_filter capsproxy
same_files origin.img caps.img

# --- 2. The replay keeps failing: the log is given up. ---
inject=$TESTDIR/inject
truncate -s $size lost.img
start_lost_shadow ()
{
    start_nbdkit lost --filter=error file lost.img \
        error-pwrite=EIO error-pwrite-rate=100% error-pwrite-file="$inject" \
        error-zero=EIO error-zero-rate=100% error-zero-file="$inject"
}
start_lost_shadow
# Commits (which flush and trim the log) only when a client asks.
start_filter lostproxy -D shadow.commit_interval_ms=60000 file origin.img \
    shadow="$(uri $TESTDIR/lost.sock)" shadow-state=$TESTDIR/lost-state \
    shadow-control=$TESTDIR/lost.ctl shadow-rate=8M shadow-retry-hold=0.5 \
    shadow-reconnect-timeout=3
sleep 1.5                       # copies acknowledged, none flushed
touch "$inject"
kill -9 "$(cat lost.pid)"
rm -f lost.pid
start_lost_shadow
wait_log lostproxy.log "kept failing for 3 s: giving up" 30
rm -f "$inject"
ctl_json $TESTDIR/lost.ctl > status.json
[ "$(json_get errors.shadows.0.updates_lost < status.json)" = true ] ||
    fail "status does not say updates were lost: $(json_get errors.shadows.0 < status.json)"
"$NBDSHADOW" status $TESTDIR/lost.ctl | grep -q "UPDATES LOST" ||
    fail "nbdshadow status does not say updates were lost"
# qemu-io prints nothing when a flush fails, but exits non-zero; the read
# before it shows the client got that far.
if qemu-io -f raw "$(uri $TESTDIR/lostproxy.sock)" -c "read 0 4096" -c flush \
       > flush.out 2>&1
then
    cat flush.out >&2
    fail "a client flush succeeded after the filter gave up updates"
fi
grep -q "read 4096/4096 bytes" flush.out ||
    { cat flush.out >&2; fail "the client failed before its flush"; }
# Clean shutdown: its commit fails, records nothing, and does not hang.
stop_filter lostproxy

start_filter lostproxy file origin.img \
    shadow="$(uri $TESTDIR/lost.sock)" shadow-state=$TESTDIR/lost-state \
    shadow-control=$TESTDIR/lost.ctl
qemu-io -f raw "$(uri $TESTDIR/lostproxy.sock)" -c flush >/dev/null ||
    fail "a client flush failed after the filter restarted"
wait_phase $TESTDIR/lost.ctl synced 60
"$NBDSHADOW" verify $TESTDIR/lost.ctl || fail "verify failed after the restart"
nbdcopy "$(uri $TESTDIR/lostproxy.sock)" served.img
same_files origin.img served.img
stop_filter lostproxy
same_files origin.img lost.img

# --- 3. Some replay writes fail, then succeed when tried again. ---
requires_volatile
volatile=$VOLATILE_FILTER
flaky=$TESTDIR/flaky-errors
cp origin.img flaky-expected.img
truncate -s $size flaky.img
start_flaky_shadow ()
{
    # Writes whose first byte is even wait 50 ms (volatile-filter.c):
    # the range's version 0x86 would land after 0x87 unless the replay
    # keeps them in order.
    start_nbdkit flaky --filter=error --filter="$volatile" \
        file flaky.img volatile-slow-even-ms=50 \
        error-pwrite=EIO error-pwrite-rate=15% error-pwrite-file="$flaky"
}
start_flaky_shadow
start_filter flakyproxy -D shadow.commit_interval_ms=60000 file origin.img \
    shadow="$(uri $TESTDIR/flaky.sock)" shadow-state=$TESTDIR/flaky-state \
    shadow-control=$TESTDIR/flaky.ctl shadow-rate=8M shadow-retry-hold=0.5
writes=()
for (( i=0; i<24; i++ )); do
    writes+=(-c "write -P $((0x70 + i)) $((8388608 + (i % 3) * 4096)) 131072")
    qemu-io -f raw flaky-expected.img -c "write -P $((0x70 + i)) $((8388608 + (i % 3) * 4096)) 131072" >/dev/null
done
sleep 1
qemu-io -t writeback -f raw "$(uri $TESTDIR/flakyproxy.sock)" "${writes[@]}" \
    -c "sleep 3000" >/dev/null &
writer=$!
cleanup_fn "kill $writer 2>/dev/null"
sleep 1.5                       # copies and writes acknowledged, none flushed
touch "$flaky"
kill -9 "$(cat flaky.pid)"
rm -f flaky.pid
start_flaky_shadow
wait_log flakyproxy.log "writing again the write of [0-9]+ bytes at [0-9]+ failed" 30
wait_log flakyproxy.log "acknowledged updates written again" 120
rm -f "$flaky"
wait $writer || fail "the client's writes failed"
ctl_json $TESTDIR/flaky.ctl > status.json
[ "$(json_get errors.shadows.0.updates_lost < status.json)" = false ] ||
    fail "updates counted lost although the replay finished"
"$NBDSHADOW" rate 0 $TESTDIR/flaky.ctl
wait_phase $TESTDIR/flaky.ctl synced 60
nbdcopy "$(uri $TESTDIR/flakyproxy.sock)" served.img
cmp flaky-expected.img served.img ||
    fail "after a replay with failed writes clients read other data than they wrote ($(cmp -l flaky-expected.img served.img | wc -l) bytes differ)"
stop_filter flakyproxy
kill_pidfile $TESTDIR/flaky.pid  # a clean stop writes the cache down
same_files flaky-expected.img flaky.img
