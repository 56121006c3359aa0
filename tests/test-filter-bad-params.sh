#!/usr/bin/env bash
# Bad input stops nbdkit at start-up with a non-zero exit and ONE error
# line that names the key (or the shadow) and says why: every invalid
# parameter, a missing shadow, unreachable and read-only shadows, a size
# mismatch, and shadow-writes=both over a read-only origin.
source "${abs_top_srcdir}/tests/functions.sh"
requires nbdkit --version
requires nbdinfo --version

start_nbdkit shadow64 memory 64M
start_nbdkit shadow32 memory 32M
start_nbdkit shadowro -r memory 64M
s64="shadow=$(uri $TESTDIR/shadow64.sock)"
touch regular-file

nr=0

# run_refused N ARGS...: start nbdkit on bad.sock with ARGS in the
# foreground (not with --run: nbdkit starts the --run command
# concurrently with .after_fork, and returns the command's status if it
# finishes first) and set rc to its exit status; 124 if it was still
# running after 120 s (generous: under ASan on a loaded machine a
# refusal spends a while in the exit-time leak check) or served.
#
# Under the ASan preload one more outcome: the error is printed, the leak
# check passes, then exit() never returns.  With libasan preloaded into
# a process that initialised gnutls (nbdkit does, for TLS), any strerror()
# followed by exit() deadlocks in p11-kit's destructor (freelocale waits
# for glibc's locale lock): a five-line C program that calls
# gnutls_global_init, strerror and exit hangs the same way, and so does
# `nbdkit file /nonexistent`.  It is not ours and a real nbdkit does not
# run under the preload, so a process that printed an error, serves
# nothing and sleeps on a futex for 5 s (not in the leak check, whose
# report would come first) is counted as having refused, and killed.
run_refused ()
{
    local n=$1 pid i stuck=0; shift
    rm -f bad.sock
    LD_PRELOAD=$SANITIZER_PRELOAD \
        nbdkit -f -U "$TESTDIR/bad.sock" --filter="$FILTER" "$@" \
        >out-$n.txt 2>&1 &
    pid=$!
    rc=124
    for (( i=0; i<1200; i++ )); do
        if ! kill -0 $pid 2>/dev/null; then
            rc=0; wait $pid || rc=$?
            return
        fi
        if [ -S bad.sock ] && nbdinfo --size "$(uri $TESTDIR/bad.sock)" >/dev/null 2>&1; then
            break                   # it serves: accepted
        fi
        if [ -n "$SANITIZER_PRELOAD" ] && grep -q "error:" out-$n.txt &&
           grep -q futex /proc/$pid/wchan 2>/dev/null; then
            stuck=$((stuck + 1))
            if [ $stuck -ge 50 ]; then
                echo "(exit hung after the error under the ASan preload: counted as refused)" >> out-$n.txt
                rc=1
                break
            fi
        fi
        sleep 0.1
    done
    kill -9 $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
}

# expect_fail "substring" ARGS...: ARGS after the plugin and its size.
expect_fail ()
{
    local want=$1; shift
    local rc errors
    nr=$((nr + 1))
    run_refused $nr "$@"
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
expect_fail "shadow-connections=0: must be a whole number from 1 to 16" \
    memory 64M "$s64" shadow-connections=0
expect_fail "shadow-connections=17: must be a whole number from 1 to 16" \
    memory 64M "$s64" shadow-connections=17
expect_fail "shadow-connections=4x: must be a whole number from 1 to 16" \
    memory 64M "$s64" shadow-connections=4x
expect_fail "shadow-connections=-1: must be a whole number from 1 to 16" \
    memory 64M "$s64" shadow-connections=-1
expect_fail "shadow-retry-hold=-1: must be a number of seconds from 0 to 3600" \
    memory 64M "$s64" shadow-retry-hold=-1
expect_fail "shadow-retry-hold=3601: must be a number of seconds from 0 to 3600" \
    memory 64M "$s64" shadow-retry-hold=3601
expect_fail "shadow-retry-hold=5s: must be a number of seconds from 0 to 3600" \
    memory 64M "$s64" shadow-retry-hold=5s
expect_fail "shadow-retry-hold=nan: must be a number of seconds from 0 to 3600" \
    memory 64M "$s64" shadow-retry-hold=nan
expect_fail "shadow-retry-hold: given more than once" \
    memory 64M "$s64" shadow-retry-hold=1 shadow-retry-hold=2
expect_fail "shadow-reconnect-timeout=0: must be a number of seconds from 0.1 to 86400" \
    memory 64M "$s64" shadow-reconnect-timeout=0
expect_fail "shadow-reconnect-timeout=86401: must be a number of seconds from 0.1 to 86400" \
    memory 64M "$s64" shadow-reconnect-timeout=86401
expect_fail "shadow-reconnect-timeout=1m: must be a number of seconds from 0.1 to 86400" \
    memory 64M "$s64" shadow-reconnect-timeout=1m
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

# Benchmark knobs out of their range.
expect_fail "-D shadow.predictor_streams=300: must be 1 .. 256" \
    -D shadow.predictor_streams=300 memory 64M "$s64"
expect_fail "-D shadow.handshake_timeout_ms=60001: must be 1 .. 60000" \
    -D shadow.handshake_timeout_ms=60001 memory 64M "$s64"
expect_fail "-D shadow.lstm_known_loss_permille=-1: must be 0 .. 100000" \
    -D shadow.lstm_known_loss_permille=-1 memory 64M "$s64"
expect_fail "-D shadow.lstm_known_loss_permille=100001: must be 0 .. 100000" \
    -D shadow.lstm_known_loss_permille=100001 memory 64M "$s64"
expect_fail "-D shadow.lstm_cpu_permille=2000: must be 1 .. 1000" \
    -D shadow.lstm_cpu_permille=2000 memory 64M "$s64"
expect_fail "-D shadow.hybrid_depth=257: must be 1 .. 256" \
    -D shadow.hybrid_depth=257 memory 64M "$s64"

echo "$nr bad inputs refused"
