#!/usr/bin/env bash
# bench-e2e.sh: nbdshadow end to end (issue 6).
#
# One run sets up, on this machine:
#   origin   nbdkit file plugin behind the delay and rate filters (a far,
#            slow origin: RDELAY per read, RATE bits/s, burstiness 0.1 s),
#            in the filter's own nbdkit process, below the filter
#   shadow   a second nbdkit (file plugin, sparse file) on a Unix socket
#   filter   nbdkit-shadow-filter with background hydration on
# and, for every workload, replays it with real clients under every
# policy:
#   off        shadow-prefetch=off (dm-clone-like: on-demand copies and a
#              linear background sweep)
#   nbdkit-ra  nbdkit's readahead filter ABOVE the shadow filter (its
#              NBD_CMD_CACHE requests go through the filter, which copies
#              them), shadow-prefetch=off
#   readahead, ngram, lstm, hybrid   shadow-prefetch=POLICY
# Workloads:
#   seq      fio, one sequential reader (64 KiB, rate-limited) from 55%
#   inter    fio, 4 sequential readers at once at 50/62/74/86% (interleaved)
#            (the sweep copies from block 0 up: these start where it
#            arrives late, as on a volume much larger than the test's)
#   zipf     fio, random 4 KiB reads, zipf:1.2, queue depth 4
#   wsrch    bench-e2e-replay of the busiest device of wsrch-small.trace,
#            recorded inter-arrival times, sped up 2x
#   tpcc     bench-e2e-replay of all 16 devices of tpcc-small.trace (reads
#            and writes, each device in its own slice), slowed down
#   fs-tar   an ext4 image in the volume, through nbdfuse + a loop device
#            mounted read-only: extract a tarball stored in it (tar -xO)
#   fs-find  same file system: find over a source tree + md5sum every file
# For each: client read latency p50/p99, share of read bytes served by the
# shadow, total stall time, migration completion time (see e2e-analyze.py
# for the exact definitions), and plots of latency and residency over time.
#
# usage: bench/e2e/bench-e2e.sh [--quick] [--repeat N] [--workloads LIST]
#                               [--policies LIST] [--out DIR] [--keep]
#                               [BUILDDIR]
#   BUILDDIR     the build tree (default: the current directory); the
#                replayer is built there (make -C BUILDDIR/bench
#                bench-e2e-replay) if missing
#   --quick      512 MiB volume and ~6 s workloads: a few minutes in all
#                (default: 2 GiB and ~15 s; wsrch 30 s)
#   --repeat N   run every (workload, policy) N times; tables give medians
#   --out DIR    raw results (default: bench/e2e/out); plots go to
#                DIR/plots unless PLOTS=DIR (the committed plots of a
#                full run: PLOTS=bench/e2e/plots; never by default, so
#                that a subset run cannot overwrite them)
#   --keep       keep the scratch directory (images, logs)
# Environment: E2E_TMP (scratch parent, default /var/tmp), SHADOW_TMP
# (where the shadow image lives, default /dev/shm if it has room for two
# volumes), RDELAY (2ms),
# RATE (800M bits/s = 100 MB/s), BACKGROUND (shadow-background=, default
# on; off for experiments: the migration then never completes, and
# completion is "not synced"), TRACEDIR (default ../shared/traces),
# E2E_NBDKIT_OPTS (words given to the filter's nbdkit before its
# filters, e.g. '-D shadow.shadow_request_kib=32768'), E2E_PARAMS
# (words added to the filter's parameters, e.g. 'shadow-rate=25M').
#
# Needs root (loop devices, mount), /dev/fuse, nbdfuse, fio, gnuplot,
# mkfs.ext4 (scripts/lib.sh installs the packages).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
srcdir=$(cd "$here/../.." && pwd)

quick=0 repeat=1 keep=0
workloads="seq inter zipf wsrch tpcc fs-tar fs-find"
policies="off nbdkit-ra readahead ngram lstm hybrid"
out=$here/out
builddir=.
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --repeat) repeat=$2; shift ;;
        --workloads) workloads=$2; shift ;;
        --policies) policies=$2; shift ;;
        --out) out=$2; shift ;;
        --keep) keep=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "$0: unknown option $1" >&2; exit 2 ;;
        *) builddir=$1 ;;
    esac
    shift
done
builddir=$(cd "$builddir" && pwd)
workloads=${workloads//,/ }
policies=${policies//,/ }
tracedir=${TRACEDIR:-$srcdir/../shared/traces}
plots=${PLOTS:-$out/plots}
RDELAY=${RDELAY:-2ms}
RATE=${RATE:-800M}
BACKGROUND=${BACKGROUND:-on}

FILTER=$builddir/plugin/.libs/nbdkit-shadow-filter.so
NBDSHADOW=$builddir/server/nbdshadow
REPLAY=$builddir/bench/bench-e2e-replay

die () { echo "$0: $*" >&2; exit 1; }
say () { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

[ -f "$FILTER" ] || die "$FILTER not built (build $builddir first)"
[ -x "$NBDSHADOW" ] || die "$NBDSHADOW not built"
[ -x "$REPLAY" ] || make -C "$builddir/bench" bench-e2e-replay >/dev/null ||
    die "cannot build $REPLAY"
for t in nbdkit nbdinfo fio gnuplot python3 mkfs.ext4 losetup nbdfuse fusermount3; do
    command -v $t >/dev/null || die "$t missing (scripts/lib.sh's PACKAGES install it)"
done
case " $workloads " in
    *" fs-"*)
        [ "$(id -u)" = 0 ] || die "the fs-* workloads need root (loop device, mount)"
        [ -c /dev/fuse ] || die "/dev/fuse missing: the fs-* workloads need FUSE" ;;
esac

# Sizes.
if [ $quick = 1 ]; then
    V=$((512 << 20)); T=6
    WSRCH_SECONDS=12; TPCC_SPEED=0.02
else
    V=$((2048 << 20)); T=15
    WSRCH_SECONDS=0; TPCC_SPEED=0.01
fi
SYNC_TIMEOUT=${SYNC_TIMEOUT:-300}

# Scratch: the origin images on disk (E2E_TMP): the origin is read only,
# from the page cache.  The shadow in RAM (SHADOW_TMP, /dev/shm when it
# has room), so that the local disk -- shared with whatever else the
# machine runs -- adds no writeback stalls of its own: the benchmark
# measures the filter against a slow origin, not the disk under the
# shadow.  (Not the origin in tmpfs: the copier asks the origin for
# extents before each transfer, and SEEK_HOLE on a dense tmpfs file
# scans its pages -- tens of ms a call, a cost no real origin has.)
E2E_TMP=${E2E_TMP:-/var/tmp}
[ "$(df -Pm "$E2E_TMP" | awk 'NR == 2 {print $4}')" -gt $(( (3 * V) >> 20 )) ] ||
    die "$E2E_TMP has less than $(( (3 * V) >> 20 )) MiB free (set E2E_TMP)"
if [ -z "${SHADOW_TMP:-}" ]; then
    SHADOW_TMP=$E2E_TMP
    [ "$(df -Pm /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}')" -gt $(( (2 * V) >> 20 )) ] 2>/dev/null &&
        SHADOW_TMP=/dev/shm
fi
W=$(mktemp -d "$E2E_TMP/nbdshadow-e2e.XXXXXX")
WS=$(mktemp -d "$SHADOW_TMP/nbdshadow-e2e-shadow.XXXXXX")
mkdir -p "$out" "$plots"
# A fresh results directory for this run.
rm -rf "$out/runs"
mkdir -p "$out/runs"

# ------------------------------------------------------------------------
# Clean up on every exit path: mounts, loop devices, nbdfuse, servers.

poller_pid=
cleanup ()
{
    local st=$? p
    set +e
    trap - EXIT INT TERM
    fs_umount quiet
    [ -n "$poller_pid" ] && kill "$poller_pid" 2>/dev/null
    for p in proxy shadow; do kill_pidfile "$W/$p.pid"; done
    if [ $keep = 1 ]; then echo "kept $W $WS"; else rm -rf "$W" "$WS"; fi
    exit $st
}
trap cleanup EXIT
trap 'exit 130' INT TERM

kill_pidfile ()
{
    local pid i
    [ -s "$1" ] || return 0
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || { rm -f "$1"; return 0; }
    for (( i=0; i<100; i++ )); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$1"; return 0; }
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null
    rm -f "$1"
}

uri () { echo "nbd+unix:///?socket=$1"; }
now () { date +%s.%N; }
loadavg () { cut -d' ' -f1-3 /proc/loadavg; }

# ------------------------------------------------------------------------
# The origin images (read-only during the runs: the trace's writes go to
# the shadow, shadow-writes=shadow).

make_data_image ()
{
    say "origin data image: $((V >> 20)) MiB of random data"
    head -c $V /dev/urandom > "$W/data.img"
}

# An ext4 file system filling the volume: a source tree (find + md5sum),
# a tarball (extraction) and incompressible filler, so that the
# background sweep has real data to copy (zero ranges cost it nothing).
make_fs_image ()
{
    local tree=$W/fstree
    rm -rf "$tree"; mkdir -p "$tree/src" "$tree/filler"
    if [ $quick = 1 ]; then
        cp -a /usr/include/linux /usr/include/c++ "$tree/src/"
        tar -cf "$tree/src.tar" -C /usr/lib python3.11 2>/dev/null || true
        head -c $((250 << 20)) /dev/urandom > "$tree/filler/blob0"
    else
        cp -a /usr/include "$tree/src/"
        tar -cf "$tree/src.tar" -C /usr/share doc 2>/dev/null || true
        for i in 0 1 2 3 4; do
            head -c $((256 << 20)) /dev/urandom > "$tree/filler/blob$i"
        done
    fi
    say "origin fs image: ext4, $(du -sm "$tree" | cut -f1) MiB of files ($(find "$tree/src" -type f | wc -l) in the tree, tarball $(( $(stat -c %s "$tree/src.tar") >> 20 )) MiB)"
    truncate -s $V "$W/fs.img"
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 -d "$tree" "$W/fs.img"
    rm -rf "$tree"
}

# ------------------------------------------------------------------------
# Servers.

start_shadow ()
{
    rm -f "$WS/shadow.img" "$W/shadow.sock"
    truncate -s $V "$WS/shadow.img"
    nbdkit -U "$W/shadow.sock" -P "$W/shadow.pid" file "$WS/shadow.img" \
        >"$W/shadow.log" 2>&1 || { cat "$W/shadow.log"; die "shadow did not start"; }
}

# start_proxy POLICY IMAGE RUNDIR [LOGFILE]
start_proxy ()
{
    local policy=$1 img=$2 rd=$3 logfile=${4:-} i
    local -a filters=() params=()

    [ -n "$logfile" ] && { filters+=(--filter=log); params+=(logfile="$logfile"); }
    if [ "$policy" = nbdkit-ra ]; then
        filters+=(--filter=readahead)
        params+=(shadow-prefetch=off)
    else
        params+=(shadow-prefetch="$policy")
    fi
    filters+=(--filter="$FILTER" --filter=delay --filter=rate)
    rm -f "$W/proxy.sock" "$W/proxy.pid" "$W/ctl.sock"
    echo "nbdkit -f -U proxy.sock ${E2E_NBDKIT_OPTS:-} ${filters[*]} file $(basename "$img") rdelay=$RDELAY rate=$RATE burstiness=0.1 shadow=$(uri shadow.sock) shadow-control=ctl.sock shadow-background=$BACKGROUND ${params[*]} ${E2E_PARAMS:-}" > "$rd/command"
    # shellcheck disable=SC2086 # words on purpose
    nbdkit -f -U "$W/proxy.sock" -P "$W/proxy.pid" ${E2E_NBDKIT_OPTS:-} \
        "${filters[@]}" file "$img" rdelay="$RDELAY" rate="$RATE" burstiness=0.1 \
        shadow="$(uri "$W/shadow.sock")" shadow-control="$W/ctl.sock" \
        shadow-background="$BACKGROUND" "${params[@]}" ${E2E_PARAMS:-} \
        >"$rd/proxy.log" 2>&1 &
    for (( i=0; i<300; i++ )); do
        [ -S "$W/ctl.sock" ] && [ -s "$W/proxy.pid" ] &&
            nbdinfo --size "$(uri "$W/proxy.sock")" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    cat "$rd/proxy.log" >&2
    die "the filter did not start"
}

# The status poller: "UNIX_TIME JSON" every 0.25 s.
start_poller ()
{
    local f=$1
    (
        while :; do
            s=$("$NBDSHADOW" status --json "$W/ctl.sock" 2>/dev/null | tr -d "\n") &&
                printf '%s %s\n' "$(now)" "$s"
            sleep 0.25
        done
    ) > "$f" &
    poller_pid=$!
}

stop_poller ()
{
    [ -n "$poller_pid" ] && { kill "$poller_pid" 2>/dev/null; wait "$poller_pid" 2>/dev/null || true; }
    poller_pid=
}

# wait_synced FILE: until the phase is synced; FILE gets the time it was
# seen (or nothing after SYNC_TIMEOUT seconds).
wait_synced ()
{
    local deadline=$(( $(date +%s) + SYNC_TIMEOUT ))
    : > "$1"
    while [ "$(date +%s)" -lt $deadline ]; do
        if "$NBDSHADOW" status --json "$W/ctl.sock" 2>/dev/null |
                grep -q '"phase": "synced"'; then
            now > "$1"
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# ------------------------------------------------------------------------
# The file system through nbdfuse + loop.

fs_mount ()
{
    local i
    mkdir -p "$W/fuse" "$W/mnt"
    rm -f "$W/fuse.pid"
    nbdfuse -P "$W/fuse.pid" "$W/fuse/vol" "$(uri "$W/proxy.sock")" \
        >>"$W/fuse.log" 2>&1 &
    for (( i=0; i<100; i++ )); do
        [ -s "$W/fuse.pid" ] && [ -f "$W/fuse/vol" ] && break
        sleep 0.05
    done
    [ -f "$W/fuse/vol" ] || { cat "$W/fuse.log" >&2; die "nbdfuse did not start"; }
    losetup -f --show -r --direct-io=on "$W/fuse/vol" > "$W/loopdev" ||
        die "losetup on the nbdfuse file failed"
    mount -o ro "$(cat "$W/loopdev")" "$W/mnt" ||
        die "mounting $(cat "$W/loopdev") failed"
}

fs_umount ()
{
    local i
    if mountpoint -q "$W/mnt" 2>/dev/null; then
        umount "$W/mnt" 2>/dev/null || umount -l "$W/mnt"
    fi
    if [ -s "$W/loopdev" ]; then
        losetup -d "$(cat "$W/loopdev")" 2>/dev/null
        rm -f "$W/loopdev"
    fi
    if mountpoint -q "$W/fuse" 2>/dev/null; then
        fusermount3 -u "$W/fuse" 2>/dev/null || fusermount3 -uz "$W/fuse"
        for (( i=0; i<100; i++ )); do
            [ -s "$W/fuse.pid" ] && kill -0 "$(cat "$W/fuse.pid")" 2>/dev/null || break
            sleep 0.05
        done
    fi
    rm -f "$W/fuse.pid"
    [ "${1:-}" = quiet ] || true
}

# ------------------------------------------------------------------------
# Workloads.  run_workload WL DIR writes DIR/lat*.log (fio's lat log
# format, Unix ms) -- or, for fs-*, the log filter's log -- and DIR/wall.

fio_job ()
{
    local wl=$1 dir=$2 n
    cat <<EOF
[global]
ioengine=nbd
uri=$(uri "$W/proxy.sock")
log_unix_epoch=1
log_avg_msec=0
write_lat_log=$dir/fio
runtime=$((T * 6))
EOF
    case $wl in
        seq)
            n=$((300 * T))
            printf '[seq]\nrw=read\nbs=64k\noffset=%d\nsize=%d\nrate_iops=300\n' \
                $((V / 100 * 55)) $((n * 65536)) ;;
        inter)
            n=$((100 * T))
            for o in 50 62 74 86; do
                printf '[stream%d]\nrw=read\nbs=64k\noffset=%d\nsize=%d\nrate_iops=100\n' \
                    $o $((V / 100 * o)) $((n * 65536))
            done ;;
        zipf)
            printf '[zipf]\nrw=randread\nbs=4k\nrandom_distribution=zipf:1.2\nnorandommap\niodepth=4\nrate_iops=400\nnumber_ios=%d\n' \
                $((400 * T)) ;;
    esac
}

run_workload ()
{
    local wl=$1 dir=$2 t_start rc=0
    mkdir -p "$dir"
    t_start=$(now)
    case $wl in
        seq|inter|zipf)
            fio_job "$wl" "$dir" > "$dir/job.fio"
            fio --output-format=json --output="$dir/fio.json" "$dir/job.fio" \
                >"$dir/fio.out" 2>&1 || rc=$?
            rm -f "$dir"/fio_clat.*.log "$dir"/fio_slat.*.log ;;
        wsrch)
            local -a targs=()
            [ "$WSRCH_SECONDS" != 0 ] && targs=(-t "$WSRCH_SECONDS")
            "$REPLAY" -s 2 "${targs[@]}" \
                -l "$dir/lat.1.log" "$tracedir/wsrch-small.trace" \
                "$(uri "$W/proxy.sock")" >"$dir/replay.out" 2>&1 || rc=$? ;;
        tpcc)
            "$REPLAY" -d all -s "$TPCC_SPEED" -l "$dir/lat.1.log" \
                "$tracedir/tpcc-small.trace" "$(uri "$W/proxy.sock")" \
                >"$dir/replay.out" 2>&1 || rc=$? ;;
        fs-tar)
            fs_mount
            tar -xOf "$W/mnt/src.tar" | wc -c > "$dir/bytes" || rc=$?
            fs_umount ;;
        fs-find)
            fs_mount
            (cd "$W/mnt" && find src -type f -exec md5sum {} + | wc -l) \
                > "$dir/files" || rc=$?
            fs_umount ;;
    esac
    printf '%s %s\n' "$t_start" "$(now)" > "$dir/window"
    [ $rc = 0 ] || { tail -20 "$dir"/*.out 2>/dev/null >&2; die "workload $wl failed ($rc)"; }
}

image_for () { case $1 in fs-*) echo "$W/fs.img" ;; *) echo "$W/data.img" ;; esac; }

# run_one WL POLICY REP [REF]: a fresh shadow and filter, the workload,
# then wait until synced; with REF, run the workload again on the synced
# volume (every read from the shadow): the stall reference.
run_one ()
{
    local wl=$1 policy=$2 rep=$3 ref=${4:-} rd t0 synced=1 logfile=
    rd=$out/runs/$wl/$policy/$rep
    mkdir -p "$rd"
    start_shadow
    case $wl in fs-*) logfile=$rd/nbdkit-log.txt ;; esac
    echo "$(loadavg)" > "$rd/load_start"
    t0=$(now)
    start_proxy "$policy" "$(image_for "$wl")" "$rd" "$logfile"
    start_poller "$rd/status.log"
    run_workload "$wl" "$rd/main"
    if [ "$BACKGROUND" = on ]; then
        wait_synced "$rd/synced_at" || synced=0
    else
        : > "$rd/synced_at"; synced=0
    fi
    "$NBDSHADOW" status --json "$W/ctl.sock" > "$rd/final.json"
    printf '%s %s\n' "$t0" "$synced" > "$rd/t0"
    stop_poller
    if [ -n "$ref" ]; then
        run_workload "$wl" "$rd/ref"
    fi
    echo "$(loadavg)" > "$rd/load_end"
    kill_pidfile "$W/proxy.pid"
    kill_pidfile "$W/shadow.pid"
    say "$wl $policy #$rep: $(python3 "$here/e2e-analyze.py" --one "$rd")"
}

# The commit the build tree belongs to, and whether its sources differ.
build_tree ()
{
    local rc=0 head
    head=$(git -C "$builddir" rev-parse --short HEAD 2>/dev/null) ||
        { printf 'unknown (not in a git tree)'; return 0; }
    git -C "$builddir" diff --quiet HEAD -- :/server :/plugin :/predictor 2>/dev/null || rc=$?
    printf '%s%s' "$head" \
        "$([ $rc = 1 ] && echo ' (with uncommitted changes in server/ plugin/ predictor/)')"
    return 0
}

# ------------------------------------------------------------------------

{
    echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(free -g | awk '/^Mem:/ {print $2}') GiB"
    echo "kernel:  $(uname -r); $(nbdkit --version); $(fio --version); $(nbdfuse --version 2>&1 | head -1)"
    echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "load:    $(loadavg) (1, 5, 15 min) at start"
    echo "command: $0 $([ $quick = 1 ] && echo --quick) --repeat $repeat --workloads '$workloads' --policies '$policies' $builddir"
    echo "setup:   volume $((V >> 20)) MiB, 64 KiB blocks; origin rdelay=$RDELAY rate=$RATE bits/s burstiness=0.1; background $BACKGROUND${E2E_PARAMS:+; filter parameters: $E2E_PARAMS}${E2E_NBDKIT_OPTS:+; nbdkit options: $E2E_NBDKIT_OPTS}; workloads ~${T} s; origin images in $E2E_TMP, shadow in $SHADOW_TMP"
    echo "build:   filter built $(date -u -r "$FILTER" '+%H:%M UTC'), tree at $(build_tree)"
} | tee "$out/header.txt"

start=$(date +%s)
case " $workloads " in *" seq "*|*" inter "*|*" zipf "*|*" wsrch "*|*" tpcc "*) make_data_image ;; esac
case " $workloads " in *" fs-"*) make_fs_image ;; esac

for (( rep=1; rep<=repeat; rep++ )); do
    for wl in $workloads; do
        first=1
        # Rotate the policy order between repetitions so that a drift in
        # the machine's load does not always favour the same policy.
        set -- $policies
        for (( k=0; k<(rep-1)%$#; k++ )); do set -- "${@:2}" "$1"; done
        for policy in "$@"; do
            # The reference run rides on the "off" run of each repetition.
            if [ "$policy" = off ] || { [ $first = 1 ] && [[ " $policies " != *" off "* ]]; }; then
                run_one "$wl" "$policy" "$rep" ref
            else
                run_one "$wl" "$policy" "$rep"
            fi
            first=0
        done
    done
done

echo "load:    $(loadavg) (1, 5, 15 min) at the end; $(( $(date +%s) - start )) s in all" | tee -a "$out/header.txt"
python3 "$here/e2e-analyze.py" --plots "$plots" "$out" | tee "$out/summary.md"
