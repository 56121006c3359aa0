#!/usr/bin/env bash
# With no client at all, the filter migrates a whole volume by itself:
# background hydration (holes become write-zeroes, not reads), verify,
# cutover.  The shadow then equals the origin byte for byte, and the
# origin sees no request after cutover, not even after a restart (nbdkit's
# log filter on the origin records every request).  Run for a dense and a
# half-sparse volume.
source "${abs_top_srcdir}/tests/functions.sh"
requires nbdkit --version
requires python3 --version
requires nbdcopy --version

size=$((64 * 1024 * 1024))

run_case ()
{
    local name=$1 ctl=$TESTDIR/$1.ctl
    echo "=== $name"
    truncate -s $size shadow-$name.img
    start_nbdkit origin-$name --filter=log file origin-$name.img \
        logfile=$TESTDIR/origin-$name.requests
    start_nbdkit shadow-$name file shadow-$name.img
    start_filter $name nbd socket=$TESTDIR/origin-$name.sock \
        shadow="$(uri $TESTDIR/shadow-$name.sock)" \
        shadow-state=$TESTDIR/state-$name shadow-control=$ctl

    wait_phase $ctl synced 60
    cp origin-$name.requests origin-$name.until-synced
    ctl_json $ctl > status-$name.json
    echo "synced: $(json_get status_line < status-$name.json)"
    [ "$(json_get blocks_resident < status-$name.json)" = \
      "$(json_get blocks_total < status-$name.json)" ] || fail "not all resident"
    [ "$(json_get bytes_copied.background < status-$name.json)" -gt 0 ] ||
        fail "nothing copied in the background"
    # The copies' buffers came from the pool, and once nothing is copied
    # its idle memory goes back after a tick without a taker.
    [ "$(json_get buffers.allocated < status-$name.json)" -gt 0 ] ||
        fail "no copy buffer came from the pool"
    [ "$(json_get buffers.limit < status-$name.json)" = $((64 << 20)) ] ||
        fail "the pool's limit is not 64 MiB"
    for (( i = 0; i < 50; i++ )); do
        [ "$(ctl_json $ctl | json_get buffers.idle_bytes)" = 0 ] && break
        sleep 0.1
    done
    [ $i -lt 50 ] || fail "the pool still holds idle buffers 5 s after synced"

    "$NBDSHADOW" verify $ctl || fail "verify failed"
    "$NBDSHADOW" cutover --verified $ctl || fail "cutover refused"
    wait_phase $ctl done 10
    marker=$(wc -l < origin-$name.requests)

    # Clients after cutover: read through the filter, write through it.
    nbdcopy "$(uri $TESTDIR/$name.sock)" through-$name.img
    same_files origin-$name.img through-$name.img
    qemu-io -f raw "$(uri $TESTDIR/$name.sock)" -c "write -P 0x42 0 64k" \
        -c flush >/dev/null
    stop_filter $name

    # Restarted in phase done: still only the shadow.
    start_filter $name nbd socket=$TESTDIR/origin-$name.sock \
        shadow="$(uri $TESTDIR/shadow-$name.sock)" \
        shadow-state=$TESTDIR/state-$name shadow-control=$ctl
    [ "$(ctl_json $ctl | json_get phase)" = done ] || fail "phase after restart"
    nbdcopy "$(uri $TESTDIR/$name.sock)" after-$name.img
    stop_filter $name

    if tail -n +$((marker + 1)) origin-$name.requests |
            grep -E " (Read|Write|Zero|Trim|Flush|Cache|Extents) id=" ; then
        fail "the origin got requests after cutover"
    fi

    # The shadow: the origin's bytes, plus the write made after cutover.
    kill_pidfile $TESTDIR/shadow-$name.pid
    qemu-io -f raw origin-$name.img -c "write -P 0x42 0 64k" >/dev/null
    same_files origin-$name.img shadow-$name.img
    same_files origin-$name.img after-$name.img
}

random_file origin-dense.img $size
run_case dense

# Half sparse: 1 MiB of data every 2 MiB.
truncate -s $size origin-sparse.img
for (( m=0; m<64; m+=2 )); do
    dd if=/dev/urandom of=origin-sparse.img bs=1M count=1 seek=$m \
        conv=notrunc status=none
done
run_case sparse
# Hydration did not read the holes: until synced, the origin was asked
# for the data's bytes only.
read_bytes=$(grep -o " Read id=[0-9]* offset=0x[0-9a-f]* count=0x[0-9a-f]*" \
    origin-sparse.until-synced | sed 's/.*count=//' |
    while read -r c; do echo $((c)); done | awk '{ s += $1 } END { print s + 0 }')
echo "sparse: $read_bytes bytes read from the origin for $size"
[ "$read_bytes" -le $((size / 2)) ] ||
    fail "holes were read: $read_bytes bytes for $((size / 2)) of data"
