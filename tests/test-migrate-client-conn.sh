#!/usr/bin/env bash
# With several connections to a shadow, the first is left to clients
# (engine.c pick_conn).  A server reads a connection's requests in order,
# payloads included, so a client read sent behind the copier's writes
# (2 MiB each while clients are active) waited until the server had
# taken all of them in.  The shadow logs every command with its
# connection (nbdkit's log filter).  While the sweep copies, a client
# reads blocks already on the shadow: the connection that carries its
# reads carries none of the copier's writes, the copier still writes
# over the others, and no read starts on a connection while a write is
# under way on it.
#
# Client commands go to the connection with the fewest copies in flight,
# then the fewest commands: a commit's flush in flight on the clients'
# connection could send a read elsewhere, so commits wait a minute here
# (the ones at start-up and at the end come before and after the reads),
# and progress is polled through the control socket, not by reading the
# volume.
source "${abs_top_srcdir}/tests/functions.sh"
requires qemu-io --version
requires python3 --version
requires nbdkit --filter=log null --version

size=$((64 * 1024 * 1024))
ctl=$TESTDIR/proxy.ctl
random_file origin.img $size
truncate -s $size shadow.img
start_nbdkit shadow --filter=log file shadow.img logfile=$TESTDIR/commands.log
start_filter proxy -D shadow.commit_interval_ms=60000 file origin.img \
    shadow="$(uri $TESTDIR/shadow.sock)" \
    shadow-control=$ctl shadow-rate=8M shadow-connections=3

[ "$(ctl_json $ctl | json_get errors.shadows.0.connections_up)" = 3 ] ||
    fail "want 3 connections up: $(ctl_json $ctl | json_get errors.shadows)"
# The sweep goes up from block 0; read the first 8 MiB once 24 MiB are
# on the shadow, while the sweep goes on.
want=$(( 24 * 1024 * 1024 / 65536 ))
for (( i=0; i<300; i++ )); do
    n=$(ctl_json $ctl | json_get blocks_resident)
    [ "$n" -ge $want ] && break
    sleep 0.1
done
[ "$n" -ge $want ] || fail "the sweep did not copy 24 MiB within 30 s ($n blocks)"
cmds=()
for (( off=0; off<8*1024*1024; off+=65536 )); do
    cmds+=(-c "read -v $off 65536")
done
qemu-io -f raw -r "$(uri $TESTDIR/proxy.sock)" "${cmds[@]}" > read.out ||
    fail "the client's reads failed"
ctl_json $ctl > during.json
python3 -c '
import json, sys
c = json.load(open("during.json"))["client_reads"]
assert c["hit_ratio"] >= 0.9999, c' ||
    fail "the client read blocks not yet on the shadow: $(json_get client_reads < during.json)"
wait_synced proxy 60
stop_filter proxy
same_files origin.img shadow.img

python3 - commands.log <<'PY' || fail "client reads queued behind copies"
import datetime, re, sys
# "DATE TIME connection=N Read id=K ..." when the server starts a
# command, "DATE TIME connection=N ...Read id=K return=..." when it ends.
line_re = re.compile(r"^(\S+ \S+) connection=(\d+) (\.\.\.)?(Read|Write) id=(\d+)")
reads, writes = {}, {}
events = []
for line in open(sys.argv[1]):
    m = line_re.match(line)
    if not m:
        continue
    t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
    conn, end, op, cid = m.group(2), m.group(3) is not None, m.group(4), m.group(5)
    events.append((t, conn, end, op, cid))
    if not end:
        d = reads if op == "Read" else writes
        d[conn] = d.get(conn, 0) + 1
print("shadow reads by connection:", reads, "writes:", writes)
assert sum(reads.values()) >= 128, reads
assert sum(writes.values()) > 0, writes
# The clients' connection (most of the reads; the others only take a
# client read when the clients' one is busy and no copy is in flight
# anywhere) never carries a copy.
client = max(reads, key=reads.get)
assert client not in writes, "copies over the clients' connection"
# And no read started on a connection while a write was under way on it.
busy = {}                       # connection -> writes under way
for t, conn, end, op, cid in events:
    if op == "Write":
        busy[conn] = busy.get(conn, 0) + (-1 if end else 1)
    elif not end and busy.get(conn, 0) > 0:
        raise AssertionError("read id=%s on connection %s at %s behind a write"
                             % (cid, conn, t))
PY
