# nbdshadow test helpers, sourced by every tests/*.sh.
#
# Each test runs in its own temporary directory, starts real servers on
# Unix sockets there (nbdkit, qemu-nbd), and registers a cleanup that
# kills them and removes the directory on every exit path, as nbdkit's
# own tests do.  A tool the test needs and the machine lacks is a failure,
# never a skip: scripts/check installs everything.

set -e
set -u

: "${abs_top_builddir:?run the tests with make check}"
: "${abs_top_srcdir:?run the tests with make check}"
SANITIZER_PRELOAD=${SANITIZER_PRELOAD:-}
FILTER=$abs_top_builddir/plugin/.libs/nbdkit-shadow-filter.so

_cleanup_hooks=()
_cleanup ()
{
    local status=$?
    local i
    set +e
    for (( i=${#_cleanup_hooks[@]}-1; i>=0; i-- )); do
        eval "${_cleanup_hooks[$i]}"
    done
    exit $status
}
trap _cleanup EXIT INT TERM

# cleanup_fn CMD...: run CMD when the test exits, last registered first.
cleanup_fn ()
{
    _cleanup_hooks+=("$*")
}

fail ()
{
    local f
    echo "$0: FAIL: $*" >&2
    # The servers' last words, for whoever reads a CI log.
    for f in "${TESTDIR:-/nonexistent}"/*.log; do
        [ -f "$f" ] || continue
        echo "--- last lines of $f" >&2
        tail -15 "$f" >&2
    done
    exit 1
}

# requires CMD [ARGS]: the test cannot run without it: fail loudly.
requires ()
{
    if ! "$@" >/dev/null 2>&1; then
        fail "required tool missing or not working: '$*' (run scripts/check, which installs it)"
    fi
}

# A temporary directory for this test, removed at exit unless KEEP=1.
TESTDIR=$(mktemp -d "${TMPDIR:-/tmp}/nbdshadow-test.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then
    cleanup_fn "echo 'kept $TESTDIR'"
else
    cleanup_fn "rm -rf '$TESTDIR'"
fi
cd "$TESTDIR"

uri ()
{
    echo "nbd+unix:///?socket=$1"
}

# _wait_for_file FILE SECONDS
_wait_for_file ()
{
    local i
    for (( i=0; i<$2*10; i++ )); do
        [ -s "$1" ] && return 0
        sleep 0.1
    done
    return 1
}

# kill_pidfile PIDFILE: stop a server and wait until it has exited.
kill_pidfile ()
{
    local pid i
    [ -s "$1" ] || return 0
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || return 0
    for (( i=0; i<100; i++ )); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$1"; return 0; }
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$1"
}

# start_nbdkit NAME ARGS...: nbdkit serving on $TESTDIR/NAME.sock with
# pid file NAME.pid and log NAME.log (appended to across restarts); killed
# at exit.  In the foreground as a background job, so that a server that
# dies says why in its log.
start_nbdkit ()
{
    local name=$1; shift
    local pid i
    rm -f "$name.sock" "$name.pid"
    echo "--- $(date +%T.%N) nbdkit $*" >> "$name.log"
    nbdkit -f -U "$TESTDIR/$name.sock" -P "$TESTDIR/$name.pid" "$@" \
        >>"$name.log" 2>&1 &
    pid=$!
    cleanup_fn "kill_pidfile '$TESTDIR/$name.pid'"
    for (( i=0; i<300; i++ )); do
        [ -s "$name.pid" ] && [ -S "$name.sock" ] && return 0
        kill -0 $pid 2>/dev/null || { cat "$name.log" >&2; fail "nbdkit $name exited at start-up"; }
        sleep 0.1
    done
    cat "$name.log" >&2
    fail "nbdkit $name did not start within 30 s"
}

# start_filter NAME ARGS...: nbdkit with the shadow filter (and the
# sanitizer runtime preloaded in sanitizer builds).  ARGS are the plugin
# and its parameters followed by the filter's.
#
# It runs in the foreground (-f) as a background job, so that errors
# found after nbdkit's fork point (.after_fork) reach NAME.log instead of
# syslog.  Returns once it serves; fails if it dies first.
start_filter ()
{
    local name=$1; shift
    local pid
    rm -f "$name.sock" "$name.pid"
    LD_PRELOAD=$SANITIZER_PRELOAD \
    nbdkit -f -U "$TESTDIR/$name.sock" -P "$TESTDIR/$name.pid" \
        --filter="$FILTER" "$@" >>"$name.log" 2>&1 &
    pid=$!
    cleanup_fn "stop_filter '$name'"
    # A deadline, not a count of tries: each nbdinfo is bounded (a filter
    # that listens but never greets would hold it, and the test, forever)
    # and may take up to those 10 s.
    local deadline=$(( SECONDS + 60 ))
    while (( SECONDS < deadline )); do
        if [ -s "$name.pid" ] &&
           timeout 10 nbdinfo --size "$(uri "$TESTDIR/$name.sock")" >/dev/null 2>&1; then
            return 0
        fi
        kill -0 $pid 2>/dev/null || { cat "$name.log" >&2; fail "filter $name exited at start-up"; }
        sleep 0.1
    done
    cat "$name.log" >&2
    fail "filter $name did not start serving within 60 s"
}

# kill9_filter NAME: crash it (no cleanup, no final commit).
kill9_filter ()
{
    local pid
    [ -s "$TESTDIR/$1.pid" ] || return 0
    pid=$(cat "$TESTDIR/$1.pid")
    kill -9 "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    rm -f "$TESTDIR/$1.pid" "$TESTDIR/$1.sock"
}

# wait_no_clients SOCKET: until no client connection to SOCKET is open
# (30 s at most).  nbdkit closes a connection's contexts only if it is
# not quitting yet: a connection still in its last steps (a client just
# left; the filter's .finalize commits) when SIGTERM arrives never has
# them closed, and LeakSanitizer reports them.  So wait for clients to
# be gone before stopping a filter.  nbdkit 1.32 closes the socket
# before the contexts (free_connection), so a socket gone is not quite
# the end: a moment more covers that last step (CI saw the leak once).
wait_no_clients ()
{
    local i
    for (( i=0; i<300; i++ )); do
        if [ -z "$(ss -xHn state connected src "$1" 2>/dev/null)" ]; then
            sleep 0.2
            return 0
        fi
        sleep 0.1
    done
    echo "$0: warning: clients still connected to $1 after 30 s" >&2
}

# stop_filter NAME: stop it and fail if the sanitizers said anything.
stop_filter ()
{
    wait_no_clients "$TESTDIR/$1.sock"
    kill_pidfile "$TESTDIR/$1.pid"
    check_sanitizer_log "$TESTDIR/$1.log"
}

check_sanitizer_log ()
{
    if grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$1"; then
        cat "$1" >&2
        echo "$0: FAIL: sanitizer report in $1" >&2
        exit 1
    fi
}

# start_qemu_nbd NAME FILE [ARGS]: qemu-nbd with its default single
# client connection, persistent so that it outlives the filter's probe.
start_qemu_nbd ()
{
    local name=$1 file=$2; shift 2
    rm -f "$name.sock" "$name.pid"
    qemu-nbd -t -k "$TESTDIR/$name.sock" --pid-file="$TESTDIR/$name.pid" \
        -f raw "$@" "$file" >"$name.log" 2>&1 &
    _wait_for_file "$name.pid" 10 || { cat "$name.log" >&2; fail "qemu-nbd $name did not start"; }
    cleanup_fn "kill_pidfile '$TESTDIR/$name.pid'"
}

# status NAME: the filter's one-line status (the export description).
status ()
{
    nbdinfo "$(uri "$TESTDIR/$1.sock")" | sed -n 's/^[[:space:]]*description: //p'
}

# percent NAME: the resident percentage from the status line.
percent ()
{
    status "$1" | sed -n 's/^shadow: [a-z]* \([0-9.]*\)%.*/\1/p'
}

# wait_synced NAME SECONDS: until every block is resident.
wait_synced ()
{
    local i s
    for (( i=0; i<$2*10; i++ )); do
        s=$(status "$1")
        case "$s" in
            "shadow: synced"*|"shadow: cutover"*|"shadow: done"*) return 0 ;;
        esac
        sleep 0.1
    done
    fail "$1 not synced after $2 s: $s"
}

# random_file FILE SIZE: a file of random bytes.
random_file ()
{
    head -c "$2" /dev/urandom > "$1"
}

# same_files A B: byte-exact comparison, with the first difference shown.
same_files ()
{
    cmp "$1" "$2" || fail "$1 and $2 differ"
}

# The nbdshadow CLI and its JSON.
NBDSHADOW=$abs_top_builddir/server/nbdshadow

# jq-like: json_get PATH < JSON  (PATH like bytes_copied.total).
json_get ()
{
    python3 -c '
import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v[int(k)] if isinstance(v, list) else v[k]
print(json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else v)
' "$1"
}

# ctl_json SOCKET: the status JSON.
ctl_json ()
{
    "$NBDSHADOW" status --json "$1"
}

# The test filter of tests/volatile-filter.c (a write cache that kill -9
# loses), built by make check; requires_volatile fails if it is not.
VOLATILE_FILTER=$abs_top_builddir/tests/.libs/nbdkit-volatile-filter.so
requires_volatile ()
{
    [ -f "$VOLATILE_FILTER" ] ||
        fail "$VOLATILE_FILTER is missing (make check builds it)"
}

# wait_log FILE REGEX SECONDS: until FILE has a line matching the
# extended regular expression, or fail showing FILE.
wait_log ()
{
    local i
    for (( i=0; i<$3*10; i++ )); do
        grep -qE "$2" "$1" && return 0
        sleep 0.1
    done
    cat "$1" >&2
    fail "$1 did not say /$2/ within $3 s"
}

# wait_phase SOCKET PHASE SECONDS
wait_phase ()
{
    local i p
    for (( i=0; i<$3*10; i++ )); do
        p=$(ctl_json "$1" | json_get phase)
        [ "$p" = "$2" ] && return 0
        sleep 0.1
    done
    ctl_json "$1" >&2
    fail "phase $2 not reached within $3 s (phase $p)"
}
