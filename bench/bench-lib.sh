# bench-lib.sh: what bench-hydration.sh and bench-latency.sh share --
# size parsing, a scratch directory with room for two volumes, the
# servers they start (each recorded in pids and stopped at exit, however
# the script ends), and waiting for a server to serve.  Sourced, not run.
#
# The sourcing script sets srcdir first, and calls bench_scratch SIZE
# before starting servers: it makes $dir, cds into it and sets the traps.
# Sourcing sets builddir (BUILDDIR or _build-bench, made absolute: the
# servers run in the scratch directory), FILTER and NBDSHADOW.

die ()
{
    echo "$0: error: $*" >&2
    exit 1
}

builddir=$(cd "${BUILDDIR:-$srcdir/_build-bench}" 2>/dev/null && pwd) ||
    die "build tree ${BUILDDIR:-$srcdir/_build-bench} not found"
FILTER=$builddir/plugin/.libs/nbdkit-shadow-filter.so
NBDSHADOW=$builddir/server/nbdshadow

# to_bytes SIZE: a size in bytes, or with a K, M or G suffix.
to_bytes ()
{
    local s=$1
    case "$s" in
        *[kK]) echo $(( ${s%?} * 1024 )) ;;
        *[mM]) echo $(( ${s%?} * 1024 * 1024 )) ;;
        *[gG]) echo $(( ${s%?} * 1024 * 1024 * 1024 )) ;;
        *) echo $(( s )) ;;
    esac
}

loadavg () { cut -d' ' -f1-3 /proc/loadavg; }
uri () { echo "nbd+unix:///?socket=$dir/$1.sock"; }

pids=()
_bench_cleanup ()
{
    local status=$? p i
    set +e
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null
    done
    for p in "${pids[@]}"; do
        for (( i=0; i<100; i++ )); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$p" 2>/dev/null
    done
    rm -rf "$dir"
    exit $status
}

# bench_scratch SIZE: a scratch directory with room for an origin and a
# shadow of SIZE bytes plus 1 GiB, removed at exit with every server.
bench_scratch ()
{
    local size=$1 avail
    dir=$(mktemp -d "${TMPDIR:-/tmp}/nbdshadow-bench.XXXXXX")
    avail=$(df -B1 --output=avail "$dir" | tail -1)
    [ "$avail" -gt $(( 2 * size + 1024 * 1024 * 1024 )) ] || {
        rm -rf "$dir"
        die "not enough room in $dir: $avail bytes free, need $(( 2 * size )) + 1 GiB"
    }
    trap _bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    cd "$dir"
}

# stop PID: stop one of our servers and wait for it.
stop ()
{
    local p=$1 i q
    kill "$p" 2>/dev/null || true
    for (( i=0; i<200; i++ )); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.05
    done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    local keep=()
    for q in "${pids[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
    pids=("${keep[@]}")
}

# wait_serving NAME PID: until NAME.sock answers, or die if PID exits.
wait_serving ()
{
    local i
    for (( i=0; i<300; i++ )); do
        nbdinfo --size "$(uri $1)" >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || { cat "$1.log" >&2; die "$1 exited at start-up"; }
        sleep 0.1
    done
    cat "$1.log" >&2
    die "$1 did not serve within 30 s"
}

# start_nbdkit NAME ARGS...: nbdkit in the foreground on NAME.sock, as a
# background job; sets last_pid.
start_nbdkit ()
{
    local name=$1; shift
    rm -f "$name.sock"
    nbdkit -f -U "$dir/$name.sock" "$@" >"$name.log" 2>&1 &
    last_pid=$!
    pids+=("$last_pid")
    wait_serving "$name" "$last_pid"
}

# machine_line: CPUs, kernel, date, commit.
machine_line ()
{
    echo "# $(nproc) CPUs ($(grep -m1 '^model name' /proc/cpuinfo | sed 's/.*: //')), $(uname -r)," \
         "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(cd "$srcdir" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
}
