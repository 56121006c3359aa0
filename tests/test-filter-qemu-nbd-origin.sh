#!/usr/bin/env bash
# An origin served by qemu-nbd with its default single client connection:
# through the nbd plugin with shared=true, the filter's own origin context
# and every client's share that one connection, and the migration
# completes while clients read.
source "${abs_top_srcdir}/tests/functions.sh"
requires qemu-nbd --version
requires python3 --version

size=$((32 * 1024 * 1024))
ctl=$TESTDIR/proxy.ctl
random_file origin.img $size
truncate -s $size shadow.img
start_qemu_nbd origin origin.img
start_nbdkit shadow file shadow.img

start_filter proxy nbd socket=$TESTDIR/origin.sock shared=true \
    shadow="$(uri $TESTDIR/shadow.sock)" shadow-control=$ctl
nbdcopy --connections=2 "$(uri $TESTDIR/proxy.sock)" c1.img &
nbdcopy "$(uri $TESTDIR/proxy.sock)" c2.img
wait $! || fail "nbdcopy"
same_files origin.img c1.img
same_files origin.img c2.img
wait_phase $ctl synced 60
"$NBDSHADOW" verify $ctl || fail "verify"
"$NBDSHADOW" cutover $ctl || fail "cutover"
stop_filter proxy
kill_pidfile $TESTDIR/shadow.pid
same_files origin.img shadow.img
