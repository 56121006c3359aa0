#!/usr/bin/env bash
# shadow-state: a restarted filter serves the committed blocks from the
# shadow and copies none of them again (counted in status), and a state
# that belongs to another block size, shadow set or origin size, or has a
# corrupt header, stops start-up with a clear message and is left as it
# was.
source "${abs_top_srcdir}/tests/functions.sh"
requires python3 --version
requires qemu-io --version

size=$((32 * 1024 * 1024))
ctl=$TESTDIR/proxy.ctl
random_file origin.img $size
truncate -s $size shadow.img
start_nbdkit shadow file shadow.img
args=(file origin.img shadow="$(uri $TESTDIR/shadow.sock)"
      shadow-state=$TESTDIR/state shadow-control=$ctl shadow-background=off
      shadow-prefetch=off)
start_filter proxy "${args[@]}"
proxy=$(uri $TESTDIR/proxy.sock)

qemu-io -f raw -r "$proxy" -c "read 0 16M" >/dev/null
qemu-io -f raw "$proxy" -c "write -P 0x5a 20M 64k" -c flush >/dev/null
sleep 0.5
before=$(ctl_json $ctl | json_get blocks_resident)
echo "resident before the restart: $before"
[ "$before" = 257 ] || fail "expected 257 resident blocks, got $before"
stop_filter proxy

start_filter proxy "${args[@]}"
grep -q "resuming: 257 of 512 blocks on the shadow (1 written by clients)" proxy.log ||
    { cat proxy.log; fail "no resume message"; }
ctl_json $ctl > after.json
[ "$(json_get blocks_resident < after.json)" = 257 ] || fail "residency lost"
[ "$(json_get blocks_written < after.json)" = 1 ] || fail "written flag lost"
qemu-io -f raw -r "$proxy" -c "read 0 16M" -c "read -P 0x5a 20M 64k" >/dev/null
ctl_json $ctl > reread.json
echo "after re-reading: copied $(json_get bytes_copied.total < reread.json), from the origin $(json_get client_reads.bytes_origin < reread.json)"
[ "$(json_get bytes_copied.total < reread.json)" = 0 ] || fail "blocks copied again"
[ "$(json_get client_reads.bytes_origin < reread.json)" = 0 ] ||
    fail "committed blocks were read from the origin"
stop_filter proxy

# Refusals, each leaving the state untouched.
cp -a state state.orig
refuse ()
{
    local want=$1; shift
    local rc=0
    LD_PRELOAD=$SANITIZER_PRELOAD timeout 120 \
        nbdkit -f -U "$TESTDIR/bad.sock" --filter="$FILTER" "$@" \
        > refuse.txt 2>&1 || rc=$?
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || { cat refuse.txt; fail "accepted: $*"; }
    grep -qF -- "$want" refuse.txt || { cat refuse.txt; fail "no '$want'"; }
    diff -r state state.orig || fail "the state was changed by a refused start"
    echo "refused: $(grep error: refuse.txt)"
}
refuse "block size" "${args[@]}" shadow-block-size=4K
start_nbdkit other file shadow.img
refuse "shadow" file origin.img shadow="$(uri $TESTDIR/other.sock)" \
    shadow-state=$TESTDIR/state
truncate -s $((size * 2)) big-origin.img big-shadow.img
start_nbdkit bigshadow file big-shadow.img
refuse "size" file big-origin.img shadow="$(uri $TESTDIR/bigshadow.sock)" \
    shadow-state=$TESTDIR/state
# A corrupt header: one flipped byte in the snapshot's magic.
printf '\xff' | dd of=state/snapshot bs=1 seek=0 conv=notrunc status=none
cp -a state/snapshot snapshot.corrupt
rm -rf state.orig && cp -a state state.orig
refuse "snapshot" "${args[@]}"
