#!/usr/bin/env bash
# Bad input stops nbdkit at start-up with a non-zero exit and ONE error
# line that names the key (or the shadow) and says why: every invalid
# parameter, a missing shadow, unreachable and read-only shadows, a size
# mismatch, and shadow-writes=both over a read-only origin.
source "${abs_top_srcdir}/tests/functions.sh"
requires nbdkit --version

start_nbdkit shadow64 memory 64M
start_nbdkit shadow32 memory 32M
start_nbdkit shadowro -r memory 64M
s64="shadow=$(uri $TESTDIR/shadow64.sock)"
touch regular-file

nr=0
# expect_fail "substring" ARGS...: ARGS after the plugin and its size.
expect_fail ()
{
    local want=$1; shift
    local rc=0 errors
    nr=$((nr + 1))
    # In the foreground on a socket, not with --run: nbdkit starts the
    # --run command concurrently with .after_fork, and returns the
    # command's status if it finishes first.  Accepted input keeps
    # serving until the timeout (generous: a refusal under ASan on a loaded
    # machine spends a while in the exit-time leak check).
    rm -f bad.sock
    LD_PRELOAD=$SANITIZER_PRELOAD timeout 120 \
        nbdkit -f -U "$TESTDIR/bad.sock" --filter="$FILTER" "$@" \
        >out-$nr.txt 2>&1 || rc=$?
    check_sanitizer_log out-$nr.txt
    if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then
        cat out-$nr.txt; fail "nbdkit accepted: $*"
    fi
    if ! grep -qF -- "$want" out-$nr.txt; then
        cat out-$nr.txt; fail "no '$want' in the error for: $*"
    fi
    errors=$(grep -c "error:" out-$nr.txt || true)
    if [ "$errors" -ne 1 ]; then
        cat out-$nr.txt; fail "$errors error lines (want 1) for: $*"
    fi
    echo "ok: $* -> $(grep error: out-$nr.txt)"
}

expect_fail "shadow=URI is required" memory 64M
expect_fail "shadow=http://example.com/v: not an NBD URI" \
    memory 64M shadow=http://example.com/v
expect_fail "shadow-block-size=3000: must be a power of two" \
    memory 64M "$s64" shadow-block-size=3000
expect_fail "shadow-block-size=2K: must be a power of two between 4K and 64M" \
    memory 64M "$s64" shadow-block-size=2K
expect_fail "shadow-block-size=128M: must be a power of two between 4K and 64M" \
    memory 64M "$s64" shadow-block-size=128M
expect_fail "shadow-block-size=abc: not a size" \
    memory 64M "$s64" shadow-block-size=abc
expect_fail "shadow-block-size: given more than once" \
    memory 64M "$s64" shadow-block-size=64K shadow-block-size=4K
expect_fail "shadow-writes=mirror: must be shadow or both" \
    memory 64M "$s64" shadow-writes=mirror
expect_fail "shadow-background=maybe: must be on or off" \
    memory 64M "$s64" shadow-background=maybe
expect_fail "shadow-rate=0: must be more than 0" \
    memory 64M "$s64" shadow-rate=0
expect_fail "shadow-rate=10X: not a size" \
    memory 64M "$s64" shadow-rate=10X
expect_fail "shadow-prefetch=magic: must be off, readahead, ngram, lstm or hybrid" \
    memory 64M "$s64" shadow-prefetch=magic
expect_fail "shadow-model=$TESTDIR/none.model: No such file or directory" \
    memory 64M "$s64" shadow-model=$TESTDIR/none.model
expect_fail "shadow-cutover=soon: must be manual or auto" \
    memory 64M "$s64" shadow-cutover=soon
expect_fail "shadow-state=$TESTDIR/regular-file: not a directory" \
    memory 64M "$s64" shadow-state=$TESTDIR/regular-file
expect_fail "shadow-bogus: unknown parameter of the shadow filter" \
    memory 64M "$s64" shadow-bogus=1

# Shadows that cannot be used.
expect_fail "shadow nbd+unix:///?socket=$TESTDIR/none.sock: cannot connect" \
    memory 64M shadow="nbd+unix:///?socket=$TESTDIR/none.sock"
expect_fail "shadow nbd://127.0.0.1:1: cannot connect" \
    memory 64M shadow=nbd://127.0.0.1:1
expect_fail "the export is read-only" \
    memory 64M shadow="$(uri $TESTDIR/shadowro.sock)"
expect_fail "size mismatch: the origin is 67108864 bytes but shadow $(uri $TESTDIR/shadow32.sock) is 33554432 bytes" \
    memory 64M shadow="$(uri $TESTDIR/shadow32.sock)"
expect_fail "shadow-writes=both: the origin is not writable" \
    pattern 64M "$s64" shadow-writes=both

echo "$nr bad inputs refused"
