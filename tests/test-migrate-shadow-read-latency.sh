#!/usr/bin/env bash
# The sweep's pacing (server/pacer.h) measures only the client reads the
# shadow served alone: a read that went to the origin must not count, or
# a slow origin would look like copying slowing the shadow and the sweep
# would stop for nothing.  With copy-on-read, the sweep and prediction
# off, reads of absent blocks go to the origin (1 ms each here) and leave
# copier.shadow_read_latency_us at 0 while the clients' latency is
# measured; after a cache request has put a range on the shadow, reads
# there are measured, and faster than the origin's.
source "${abs_top_srcdir}/tests/functions.sh"
requires fio --version
requires python3 --version

size=$((64 * 1024 * 1024))
half=$((size / 2))
ctl=$TESTDIR/proxy.ctl
cache=$abs_top_builddir/tests/nbd-cache
random_file origin.img $size
truncate -s $size shadow.img
start_nbdkit origin --filter=delay file origin.img rdelay=1ms
start_nbdkit shadow file shadow.img
start_filter proxy -D shadow.no_copy_on_read=1 \
    nbd socket=$TESTDIR/origin.sock \
    shadow="$(uri $TESTDIR/shadow.sock)" shadow-state=$TESTDIR/state \
    shadow-control=$ctl shadow-block-size=64K \
    shadow-background=off shadow-prefetch=off

# Random 4K reads over OFFSET..+half for 3 s; the status is taken after
# 2 s, while they run (the copier's figures are those of its last tick).
read_and_look ()
{
    local offset=$1 out=$2
    fio --name=reader --ioengine=nbd --uri="$(uri $TESTDIR/proxy.sock)" \
        --rw=randread --bs=4k --iodepth=4 --offset=$offset --size=$half \
        --time_based=1 --runtime=3 --output=fio.out &
    local fio_pid=$!
    sleep 2
    ctl_json $ctl > $out
    wait $fio_pid || { cat fio.out; fail "fio failed reading from $offset"; }
    python3 -c 'import json,sys; print("copier:", json.load(sys.stdin)["copier"])' < $out
}

value ()
{
    json_get copier.$1 < $2
}

check ()
{
    python3 -c "import sys; sys.exit(0 if $1 else 1)" || fail "$2"
}

# Phase 1: nothing is on the shadow, every read goes to the origin.
read_and_look 0 origin-reads.json
[ "$(json_get bytes_copied.total < origin-reads.json)" -eq 0 ] ||
    fail "something was copied with copy-on-read, sweep and prediction off"
client=$(value client_latency_us origin-reads.json)
shadow=$(value shadow_read_latency_us origin-reads.json)
check "float('$client') >= 1000" \
    "clients' latency $client us while reading a 1 ms origin"
check "float('$shadow') == 0" \
    "shadow_read_latency_us is $shadow with every read served by the origin"

# Phase 2: put the second half on the shadow and read there.
"$cache" "$(uri $TESTDIR/proxy.sock)" $half $half ||
    fail "cache request for $half+$half failed"
read_and_look $half shadow-reads.json
shadow=$(value shadow_read_latency_us shadow-reads.json)
check "0 < float('$shadow') < 0.5 * float('$client')" \
    "shadow_read_latency_us is $shadow with every read served by the shadow (origin reads: $client us)"

stop_filter proxy
