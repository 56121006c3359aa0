#!/usr/bin/env bash
# nbdshadow: fuzz the persistent state's loader (tests/fuzz-state.c) for
# FUZZ_SECONDS seconds (default 60), starting from a seed corpus of valid
# states that the fuzzer itself writes: a fresh state, batches of every
# kind, a torn tail, a compacted state, a stale journal, a missing
# journal.  Any crash, leak, hang or inconsistency fails the test, and
# the input that caused it is kept in tests/fuzz-state-artifacts/.
#
# Built only when configure found clang (and scripts/lib.sh installs
# clang and libclang-rt-14-dev, which has libFuzzer): a missing fuzzer
# here is a build failure, never a skip.

source "$abs_top_srcdir/tests/functions.sh"

fuzzer=$abs_top_builddir/tests/fuzz-state
artifacts=$abs_top_builddir/tests/fuzz-state-artifacts
seconds=${FUZZ_SECONDS:-60}

[ -x "$fuzzer" ] ||
    fail "$fuzzer was not built: configure needs clang and libclang-rt-14-dev (scripts/check installs them)"
# (0 would mean "no limit" to libFuzzer.)
case $seconds in
    ''|*[!0-9]*|0) fail "FUZZ_SECONDS=$seconds is not a positive number of seconds" ;;
esac

# The state code fsyncs several times per input: on tmpfs that is free,
# on a disk it would make the fuzzer crawl.
statetmp=$TESTDIR
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    statetmp=$(mktemp -d /dev/shm/nbdshadow-fuzz.XXXXXX)
    cleanup_fn "rm -rf '$statetmp'"
fi

TMPDIR=$statetmp FUZZ_STATE_MAKE_SEEDS=$TESTDIR/seeds "$fuzzer" ||
    fail "writing or checking the seed corpus failed"
nseeds=$(ls seeds | wc -l)
[ "$nseeds" -eq 6 ] || fail "expected 6 seeds, got $nseeds"

mkdir corpus
status=0
TMPDIR=$statetmp "$fuzzer" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$TESTDIR/" \
    corpus seeds >fuzz.log 2>&1 || status=$?

if [ $status -ne 0 ] || ls "$TESTDIR"/crash-* "$TESTDIR"/leak-* \
        "$TESTDIR"/timeout-* "$TESTDIR"/oom-* >/dev/null 2>&1; then
    tail -60 fuzz.log >&2
    mkdir -p "$artifacts"
    cp "$TESTDIR"/crash-* "$TESTDIR"/leak-* "$TESTDIR"/timeout-* \
        "$TESTDIR"/oom-* "$artifacts"/ 2>/dev/null || true
    fail "fuzz-state failed (exit status $status); inputs kept in $artifacts (replay: $fuzzer FILE)"
fi

execs=$(sed -n 's/^stat::number_of_executed_units: *//p' fuzz.log)
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' fuzz.log)
[ -n "$execs" ] && [ "$execs" -gt 0 ] ||
    { tail -30 fuzz.log >&2; fail "the fuzzer ran no input"; }
echo "fuzz-state: $execs inputs in ${seconds}s ($rate/s), corpus $(ls corpus | wc -l) inputs + $nseeds seeds"
grep -E '^#[0-9]+ +DONE' fuzz.log || true
