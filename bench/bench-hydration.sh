#!/usr/bin/env bash
# bench-hydration.sh: hydration throughput of the shadow filter against
# nbdcopy, origin -> shadow, on the same servers in the same run.
#
# For each volume (dense: random data everywhere; sparse: 1 MiB of data
# every 2 MiB, the rest holes) the origin is `nbdkit file ORIGIN.img` on
# a Unix socket and the shadow a fresh sparse file served by nbdkit file
# (or qemu-nbd).  The two contenders run alternately, REPS times each:
#
#   filter   nbdkit -f --filter=shadow nbd socket=ORIGIN.sock \
#              shadow=SHADOW-URI shadow-state=DIR shadow-control=SOCK
#            (ORIGIN=file: `... --filter=shadow file ORIGIN.img`), no
#            client at all; the time is from launching nbdkit until the
#            phase becomes synced.  The transition's time is taken from
#            the filter's "synced:" notice on stderr, time-stamped as it
#            is written; the status JSON (`nbdshadow status --json`)
#            polled every 0.1 s gives a cross-check (the first poll that
#            sees phase synced).
#   nbdcopy  nbdcopy $NBDCOPY_FLAGS ORIGIN-URI SHADOW-URI (default: no
#            flags), wall time of the process.
#
# Before every run the shadow file is recreated empty, and with
# CACHE=cold (default) dirty data is synced and the page cache dropped
# (echo 3 > /proc/sys/vm/drop_caches: needs root); with CACHE=warm the
# origin file is read into the page cache first.  The first repetition of
# each contender is checked: the shadow must equal the origin (cmp).
#
# Prints one line per run and a table of medians with the ratio of
# throughputs filter/nbdcopy (target: >= 0.9).  Exits non-zero only on
# errors, not on a missed target.
#
# Environment:
#   BUILDDIR      build tree (default: _build-bench at the top of the source)
#   SIZE          volume size in bytes or with K/M/G suffix (default 4G)
#   REPS          repetitions of each contender (default 3)
#   VOLUMES       "dense sparse" (default both)
#   ORIGIN        nbd (default: the filter over the nbd plugin, as in real
#                 use) or file (the filter directly over the file plugin)
#   SHADOW        nbdkit (default), qemu-nbd, or null (diagnostic: nbdkit's
#                 null plugin discards the writes: no shadow storage cost)
#   CACHE         cold (default) or warm
#   NBDCOPY_FLAGS extra nbdcopy flags (default none)
#   FLUSH_TOO     1 (default): also run `nbdcopy --flush $NBDCOPY_FLAGS`
#                 ("nbdcopy-flush"), which like the filter makes the shadow
#                 durable (the filter commits -- flushes the shadow -- at
#                 least every second, DESIGN section 4); 0: not
#   SHADOW_PRE, SHADOW_POST  diagnostics: words before and after `file
#                 shadow.img` in the nbdkit shadow's command line, e.g.
#                 SHADOW_PRE=--filter=fua SHADOW_POST=fuamode=discard
#                 (flush becomes a no-op: no cost of durability)
#   FILTER_ARGS   extra filter parameters or nbdkit options (default none)
#   WARMUP        1 (default): one unmeasured nbdcopy run per volume first
#                 (the first run after writing the origin is slow on this
#                 kind of VM, whichever tool it is); 0: none
#   CANDIDATE     another build tree whose filter runs as a further contender
#                 in the same alternation (to measure a proposed change
#                 against the current build and nbdcopy in one run)
#   CANDIDATE_ENV VAR=VALUE words put in the candidate filter's environment;
#                 several variants separated by ";" run as candidate1,
#                 candidate2, ... (the same build, each with its variables);
#                 words shadow-KEY=VALUE are filter parameters instead, and
#                 words -DFLAG=N nbdkit debug flags, e.g.
#                 CANDIDATE_ENV='shadow-connections=1;-Dshadow.copier_workers=8'
#                 (bash >= 4.4, as Debian 12 has: empty arrays under set -u)
#   SHADOW_DIR    directory of the shadow's image (default: the scratch
#                 directory, on the same disk as the origin's).  A tmpfs
#                 such as /dev/shm stands for a shadow on other storage
#                 than the origin, as in a real migration: on one disk the
#                 shadow's writeback competes with the origin's reads
#   VERIFY        1 (default): cmp the first repetition of each; 0: never
#   TIMEOUT       seconds a filter run may take to sync (default 900)
set -eu
set -o pipefail

srcdir=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench-lib.sh
source "$srcdir/bench/bench-lib.sh"

size=$(to_bytes "${SIZE:-4G}")
reps=${REPS:-3}
volumes=${VOLUMES:-dense sparse}
origin_mode=${ORIGIN:-nbd}
shadow_mode=${SHADOW:-nbdkit}
cache=${CACHE:-cold}
nbdcopy_flags=${NBDCOPY_FLAGS:-}
flush_too=${FLUSH_TOO:-1}
filter_args=${FILTER_ARGS:-}
shadow_pre=${SHADOW_PRE:-}
shadow_post=${SHADOW_POST:-}
verify=${VERIFY:-1}
warmup=${WARMUP:-1}
timeout=${TIMEOUT:-900}

[ -f "$FILTER" ] || die "$FILTER not built (see bench/results-migrate.md)"
candidate=${CANDIDATE:-}
candidate_env=${CANDIDATE_ENV:-}
candidates=()
candidate_envs=()
if [ -n "$candidate" ]; then
    # Absolute: the servers run in the scratch directory.
    candidate=$(cd "$candidate" 2>/dev/null && pwd) ||
        die "CANDIDATE=$CANDIDATE: no such build tree"
    IFS=';' read -r -a candidate_envs <<< "$candidate_env"
    [ ${#candidate_envs[@]} -gt 0 ] || candidate_envs=("")
    # Index from 1: candidate1 has candidate_envs[1].
    candidate_envs=("" "${candidate_envs[@]}")
    for (( k=1; k<${#candidate_envs[@]}; k++ )); do candidates+=("candidate$k"); done
    CANDIDATE_FILTER=$candidate/plugin/.libs/nbdkit-shadow-filter.so
    [ -f "$CANDIDATE_FILTER" ] || die "$CANDIDATE_FILTER not built"
fi
[ -x "$NBDSHADOW" ] || die "$NBDSHADOW not built"
for t in nbdkit nbdcopy nbdinfo python3 openssl; do
    command -v $t >/dev/null || die "$t is missing"
done
[ "$shadow_mode" != qemu-nbd ] || command -v qemu-nbd >/dev/null ||
    die "qemu-nbd is missing"
case "$origin_mode" in nbd|file) ;; *) die "ORIGIN must be nbd or file" ;; esac
case "$shadow_mode" in nbdkit|qemu-nbd) ;; null) verify=0 ;;
    *) die "SHADOW must be nbdkit, qemu-nbd or null" ;; esac
case "$cache" in cold|warm) ;; *) die "CACHE must be cold or warm" ;; esac
[ $(( size % (2 * 1024 * 1024) )) = 0 ] || die "SIZE must be a multiple of 2 MiB"

bench_scratch "$size"
if [ -n "${SHADOW_DIR:-}" ]; then
    [ -d "$SHADOW_DIR" ] || die "SHADOW_DIR=$SHADOW_DIR is not a directory"
    shadow_img=$(mktemp "$SHADOW_DIR/nbdshadow-bench-shadow.XXXXXX")
    cleanup_shadow_img () { local st=$?; rm -f "$shadow_img"; (exit $st); _bench_cleanup; }
    trap cleanup_shadow_img EXIT
else
    shadow_img=$dir/shadow.img
fi
if [ "$cache" = cold ] || [ "$cache" = warm ]; then
    sync
    echo 3 2>/dev/null > /proc/sys/vm/drop_caches ||
        die "cannot drop the page cache (echo 3 > /proc/sys/vm/drop_caches needs root)"
fi

start_shadow ()
{
    rm -f "$shadow_img" shadow.sock
    truncate -s "$size" "$shadow_img"
    if [ "$shadow_mode" = qemu-nbd ]; then
        # -t: persistent, so that it outlives the filter's probe
        # connection (qemu-nbd serves one client at a time by default).
        qemu-nbd -t -k "$dir/shadow.sock" -f raw "$shadow_img" >shadow.log 2>&1 &
        shadow_pid=$!
        pids+=("$shadow_pid")
        wait_serving shadow "$shadow_pid"
    elif [ "$shadow_mode" = null ]; then
        start_nbdkit shadow null "$size"
        shadow_pid=$last_pid
    else
        # shellcheck disable=SC2086
        start_nbdkit shadow $shadow_pre file "$shadow_img" $shadow_post
        shadow_pid=$last_pid
    fi
}

# Page cache: the same conditions before every run.
prepare_cache ()
{
    sync
    echo 3 > /proc/sys/vm/drop_caches
    if [ "$cache" = warm ]; then
        cat origin.img > /dev/null
    fi
}

# cpu_s PID: user+system CPU seconds of a live process.
cpu_s ()
{
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}

# minflt PID: minor page faults of a live process so far (each a page
# the kernel mapped, and for fresh memory zeroed, on first touch).
minflt () { awk '{ print $10 }' "/proc/$1/stat"; }

make_volume ()
{
    rm -f origin.img
    case "$1" in
        dense)
            # A keystream: incompressible, no zero blocks, fast.  openssl
            # dies of SIGPIPE when head has enough.
            ( set +o pipefail
              openssl enc -aes-128-ctr -nosalt -pass pass:nbdshadow-bench \
                  -pbkdf2 -in /dev/zero 2>/dev/null | head -c "$size" > origin.img )
            ;;
        sparse)
            # 1 MiB of data every 2 MiB; the rest holes.
            truncate -s "$size" origin.img
            python3 - "$size" <<'PY'
import os, sys
size = int(sys.argv[1])
mib = 1 << 20
with open("origin.img", "r+b") as f:
    for off in range(0, size, 2 * mib):
        f.seek(off)
        f.write(os.urandom(mib))
PY
            ;;
    esac
    [ "$(stat -c %s origin.img)" = "$size" ] || die "origin.img has the wrong size"
}

check_copy ()
{
    stop "$shadow_pid"
    cmp origin.img "$shadow_img" >/dev/null || die "$1: the shadow differs from the origin"
    echo "    (checked: shadow == origin)"
}

results=results.txt
: > $results

# servers_cpu: servers_line says what the origin's nbdkit spent since
# origin_cpu0 and what the shadow's server spent since it started (the
# servers' cost of serving each contender: the same copy can cost them
# more CPU with one request size than another).
servers_cpu ()
{
    servers_line="servers' CPU: origin $(awk -v a="$(cpu_s "$origin_pid")" \
        -v b="$origin_cpu0" 'BEGIN { printf "%.2f", a - b }') s, shadow $(cpu_s "$shadow_pid") s"
}

# run_filter VOLUME REP [candidateN]
run_filter ()
{
    local vol=$1 rep=$2 who=${3:-filter} ctl=$dir/proxy.ctl t0 t_poll="" t_note fpid out
    local i cpu=0 faults=0 la json so=$FILTER envs=()
    case "$who" in
        candidate*)
            so=$CANDIDATE_FILTER
            # shellcheck disable=SC2206
            envs=(${candidate_envs[${who#candidate}]}) ;;
    esac
    # shadow-KEY=VALUE words are the candidate's filter parameters.
    local w params=() opts=() env_words=()
    for w in "${envs[@]}"; do
        case "$w" in
            shadow-*=*) params+=("$w") ;;
            -D*) opts+=("$w") ;;
            *) env_words+=("$w") ;;
        esac
    done
    start_shadow
    rm -rf state proxy.sock proxy.log
    mkdir state
    if [ "$origin_mode" = nbd ]; then
        plugin=(nbd socket="$dir/origin.sock")
    else
        plugin=(file origin.img)
    fi
    prepare_cache
    la=$(loadavg)
    origin_cpu0=$(cpu_s "$origin_pid")
    t0=$EPOCHREALTIME
    # shellcheck disable=SC2086
    env "${env_words[@]}" nbdkit -f "${opts[@]}" -U "$dir/proxy.sock" --filter="$so" "${plugin[@]}" \
        shadow="$(uri shadow)" shadow-state="$dir/state" \
        shadow-control="$ctl" $filter_args "${params[@]}" \
        2> >(while IFS= read -r l; do
                 printf '%s %s\n' "$EPOCHREALTIME" "$l"
             done > proxy.log) &
    fpid=$!
    pids+=("$fpid")
    for (( i=0; i<timeout*10; i++ )); do
        if out=$("$NBDSHADOW" status --json "$ctl" 2>/dev/null); then
            case "$out" in
                *'"phase": "synced"'*|*'"phase": "cutover"'*|*'"phase": "done"'*)
                    t_poll=$EPOCHREALTIME
                    cpu=$(cpu_s "$fpid")
                    faults=$(minflt "$fpid")
                    servers_cpu
                    json=$out
                    break ;;
            esac
        fi
        kill -0 "$fpid" 2>/dev/null || { cat proxy.log >&2; die "the filter exited"; }
        sleep 0.1
    done
    [ -n "$t_poll" ] || { cat proxy.log >&2; die "not synced within $timeout s"; }
    stop "$fpid"
    t_note=$(sed -n 's/^\([0-9.]*\) .*synced: every block is on the shadow.*/\1/p' proxy.log | head -1)
    [ -n "$t_note" ] || { cat proxy.log >&2; die "no synced notice in the filter's log"; }
    python3 - "$who" "$vol" "$rep" "$t0" "$t_note" "$t_poll" "$cpu" "$size" "$la" "$json" >> $results <<'PY'
import json, sys
who, vol, rep, t0, tn, tp, cpu, size, la, js = sys.argv[1:]
t0, tn, tp, cpu, size = float(t0), float(tn), float(tp), float(cpu), int(size)
d = json.loads(js)
bc = d["bytes_copied"]
print(who, vol, rep, "%.3f" % (tn - t0), "%.3f" % (tp - t0), "%.2f" % cpu,
      bc["background"], d["copier"]["transfers"], d["copier"]["zero_transfers"],
      d["commits"]["count"], la.replace(" ", "/"))
PY
    tail -1 $results | awk -v s="$size" '{ printf "  %-13s %-6s rep %d: synced after %.2f s (poll %.2f s) = %.0f MiB/s, filter CPU %.1f s, %s bytes copied in %s transfers (%s zero), %s commits, load %s\n", $1, $2, $3, $4, $5, s / $4 / 1048576, $6, $7, $8, $9, $10, $11 }'
    echo "    $servers_line; filter's minor page faults: $faults"
    if [ "$verify" = 1 ] && [ "$rep" = 1 ]; then check_copy "$who $vol"; else stop "$shadow_pid"; fi
    rm -rf state "$shadow_img"
}

# run_nbdcopy VOLUME REP [flush]
run_nbdcopy ()
{
    local vol=$1 rep=$2 la t who=nbdcopy flags=$nbdcopy_flags
    if [ "${3:-}" = flush ]; then
        who=nbdcopy-flush
        flags="--flush $flags"
    fi
    start_shadow
    prepare_cache
    la=$(loadavg)
    origin_cpu0=$(cpu_s "$origin_pid")
    # shellcheck disable=SC2086
    t=$( { TIMEFORMAT='%R %U %S'; time nbdcopy $flags "$(uri origin)" \
              "$(uri shadow)" >nbdcopy.log 2>&1; } 2>&1 ) ||
        { cat nbdcopy.log >&2; die "nbdcopy failed"; }
    servers_cpu
    set -- $vol $rep $t
    echo "$who $1 $2 $3 $3 $(awk -v u="$4" -v s="$5" 'BEGIN { print u + s }') - - - - ${la// //}" >> $results
    tail -1 $results | awk -v s="$size" '{ printf "  %-13s %-6s rep %d: %.2f s = %.0f MiB/s, nbdcopy CPU %.1f s, load %s\n", $1, $2, $3, $4, s / $4 / 1048576, $6, $11 }'
    echo "    $servers_line"
    if [ "$verify" = 1 ] && [ "$rep" = 1 ]; then check_copy "$who $vol"; else stop "$shadow_pid"; fi
    rm -f "$shadow_img"
}

echo "# bench-hydration: $(( size / 1048576 )) MiB volumes, $reps repetitions," \
     "origin=$origin_mode shadow=$shadow_mode cache=$cache" \
     "nbdcopy flags='${nbdcopy_flags}' filter args='${filter_args}'" \
     "${shadow_pre:+shadow pre='$shadow_pre'} ${shadow_post:+shadow post='$shadow_post'}" \
     "${SHADOW_DIR:+shadow image in $SHADOW_DIR}" \
     "${candidate:+candidates from $candidate}"
for (( k=1; k<${#candidate_envs[@]}; k++ )); do
    echo "#   candidate$k: env and parameters '${candidate_envs[$k]}'"
done
machine_line
echo "# nbdkit $(nbdkit --version | cut -d' ' -f2), $(nbdcopy --version | head -1)," \
     "load at start $(loadavg)"

for vol in $volumes; do
    case "$vol" in dense|sparse) ;; *) die "unknown volume $vol" ;; esac
    echo "== $vol: creating the origin"
    make_volume "$vol"
    echo "   origin: $(du -h origin.img | cut -f1) allocated of $(( size / 1048576 )) MiB"
    start_nbdkit origin file origin.img
    origin_pid=$last_pid
    if [ "$warmup" = 1 ]; then
        start_shadow
        prepare_cache
        nbdcopy "$(uri origin)" "$(uri shadow)" || die "nbdcopy failed (warm-up)"
        stop "$shadow_pid"
        rm -f "$shadow_img"
        echo "   (warm-up nbdcopy run done, not counted)"
    fi
    for (( rep=1; rep<=reps; rep++ )); do
        # Rotate the order, so that none always follows another.
        order=(filter nbdcopy "${candidates[@]}")
        [ "$flush_too" = 1 ] && order+=(nbdcopy-flush)
        n=${#order[@]}
        for (( k=0; k<n; k++ )); do
            c=${order[$(( (k + rep - 1) % n ))]}
            case $c in
                filter) run_filter "$vol" "$rep" ;;
                candidate*) run_filter "$vol" "$rep" "$c" ;;
                nbdcopy) run_nbdcopy "$vol" "$rep" ;;
                nbdcopy-flush) run_nbdcopy "$vol" "$rep" flush ;;
            esac
        done
    done
    stop "$origin_pid"
    rm -f origin.img
done

echo
echo "## Medians ($reps runs each; throughput = volume size / time; load at end $(loadavg))"
echo
python3 - "$size" "$results" <<'PY'
import statistics, sys
size = int(sys.argv[1])
runs = {}
for line in open(sys.argv[2]):
    f = line.split()
    runs.setdefault((f[0], f[1]), []).append((float(f[3]), float(f[5])))
print("| volume | contender | median s | MiB/s | CPU s | runs (s) | ratio to nbdcopy throughput | target >= 0.9 | ratio to nbdcopy --flush |")
print("|---|---|---|---|---|---|---|---|---|")
for vol in ("dense", "sparse"):
    if ("nbdcopy", vol) not in runs:
        continue
    nt = statistics.median(t for t, _ in runs[("nbdcopy", vol)])
    ft = statistics.median(t for t, _ in runs[("nbdcopy-flush", vol)]) \
        if ("nbdcopy-flush", vol) in runs else None
    whos = ["filter"] + sorted({w for w, v in runs if w.startswith("candidate")}) + ["nbdcopy", "nbdcopy-flush"]
    for who in whos:
        if (who, vol) not in runs:
            continue
        r = runs[(who, vol)]
        t = statistics.median(x for x, _ in r)
        c = statistics.median(x for _, x in r)
        ratio = nt / t
        filt = who == "filter" or who.startswith("candidate")
        print("| %s | %s | %.2f | %.0f | %.1f | %s | %s | %s | %s |" % (
            vol, who, t, size / t / 2**20, c, " ".join("%.1f" % x for x, _ in r),
            "%.2f" % ratio, ("met" if ratio >= 0.9 else "MISSED") if filt else "",
            "%.2f" % (ft / t) if ft and filt else ""))
PY
