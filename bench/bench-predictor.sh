#!/bin/sh
# bench-predictor.sh: the predictor's benchmark (issue 5).
#
# For every trace in ../shared/traces (each device separately) and for
# synthetic workloads (sequential, strided, interleaved streams, zipf
# random, a repeated boot-like sequence with noise), simulate a migration
# under every policy -- no prefetch, readahead, stride, Markov-1, Leap,
# n-gram, LSTM, hybrid, oracle -- and print the eval table with, for the
# hybrid, its coverage ratio to the best baseline and to the oracle and
# whether it meets the target: beat every baseline on coverage at equal
# or better precision (the hybrid is also run at the fixed thresholds and
# depths of $SWEEP: its precision/coverage curve), and reach half the
# oracle's coverage.  Then the CPU and memory costs (bench-predictor-cost).
#
# usage: bench/bench-predictor.sh [BUILDDIR [TRACEDIR]]
#   BUILDDIR  the build tree (default: the current directory)
#   TRACEDIR  default: ../shared/traces next to the source tree
# Environment: REQUESTS (synthetic workload length, default 20000),
# SWEEP (default 0.05,0.15,0.3,0.5,0.7,0.5:1,0.5:4), QUICK=1 (skip the
# cost benchmark), EVAL_ARGS (more options for every eval, for example
# "--streams 96", to compare a setting with the defaults).
set -eu

builddir=${1:-.}
srcdir=$(cd "$(dirname "$0")/.." && pwd)
tracedir=${2:-$srcdir/../shared/traces}
tool=$builddir/predictor/nbdshadow-predict
cost=$builddir/bench/bench-predictor-cost
requests=${REQUESTS:-20000}
sweep=${SWEEP:-0.05,0.15,0.3,0.5,0.7,0.5:1,0.5:4}

if [ ! -x "$tool" ]; then
  echo "$0: $tool not built (make -C $builddir/predictor)" >&2
  exit 1
fi
if [ "${QUICK:-0}" != 1 ] && [ ! -x "$cost" ]; then
  echo "$0: $cost not built (make -C $builddir/bench bench-predictor-cost)" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

echo "# nbdshadow predictor benchmark"
echo
echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) at start"
echo "command: $0 $*${EVAL_ARGS:+ (EVAL_ARGS=$EVAL_ARGS)}"
echo "simulator: 64 KiB blocks, 100 MiB/s origin link, 500 us latency, queue depth 8,"
echo "           background sweep off unless said, auto threshold (0.05 + 0.5 x link use)"
echo

summary=$tmp/summary
: > "$summary"

# eval NAME ARGS... : run, print, keep the summary lines.
run_eval () {
  name=$1
  shift
  # shellcheck disable=SC2086 # EVAL_ARGS is a list of options
  "$tool" eval --sweep "$sweep" ${EVAL_ARGS:-} "$@" > "$tmp/out"
  cat "$tmp/out"
  awk -v name="$name" '
    /^== / { dev = $4; sub(/:$/, "", dev) }
    /^   hybrid: coverage/ { line = $0; sub(/^   hybrid: /, "", line) }
    /^   target:/ { t = $0; sub(/^   target: /, "", t);
                   printf "| %s | %s | %s | %s |\n", name, dev, line, t }
  ' "$tmp/out" >> "$summary"
}

echo "## Synthetic workloads ($requests requests each, 64 KiB unit requests, 500/s)"
echo
for wl in sequential strided interleaved zipf boot; do
  "$tool" gen "$wl" --requests "$requests" --seed 1 -o "$tmp/$wl.trace"
  echo "### $wl"
  echo
  echo '```'
  run_eval "$wl" "$tmp/$wl.trace"
  echo '```'
  echo
done

echo "### boot, background sweep on (dm-clone's linear hydration next to prefetch)"
echo
echo '```'
run_eval "boot+sweep" --background on "$tmp/boot.trace"
echo '```'
echo

for t in "$tracedir"/*.trace; do
  [ -e "$t" ] || continue
  b=$(basename "$t")
  echo "## $b, each device with at least 100 requests"
  echo
  echo '```'
  run_eval "$b" --min-accesses 100 "$t"
  echo '```'
  echo
  echo "## $b, 8 KiB blocks (the request size)"
  echo
  echo '```'
  run_eval "$b@8K" --min-accesses 100 --block-size 8K "$t"
  echo '```'
  echo
done

echo "## Summary: hybrid against the baselines and the oracle"
echo
echo "| workload | device | hybrid (default threshold) | target |"
echo "|---|---|---|---|"
cat "$summary"
echo

if [ "${QUICK:-0}" != 1 ]; then
  echo "## Costs"
  echo
  "$cost"
  echo
fi
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) at the end"
