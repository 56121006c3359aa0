#!/usr/bin/env bash
# Background copies go to the shadow in 256 KiB commands while no client
# is active (faster hydration), and whole (one command per transfer)
# while a client is (its reads then wait behind fewer commands):
# copyop.c, volume_clients_idle.  nbdkit's log filter on the shadow
# records the size of every write it receives.  And the benchmark flag
# -D shadow.origin_read_kib=N reads the origin in pieces of N KiB (a log
# filter between the shadow filter and the origin's plugin).
source "${abs_top_srcdir}/tests/functions.sh"
requires qemu-io --version

size=$((32 * 1024 * 1024))
random_file origin.img $size

# largest_write LOG: the largest write count the shadow received.
largest_write ()
{
    sed -n 's/.* Write id=[0-9]* offset=0x[0-9a-f]* count=0x\([0-9a-f]*\) .*/\1/p' "$1" |
        while read -r hex; do echo $(( 16#$hex )); done | sort -n | tail -1
}

# run_case NAME [CLIENT]: hydrate at 8 MiB/s (about 4 s), with a client
# reading one block every 50 ms throughout if CLIENT is given.
run_case ()
{
    local name=$1 client=${2:-} cmds=() i reader=
    truncate -s $size $name.img
    rm -f $name-writes.log
    start_nbdkit $name --filter=log file $name.img logfile=$TESTDIR/$name-writes.log
    start_filter ${name}proxy file origin.img \
        shadow="$(uri $TESTDIR/$name.sock)" shadow-state=$TESTDIR/$name-state \
        shadow-control=$TESTDIR/$name.ctl shadow-rate=8M shadow-prefetch=off
    if [ -n "$client" ]; then
        for (( i=0; i<120; i++ )); do
            cmds+=(-c "read $(( i * 4096 )) 4096" -c "sleep 50")
        done
        qemu-io -f raw "$(uri $TESTDIR/${name}proxy.sock)" "${cmds[@]}" \
            >/dev/null &
        reader=$!
    fi
    wait_phase $TESTDIR/$name.ctl synced 60
    [ -z "$reader" ] || wait $reader || fail "$name: the client's reads failed"
    stop_filter ${name}proxy
    kill_pidfile $TESTDIR/$name.pid
    same_files origin.img $name.img
}

run_case idle
max=$(largest_write idle-writes.log)
echo "no client: largest write to the shadow $max bytes"
[ -n "$max" ] && [ "$max" -le $((256 * 1024)) ] ||
    fail "with no client, copies went in commands of $max bytes (want <= 256 KiB)"

run_case busy client
max=$(largest_write busy-writes.log)
echo "a client active: largest write to the shadow $max bytes"
[ -n "$max" ] && [ "$max" -gt $((256 * 1024)) ] ||
    fail "with a client active, copies were split into commands of at most $max bytes"

# The origin read in 64 KiB pieces: no read above that reaches it, and
# the copy is still whole.
truncate -s $size pieces.img
start_nbdkit pieces file pieces.img
start_filter piecesproxy -D shadow.origin_read_kib=64 --filter=log \
    file origin.img logfile=$TESTDIR/origin-reads.log \
    shadow="$(uri $TESTDIR/pieces.sock)" shadow-control=$TESTDIR/pieces.ctl \
    shadow-prefetch=off
wait_phase $TESTDIR/pieces.ctl synced 60
stop_filter piecesproxy
kill_pidfile $TESTDIR/pieces.pid
same_files origin.img pieces.img
max=$(sed -n 's/.* Read id=[0-9]* offset=0x[0-9a-f]* count=0x\([0-9a-f]*\) .*/\1/p' origin-reads.log |
          while read -r hex; do echo $(( 16#$hex )); done | sort -n | tail -1)
echo "origin_read_kib=64: largest origin read $max bytes"
[ -n "$max" ] && [ "$max" -le $((64 * 1024)) ] ||
    fail "with origin_read_kib=64 the origin got reads of $max bytes"
