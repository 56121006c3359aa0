#!/usr/bin/env bash
# Copy a whole volume through the filter with nbdcopy: the client gets
# the origin's bytes, copy-on-read puts them on the shadow (read directly
# afterwards), and the nbdinfo status line grows as data is read.  With
# every block copied by copy-on-read alone the migration itself enters
# phase synced (cutover refuses any other), not just the status line.
source "${abs_top_srcdir}/tests/functions.sh"
requires nbdkit --version
requires nbdcopy --version
requires nbdinfo --version
requires qemu-io --version

size=$((24*1024*1024 + 3*4096))   # a partial last 64K block
random_file origin.img $size

start_nbdkit shadow memory $size
# Copy-on-read only: no background hydration, no prefetch in this test.
start_filter proxy file origin.img shadow="$(uri $TESTDIR/shadow.sock)" \
    shadow-background=off shadow-prefetch=off shadow-control=$TESTDIR/ctl

# Nothing is resident yet.
s=$(status proxy)
echo "before: $s"
case "$s" in
    "shadow: copying 0.0% (0 B/24 MiB) hit - "*) ;;
    *) fail "unexpected initial status: $s" ;;
esac

# The percentage grows as data is read.
qemu-io -f raw -r "$(uri $TESTDIR/proxy.sock)" -c "read 0 4M" >/dev/null
sleep 0.5
p1=$(percent proxy)
qemu-io -f raw -r "$(uri $TESTDIR/proxy.sock)" -c "read 8M 8M" >/dev/null
sleep 0.5
p2=$(percent proxy)
echo "after 4M: $p1%  after 12M: $p2%"
awk -v a="$p1" -v b="$p2" 'BEGIN { exit !(a > 0 && b > a) }' ||
    fail "percentage did not grow: $p1 then $p2"

# nbdcopy of the whole export equals the origin.
nbdcopy "$(uri $TESTDIR/proxy.sock)" copy.img
same_files origin.img copy.img

# Every block is now on the shadow; read it directly.
wait_synced proxy 30
wait_phase $TESTDIR/ctl synced 5
echo "after: $(status proxy)"
status proxy | grep -q "hit [0-9.]*%" || fail "no hit ratio in: $(status proxy)"
nbdcopy "$(uri $TESTDIR/shadow.sock)" shadow.img
same_files origin.img shadow.img

# A second full read is served by the shadow alone: the hit ratio rises.
nbdcopy "$(uri $TESTDIR/proxy.sock)" copy2.img
same_files origin.img copy2.img
