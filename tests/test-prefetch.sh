#!/usr/bin/env bash
# Predictive prefetching end to end (issue 6).  A client walks a learnable
# pattern (deltas +1 +5 -2 +7 over fresh blocks) through a slow origin with
# background copying off: with prefetch off every first touch comes from
# the origin; with the n-gram, the blocks are on the shadow before they are
# asked for, counted as used in status.  A random pattern does not blow up
# prefetch traffic or memory, and its precision (blocks read per block
# prefetched) is reported low.  Policies switch live, and a model trained
# (nbdshadow-predict train) on the trace the filter recorded (shadow-trace)
# warm-starts the LSTM (shadow-model); a bad model file stops start-up.
# The n-gram's state is in the status (order, sized contexts allowed).
source "${abs_top_srcdir}/tests/functions.sh"
requires qemu-io --version
requires python3 --version
PREDICT=$abs_top_builddir/predictor/nbdshadow-predict
[ -x "$PREDICT" ] || fail "$PREDICT not built"

size=$((256 * 1024 * 1024))
ctl=$TESTDIR/proxy.ctl
random_file origin.img $size

# pattern START N: qemu-io commands reading N blocks along the pattern.
pattern ()
{
    local b=$1 n=$2 i d
    for (( i=0; i<n; i++ )); do
        for d in 1 5 -2 7; do
            b=$((b + d))
            printf -- '-c\nread %d 4k\n-c\nsleep 4\n' $((b * 65536))
        done
    done
}

# random_reads N SEED
random_reads ()
{
    python3 -c '
import random, sys
n, seed, blocks = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
r = random.Random(seed)
for _ in range(n):
    print("-c"); print("read %d 4k" % (r.randrange(blocks) * 65536))
    print("-c"); print("sleep 4")' "$1" "$2" $((size / 65536))
}

# settled_json FILE: the status, once the LSTM trainer's counters cover
# the last client's 200 accesses (12 chunks of 16, the first one 17
# long; the predictor's figures are refreshed about once a second).
settled_json ()
{
    local i
    for (( i=0; i<50; i++ )); do
        ctl_json $ctl > "$1"
        python3 - "$1" <<'PY' && return 0
import json, sys
t = json.load(open(sys.argv[1]))["prefetch"]["lstm_training"]
sys.exit(0 if t["chunks"] + t["known"] + t["skipped"] >= 12 else 1)
PY
        sleep 0.1
    done
    fail "the LSTM trainer's counters did not reach 12 chunks in 5 s: $(cat "$1")"
}

run_client ()
{
    mapfile -t cmds < "$1"
    qemu-io -f raw -r "$(uri $TESTDIR/proxy.sock)" "${cmds[@]}" >/dev/null ||
        fail "client reads failed"
}

start_proxy ()
{
    rm -f shadow.img && truncate -s $size shadow.img
    start_nbdkit shadow file shadow.img
    start_filter proxy ${PROXY_OPTS:-} --filter=delay file origin.img rdelay=2ms \
        shadow="$(uri $TESTDIR/shadow.sock)" shadow-control=$ctl \
        shadow-background=off "$@"
}

stop_proxy ()
{
    stop_filter proxy
    kill_pidfile $TESTDIR/shadow.pid
}

figures ()
{
    ctl_json $ctl | python3 -c '
import json, sys
d = json.load(sys.stdin); p = d["prefetch"]; c = d["client_reads"]
print(p["policy"], "issued", p["issued"], "copied", p["copied"], "used",
      p["used"], "wasted", p["wasted"], "hit", round(c["hit_ratio"], 3),
      "accuracy", p["accuracy"], "memory", p["memory_bytes"], "precision",
      p["precision"], "depth", p["depth"])'
}

pattern 0 100 > walk.cmds

echo "=== no prefetch"
start_proxy shadow-prefetch=off
run_client walk.cmds
figures | tee off.txt
hit_off=$(ctl_json $ctl | json_get client_reads.hit_ratio)
[ "$(ctl_json $ctl | json_get prefetch.issued)" = 0 ] || fail "prefetch off issued copies"
stop_proxy

echo "=== n-gram, recording the trace"
start_proxy shadow-prefetch=ngram shadow-trace=$TESTDIR/walk.trace
run_client walk.cmds
figures | tee ngram.txt
ctl_json $ctl > ngram.json
stop_proxy
python3 - ngram.json "$hit_off" <<'PY' || fail "the n-gram did not prefetch what was then read"
import json, sys
d = json.load(open(sys.argv[1])); p = d["prefetch"]
hit, hit_off = d["client_reads"]["hit_ratio"], float(sys.argv[2])
assert p["used"] >= 300, p                      # of 400 first touches
assert p["used"] >= 0.8 * p["copied"], p        # precision
assert hit > 0.7 and hit > hit_off + 0.5, (hit, hit_off)
assert p["trace_records"] == 400, p
# The n-gram reports its state: the walk's deltas need an order above 1,
# and sized contexts may answer by default.
g = p["ngram"]
assert g["size_context"] is True and 2 <= g["order"] <= 4, g
# No hybrid, no lookahead of its own.
assert p["hybrid_depth"] == 0, p
# The copier timed the predictions it copied, each at least the origin's
# 2 ms (its running median may step 5% below the fastest).
c = d["copier"]
assert c["predictions_copied"] >= 100, c
assert 1800 <= c["prediction_latency_us"] < 2e6, c
PY
[ "$(wc -l < walk.trace)" = 400 ] || fail "trace has $(wc -l < walk.trace) lines"

echo "=== random reads: bounded prefetch traffic and memory"
random_reads 400 7 > random.cmds
start_proxy shadow-prefetch=hybrid
run_client random.cmds
figures | tee random.txt
ctl_json $ctl > random.json
# The filter's threads carry names (top -H, perf sched), one per role.
names=$(cat /proc/"$(cat $TESTDIR/proxy.pid)"/task/*/comm | sort | uniq -c)
echo "$names"
for t in shadow-engine shadow-copier shadow-predict lstm-trainer shadow-commit \
         shadow-phases shadow-control; do
    grep -q " $t\$" <<<"$names" || fail "no thread named $t"
done
stop_proxy
python3 - random.json <<'PY' || fail "prefetch traffic or memory blew up on random reads, or its precision is misreported"
import json, sys
d = json.load(open(sys.argv[1])); p = d["prefetch"]
# Precision is used per block copied: a prefetched block never read
# counts against it (used / (used + wasted) read 1.0 here).
assert p["precision"] < 0.2 and p["wasted"] == 0, p
# At most as many blocks prefetched as the client touched, and the model's
# memory fixed.
assert p["copied"] <= 400, p
assert p["memory_bytes"] < 16 << 20, p
assert p["hybrid_depth"] == 32, p               # twice the n-gram's 16
PY

echo "=== live policy switch"
pattern 0 30 > part1.cmds
pattern $((30 * 11)) 30 > part2.cmds
pattern $((60 * 11)) 30 > part3.cmds
# (With the benchmarks' switches that keep the n-gram's contexts unsized
# and shorten the hybrid's lookahead: the status says they reached the
# models.)
PROXY_OPTS="-D shadow.ngram_size_context=0 -D shadow.hybrid_depth=7" \
    start_proxy shadow-prefetch=ngram
run_client part1.cmds
[ "$(ctl_json $ctl | json_get prefetch.ngram.size_context)" = false ] ||
    fail "-D shadow.ngram_size_context=0 did not reach the n-gram"
"$NBDSHADOW" prefetch off $ctl
[ "$(ctl_json $ctl | json_get prefetch.policy)" = off ] || fail "policy not off"
sleep 1.5                       # a hot-region round may still be under way
i1=$(ctl_json $ctl | json_get prefetch.issued)
run_client part2.cmds
i2=$(ctl_json $ctl | json_get prefetch.issued)
"$NBDSHADOW" prefetch ngram $ctl
run_client part3.cmds
i3=$(ctl_json $ctl | json_get prefetch.issued)
echo "issued: $i1 with ngram, $i2 after off, $i3 after ngram again"
[ "$i1" -gt 0 ] && [ "$i2" = "$i1" ] && [ "$i3" -gt $((i2 + 20)) ] ||
    fail "live switching did not take effect"
# The hybrid, created by the switch, looks as far as -D shadow.hybrid_depth
# says (its figures are refreshed about once a second).
"$NBDSHADOW" prefetch hybrid $ctl
pattern $((90 * 11)) 5 > part4.cmds
run_client part4.cmds
for (( i=0; i<50; i++ )); do
    depth=$(ctl_json $ctl | json_get prefetch.hybrid_depth)
    [ "$depth" = 7 ] && break
    sleep 0.1
done
[ "$depth" = 7 ] || fail "-D shadow.hybrid_depth=7 did not reach the hybrid: $depth"
stop_proxy

echo "=== warm start from a model trained on the recorded trace"
"$PREDICT" train --block-size 64K -o walk.model walk.trace > train.txt ||
    { cat train.txt; fail "training failed"; }
"$PREDICT" info walk.model | head -5
start_proxy shadow-prefetch=lstm shadow-model=$TESTDIR/walk.model
pattern $((200 * 11)) 50 > fresh.cmds
run_client fresh.cmds
figures | tee lstm.txt
settled_json lstm.json
stop_proxy
python3 - lstm.json <<'PY' || fail "the warm-started LSTM did not prefetch"
import json, sys
d = json.load(open(sys.argv[1])); p = d["prefetch"]
assert "lstm" in p["accuracy"], p
assert p["used"] >= 150, p                      # of 200 first touches
# The model already knows the walk: most of its chunks need no training.
t = p["lstm_training"]
print("lstm training:", t)
assert t["known"] > t["chunks"], t
assert t["chunks"] + t["known"] + t["skipped"] >= 12, t
assert t["size_input"] is True, t               # by default
PY

# The benchmarks' switches back to training every chunk and to unsized
# inputs reach the LSTM.
PROXY_OPTS="-D shadow.lstm_known_loss_permille=0 -D shadow.lstm_size_input=0" \
    start_proxy shadow-prefetch=lstm shadow-model=$TESTDIR/walk.model
pattern $((300 * 11)) 50 > fresh2.cmds
run_client fresh2.cmds
settled_json lstm-every.json
stop_proxy
python3 - lstm-every.json <<'PY' || fail "-D shadow.lstm_known_loss_permille=0 left chunks untrained, or -D shadow.lstm_size_input=0 did not reach the LSTM"
import json, sys
t = json.load(open(sys.argv[1]))["prefetch"]["lstm_training"]
print("lstm training, every chunk:", t)
assert t["known"] == 0 and t["chunks"] >= 12, t
assert t["size_input"] is False, t
PY

echo "=== a bad model file"
head -c 1000 /dev/urandom > bad.model
start_nbdkit shadow memory $size
rc=0
LD_PRELOAD=$SANITIZER_PRELOAD timeout 120 nbdkit -f -U "$TESTDIR/bad.sock" \
    --filter="$FILTER" memory $size shadow="$(uri $TESTDIR/shadow.sock)" \
    shadow-model=$TESTDIR/bad.model > bad.txt 2>&1 || rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || { cat bad.txt; fail "a bad model was accepted"; }
grep -q "shadow-model=$TESTDIR/bad.model: " bad.txt || { cat bad.txt; fail "the error does not name the model"; }
echo "refused: $(grep error: bad.txt)"
