#!/usr/bin/env bash
# test-predict-tool.sh: nbdshadow-predict end to end -- gen, eval (table,
# JSON, determinism, the oracle's and no-prefetch's figures), stats,
# train -> info -> eval --model, and clear errors for malformed traces,
# damaged models and bad options.
source "${abs_top_srcdir:?}/tests/functions.sh"

P=$abs_top_builddir/predictor/nbdshadow-predict
[ -x "$P" ] || fail "$P is not built"

# Strip the wall-clock fields, which legitimately vary between runs.
strip_times ()
{
    sed -E 's/"(policy_ns|ns_per_access|train_ns)":[0-9.]+/"\1":X/g'
}

# -- gen --
$P gen boot --requests 3000 --template 120 --seed 3 -o boot.trace
[ "$(wc -l < boot.trace)" = 3000 ] || fail "gen: expected 3000 lines"
$P gen sequential --requests 500 > seq.trace
[ "$(wc -l < seq.trace)" = 500 ] || fail "gen to stdout"
if $P gen spiral 2> err; then fail "gen accepted an unknown workload"; fi
grep -q "unknown workload" err || fail "gen: no reason given: $(cat err)"

# -- eval: table with the summary line --
$P eval --policies none,readahead,stride,markov1,leap,ngram,hybrid,oracle \
   boot.trace > table
grep -q '^oracle ' table || fail "eval: no oracle row"
grep -q 'hybrid: coverage' table || fail "eval: no summary line"
grep -qE 'target: (MET|NOT MET|not applicable)' table || fail "eval: no target line"

# -- eval --json: figures and determinism --
$P eval --json --policies none,hybrid,oracle boot.trace > a.json
$P eval --json --policies none,hybrid,oracle boot.trace > b.json
cmp <(strip_times < a.json) <(strip_times < b.json) ||
    fail "eval is not deterministic with a fixed seed"
# The oracle prefetches every first touch but the very first access's.
oracle=$(sed -E 's/.*"policy":"oracle"//' a.json)
ft=$(sed -E 's/.*"first_touches":([0-9]+).*/\1/' <<< "$oracle")
cov=$(sed -E 's/.*"ft_covered":([0-9]+).*/\1/' <<< "$oracle")
[ "$cov" = $((ft - 1)) ] || fail "oracle covered $cov of $ft first touches"
grep -q '"policy":"oracle"[^}]*"precision":1.000000' a.json ||
    fail "the oracle's prefetches are all used: $(cat a.json)"
grep -q '"policy":"none","reads":3000,"reads_shadow":[0-9]*,[^}]*"coverage":0.000000' a.json ||
    fail "no prefetch must cover nothing: $(cat a.json)"
grep -q '"prefetch_issued":0' a.json || fail "none must not prefetch"

# Sequential reads with ample bandwidth: the hybrid must cover nearly all.
$P eval --json --policies hybrid seq.trace > s.json
cov=$(sed -E 's/.*"coverage":([0-9.]+).*/\1/' s.json)
awk -v c="$cov" 'BEGIN { exit !(c > 0.95) }' ||
    fail "hybrid coverage on a sequential trace is $cov"

# --hybrid-depth reaches the hybrid: twice --depth (32) is the default,
# one block ahead prefetches less on that trace; 0 is refused by name.
$P eval --json --policies hybrid --hybrid-depth 32 seq.trace | strip_times > h32.json
$P eval --json --policies hybrid --hybrid-depth 1 seq.trace | strip_times > h1.json
strip_times < s.json > hd.json
cmp -s hd.json h32.json || fail "eval's hybrid does not look 32 ahead by default"
cmp -s h1.json h32.json && fail "eval --hybrid-depth 1 changed nothing"
if $P eval --hybrid-depth 0 seq.trace 2> err; then
    fail "eval accepted --hybrid-depth 0"
fi
grep -q -- "--hybrid-depth" err || fail "--hybrid-depth 0: $(cat err)"

# --calibrate reaches the n-gram (the boot trace's top guesses hit more
# or less often than Witten-Bell says: the figures move), it is on by
# default, and a bad value is refused by name.
$P eval --json --policies ngram --calibrate off boot.trace | strip_times > c0.json
$P eval --json --policies ngram --calibrate on boot.trace | strip_times > c1.json
$P eval --json --policies ngram boot.trace | strip_times > cd.json
cmp -s c0.json c1.json && fail "eval --calibrate on changed nothing"
cmp -s cd.json c1.json || fail "eval is not calibrated by default"
if $P eval --calibrate maybe boot.trace 2> err; then
    fail "eval accepted --calibrate maybe"
fi
grep -q -- "--calibrate: .maybe. must be on or off" err ||
    fail "--calibrate: $(cat err)"

# --size-context reaches the n-gram: a web server's reads, where a 32
# KiB read is followed by the next and an 8 KiB one by a jump (the
# n-gram answers from sized contexts there); on by default; a bad value
# is refused by name.
awk 'BEGIN { srand (7); off = 0
       for (i = 0; i < 4000; i++) {
           large = rand () < 0.5; len = large ? 32768 : 8192
           printf "%d R %d %d\n", 1000 * i, off, len
           off = large ? off + len : int (rand () * 100000) * 65536 } }' > web.trace
$P eval --json --policies ngram --size-context off web.trace | strip_times > z0.json
$P eval --json --policies ngram --size-context on web.trace | strip_times > z1.json
$P eval --json --policies ngram web.trace | strip_times > zd.json
cmp -s z0.json z1.json && fail "eval --size-context on changed nothing"
cmp -s zd.json z1.json || fail "eval has no size context by default"
if $P eval --size-context maybe web.trace 2> err; then
    fail "eval accepted --size-context maybe"
fi
grep -q -- "--size-context: .maybe. must be on or off" err ||
    fail "--size-context: $(cat err)"

# --lstm-size-input reaches the LSTM: where the next read goes depends
# on this one's size alone (2 blocks on after a 4 KiB read, 5 after a 32
# KiB one, sizes at random); on by default.
awk 'BEGIN { srand (7); off = 0
       for (i = 0; i < 4000; i++) {
           large = rand () < 0.5
           printf "%d R %d %d\n", 1000 * i, off * 65536, large ? 32768 : 4096
           off += large ? 5 : 2 } }' > size.trace
$P eval --json --policies lstm --lstm-size-input off size.trace | strip_times > s0.json
$P eval --json --policies lstm --lstm-size-input on size.trace | strip_times > s1.json
$P eval --json --policies lstm size.trace | strip_times > sd.json
python3 - s0.json s1.json <<'PY' || fail "the LSTM did not learn from the sizes"
import json, sys
def cover(f):                   # (times were stripped to X)
    d = json.loads(open(f).read().replace('":X', '":0'))
    return [p for p in d[0]["policies"] if p["policy"] == "lstm"][0]["coverage"]
off, on = cover(sys.argv[1]), cover(sys.argv[2])
print("lstm coverage: %.3f without sizes, %.3f with" % (off, on))
assert on > off + 0.15, (off, on)
PY
cmp -s sd.json s1.json || fail "eval gives the LSTM no sizes by default"
if $P eval --lstm-size-input maybe web.trace 2> err; then
    fail "eval accepted --lstm-size-input maybe"
fi
grep -q -- "--lstm-size-input: .maybe. must be on or off" err ||
    fail "--lstm-size-input: $(cat err)"

# -- stats --
$P stats boot.trace > st
grep -q 'boot.trace' st || fail "stats: no row"

# -- train, info, eval --model --
$P train --epochs 2 --hidden 16 -o m.model boot.trace 2> train.log
grep -q 'epoch 2:' train.log || fail "train: no per-epoch report"
$P info m.model > info
grep -q 'block size: 65536' info || fail "info: $(cat info)"
grep -q 'hidden 16' info || fail "info: $(cat info)"
$P eval --model m.model --hidden 16 --policies lstm,hybrid boot.trace > warm
grep -q '^lstm ' warm || fail "eval --model produced no lstm row"
# A model for other blocks is refused, naming both sizes.
$P train --block-size 4K -o m4k.model seq.trace 2> /dev/null
if $P eval --model m4k.model --policies lstm seq.trace 2> err; then
    fail "a 4K model was accepted for 64K blocks"
fi
grep -q '4096' err && grep -q '65536' err || fail "block size error: $(cat err)"

# -- errors --
printf '1 R 0 4096\n2 R 4096 4096\n3 Q 0 4096\n' > bad.trace
if $P eval bad.trace 2> err; then fail "a malformed trace was accepted"; fi
grep -q 'bad.trace:3: bad op' err || fail "malformed line not located: $(cat err)"
printf '1,h,0,Read,0,512,1\n1,h,0,Read,x,512,1\n' > bad.csv
if $P stats bad.csv > /dev/null 2> err; then fail "a malformed CSV was accepted"; fi
grep -q 'bad.csv:2: bad Offset' err || fail "malformed CSV: $(cat err)"

cp m.model damaged.model
printf 'X' | dd of=damaged.model bs=1 seek=200 conv=notrunc status=none
if $P info damaged.model 2> err; then fail "a damaged model was accepted"; fi
grep -q 'checksum' err || fail "damaged model: $(cat err)"

for bad in "--block-size 3000" "--bandwidth 0" "--queue-depth 0" \
           "--background maybe" "--policies foo" "--threshold 2" \
           "--format xml"; do
    # shellcheck disable=SC2086
    if $P eval $bad seq.trace 2> err; then fail "accepted: $bad"; fi
    [ -s err ] || fail "no message for: $bad"
done
if $P frobnicate 2> /dev/null; then fail "unknown command accepted"; fi
exit 0
