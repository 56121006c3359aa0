#!/usr/bin/env bash
# A client's read copies what it read from the origin to the shadow
# (copy-on-read) only if no other copy or write holds part of the range
# at that moment; it must not then be dropped: with the background sweep
# off nothing else would ever copy those blocks, and the migration would
# never reach synced.  Here a client's cache request (nbd-cache) holds
# blocks 64..71 (4K blocks) for 5 s, the shadow answering every write
# after 5 s; meanwhile (once the shadow's log filter has seen the cache
# request's write) another client reads blocks 32..95 in one request.
# That read's copy finds its range busy; the filter hands it to the
# copier, which copies what is still absent once the cache request is
# done.
source "${abs_top_srcdir}/tests/functions.sh"
requires qemu-io --version
cache=$abs_top_builddir/tests/nbd-cache
[ -x "$cache" ] || fail "$cache is missing (make check builds it)"

size=$((4 * 1024 * 1024))
random_file origin.img $size

start_nbdkit shadow --filter=log --filter=delay memory $size \
    logfile=$TESTDIR/shadow-requests.log wdelay=5
start_filter proxy file origin.img \
    shadow="$(uri $TESTDIR/shadow.sock)" shadow-block-size=4K \
    shadow-background=off shadow-prefetch=off shadow-control=$TESTDIR/ctl
proxy=$(uri $TESTDIR/proxy.sock)

"$cache" "$proxy" $((64 * 4096)) $((8 * 4096)) &
cacher=$!
wait_log $TESTDIR/shadow-requests.log "Write id=[0-9]+ offset=0x40000 " 10
qemu-io -f raw -r "$proxy" -c "read $((32 * 4096)) $((64 * 4096))" >/dev/null ||
    fail "the client's read failed"
busy=$(ctl_json $TESTDIR/ctl | json_get copies_busy.skipped)
[ "$busy" -ge 1 ] ||
    fail "the read's copy did not meet the cache request's lock (skipped $busy): the test no longer tests the race"
wait $cacher || fail "the cache request failed"

# Both ranges end resident: 64 blocks (the cache range is inside the read).
for (( i=0; i<300; i++ )); do
    resident=$(ctl_json $TESTDIR/ctl | json_get blocks_resident)
    [ "$resident" -ge 64 ] && break
    sleep 0.1
done
ctl_json $TESTDIR/ctl | json_get copies_busy
[ "$resident" -eq 64 ] ||
    fail "$resident blocks resident after the read and the cache request, want 64: the busy copy was dropped"

# And the shadow holds the origin's bytes there.
nbdcopy "$(uri $TESTDIR/shadow.sock)" shadow.img
cmp -n $((64 * 4096)) -i $((32 * 4096)):$((32 * 4096)) shadow.img origin.img ||
    fail "the shadow differs from the origin in blocks 32..95"
stop_filter proxy
