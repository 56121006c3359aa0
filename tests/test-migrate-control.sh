#!/usr/bin/env bash
# The control socket and every nbdshadow verb against a real migration:
# status (human, --json with the fields DESIGN §3.3 promises, --watch),
# pause, resume, rate, prefetch, verify and cutover (refused until synced,
# or until verified when asked); malformed requests get error replies and
# the server stays up; another user cannot connect (socket mode 0600).
source "${abs_top_srcdir}/tests/functions.sh"
requires python3 --version
requires setpriv --version

size=$((48 * 1024 * 1024))
ctl=$TESTDIR/proxy.ctl
raw="python3 $abs_top_srcdir/tests/ctl-raw.py $ctl"
random_file origin.img $size
start_nbdkit shadow memory $size
start_filter proxy file origin.img shadow="$(uri $TESTDIR/shadow.sock)" \
    shadow-state=$TESTDIR/state shadow-control=$ctl shadow-rate=4M

"$NBDSHADOW" status $ctl | tee human.txt
grep -q "copying" human.txt || fail "human status"

# --json carries the promised fields.
ctl_json $ctl > s.json
python3 - s.json <<'PY' || fail "status --json lacks fields"
import json, sys
d = json.load(open(sys.argv[1]))
need = ["phase", "blocks_total", "blocks_resident", "blocks_written",
        "bytes_copied.on_demand", "bytes_copied.prefetch",
        "bytes_copied.background", "copies_busy.skipped",
        "copies_busy.requeued", "copier.active", "copier.cut_short",
        "client_reads.bytes_shadow",
        "client_reads.bytes_origin", "client_reads.hit_ratio",
        "prefetch.issued", "prefetch.used", "prefetch.accuracy",
        "copy_rate", "eta_seconds", "errors.origin", "errors.shadows",
        "verify.state", "commits.count", "state.dir"]
for path in need:
    v = d
    for k in path.split("."):
        v = v[k]
assert d["phase"] == "copying" and d["blocks_total"] == 768, d
assert d["rate_limit"] == 4 * 1024 * 1024, d["rate_limit"]
print("json ok")
PY

# Refused before synced.
"$NBDSHADOW" cutover $ctl > co.txt 2>&1 && fail "cutover accepted while copying"
grep -q "not synced" co.txt || fail "cutover message: $(cat co.txt)"
"$NBDSHADOW" verify $ctl > v.txt 2>&1 && fail "verify accepted while copying"
grep -q "not synced" v.txt || fail "verify message: $(cat v.txt)"

# pause stops the copying, resume restarts it.
"$NBDSHADOW" pause $ctl
sleep 0.6
r1=$(ctl_json $ctl | json_get blocks_resident)
sleep 1.5
r2=$(ctl_json $ctl | json_get blocks_resident)
[ "$r1" = "$r2" ] || fail "copying went on while paused: $r1 -> $r2"
[ "$(ctl_json $ctl | json_get paused)" = true ] || fail "not paused"
"$NBDSHADOW" resume $ctl
sleep 1.5
r3=$(ctl_json $ctl | json_get blocks_resident)
[ "$r3" -gt "$r2" ] || fail "resume did not restart copying: $r2 -> $r3"
echo "paused at $r2 blocks, resumed to $r3"

# rate and prefetch.
"$NBDSHADOW" rate 1M $ctl
[ "$(ctl_json $ctl | json_get rate_limit)" = 1048576 ] || fail "rate"
"$NBDSHADOW" rate 10X $ctl && fail "bad rate accepted"
"$NBDSHADOW" prefetch ngram $ctl
[ "$(ctl_json $ctl | json_get prefetch.policy)" = ngram ] || fail "prefetch"
"$NBDSHADOW" prefetch magic $ctl && fail "bad policy accepted"

# Malformed requests: an error reply each, and the server stays up.
$raw 'bogus\n' 'status extra\n' '\x01\x02\xff\n' "$(printf 'x%.0s' $(seq 1 5000))\n" \
     'rate\n' 'cutover now\n' '\n' 'status\n' > raw.txt
head -7 raw.txt | cut -c1-80
[ "$(head -7 raw.txt | grep -c '^error ')" = 7 ] || fail "malformed requests not refused"
tail -1 raw.txt | grep -q '^ok {' || fail "the server did not survive malformed requests"

# Another user cannot connect: with the directory open to all, only the
# socket's own mode keeps them out.
[ "$(stat -c %a $ctl)" = 600 ] || fail "socket mode $(stat -c %a $ctl)"
chmod 755 $TESTDIR
if setpriv --reuid=65534 --regid=65534 --clear-groups \
       "$NBDSHADOW" status $ctl > other.txt 2>&1; then
    fail "another user could use the control socket"
fi
grep -q "Permission denied" other.txt || fail "unexpected: $(cat other.txt)"
chmod 700 $TESTDIR

# --watch (not a tty: one line a second) until synced.
"$NBDSHADOW" rate 0 $ctl
timeout 60 "$NBDSHADOW" status --watch $ctl > watch.txt || fail "--watch"
tail -2 watch.txt
grep -q '\[#' watch.txt || fail "no progress bar"

# cutover --verified wants verify first.
"$NBDSHADOW" cutover --verified $ctl > cv.txt 2>&1 && fail "cutover --verified before verify"
grep -q "not verified" cv.txt || fail "message: $(cat cv.txt)"
"$NBDSHADOW" verify $ctl || fail "verify"
"$NBDSHADOW" cutover --verified $ctl || fail "cutover"
[ "$(ctl_json $ctl | json_get phase)" = done ] || fail "not done"
"$NBDSHADOW" cutover $ctl > again.txt 2>&1 && fail "second cutover accepted"
grep -q "already" again.txt || fail "message: $(cat again.txt)"
