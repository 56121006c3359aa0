#!/usr/bin/env bash
# While no client has sent a request for a second the copier runs 16
# transfers at once and reads the origin in 512 KiB pieces; with a client
# active, at most 8 at once, each reading its whole 2 MiB transfer in
# one request (copier.c allowed_at_once, copyop.c origin_piece).  The
# origin answers every read after 300 ms, behind nbdkit's log filter,
# whose request and reply lines give the reads in flight at any moment.
# And a copy begun at idle speed stops after its current piece when a
# client turns up (copyop.c blocks_to_keep): none goes on reading pieces.
source "${abs_top_srcdir}/tests/functions.sh"
requires qemu-io --version

size=$((256 * 1024 * 1024))
random_file origin.img $size

# copy_reads LOG FROM TO: "MAX-IN-FLIGHT LARGEST SMALLEST" over the
# origin reads of at least 256 KiB (copies; a client's reads of absent
# blocks are one 64 KiB block) issued from FROM to TO (seconds since the
# epoch; 0 and inf: all).  nbdkit's log filter writes UTC.
copy_reads ()
{
    python3 - "$1" "$2" "$3" <<'PY'
import re, sys
from datetime import datetime, timezone
start = re.compile(r'^(\S+ \S+) connection=(\d+) Read id=(\d+) offset=0x[0-9a-f]+ count=0x([0-9a-f]+) ')
end = re.compile(r'^(\S+ \S+) connection=(\d+) \.\.\.Read id=(\d+) ')
since, until = float(sys.argv[2]), float(sys.argv[3])
def t(s):
    return datetime.strptime(s, "%Y-%m-%d %H:%M:%S.%f").replace(
        tzinfo=timezone.utc).timestamp()
flying, sizes, now, most = set(), [], 0, 0
for line in open(sys.argv[1]):
    m = start.match(line)
    if m and int(m.group(4), 16) >= 256 * 1024 and since <= t(m.group(1)) <= until:
        flying.add((m.group(2), m.group(3)))
        sizes.append(int(m.group(4), 16))
        most = max(most, len(flying))
        continue
    m = end.match(line)
    if m:
        flying.discard((m.group(2), m.group(3)))
print(most, max(sizes, default=0), min(sizes, default=0))
PY
}

run_case ()
{
    local name=$1
    truncate -s $size $name.img
    rm -f $name-origin.log
    start_nbdkit $name file $name.img
    start_filter ${name}proxy --filter=log --filter=delay \
        file origin.img logfile=$TESTDIR/$name-origin.log rdelay=300ms \
        shadow="$(uri $TESTDIR/$name.sock)" shadow-control=$TESTDIR/$name.ctl \
        shadow-prefetch=off
}

# No client: all 16 at once, 512 KiB reads.
run_case idle
wait_phase $TESTDIR/idle.ctl synced 60
stop_filter idleproxy
kill_pidfile $TESTDIR/idle.pid
same_files origin.img idle.img
read -r most largest smallest < <(copy_reads idle-origin.log 0 inf)
echo "no client: up to $most copy reads in flight, $smallest..$largest bytes"
[ "$most" -gt 8 ] ||
    fail "with no client at most $most copy reads were in flight (want more than 8)"
[ "$largest" -le $((512 * 1024)) ] ||
    fail "with no client the origin got copy reads of $largest bytes (want 512 KiB pieces)"

# A client reading one block every 50 ms for 6 s (from the shadow after
# the first read, so that its latency stays low and the copier does not
# shrink its window below 8 for it), arriving while 16 idle-speed copies
# of 4 pieces (1.2 s) each are under way: from 0.2 s after its first
# read returned until it leaves, at most 8 at once, whole 2 MiB
# transfers.
run_case busy
qemu-io -f raw "$(uri $TESTDIR/busyproxy.sock)" -c "read 0 4096" >/dev/null ||
    fail "the client's first read failed"
from=$(date +%s.%N)             # the client has turned up by now
cmds=()
for (( i=0; i<120; i++ )); do
    cmds+=(-c "read 0 4096" -c "sleep 50")
done
qemu-io -f raw "$(uri $TESTDIR/busyproxy.sock)" "${cmds[@]}" >/dev/null &
reader=$!
wait $reader || fail "the client's reads failed"
to=$(date +%s.%N)               # idle again a second after this
read -r most largest smallest < <(copy_reads busy-origin.log "$(awk -v t="$from" 'BEGIN { printf "%.3f", t + 0.2 }')" "$to")
echo "a client active: up to $most copy reads in flight, $smallest..$largest bytes"
[ "$largest" -gt 0 ] ||
    fail "no copy read the origin while the client was active: the test no longer tests that"
[ "$most" -le 8 ] ||
    fail "with a client active $most copy reads were in flight (want at most 8)"
[ "$smallest" -gt $((1024 * 1024)) ] ||
    fail "with a client active the origin got copy reads of $smallest bytes (want whole transfers; idle-speed copies not cut short)"
cut=$(ctl_json $TESTDIR/busy.ctl | json_get copier.cut_short)
echo "idle-speed copies cut short by the client: $cut"
[ "$cut" -ge 1 ] || fail "no idle-speed copy was cut short when the client turned up"
wait_phase $TESTDIR/busy.ctl synced 60
stop_filter busyproxy
kill_pidfile $TESTDIR/busy.pid
same_files origin.img busy.img
