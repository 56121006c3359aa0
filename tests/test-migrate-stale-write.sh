#!/usr/bin/env bash
# A write that was in flight on a lost shadow connection must not land
# after a newer write to the same block (engine.c, "held" writes).
#
# The shadow is served by a script (nbdkit's sh plugin) that stalls one
# write for STALL seconds after receiving it, behind a proxy (nbdkit's
# nbd plugin).  The proxy is killed while the write stalls: the filter
# loses its connection, reconnects through a new proxy and retries the
# write, but the shadow server still finishes the stalled copy later.
# The client then writes newer data to the same block.
#
# With shadow-retry-hold=0 the retried write completes at once and the
# newer write lands before the stalled copy, which then brings back the
# old data: the test checks that this really happens (so that it can
# see the bug).  With the default hold the first write completes only
# after the stalled copy has landed, and the newer data stays.
#
# The same for the replay of acknowledged, unflushed writes (wlog.h):
# two writes to one block, the connection cut, the replay's first write
# stalls, the connection cut again: the restarted replay must not
# rewrite the newer entry before the stalled old copy can have landed.
source "${abs_top_srcdir}/tests/functions.sh"
requires qemu-io --version
requires nbdkit sh --version
requires nbdkit nbd --version

size=$((1024 * 1024))
stall=3                         # seconds, less than the default hold (5)

cat > shadow.sh <<EOF
#!/usr/bin/env bash
# nbdkit sh plugin: $TESTDIR/shadow.img, stalling one write at offset 0
# once $TESTDIR/stall-armed exists.
img=$TESTDIR/shadow.img
case "\$1" in
    get_size) stat -c %s "\$img" ;;
    can_write|can_flush) exit 0 ;;
    thread_model) echo parallel ;;
    pread) dd if="\$img" skip="\$4" count="\$3" iflag=skip_bytes,count_bytes \\
               status=none ;;
    pwrite)
        data=\$(mktemp "$TESTDIR/data.XXXXXX")
        cat > "\$data"          # received, as a server would
        stalled=false
        if [ "\$4" = 0 ] && mv "$TESTDIR/stall-armed" "$TESTDIR/stall-active" 2>/dev/null; then
            stalled=true
            sleep $stall
        fi
        dd if="\$data" of="\$img" seek="\$4" oflag=seek_bytes conv=notrunc \\
           status=none
        rm -f "\$data"
        if \$stalled; then
            mv "$TESTDIR/stall-active" "$TESTDIR/stall-done"
        fi
        ;;
    flush) sync "\$img" ;;
    *) exit 2 ;;
esac
EOF
chmod +x shadow.sh

# block0_byte FILE: the first byte of FILE, in hex.
block0_byte ()
{
    od -An -tx1 -N1 "$1" | tr -d ' '
}

# start_stack NAME NBDKIT-OPTS FILTER-PARAMS...: fresh images, the
# stalling shadow, the proxy in front of it, and the filter (background
# and prefetch off: only the test's writes reach the shadow).
# NBDKIT-OPTS is one word list, maybe empty.
start_stack ()
{
    local name=$1 opts=$2; shift 2
    rm -f stall-armed stall-active stall-done
    random_file origin.img $size
    truncate -s 0 shadow.img
    truncate -s $size shadow.img
    start_nbdkit "$name-shadow" sh ./shadow.sh
    start_nbdkit "$name-proxy" nbd socket="$TESTDIR/$name-shadow.sock"
    # shellcheck disable=SC2086 # words on purpose
    start_filter "$name" $opts file origin.img \
        shadow="$(uri "$TESTDIR/$name-proxy.sock")" \
        shadow-background=off shadow-prefetch=off "$@"
}

# cut NAME: kill the proxy (the connection breaks, the server lives on)
# and start a new one on the same socket.
cut ()
{
    kill9_filter "$1-proxy"
    start_nbdkit "$1-proxy" nbd socket="$TESTDIR/$1-shadow.sock"
}

# wait_for FILE WHAT: until FILE exists (30 s at most), else fail.
wait_for ()
{
    local i
    for (( i=0; i<300; i++ )); do
        [ -f "$1" ] && return 0
        sleep 0.1
    done
    fail "$2"
}

# stop_stack NAME: stop the filter, then the proxy and the shadow, and
# set got to the byte the shadow holds at offset 0.
stop_stack ()
{
    stop_filter "$1"
    kill_pidfile "$TESTDIR/$1-proxy.pid"
    kill_pidfile "$TESTDIR/$1-shadow.pid"
    got=$(block0_byte shadow.img)
}

# run_case NAME FILTER-ARGS...: the scenario above; sets got to the byte
# the shadow holds at offset 0 afterwards.
run_case ()
{
    local name=$1 writer; shift
    start_stack "$name" "" "$@"

    touch stall-armed
    qemu-io -f raw "$(uri "$TESTDIR/$name.sock")" \
        -c "write -P 0x41 0 64k" >/dev/null &
    writer=$!
    wait_for stall-active "$name: the shadow never received the first write"
    cut "$name"
    wait $writer || fail "$name: the first client write failed"
    qemu-io -f raw "$(uri "$TESTDIR/$name.sock")" \
        -c "write -P 0x42 0 64k" >/dev/null ||
        fail "$name: the second client write failed"
    wait_for stall-done "$name: the stalled write never finished"
    stop_stack "$name"
}

# Without the hold the bug shows: the stalled old write lands last.
run_case nohold shadow-retry-hold=0
[ "$got" = 41 ] ||
    fail "without a hold the stale write should have won (the test cannot see the bug): byte $got"

# With the default hold (5 s) the newer write stays.  The margin is at
# least 2 s whatever the load: the hold starts with the loss, which
# comes after the stall began.
run_case hold
[ "$got" = 42 ] ||
    fail "with the default hold the shadow holds stale data at offset 0: byte $got, want 42"
grep -q "1 write command in flight on the lost connection will be retried" hold.log ||
    fail "the filter did not say it held the write: $(cat hold.log)"

# replay_case: the replay scenario above; sets got like run_case.
replay_case ()
{
    local name=replay writer i
    # No commit (so no flush) unless a client asks.
    start_stack "$name" "-D shadow.commit_interval_ms=60000"
    # Two writes to block 0, not flushed (qemu-io flushes after each
    # write unless told writeback); the client stays connected (a
    # disconnect commits).
    qemu-io -t writeback -f raw "$(uri "$TESTDIR/$name.sock")" \
        -c "write -P 0x41 0 64k" -c "write -P 0x42 0 64k" -c "sleep 20000" \
        >/dev/null &
    writer=$!
    cleanup_fn "kill $writer 2>/dev/null"
    sleep 2

    touch stall-armed
    cut "$name"                 # 1: the replay's first write stalls
    wait_for stall-active "$name: the replay's first write never reached the shadow"
    cut "$name"                 # 2: the replay starts again
    wait_for stall-done "$name: the stalled write never finished"
    for (( i=0; i<300; i++ )); do
        grep -q "acknowledged updates written again" "$name.log" && break
        sleep 0.1
    done
    grep -q "acknowledged updates written again" "$name.log" ||
        fail "$name: the replay never finished"
    kill $writer 2>/dev/null || true
    stop_stack "$name"
}

replay_case
[ "$got" = 42 ] ||
    fail "the replay let a stalled old copy land last: byte $got, want 42"
