#!/usr/bin/env bash
# A client read's copy-on-read that fails (here: the shadow fails every
# write, nbdkit's error filter while a file exists) leaves its blocks
# absent; the read itself succeeds from the origin.  With the background
# sweep off nothing else would ever copy those blocks unless a client
# read them again, so the migration would never reach synced.  The
# filter hands a failed copy to the copier (copies_busy.requeued); the
# copier's own attempts fail too while the shadow is broken, and a
# failed requested range is queued again (copier.requests_retried) and
# tried one at a time with a growing backoff while they keep failing.  Once the shadow works again the volume
# must reach synced with no client reading anything more, and the
# shadow must equal the origin.
source "${abs_top_srcdir}/tests/functions.sh"
requires nbdcopy --version

size=$((4 * 1024 * 1024))
random_file origin.img $size
truncate -s $size shadow.img
inject=$TESTDIR/shadow-broken

start_nbdkit shadow --filter=error file shadow.img \
    error-pwrite=EIO error-pwrite-rate=100% error-pwrite-file="$inject" \
    error-zero=EIO error-zero-rate=100% error-zero-file="$inject"
start_filter proxy file origin.img \
    shadow="$(uri $TESTDIR/shadow.sock)" shadow-state=$TESTDIR/state \
    shadow-background=off shadow-prefetch=off shadow-control=$TESTDIR/ctl

touch "$inject"
nbdcopy "$(uri $TESTDIR/proxy.sock)" read.img ||
    fail "a client read failed while only the shadow's writes fail"
same_files origin.img read.img

# Wait until the copier has failed at least once: its failed ranges
# must be queued again, not dropped.
for (( i=0; i<200; i++ )); do
    errors=$(ctl_json $TESTDIR/ctl | json_get copier.errors)
    [ "$errors" -ge 1 ] && break
    sleep 0.1
done
ctl_json $TESTDIR/ctl > status.json
[ "$(json_get errors.copies_failed < status.json)" -ge 1 ] ||
    fail "no copy-on-read copy failed: the test no longer tests the failure"
[ "$(json_get copies_busy.requeued < status.json)" -ge 1 ] ||
    fail "failed copy-on-read copies were not handed to the copier: $(json_get copies_busy < status.json)"
[ "$errors" -ge 1 ] ||
    fail "the copier never failed while the shadow failed every write"
[ "$(json_get blocks_resident < status.json)" -lt "$(json_get blocks_total < status.json)" ] ||
    fail "every block resident although the shadow failed every write"

# While the shadow stays broken the copier tries one range at a time,
# with a growing backoff (0.1, 0.2, 0.4, ... s), not every range every
# few tenths of a second: a handful of failures in 2 s, not dozens.
sleep 1
before=$(ctl_json $TESTDIR/ctl | json_get copier.errors)
sleep 2
after=$(ctl_json $TESTDIR/ctl | json_get copier.errors)
[ $((after - before)) -le 4 ] ||
    fail "$((after - before)) failed copier transfers in 2 s against a broken shadow: retries are not backing off"

rm -f "$inject"
wait_phase $TESTDIR/ctl synced 60
retried=$(ctl_json $TESTDIR/ctl | json_get copier.requests_retried)
[ "$retried" -ge 1 ] ||
    fail "synced, but no failed range was queued again (requests_retried $retried)"
"$NBDSHADOW" verify $TESTDIR/ctl || fail "verify failed"
stop_filter proxy
same_files origin.img shadow.img
