#!/usr/bin/env bash
# bench-latency.sh: client 4K random read latency through the shadow
# filter with background hydration running (shadow-background=on) and
# without it (shadow-background=off), through a slow origin.
#
# The origin is `nbdkit --filter=delay --filter=rate file ORIGIN.img
# rdelay=$RDELAY rate=$RATE burstiness=$BURST` (the rate filter counts
# BITS per second: 800M = 100 MB/s shared by every connection; a small
# burstiness so that it does not let seconds' worth through at once).
# The filter reads it through the nbd plugin, as in real use, and copies
# to a fresh sparse file served by nbdkit file.  The client is fio's nbd
# engine: 4k randread over the whole volume, iodepth 1 and 8, RUNTIME
# seconds, the same random sequence in every run (fio's randrepeat).
#
# Each run starts from an empty shadow and a new state directory, so that
# on and off begin from the same residency; on/off alternate, REPS times
# each.  During each run the status JSON (`nbdshadow status --json`) is
# sampled every second: bytes_copied.background shows whether hydration
# keeps going under the load (the smallest per-second progress is
# printed: 0 would be a stall).  shadow-background=off is also how
# dm-clone behaves under a steady client load (it hydrates only while
# no client I/O is in flight, which under this load is never): the off
# column is that policy's figures, with nothing copied in the background.
# A reference run reads the origin directly (no filter).
#
# Prints the runs and a table of median p50/p99 completion latencies
# (fio clat) with the ratio on/off.  Exits non-zero only on errors.
#
# Environment:
#   BUILDDIR  build tree (default: _build-bench at the top of the source)
#   SIZE      volume size (default 4G)
#   REPS      runs of each mode per iodepth (default 3)
#   IODEPTHS  (default "1 8")
#   RUNTIME   seconds per fio run (default 20)
#   RDELAY    origin read delay (default 2ms)
#   RATE      origin rate in bits/s (default 800M); RATE=0: no rate filter
#   BURST     rate filter burstiness in seconds (default 0.1)
#   FILTER_ARGS  extra filter parameters (default none)
set -eu
set -o pipefail

srcdir=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench-lib.sh
source "$srcdir/bench/bench-lib.sh"

size=$(to_bytes "${SIZE:-4G}")
reps=${REPS:-3}
iodepths=${IODEPTHS:-1 8}
runtime=${RUNTIME:-20}
rdelay=${RDELAY:-2ms}
rate=${RATE:-800M}
burst=${BURST:-0.1}
filter_args=${FILTER_ARGS:-}

[ -f "$FILTER" ] || die "$FILTER not built"
[ -x "$NBDSHADOW" ] || die "$NBDSHADOW not built"
for t in nbdkit nbdinfo fio python3 openssl; do
    command -v $t >/dev/null || die "$t is missing"
done
fio --enghelp=nbd >/dev/null 2>&1 || die "fio has no nbd engine"

bench_scratch "$size"

echo "# bench-latency: $(( size / 1048576 )) MiB volume, origin rdelay=$rdelay" \
     "rate=$rate (bits/s) burstiness=$burst, fio 4k randread ${runtime} s," \
     "iodepths $iodepths, $reps runs per mode${filter_args:+, filter args '$filter_args'}"
machine_line
echo "# nbdkit $(nbdkit --version | cut -d' ' -f2), $(fio --version), load at start $(loadavg)"

echo "== creating the origin (random data)"
( set +o pipefail
  openssl enc -aes-128-ctr -nosalt -pass pass:nbdshadow-bench -pbkdf2 \
      -in /dev/zero 2>/dev/null | head -c "$size" > origin.img )
[ "$(stat -c %s origin.img)" = "$size" ] || die "origin.img has the wrong size"
cat origin.img > /dev/null      # the slowness comes from the filters, not the disk
origin_filters=(--filter=delay)
origin_params=(rdelay="$rdelay")
if [ "$rate" != 0 ]; then
    origin_filters+=(--filter=rate)
    origin_params+=(rate="$rate" burstiness="$burst")
fi
start_nbdkit origin "${origin_filters[@]}" file origin.img "${origin_params[@]}"

results=results.txt
: > $results

# fio_job URI IODEPTH: the job file.
fio_job ()
{
    cat <<FIO
[global]
ioengine=nbd
uri=$1
rw=randread
bs=4k
iodepth=$2
size=$size
time_based=1
runtime=$runtime
randrepeat=1
percentile_list=50:90:99:99.9
[reader]
FIO
}

# parse_fio JSON: "p50_us p99_us mean_us iops" of the read completion latencies.
parse_fio ()
{
    python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
r = d["jobs"][0]["read"]
c = r["clat_ns"]
p = c["percentile"]
if d["jobs"][0]["error"]:
    sys.exit("fio error %d" % d["jobs"][0]["error"])
print("%.1f %.1f %.1f %.0f" % (p["50.000000"] / 1e3, p["99.000000"] / 1e3,
                               c["mean"] / 1e3, r["iops"]))
PY
}

# run_direct IODEPTH: fio on the origin itself (reference).
run_direct ()
{
    local qd=$1 la
    la=$(loadavg)
    fio_job "$(uri origin)" "$qd" > job.fio
    fio job.fio --output-format=json --output=fio.json >/dev/null 2>fio.err ||
        { cat fio.err >&2; die "fio failed on the origin"; }
    echo "direct $qd 0 $(parse_fio fio.json) - - - - - - ${la// //}" >> $results
    tail -1 $results | awk '{ printf "  origin (no filter)  qd %s: p50 %s us, p99 %s us, mean %s us, %s IOPS, load %s\n", $2, $4, $5, $6, $7, $14 }'
}

# run_filter IODEPTH MODE(on|off) REP
run_filter ()
{
    local qd=$1 mode=$2 rep=$3 ctl=$dir/proxy.ctl fpid spid ppid la f
    rm -f shadow.img; truncate -s "$size" shadow.img
    start_nbdkit shadow file shadow.img
    spid=$last_pid
    rm -rf state; mkdir state
    # shellcheck disable=SC2086
    start_nbdkit proxy --filter="$FILTER" nbd socket="$dir/origin.sock" \
        shadow="$(uri shadow)" shadow-state="$dir/state" shadow-control="$ctl" \
        shadow-background="$mode" $filter_args
    fpid=$last_pid
    la=$(loadavg)
    # Hydration progress: one status sample a second.
    ( while :; do
          j=$("$NBDSHADOW" status --json "$ctl" 2>/dev/null) && echo "$EPOCHREALTIME $j"
          sleep 1
      done ) > progress.txt &
    ppid=$!
    pids+=("$ppid")
    fio_job "$(uri proxy)" "$qd" > job.fio
    fio job.fio --output-format=json --output=fio.json >/dev/null 2>fio.err ||
        { cat fio.err >&2; die "fio failed through the filter"; }
    stop "$ppid"
    "$NBDSHADOW" status --json "$ctl" > final.json
    f=$(parse_fio fio.json)
    python3 - progress.txt final.json <<'PY' > prog.out
import json, sys
samples = []
for line in open(sys.argv[1]):
    t, _, js = line.partition(" ")
    try:
        samples.append((float(t), json.loads(js)))
    except ValueError:
        pass
d = json.load(open(sys.argv[2]))
bg = d["bytes_copied"]["background"]
# Smallest background progress over any 1 s step while fio ran
# (the first sample is taken right after the filter serves).
steps = [(b["bytes_copied"]["background"] - a["bytes_copied"]["background"]) / (tb - ta)
         for (ta, a), (tb, b) in zip(samples, samples[1:])]
mn = min(steps) if steps else 0
print("%d %.0f %d %.4f %d %d" % (bg, mn, d["bytes_copied"]["on_demand"],
      d["client_reads"]["hit_ratio"], d["copier"]["window"],
      d["bytes_copied"]["prefetch"]))
PY
    echo "$mode $qd $rep $f $(cat prog.out) ${la// //}" >> $results
    tail -1 $results | awk -v rt="$runtime" '{ printf "  filter bg=%-3s qd %s rep %s: p50 %s us, p99 %s us, mean %s us, %s IOPS; background copied %.0f MiB (%.1f MiB/s, slowest 1-s step %.1f MiB/s), on demand %.0f MiB, prefetch %.0f MiB, hit ratio %s, copier window %s, load %s\n", $1, $2, $3, $4, $5, $6, $7, $8 / 1048576, $8 / 1048576 / rt, $9 / 1048576, $10 / 1048576, $13 / 1048576, $11, $12, $14 }'
    stop "$fpid"
    stop "$spid"
    rm -rf state shadow.img
}

for qd in $iodepths; do
    echo "== iodepth $qd"
    run_direct "$qd"
    for (( rep=1; rep<=reps; rep++ )); do
        if (( rep % 2 )); then
            run_filter "$qd" on "$rep"; run_filter "$qd" off "$rep"
        else
            run_filter "$qd" off "$rep"; run_filter "$qd" on "$rep"
        fi
    done
done

echo
echo "## Medians ($reps runs per mode; fio completion latency; load at end $(loadavg))"
echo
python3 - "$results" "$runtime" <<'PY'
import statistics, sys
rows = {}
direct = {}
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] == "direct":
        direct[f[1]] = f
        continue
    rows.setdefault((f[1], f[0]), []).append(f)
rt = float(sys.argv[2])
med = lambda rs, i: statistics.median(float(r[i]) for r in rs)
print("| iodepth | origin direct p50/p99 us | bg=on p50 us | bg=on p99 us | bg=off p50 us | bg=off p99 us | p50 on/off | p99 on/off | IOPS on / off | hit ratio on / off | background MiB/s during load: on (slowest 1-s step) / off (dm-clone-like) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for qd in sorted({k[0] for k in rows}, key=int):
    on, off = rows.get((qd, "on"), []), rows.get((qd, "off"), [])
    if not on or not off:
        continue
    d = direct.get(qd)
    print("| %s | %s | %.0f | %.0f | %.0f | %.0f | %.2f | %.2f | %.0f / %.0f | %.3f / %.3f | %.1f (%.1f) / %.1f |" % (
        qd, "%s / %s" % (d[3], d[4]) if d else "-",
        med(on, 3), med(on, 4), med(off, 3), med(off, 4),
        med(on, 3) / med(off, 3), med(on, 4) / med(off, 4),
        med(on, 6), med(off, 6), med(on, 10), med(off, 10),
        med(on, 7) / 2**20 / rt, med(on, 8) / 2**20, med(off, 7) / 2**20 / rt))
PY
