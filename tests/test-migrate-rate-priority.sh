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
t0=$(date +%s.%N)               # the copier starts with the filter
start_filter proxy --filter=delay file origin.img rdelay=2ms \
    shadow="$(uri $TESTDIR/shadow.sock)" shadow-control=$ctl \
    shadow-rate=2M shadow-prefetch=readahead

# Let the sweep get going (and into debt) first.
sleep 1
ctl_json $ctl > before.json
cmds=()
for (( i=0; i<100; i++ )); do
    cmds+=(-c "read $(( (512 + i) * 65536 )) 65536" -c "sleep 60")
done
qemu-io -f raw -r "$(uri $TESTDIR/proxy.sock)" "${cmds[@]}" >/dev/null ||
    fail "the client's reads failed"
ctl_json $ctl > after.json
t1=$(date +%s.%N)
python3 - before.json after.json "$t0" "$t1" <<'PY' || fail "predictions did not go first under shadow-rate"
import json, sys
d0, d = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
t = float(sys.argv[4]) - float(sys.argv[3])
c, p, b = d["client_reads"], d["prefetch"], d["bytes_copied"]
swept = b["background"] - d0["bytes_copied"]["background"]
print("hit ratio %.3f, prefetch used %d of %d copied, background %d bytes "
      "(%d while the client read), prefetch %d bytes, on demand %d bytes "
      "in %.1f s" % (c["hit_ratio"], p["used"], p["copied"], b["background"],
                     swept, b["prefetch"], b["on_demand"], t))
assert c["hit_ratio"] >= 0.9, c
# Rate-limited copying (prefetch + sweep) kept to the cap, give or take
# two transfers and half a second (copier.c pick_job).
limited = b["prefetch"] + b["background"]
assert limited <= 2 * 1024 * 1024 * (t + 0.5) + 2 * (2 * 1024 * 1024), (limited, t)
# ... and the sweep was not starved: it copied beside the predictions.
assert swept > 0, (swept, b)
PY
