#!/usr/bin/env bash
# The shadow is qemu-nbd with its default of ONE client connection: the
# filter must carry all its shadow traffic over a single multiplexed
# libnbd handle, with several clients reading in parallel.
source "${abs_top_srcdir}/tests/functions.sh"
requires qemu-nbd --version
requires nbdcopy --version

size=$((16*1024*1024))
random_file origin.img $size
truncate -s $size shadow.img

start_qemu_nbd shadow shadow.img
start_filter proxy file origin.img shadow="$(uri $TESTDIR/shadow.sock)" \
    shadow-block-size=4K

# Several clients at once, with several connections each.
nbdcopy --connections=4 --requests=16 "$(uri $TESTDIR/proxy.sock)" c1.img &
p1=$!
nbdcopy --connections=4 --requests=16 "$(uri $TESTDIR/proxy.sock)" c2.img &
p2=$!
wait $p1 || fail "first nbdcopy failed"
wait $p2 || fail "second nbdcopy failed"
same_files origin.img c1.img
same_files origin.img c2.img

wait_synced proxy 30
# Stop the filter so that qemu-nbd accepts another client, then read the
# shadow directly: it equals the origin.
stop_filter proxy
nbdcopy "$(uri $TESTDIR/shadow.sock)" direct.img
same_files origin.img direct.img
same_files origin.img shadow.img
