#!/usr/bin/env bash
# nbdshadow: the nbdshadow CLI against a fake control server
# (tests/fake-control: the real control.c with a handler that plays a
# migration and logs every request), so the CLI is tested without the
# filter: every verb's exit status, output and request on the wire,
# --json, --watch without a terminal, bad arguments, an unreachable
# socket, refusals from the server, and status objects that are sparse
# or broken.

source "${abs_top_srcdir:?run the tests with make check}/tests/functions.sh"

CLI=$abs_top_builddir/server/nbdshadow
FAKE=$abs_top_builddir/tests/fake-control
[ -x "$CLI" ] || fail "$CLI was not built"
[ -x "$FAKE" ] || fail "$FAKE was not built"
requires python3 -c 'import json'

# start_fake NAME ARGS...: a fake server on $TESTDIR/NAME.sock logging to
# NAME.log; stopped (and checked for sanitizer reports) at exit.
start_fake ()
{
    local name=$1 pid i; shift
    "$FAKE" "$@" "$TESTDIR/$name.sock" "$TESTDIR/$name.log" \
        2>"$TESTDIR/$name.err" &
    pid=$!
    echo $pid > "$TESTDIR/$name.pid"
    cleanup_fn "stop_fake '$name'"
    for (( i=0; i<100; i++ )); do
        [ -S "$TESTDIR/$name.sock" ] && return 0
        kill -0 $pid 2>/dev/null || { cat "$TESTDIR/$name.err" >&2; fail "fake-control $name died"; }
        sleep 0.1
    done
    fail "fake-control $name did not create its socket"
}

stop_fake ()
{
    kill_pidfile "$TESTDIR/$1.pid"
    check_sanitizer_log "$TESTDIR/$1.err"
}

# run EXPECTED-STATUS ARGS...: run the CLI, output in out/err, and check
# its exit status and that the sanitizers stayed quiet.
run ()
{
    local want=$1 got=0; shift
    "$CLI" "$@" >out 2>err </dev/null || got=$?
    check_sanitizer_log err
    if [ "$got" != "$want" ]; then
        echo "--- stdout"; cat out; echo "--- stderr"; cat err
        fail "nbdshadow $*: exit status $got, expected $want"
    fi
}

# has FILE PATTERN: FILE contains the extended regex PATTERN.
has ()
{
    grep -qE -- "$2" "$1" || { echo "--- $1:"; cat "$1"; fail "$1 lacks /$2/"; }
}

# last_request NAME: the last request fake NAME received.
last_request ()
{
    tail -n 1 "$TESTDIR/$1.log"
}

A=$TESTDIR/a.sock
start_fake a

# --help, --version, bad arguments: exit 2 with the usage, before any
# connection is tried.
run 0 --help
has out '^Usage:'
has out 'nbdshadow status \[--json\] \[--watch\] SOCKET'
run 0 --version
has out '^nbdshadow [0-9]+\.[0-9]+'
for args in "" "frobnicate $A" "status" "status $A extra" "rate $A" \
            "rate 12Q $A" "rate -5 $A" "rate 99999999999E $A" \
            "prefetch $A" "prefetch bogus $A" "pause --json $A" \
            "cutover --watch $A" "status --verified $A" "--bogus status $A" \
            "verify" "resume a b"; do
    # shellcheck disable=SC2086
    run 2 $args
    has err '^Usage:'
done
[ ! -s "$TESTDIR/a.log" ] || fail "bad arguments reached the server: $(cat "$TESTDIR/a.log")"

# An unreachable socket: exit 1, the path and the reason.
run 1 status "$TESTDIR/nonexistent.sock"
has err "^nbdshadow: $TESTDIR/nonexistent.sock: No such file or directory$"
: > "$TESTDIR/not-a-socket"
run 1 pause "$TESTDIR/not-a-socket"
has err "^nbdshadow: $TESTDIR/not-a-socket: Connection refused$"

# status: the human summary.
run 0 status "$A"
has out '^phase: +copying'
has out '^resident: +[0-9.]+% +[0-9.]+ [KMG]?i?B of 1\.0 GiB'
has out '^copied: .*on demand 10 MiB, prefetch 21 MiB'
has out '^reads: +1234 ops, hit 87\.0% \(shadow 870 MiB, origin 130 MiB\)'
has out '^copy rate: +95 MiB/s \(limit none\)'
has out '^eta: +6s'
has out '^prefetch: +hybrid: issued 1000, used 870, wasted 130, precision 87\.0%'
has out '^accuracy: +ngram 61\.0%, lstm 54\.2%, hybrid 63\.0%'
has out '^errors: +origin 0'
has out 'shadow 0: +nbd\+unix:///vol\?socket=/tmp/sh"adow\\1\.sock \(connected\)'
has out 'shadow 1: +nbd://new-host/vol \(DISCONNECTED\)'
has out '3 errors, 4 reconnects, 5 retries, 6 replays, latency \?'
has out '^verify: +idle'
has out '^state: +/var/lib/nbdshadow/vol \(journal 12 KiB, snapshot 4\.0 KiB\)'
[ "$(last_request a)" = status ] || fail "status sent '$(last_request a)'"

# status --json: valid JSON, the fields of control.h, escapes intact.
run 0 status --json "$A"
python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["phase"] == "copying", d["phase"]
assert d["size"] == 1 << 30
assert d["bytes_copied"]["on_demand"] == 10485760
assert d["client_reads"]["hit_ratio"] == 0.87
assert d["prefetch"]["accuracy"]["lstm"] == 0.542
assert d["errors"]["shadows"][0]["uri"] == "nbd+unix:///vol?socket=/tmp/sh\"adow\\1.sock"
assert d["errors"]["shadows"][1]["latency_us"] is None
assert d["status_line"].endswith("\u00e9t\u00e9 \"quoted\""), d["status_line"]
assert d["verify"]["state"] == "idle"
for k in ("blocks_total", "blocks_resident", "copy_rate", "eta_seconds",
          "rate_limit", "paused", "commits", "state"):
    assert k in d, k
' < out || { cat out; fail "status --json is not the expected JSON"; }
[ "$(wc -l < out)" -gt 20 ] || fail "status --json is not pretty-printed"
# Options may come first too.
run 0 --json status "$A"
python3 -c 'import json,sys; json.load(sys.stdin)' < out

# pause, resume, rate, prefetch: what goes on the wire.
run 0 pause "$A"
has out 'paused'
[ "$(last_request a)" = pause ] || fail "pause sent '$(last_request a)'"
run 0 status "$A"
has out '^phase: +copying \(copying paused\)'
run 0 resume "$A"
[ "$(last_request a)" = resume ] || fail "resume sent '$(last_request a)'"
for r in 64K:65536 100M:104857600 1G:1073741824 1048576:1048576 \
         2k:2048 1s:512 0:0; do
    run 0 rate "${r%%:*}" "$A"
    [ "$(last_request a)" = "rate ${r##*:}" ] ||
        fail "rate ${r%%:*} sent '$(last_request a)', expected 'rate ${r##*:}'"
done
has out 'limit: none'
run 0 rate 100M "$A"
has out '100 MiB/s'
run 0 status "$A"
has out '^copy rate: +95 MiB/s \(limit 100 MiB/s\)'
for p in off readahead ngram lstm hybrid; do
    run 0 prefetch "$p" "$A"
    [ "$(last_request a)" = "prefetch $p" ] || fail "prefetch $p sent '$(last_request a)'"
done

# cutover before synced: the server refuses; exit 1 with its message.
run 1 cutover "$A"
has err '^nbdshadow: cutover refused: not synced'
[ "$(last_request a)" = cutover ] || fail "cutover sent '$(last_request a)'"

# status --watch, stdout not a terminal: one progress line a second,
# ending when the phase becomes synced (after 4 status requests).
B=$TESTDIR/b.sock
start_fake b --synced-after=4
start=$(date +%s)
COLUMNS=100 run 0 status --watch "$B"
[ "$(wc -l < out)" -eq 4 ] || { cat out; fail "--watch printed $(wc -l < out) lines, expected 4"; }
has out '^\[#*\.+\]  25\.0% 256 MiB/1\.0 GiB   95 MiB/s eta 6s copying$'
has out '^\[#{10,}\] 100\.0% 1\.0 GiB/1\.0 GiB   95 MiB/s eta 0s synced$'
tail -n 1 out | grep -q 'synced$' || fail "--watch did not stop at synced"
awk 'length($0) > 99 { exit 1 }' out || fail "--watch lines wider than COLUMNS"
[ $(( $(date +%s) - start )) -ge 2 ] || fail "--watch did not wait between updates"
COLUMNS=40 run 0 status --watch "$B"
[ "$(wc -l < out)" -eq 1 ] || fail "--watch on a synced volume printed more than one line"
has out '^\[##########\] 100\.0%'

# --watch --json: JSON lines.
C=$TESTDIR/c.sock
start_fake c --synced-after=2
run 0 status --watch --json "$C"
[ "$(wc -l < out)" -eq 2 ] || fail "--watch --json printed $(wc -l < out) lines"
while read -r line; do
    echo "$line" | python3 -c 'import json,sys; json.load(sys.stdin)' ||
        fail "--watch --json line is not JSON: $line"
done < out
tail -n 1 out | grep -q '"phase":"synced"' || fail "--watch --json did not end synced"

# cutover once synced; cutover --verified needs a verify first.
run 1 cutover --verified "$B"
has err 'not verified'
[ "$(last_request b)" = "cutover verified" ] || fail "cutover --verified sent '$(last_request b)'"

# verify: progress lines, then the report; exit 0 when clean.
run 0 verify "$B"
has out '^\[#*\.*\] +[0-9.]+% [0-9]+/16384 blocks 0 mismatches running'
has out '^verify done: 16384 blocks checked, 0 mismatches, 0 re-copied$'
grep -qx verify "$TESTDIR/b.log" || fail "verify was not sent"
run 0 cutover --verified "$B"
has out 'cutover done'
run 0 status "$B"
has out '^phase: +done'
has out '^verify: +done: 16384 blocks checked, 0 mismatches, 0 re-copied'

# verify with mismatches: all re-copied is success, some left is not.
start_fake d --synced-after=0 --mismatches=3 --recopied=3
run 0 verify "$TESTDIR/d.sock"
has out '3 mismatches, 3 re-copied'
start_fake e --synced-after=0 --mismatches=5 --recopied=2
run 1 verify "$TESTDIR/e.sock"
has out '^verify done: 16384 blocks checked, 5 mismatches, 2 re-copied$'
has out '^verify: blocks differ$'

# An "error" reply to any verb: exit 1 and the server's message, on one
# line (the server replaced its newline).
start_fake f --refuse=pause
run 1 pause "$TESTDIR/f.sock"
[ "$(cat err)" = "nbdshadow: refused by the test: line one line two" ] ||
    fail "refusal shown as '$(cat err)'"

# A sparse status (an older server): no crash, "?" for what is missing.
start_fake g --minimal
run 0 status "$TESTDIR/g.sock"
has out '^phase: +copying'
has out '^resident: +\? +\? of \?'
run 0 status --json "$TESTDIR/g.sock"
python3 -c 'import json,sys; json.load(sys.stdin)' < out
run 1 verify "$TESTDIR/g.sock"
has err 'no verify.state'

# Broken JSON: exit 1 and say so, no crash.
start_fake h --bad-json
run 1 status "$TESTDIR/h.sock"
has err "^nbdshadow: $TESTDIR/h.sock: the server's status is not a JSON object \(at byte [0-9]+: "
run 1 status --json "$TESTDIR/h.sock"

# The server goes away: exit 1, not a hang.
kill_pidfile "$TESTDIR/a.pid"
run 1 status "$A"
has err "^nbdshadow: $A: "

echo "test-nbdshadow-cli: all checks passed"
