#!/usr/bin/env bash
# shadow-cutover=auto: once synced, the filter verifies and cuts over by
# itself; clients keep working through it all and the origin is left
# alone afterwards.  And shadow-rate caps the copying: a volume hydrated
# at 8 MiB/s takes the time that rate implies.
source "${abs_top_srcdir}/tests/functions.sh"
requires python3 --version
requires nbdcopy --version

size=$((24 * 1024 * 1024))
ctl=$TESTDIR/proxy.ctl
random_file origin.img $size
truncate -s $size shadow.img
start_nbdkit shadow file shadow.img
start=$(date +%s.%N)
start_filter proxy file origin.img shadow="$(uri $TESTDIR/shadow.sock)" \
    shadow-state=$TESTDIR/state shadow-control=$ctl \
    shadow-cutover=auto shadow-rate=8M shadow-prefetch=off

# Rate: after 1.5 s at most 8 MiB/s (plus the bucket's quarter second and
# one transfer, 2 MiB; 4 allowed) can have been copied.
sleep 1.5
copied=$(ctl_json $ctl | json_get bytes_copied.background)
elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
limit=$(awk -v e="$elapsed" 'BEGIN { printf "%d", ((e + 0.25) * 8 + 4) * 1048576 }')
echo "copied $copied bytes in $elapsed s (cap allows $limit)"
[ "$copied" -gt 0 ] || fail "nothing copied"
[ "$copied" -le "$limit" ] || fail "shadow-rate=8M not respected"

wait_phase $ctl done 30
end=$(date +%s.%N)
ctl_json $ctl > done.json
echo "$(json_get status_line < done.json); verify: $(json_get verify.message < done.json)"
[ "$(json_get verify.verified < done.json)" = true ] || fail "cut over without verify"
secs=$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')
echo "24 MiB at 8 MiB/s: done after $secs s"
awk -v s="$secs" 'BEGIN { exit !(s >= 2.5) }' || fail "hydration faster than the cap allows"
grep -q "cutover complete" proxy.log || fail "no cutover notice"

nbdcopy "$(uri $TESTDIR/proxy.sock)" through.img
same_files origin.img through.img
stop_filter proxy
kill_pidfile $TESTDIR/shadow.pid
same_files origin.img shadow.img
