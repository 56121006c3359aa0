#!/usr/bin/env bash
# The origin fails reads (nbdkit's error filter, while a trigger file
# exists).  A client read of an absent block gets EIO; a read of a
# resident block still works; nothing becomes resident while the origin
# fails; the filter stops promptly while its copier backs off; and once
# the errors stop, the migration completes and verifies.
source "${abs_top_srcdir}/tests/functions.sh"
requires qemu-io --version
requires python3 --version

size=$((16 * 1024 * 1024))
ctl=$TESTDIR/proxy.ctl
random_file origin.img $size
start_nbdkit origin --filter=error file origin.img \
    error-pread=EIO error-pread-rate=100% error-pread-file=$TESTDIR/inject
start_nbdkit shadow memory $size
start_filter proxy nbd socket=$TESTDIR/origin.sock \
    shadow="$(uri $TESTDIR/shadow.sock)" shadow-control=$ctl \
    shadow-background=off
proxy=$(uri $TESTDIR/proxy.sock)

# Make the first MiB resident, then break the origin.
qemu-io -f raw -r "$proxy" -c "read 0 1M" >/dev/null
sleep 0.5
touch inject
"$NBDSHADOW" resume $ctl
resident=$(ctl_json $ctl | json_get blocks_resident)

out=$(qemu-io -f raw -r "$proxy" -c "read 8M 64k" 2>&1 || true)
echo "absent read: $out"
echo "$out" | grep -q "Input/output error" || fail "no EIO for an absent block"
qemu-io -f raw -r "$proxy" -c "read -P 0 0 0" >/dev/null
qemu-io -f raw -r "$proxy" -c "read 0 1M" >/dev/null ||
    fail "a resident block failed while the origin was broken"

# Background copying while the origin fails: errors, nothing resident.
stop_filter proxy
start_filter proxy nbd socket=$TESTDIR/origin.sock \
    shadow="$(uri $TESTDIR/shadow.sock)" shadow-control=$ctl
sleep 2
ctl_json $ctl > broken.json
echo "while broken: errors $(json_get errors < broken.json), copier $(json_get copier.errors < broken.json)"
[ "$(json_get copier.errors < broken.json)" -gt 0 ] || fail "no copier errors counted"
[ "$(json_get blocks_resident < broken.json)" = 0 ] ||
    fail "blocks became resident while every origin read failed"

# Stopping while the copier's workers back off is prompt: they rest
# outside their transfer slots and wake when the copier stops.  Stop
# once they have failed six times each (16 workers): a worker's sixth
# failure starts a rest of 3.2 s.  Timed to the filter's last debug
# line, not to the process's exit: under AddressSanitizer the C
# library's exit handlers sometimes hang in this test (in freelocale,
# on a corrupted __libc_setlocale_lock, with no other thread left), and
# kill_pidfile's SIGKILL ends that.
stop_filter proxy
start_filter proxy -v nbd socket=$TESTDIR/origin.sock \
    shadow="$(uri $TESTDIR/shadow.sock)" shadow-control=$ctl
for (( i=0; i<200; i++ )); do
    errors=$(ctl_json $ctl | json_get copier.errors)
    [ "$errors" -ge 96 ] && break
    sleep 0.1
done
[ "$errors" -ge 96 ] ||
    fail "the workers failed $errors times in 20 s, not 96: no backoff to stop in"
stopped=$(grep -c "shadow: stopped" proxy.log || true)
t0=$(date +%s%N)
kill "$(cat proxy.pid)"
for (( i=0; i<200; i++ )); do
    [ "$(grep -c "shadow: stopped" proxy.log)" -gt "$stopped" ] && break
    sleep 0.05
done
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$(grep -c "shadow: stopped" proxy.log)" -gt "$stopped" ] ||
    fail "the filter did not stop within $ms ms"
echo "stopped in $ms ms while the workers backed off"
[ "$ms" -lt 2000 ] || fail "stopping took $ms ms: workers slept out their backoff"
stop_filter proxy
start_filter proxy nbd socket=$TESTDIR/origin.sock \
    shadow="$(uri $TESTDIR/shadow.sock)" shadow-control=$ctl

rm inject
wait_phase $ctl synced 60
"$NBDSHADOW" verify $ctl || fail "verify failed"
nbdcopy "$proxy" through.img
same_files origin.img through.img
