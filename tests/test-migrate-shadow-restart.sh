#!/usr/bin/env bash
# The shadow server dies in the middle of a migration (kill -9) and comes
# back on the same socket a moment later.  Clients see a delay, not an
# error; the filter reconnects and issues again what was in flight; the
# migration completes and verifies, and the shadow equals the origin.
source "${abs_top_srcdir}/tests/functions.sh"
requires qemu-io --version
requires python3 --version

size=$((64 * 1024 * 1024))
ctl=$TESTDIR/proxy.ctl
random_file origin.img $size
truncate -s $size shadow.img
start_nbdkit shadow file shadow.img
start_filter proxy file origin.img shadow="$(uri $TESTDIR/shadow.sock)" \
    shadow-state=$TESTDIR/state shadow-control=$ctl shadow-rate=16M

# A client reading through the filter the whole time.
( for i in $(seq 1 40); do
      qemu-io -f raw -r "$(uri $TESTDIR/proxy.sock)" \
          -c "read $(( (i * 1048576 * 7) % (size - 1048576) )) 1M" >/dev/null ||
          exit 1
      sleep 0.1
  done ) &
reader=$!

sleep 1
before=$(ctl_json $ctl | json_get blocks_resident)
kill -9 "$(cat shadow.pid)"
rm -f shadow.pid
sleep 1.5                       # clients wait meanwhile
start_nbdkit shadow file shadow.img
"$NBDSHADOW" rate 0 $ctl
wait $reader || fail "a client read failed while the shadow was away"

wait_phase $ctl synced 60
ctl_json $ctl > status.json
echo "resident before the kill: $before; shadow: $(json_get errors.shadows.0 < status.json)"
[ "$(json_get errors.shadows.0.reconnects < status.json)" -ge 1 ] ||
    fail "no reconnect counted"
[ "$(json_get errors.shadows.0.connected < status.json)" = true ] ||
    fail "not connected"
"$NBDSHADOW" verify $ctl || fail "verify failed"
stop_filter proxy
kill_pidfile $TESTDIR/shadow.pid
same_files origin.img shadow.img
