#!/usr/bin/env bash
# Under shadow-rate, predictions go before the sweep (copier.c pick_job):
# they may start on tokens borrowed ahead, which the sweep then waits
# off.  Without that, a prediction queued while the sweep had just taken
# the bucket into debt (a 2 MiB transfer is a second of debt at 2 MiB/s)
# waited that second out, and the client got there first.  A client
# reads 100 consecutive blocks, one every 60 ms (1 MiB/s), through a
# 2 ms origin while the sweep runs under a 2 MiB/s cap; with readahead
# prefetch nearly all of its reads must find their blocks on the shadow.
# The cap still holds over the whole run.
source "${abs_top_srcdir}/tests/functions.sh"
requires qemu-io --version
requires python3 --version

size=$((64 * 1024 * 1024))
ctl=$TESTDIR/proxy.ctl
random_file origin.img $size
truncate -s $size shadow.img
start_nbdkit shadow file shadow.img
start_filter proxy --filter=delay file origin.img rdelay=2ms \
    shadow="$(uri $TESTDIR/shadow.sock)" shadow-control=$ctl \
    shadow-rate=2M shadow-prefetch=readahead

# Let the sweep get going (and into debt) first.
sleep 1
cmds=()
for (( i=0; i<100; i++ )); do
    cmds+=(-c "read $(( (512 + i) * 65536 )) 65536" -c "sleep 60")
done
t0=$(date +%s.%N)
qemu-io -f raw -r "$(uri $TESTDIR/proxy.sock)" "${cmds[@]}" >/dev/null ||
    fail "the client's reads failed"
ctl_json $ctl > status.json
t1=$(date +%s.%N)
python3 - status.json "$t0" "$t1" <<'PY' || fail "predictions did not go first under shadow-rate"
import json, sys
d = json.load(open(sys.argv[1]))
t = float(sys.argv[3]) - float(sys.argv[2]) + 1.0      # + the first second
c, p, b = d["client_reads"], d["prefetch"], d["bytes_copied"]
print("hit ratio %.3f, prefetch used %d of %d copied, background %d bytes, "
      "prefetch %d bytes, on demand %d bytes in %.1f s"
      % (c["hit_ratio"], p["used"], p["copied"], b["background"],
         b["prefetch"], b["on_demand"], t))
assert c["hit_ratio"] >= 0.9, c
# Rate-limited copying (prefetch + sweep) kept to the cap, give or take
# the bucket's burst, one transfer and the borrowed quarter second.
limited = b["prefetch"] + b["background"]
assert limited <= 2 * 1024 * 1024 * (t + 0.25 + 0.25) + 2 * 1024 * 1024, (limited, t)
# ... and the sweep was not starved: it copied beside the predictions.
assert b["background"] > 0, b
PY
