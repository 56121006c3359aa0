#!/usr/bin/env bash
# bench-replay.sh: how long clients wait after the shadow loses power
# while the filter runs on: the time from the filter reconnecting to the
# shadow to its having written its unflushed updates again (the write log,
# server/wlog.h), with those writes issued several at once (the default,
# up to 16 that do not overlap) against one at a time
# (-D shadow.replay_depth=1, as before 2026-11-30), in the same run.
#
# The shadow is `nbdkit --filter=delay --filter=volatile file SHADOW.img
# wdelay=$WDELAY`: the volatile filter (tests/volatile-filter.c) keeps
# writes in memory until a flush and loses them with kill -9, the delay
# filter makes each write take WDELAY, as a shadow across a network
# does.  The filter copies the origin at RATE with commits held back
# (-D shadow.commit_interval_ms=600000) until LOG of copies sit in its
# write log (the rate keeps it from overshooting into the log's 64 MiB
# cap, where an early flush would empty it), pauses, and the shadow is killed and restarted on the same
# socket.  The time is from the filter's "reconnected" notice to its
# "acknowledged updates written again" (its log polled every 10 ms from
# the restart on; the log must hold less than the 64 MiB cap, where an
# early flush would have emptied part of it, or the run fails).  Then the filter resumes, syncs, and the shadow must equal
# the origin (checked in every run).
#
# Prints each run and the medians with the ratio one-at-a-time /
# several (how many times faster the default replays).  Exits non-zero
# only on errors.
#
# Environment:
#   BUILDDIR  build tree (default: _build-bench at the top of the source)
#   SIZE      volume (default 256M)
#   LOG       bytes of copies in the log at the cut (default 48M, below
#             the log's 64 MiB cap)
#   WDELAY    the shadow's delay per write (default 2ms)
#   RATE      shadow-rate while filling the log (default 32M)
#   REPS      runs of each (default 3)
set -eu
set -o pipefail

srcdir=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench-lib.sh
source "$srcdir/bench/bench-lib.sh"
VOLATILE=$builddir/tests/.libs/nbdkit-volatile-filter.so

size=$(to_bytes "${SIZE:-256M}")
log_bytes=$(to_bytes "${LOG:-48M}")
wdelay=${WDELAY:-2ms}
rate=${RATE:-32M}
reps=${REPS:-3}

[ -f "$FILTER" ] || die "$FILTER not built"
[ -x "$NBDSHADOW" ] || die "$NBDSHADOW not built"
[ -f "$VOLATILE" ] || make -s -C "$builddir/tests" nbdkit-volatile-filter.la ||
    die "cannot build $VOLATILE"
for t in nbdkit nbdinfo python3 openssl cmp bc; do
    command -v $t >/dev/null || die "$t missing (scripts/lib.sh installs it)"
done
[ "$log_bytes" -lt $(( 64 * 1024 * 1024 )) ] ||
    die "LOG=$log_bytes: must stay below the write log's 64 MiB cap"
[ "$log_bytes" -lt "$size" ] || die "LOG must be smaller than SIZE"

bench_scratch "$size"
echo "# bench-replay: $((size >> 20)) MiB volume, $((log_bytes >> 20)) MiB of copies in the log (filled at $rate/s), shadow write delay $wdelay, $reps runs each"
machine_line
echo "# nbdkit $(nbdkit --version | awk '{print $2}'), load at start $(loadavg)"

openssl enc -aes-128-ctr -pass pass:replay -nosalt -pbkdf2 \
    < <(head -c "$size" /dev/zero) > origin.img 2>/dev/null
[ "$(stat -c %s origin.img)" = "$size" ] || die "cannot create origin.img"
start_nbdkit origin file origin.img

status_field () # FIELD: from the status JSON
{
    "$NBDSHADOW" status --json "$dir/proxy.ctl" | python3 -c '
import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v[int(k)] if isinstance(v, list) else v[k]
print(v)' "$1"
}

# run DEPTH REP: one run; prints its line and appends the time to DEPTH.times
run ()
{
    local depth=$1 rep=$2 i copied t0 t1 shadow_pid filter_pid entries
    rm -rf state shadow.img proxy.log
    truncate -s "$size" shadow.img
    start_nbdkit shadow --filter=delay --filter="$VOLATILE" file shadow.img \
        wdelay="$wdelay"
    shadow_pid=$last_pid
    rm -f proxy.sock
    nbdkit -f -U "$dir/proxy.sock" -D shadow.commit_interval_ms=600000 \
        -D shadow.replay_depth="$depth" --filter="$FILTER" \
        nbd socket="$dir/origin.sock" shadow="$(uri shadow)" \
        shadow-state="$dir/state" shadow-control="$dir/proxy.ctl" \
        shadow-retry-hold=0 shadow-rate="$rate" >proxy.log 2>&1 &
    filter_pid=$!
    pids+=("$filter_pid")
    wait_serving proxy "$filter_pid"
    for (( i=0; i<600; i++ )); do
        copied=$(status_field bytes_copied.total)
        [ "$copied" -ge "$log_bytes" ] && break
        sleep 0.1
    done
    [ "$copied" -ge "$log_bytes" ] || die "only $copied bytes copied in 60 s"
    "$NBDSHADOW" pause "$dir/proxy.ctl" >/dev/null
    sleep 0.5                   # copies in flight complete
    kill -9 "$shadow_pid"
    wait "$shadow_pid" 2>/dev/null || true
    # Not start_nbdkit: its wait for the socket polls every 0.1 s, as
    # long as the fast replay takes.
    rm -f shadow.sock
    nbdkit -f -U "$dir/shadow.sock" --filter=delay --filter="$VOLATILE" \
        file shadow.img wdelay="$wdelay" >shadow.log 2>&1 &
    shadow_pid=$!
    pids+=("$shadow_pid")
    t0=
    for (( i=0; i<6000; i++ )); do
        if [ -z "$t0" ] && grep -q ": reconnected" proxy.log; then
            t0=$(date +%s.%N)
        fi
        grep -q "acknowledged updates written again" proxy.log && break
        sleep 0.01
    done
    t1=$(date +%s.%N)
    grep -q "acknowledged updates written again" proxy.log ||
        die "depth $depth: no replay within 60 s (proxy.log: $(tail -3 proxy.log))"
    [ -n "$t0" ] || t0=$t1      # both in one poll: under the 10 ms resolution
    entries=$(grep -o "writing again [0-9]* updates* ([0-9]* bytes)" proxy.log |
                  tail -1 | sed 's/writing again //; s/ updates* (/ updates, /; s/)//')
    [ "$(echo "$entries" | awk '{print $3}')" -lt $(( 64 * 1024 * 1024 )) ] ||
        die "depth $depth: $entries in the log: at the 64 MiB cap, where early flushes empty it"
    "$NBDSHADOW" rate 0 "$dir/proxy.ctl" >/dev/null
    "$NBDSHADOW" resume "$dir/proxy.ctl" >/dev/null
    for (( i=0; i<1200; i++ )); do
        [ "$(status_field phase)" = synced ] && break
        sleep 0.1
    done
    [ "$(status_field phase)" = synced ] || die "depth $depth: not synced within 120 s"
    stop "$filter_pid"
    stop "$shadow_pid"          # a clean stop writes the volatile cache down
    cmp -s origin.img shadow.img ||
        die "depth $depth rep $rep: the shadow differs from the origin after the replay"
    printf "  depth %-2s rep %d: %s written again in %.3f s, load %s\n" \
        "$depth" "$rep" "$entries" "$(echo "$t1 - $t0" | bc)" "$(loadavg)"
    printf "%.3f\n" "$(echo "$t1 - $t0" | bc)" >> "depth$depth.times"
}

for (( r=1; r<=reps; r++ )); do
    run 1 $r
    run 16 $r
done

median () { sort -n "$1" | awk '{a[NR]=$1} END {printf "%.3f\n", (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
m1=$(median depth1.times)
m16=$(median depth16.times)
echo
echo "## Medians ($reps runs each; load at end $(loadavg))"
echo
echo "| replay | median s | runs (s) |"
echo "|---|---|---|"
echo "| one at a time (-D shadow.replay_depth=1) | $m1 | $(tr '\n' ' ' < depth1.times)|"
echo "| up to 16 at once (default) | $m16 | $(tr '\n' ' ' < depth16.times)|"
echo
echo "ratio one-at-a-time / default: $(echo "scale=2; $m1 / $m16" | bc)"
