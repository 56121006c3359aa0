#!/usr/bin/env bash
# soak-crash.sh: the long soak of the crash loop, never run by make check.
#
# Runs tests/test-crash-loop.sh (kill -9 of the filter at a random moment
# under writers, readers and a flusher; in every other iteration the
# shadow's power is cut too -- its unflushed writes are lost -- while a
# commit is held open by -D shadow.commit_delay_ms; then a restart on the
# same state must find every flushed write and nothing but one of each
# stripe's versions) for CRASH_ITERATIONS iterations against a build
# tree, in batches of BATCH iterations (each batch is one run of the test:
# a fresh 128 MiB volume, shadow and state directory).  It stops starting
# batches once SOAK_SECONDS have passed.
#
# Prints each batch, then the totals: iterations, crashes, commits held
# open with the shadow's power cut, client writes and flushes (summed
# over the iterations' lines), stripes found newer than their last flush
# (writes that survived without a flush: allowed), failures (must be 0)
# and the duration.  Exits 1 if an iteration failed (the failing batch's
# log is printed), 0 otherwise.
#
# Environment:
#   BUILDDIR          build tree (default: _build-bench at the top of the source)
#   CRASH_ITERATIONS  total iterations (default 300)
#   BATCH             iterations per run of the test (default 50; keep it even)
#   SOAK_SECONDS      no new batch after this many seconds (default 2700)
#   CRASH_BLOCK_SIZE  passed to the test (its default: 4K)
set -eu
set -o pipefail

srcdir=$(cd "$(dirname "$0")/.." && pwd)
builddir=$(cd "${BUILDDIR:-$srcdir/_build-bench}" && pwd)
total=${CRASH_ITERATIONS:-300}
batch=${BATCH:-50}
max_seconds=${SOAK_SECONDS:-2700}

die ()
{
    echo "$0: error: $*" >&2
    exit 1
}

[ -f "$builddir/plugin/.libs/nbdkit-shadow-filter.so" ] ||
    die "$builddir has no filter built"
# The test's helpers are check programs: build them if needed.
make -C "$builddir/tests" crash-client nbdkit-volatile-filter.la >/dev/null ||
    die "cannot build the crash loop's helpers in $builddir/tests"

logdir=$(mktemp -d "${TMPDIR:-/tmp}/nbdshadow-soak.XXXXXX")
test_pid=
cleanup ()
{
    local status=$?
    set +e
    # The test cleans up its own servers and directory when it is stopped.
    if [ -n "$test_pid" ] && kill -0 "$test_pid" 2>/dev/null; then
        kill "$test_pid"
        wait "$test_pid"
    fi
    rm -rf "$logdir"
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

loadavg () { cut -d' ' -f1-3 /proc/loadavg; }

echo "# soak-crash: $total iterations in batches of $batch (at most ${max_seconds} s)," \
     "build $builddir"
echo "# $(nproc) CPUs ($(grep -m1 '^model name' /proc/cpuinfo | sed 's/.*: //')), $(uname -r)," \
     "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(cd "$srcdir" && git rev-parse --short HEAD 2>/dev/null || echo unknown)," \
     "load at start $(loadavg)"

start=$SECONDS
done_it=0 crashes=0 held=0 writes=0 flushes=0 newer=0 failures=0 b=0
while (( done_it < total )) && (( SECONDS - start < max_seconds )); do
    b=$((b + 1))
    n=$(( total - done_it < batch ? total - done_it : batch ))
    log=$logdir/batch-$b.log
    t0=$SECONDS
    # The variables tests/Makefile.am's AM_TESTS_ENVIRONMENT sets.
    env abs_top_srcdir="$srcdir" abs_top_builddir="$builddir" \
        SANITIZER_PRELOAD= NBDKIT=nbdkit \
        ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        CRASH_ITERATIONS=$n ${CRASH_BLOCK_SIZE:+CRASH_BLOCK_SIZE=$CRASH_BLOCK_SIZE} \
        bash "$srcdir/tests/test-crash-loop.sh" > "$log" 2>&1 &
    test_pid=$!
    rc=0
    wait "$test_pid" || rc=$?
    test_pid=
    # The test's closing line counts its crashes; a failed batch has none,
    # and then its iteration lines count (other output can start with
    # "iteration N:" too, so they are only the fallback).
    it=$(sed -n 's/^\([0-9]*\) crashes (.*/\1/p' "$log")
    [ -n "$it" ] || it=$(grep -c '^iteration [0-9]*:' "$log" || true)
    w=$(sed -n 's/^iteration [0-9]*: \([0-9]*\) writes.*/\1/p' "$log" | awk '{ s += $1 } END { print s + 0 }')
    f=$(sed -n 's/^iteration [0-9]*: [0-9]* writes, \([0-9]*\) flushes.*/\1/p' "$log" | awk '{ s += $1 } END { print s + 0 }')
    nw=$(sed -n 's/^iteration [0-9]*: .*, \([0-9]*\) newer than their last flush.*/\1/p' "$log" | awk '{ s += $1 } END { print s + 0 }')
    h=$(sed -n 's/^[0-9]* crashes (\([0-9]*\) with commits held open.*/\1/p' "$log")
    if [ "$rc" != 0 ]; then
        failures=$((failures + 1))
        # Power cuts happen in the even iterations the test started.
        h=$(( (it + 1) / 2 ))
    fi
    done_it=$((done_it + it))
    crashes=$((crashes + it))
    held=$((held + ${h:-0}))
    writes=$((writes + w))
    flushes=$((flushes + f))
    newer=$((newer + nw))
    echo "batch $b: $it iterations in $((SECONDS - t0)) s, ${h:-0} with commits held open and power cut," \
         "$w writes, $f flushes, $nw stripes newer than their last flush, exit $rc, load $(loadavg)"
    if [ "$rc" != 0 ]; then
        echo "--- batch $b failed: its log follows" >&2
        cat "$log" >&2
        break
    fi
done
duration=$((SECONDS - start))

echo
echo "## Crash-loop soak (tests/test-crash-loop.sh, CRASH_BLOCK_SIZE=${CRASH_BLOCK_SIZE:-4K}), load at end $(loadavg)"
echo
echo "| iterations | crashes (kill -9 of the filter) | of which commits held open + shadow power cut | client writes | client flushes | stripes newer than their last flush | failures | duration |"
echo "|---|---|---|---|---|---|---|---|"
printf '| %d | %d | %d | %d | %d | %d | %d | %dm%02ds (%.1f s per iteration) |\n' \
    "$done_it" "$crashes" "$held" "$writes" "$flushes" "$newer" "$failures" \
    $((duration / 60)) $((duration % 60)) \
    "$(awk -v d="$duration" -v n="$done_it" 'BEGIN { print n ? d / n : 0 }')"
(( done_it >= total )) || echo "(stopped after ${max_seconds} s: $done_it of $total iterations)"
[ "$failures" = 0 ]
