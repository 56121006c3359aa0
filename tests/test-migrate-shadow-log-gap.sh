#!/usr/bin/env bash
# An update the shadow acknowledged could not enter the write log (out
# of memory, injected with -D shadow.fail_log_append) and then the
# shadow loses power.  The filter can write the rest of the log again
# after it reconnects, but not that one: so no flush may succeed from
# then on and no commit may record the lost copy as durable, until the
# filter restarts and copies again what was not committed.
#
# Checked: the filter names the missing update and the gap, status says
# updates_lost, a client's flush fails, and after a restart on the same
# state the migration completes with every byte equal to the origin's
# before any verify.  If the gap were ignored, the commit after the
# replay would record the lost block resident and clients would read
# the shadow's zeroes there.
source "${abs_top_srcdir}/tests/functions.sh"
requires qemu-io --version
requires nbdcopy --version
requires python3 --version

requires_volatile
volatile=$VOLATILE_FILTER
size=$((64 * 1024 * 1024))
ctl=$TESTDIR/proxy.ctl
random_file origin.img $size
truncate -s $size shadow.img

start_nbdkit shadow --filter="$volatile" file shadow.img
# Commits only when asked (or every 60 s): the power cut then finds the
# copies since the start unflushed, the third of them missing from the
# log.
start_filter proxy -D shadow.commit_interval_ms=60000 \
    -D shadow.fail_log_append=3 file origin.img \
    shadow="$(uri $TESTDIR/shadow.sock)" shadow-state=$TESTDIR/state \
    shadow-control=$ctl shadow-rate=16M shadow-retry-hold=0.5

wait_log proxy.log "out of memory logging the write of [0-9]* bytes at [0-9]*" 30
missing=$(grep -o "out of memory logging the write of [0-9]* bytes at [0-9]*" proxy.log |
              head -1 | awk '{print $NF}')
sleep 1                         # more copies, logged, after it
kill -9 "$(cat shadow.pid)"
rm -f shadow.pid
sleep 0.5
start_nbdkit shadow --filter="$volatile" file shadow.img
wait_log proxy.log "were not all logged \(out of memory\)" 30

ctl_json $ctl > status.json
[ "$(json_get errors.shadows.0.updates_lost < status.json)" = true ] ||
    fail "status does not say updates were lost: $(json_get errors.shadows.0 < status.json)"
if qemu-io -f raw "$(uri $TESTDIR/proxy.sock)" -c flush > flush.out 2>&1 &&
        ! grep -qi "fail\|error" flush.out; then
    cat flush.out >&2
    fail "a client's flush succeeded although an update the shadow lost could not be written again"
fi

# A clean stop tries a last commit, which cannot record anything either
# (its flush fails); the restart then copies what was never committed,
# which the data check below shows.
stop_filter proxy
start_filter proxy file origin.img \
    shadow="$(uri $TESTDIR/shadow.sock)" shadow-state=$TESTDIR/state \
    shadow-control=$ctl
wait_phase $ctl synced 60

nbdcopy "$(uri $TESTDIR/proxy.sock)" served.img
if ! cmp origin.img served.img; then
    fail "after the restart clients read other data than the origin's ($(cmp -l origin.img served.img | wc -l) bytes differ; the update missing from the log was at $missing)"
fi
"$NBDSHADOW" verify $ctl || fail "verify failed"
ctl_json $ctl > status.json
[ "$(json_get verify.mismatches < status.json)" = 0 ] ||
    fail "verify had to repair blocks: $(json_get verify < status.json)"
stop_filter proxy
kill_pidfile $TESTDIR/shadow.pid  # a clean stop writes the cache down
same_files origin.img shadow.img
