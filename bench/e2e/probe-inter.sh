#!/usr/bin/env bash
# probe-inter.sh: one run of bench-e2e's inter workload (four sequential
# fio readers, 64 KiB at 100 IOPS each, from 50/62/74/86% of a 2 GiB
# volume) through the same slow origin (2 ms per read, 100 MB/s), with
# what bench-e2e does not show: CPU and run-queue wait per thread of the
# filter (from /proc/PID/task/*/schedstat; the threads carry names:
# shadow-engine, shadow-copier, ...), the machine's busy share, and the
# clients' time beyond 0.25 ms and over 1 ms.  For diagnosing where the
# clients' stall goes (bench/e2e/RESULTS.md, "Where inter's stall
# goes"); the verdicts come from bench-e2e.sh.
#
# usage: bench/e2e/probe-inter.sh BUILDDIR POLICY [FILTER-PARAM...]
#   e.g. probe-inter.sh _build hybrid shadow-rate=25M
# Environment: BACKGROUND (shadow-background, default on), NBDKIT_OPTS
# (words before the filters, e.g. '-D shadow.copier_workers=4'),
# PROBE_DATA (a 2 GiB origin image to reuse; default: made in the
# scratch directory), E2E_TMP (scratch parent, default /var/tmp),
# SHADOW_TMP (where the shadow image lives: /dev/shm, as in bench-e2e;
# on /var/tmp the shadow's writeback tripled the clients' extra time),
# POLL=1 (poll `nbdshadow status --json` every 0.25 s during the run,
# as bench-e2e does).
set -euo pipefail

[ $# -ge 2 ] || { sed -n '12,21p' "$0" >&2; exit 2; }
builddir=$(cd "$1" && pwd) policy=$2
shift 2
FILTER=$builddir/plugin/.libs/nbdkit-shadow-filter.so
NBDSHADOW=$builddir/server/nbdshadow
[ -f "$FILTER" ] && [ -x "$NBDSHADOW" ] || { echo "$0: $builddir is not built" >&2; exit 1; }
for t in nbdkit fio python3; do
    command -v $t >/dev/null || { echo "$0: $t is missing (scripts/lib.sh installs it)" >&2; exit 1; }
done

V=$((2 << 30))
W= WS= proxy_pid=
# The filter first, and wait for it: its last commit flushes the shadow
# (with the shadow gone it would wait shadow-reconnect-timeout for it).
cleanup ()
{
    local p i
    for p in "$proxy_pid" "$([ -n "$W" ] && cat "$W/shadow.pid" 2>/dev/null)"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null || continue
        for (( i=0; i<300; i++ )); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
    done
    [ -z "$W" ] || rm -rf "$W"
    [ -z "$WS" ] || rm -rf "$WS"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
W=$(mktemp -d "${E2E_TMP:-/var/tmp}/nbdshadow-probe.XXXXXX")
WS=$(mktemp -d "${SHADOW_TMP:-/dev/shm}/nbdshadow-probe-shadow.XXXXXX")

data=${PROBE_DATA:-$W/data.img}
if [ ! -f "$data" ]; then
    echo "making a 2 GiB origin image of random data ..." >&2
    head -c $V /dev/urandom > "$data"
fi
[ "$(stat -c %s "$data")" = $V ] || { echo "$0: $data is not 2 GiB" >&2; exit 1; }

truncate -s $V "$WS/shadow.img"
nbdkit -U "$W/shadow.sock" -P "$W/shadow.pid" file "$WS/shadow.img"
# shellcheck disable=SC2086 # words on purpose
nbdkit -f -U "$W/proxy.sock" -P "$W/proxy.pid" ${NBDKIT_OPTS:-} \
    --filter="$FILTER" --filter=delay --filter=rate file "$data" \
    rdelay=2ms rate=800M burstiness=0.1 \
    shadow="nbd+unix:///?socket=$W/shadow.sock" shadow-control="$W/ctl.sock" \
    shadow-background="${BACKGROUND:-on}" shadow-prefetch="$policy" "$@" \
    > "$W/proxy.log" 2>&1 &
proxy_pid=$!
for (( i=0; i<200; i++ )); do
    [ -S "$W/ctl.sock" ] && [ -s "$W/proxy.pid" ] && break
    sleep 0.05
done
[ -S "$W/ctl.sock" ] || { cat "$W/proxy.log" >&2; echo "$0: the filter did not start" >&2; exit 1; }
pid=$proxy_pid

{
    printf '[global]\nioengine=nbd\nuri=nbd+unix:///?socket=%s\n' "$W/proxy.sock"
    printf 'log_unix_epoch=1\nlog_avg_msec=0\nwrite_lat_log=%s/fio\n' "$W"
    for o in 50 62 74 86; do
        printf '[stream%d]\nrw=read\nbs=64k\noffset=%d\nsize=%d\nrate_iops=100\n' \
            $o $((V / 100 * o)) $((1500 * 65536))
    done
} > "$W/job.fio"

# A thread may exit between the glob and the reads: skip it.
snapshot ()
{
    local t comm stat
    for t in /proc/"$pid"/task/*; do
        comm=$(cat "$t/comm" 2>/dev/null) && stat=$(cat "$t/schedstat" 2>/dev/null) &&
            echo "${t##*/} $comm $stat"
    done
    head -1 /proc/stat
}
snapshot > "$W/before"
poller_pid=
if [ "${POLL:-0}" = 1 ]; then
    while :; do "$NBDSHADOW" status --json "$W/ctl.sock" >/dev/null 2>&1; sleep 0.25; done &
    poller_pid=$!
fi
fio --output-format=json --output="$W/fio.json" "$W/job.fio" > "$W/fio.out" 2>&1 ||
    { cat "$W/fio.out" >&2; echo "$0: fio failed" >&2; exit 1; }
snapshot > "$W/after"
[ -z "$poller_pid" ] || { kill "$poller_pid"; wait "$poller_pid" 2>/dev/null || true; }
"$NBDSHADOW" status --json "$W/ctl.sock" > "$W/status.json"

python3 - "$W" <<'PY'
import glob, json, sys
w = sys.argv[1]

def load(name):
    tasks, cpu = {}, None
    for line in open(f"{w}/{name}"):
        p = line.split()
        if p[0] == "cpu":
            cpu = [int(x) for x in p[1:]]
        else:
            tasks[p[0]] = (p[1], int(p[2]), int(p[3]), int(p[4]))
    return tasks, cpu

t0, c0 = load("before")
t1, c1 = load("after")
roles = {}
for tid, (comm, run, wait, n) in t1.items():
    _, run0, wait0, n0 = t0.get(tid, (comm, 0, 0, 0))
    r = roles.setdefault(comm, [0, 0, 0, 0])
    r[0] += 1; r[1] += run - run0; r[2] += wait - wait0; r[3] += n - n0
print("filter threads alive at both ends of the run (not the clients' "
      "connection threads):")
for comm, (k, run, wait, n) in sorted(roles.items(), key=lambda x: -x[1][1]):
    print("  %-16s x%-3d cpu %6.2f s  waiting for a cpu %6.3f s  over %d slices"
          % (comm, k, run / 1e9, wait / 1e9, n))
d = [b - a for a, b in zip(c0, c1)]
print("machine busy %.0f%%" % (100 * (1 - (d[3] + d[4]) / sum(d))))
lat = []
for f in glob.glob(f"{w}/fio_lat.*.log"):
    for line in open(f):
        p = line.split(",")
        if p[2].strip() == "0":
            lat.append(int(p[1]) / 1e9)
lat.sort()
if not lat:
    sys.exit("no client reads in fio's latency logs")
print("client reads %d: median %.3f ms, time beyond 0.25 ms %.2f s, %d over 1 ms "
      "(%.2f s beyond 1 ms)" % (len(lat), lat[len(lat) // 2] * 1e3,
                                sum(max(0, l - 0.00025) for l in lat),
                                sum(l > 0.001 for l in lat),
                                sum(max(0, l - 0.001) for l in lat)))
s = json.load(open(f"{w}/status.json"))
p, b = s["prefetch"], s["bytes_copied"]
print("resident %.1f%%; copied MiB: prefetch %d, background %d, on demand %d; "
      "prefetch used %d of %d; accuracy %s"
      % (100 * s["blocks_resident"] / s["blocks_total"], b["prefetch"] >> 20,
         b["background"] >> 20, b["on_demand"] >> 20, p["used"], p["copied"],
         p["accuracy"]))
print("prediction rounds %d (%s of them for a stream other than the last of "
      "a batch); client bytes from the shadow %.2f%%"
      % (p["rounds"], p.get("batched_rounds", "none counted"),
         100 * s["client_reads"]["hit_ratio"]))
PY
