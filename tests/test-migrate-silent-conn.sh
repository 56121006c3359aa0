#!/usr/bin/env bash
# A shadow server that accepts connections but never finishes their
# handshake (here: a proxy that leaves them silent, neither greeting nor
# closing them).
#
# 1. It serves one connection at a time and holds any other one silent:
#    each attempt is abandoned after 10 s (HANDSHAKE_TIMEOUT), so
#    start-up gives the silent connection up and goes on with the one
#    that works; the engine used to wait on it forever and never serve.
# 2. It holds every connection silent: start-up fails within the
#    connect timeout (3 s here, -D shadow.connect_timeout_s), saying
#    why; the probe used to wait for ever.
# 3. A shadow that served goes silent when the filter reconnects: each
#    attempt waits twice as long as the one before (from 0.3 s here,
#    -D shadow.handshake_timeout_ms), the notice comes once per outage,
#    the wait starts again from 0.3 s once a connection was up, and the
#    migration completes when the shadow answers again.
source "${abs_top_srcdir}/tests/functions.sh"
requires python3 --version

size=$((16 * 1024 * 1024))
ctl=$TESTDIR/filter.ctl
random_file origin.img $size
truncate -s $size shadow.img
start_nbdkit shadow file shadow.img

# silent-proxy.py LISTEN TARGET LOG [all]: relays a connection to TARGET
# while no other relayed one is open (or never, with "all"); any other
# connection is held open in silence.
cat > silent-proxy.py <<'PY'
import os, socket, sys, threading
listen_path, target_path, log_path = sys.argv[1:4]
hold_all = sys.argv[4:] == ["all"]
lock = threading.Lock()
relayed = 0
held = []

def log(msg):
    with open(log_path, "a") as f:
        f.write(msg + "\n")

def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

def relay(client):
    global relayed
    try:
        server = socket.socket(socket.AF_UNIX)
        server.connect(target_path)
        t = threading.Thread(target=pump, args=(server, client), daemon=True)
        t.start()
        pump(client, server)
        t.join()
        server.close()
    except OSError as e:
        log("relay failed: %s" % e)
    finally:
        client.close()
        with lock:
            relayed -= 1

listener = socket.socket(socket.AF_UNIX)
listener.bind(listen_path + ".tmp")
listener.listen(16)
os.rename(listen_path + ".tmp", listen_path)
while True:
    client, _ = listener.accept()
    with lock:
        silent = hold_all or relayed > 0
        if not silent:
            relayed += 1
    if silent:
        held.append(client)
        log("held a connection in silence")
    else:
        log("relayed a connection")
        threading.Thread(target=relay, args=(client,), daemon=True).start()
PY

# start_proxy NAME [all]: the proxy on NAME.sock in front of the shadow.
start_proxy ()
{
    local i pid
    python3 silent-proxy.py $TESTDIR/$1.sock $TESTDIR/shadow.sock \
        $1.log ${2:-} &
    pid=$!
    echo $pid > $1.ppid
    cleanup_fn "kill $pid 2>/dev/null; wait $pid 2>/dev/null"
    for (( i=0; i<100; i++ )); do
        [ -S $1.sock ] && return 0
        sleep 0.1
    done
    fail "the proxy $1 did not start"
}

# 1. One connection answered, the other silent.
start_proxy silent
t0=$SECONDS
start_filter filter file origin.img shadow="$(uri $TESTDIR/silent.sock)" \
    shadow-control=$ctl shadow-state=$TESTDIR/state
(( SECONDS - t0 <= 40 )) || fail "start-up took $(( SECONDS - t0 )) s"
grep -q "held a connection in silence" silent.log ||
    fail "the proxy never held a connection: the test checks nothing"
wait_log filter.log "going on with 1 of 2 connections: another failed \(no handshake within 10 s\)" 5
wait_synced filter 60
stop_filter filter
same_files origin.img shadow.img

# 2. Nothing answered: start-up fails, and says why.
start_proxy mute all
t0=$SECONDS
if LD_PRELOAD=$SANITIZER_PRELOAD timeout 60 \
   nbdkit -f -U $TESTDIR/mute-filter.sock --filter="$FILTER" \
       -D shadow.connect_timeout_s=3 file origin.img \
       shadow="$(uri $TESTDIR/mute.sock)" shadow-state=$TESTDIR/state2 \
       > mute-filter.log 2>&1; then
    fail "the filter started with a shadow that never answers"
fi
(( SECONDS - t0 <= 15 )) ||
    fail "start-up took $(( SECONDS - t0 )) s to fail (connect timeout 3 s)"
grep -q "no handshake within 3 s" mute-filter.log || {
    cat mute-filter.log >&2
    fail "the filter did not say why it could not start"
}
check_sanitizer_log mute-filter.log

# 3. Silent reconnects.  The proxy is restarted on the same socket: held
#    silent, then relaying again.
stop_proxy ()
{
    local pid
    pid=$(cat $1.ppid)
    kill $pid && { wait $pid 2>/dev/null || true; }
    rm -f $1.sock
}
silent_notice="shadow $(uri $TESTDIR/flaky.sock): the server took a reconnect but gave no handshake within 0.3 s; retrying"
since=1                         # first line of filter3.log of this outage
news () { tail -n +$since filter3.log; }
waits ()                        # the waits logged in this outage, in order
{
    news | grep -oE "no handshake within [0-9.]+ s; the next attempt waits up to [0-9.]+ s" |
        awk '{ print $4 }' | tr '\n' ' '
}
wait_news ()                    # wait_news REGEX SECONDS
{
    local i
    for (( i=0; i<$2*10; i++ )); do
        news | grep -qE "$1" && return 0
        sleep 0.1
    done
    cat filter3.log >&2
    fail "filter3.log did not say /$1/ within $2 s"
}
outage ()                       # silent until 1.2 s was tried, then back
{
    since=$(( $(wc -l < filter3.log) + 1 ))
    stop_proxy flaky
    start_proxy flaky all
    wait_news "no handshake within 1.2 s; the next attempt waits up to 2.4 s" 30
    [ "$(news | grep -cF "$silent_notice")" = 1 ] || {
        cat filter3.log >&2
        fail "the silent reconnect notice came $(news | grep -cF "$silent_notice") times in one outage"
    }
    echo "handshake waits in this outage: $(waits)"
    [ "$(waits)" = "0.3 0.6 1.2 " ] ||
        fail "the handshake waits did not double from 0.3 s: $(waits)"
    stop_proxy flaky
    start_proxy flaky
    wait_news "reconnected" 30
}
start_proxy flaky
random_file origin3.img $size
rm -f shadow.img && truncate -s $size shadow.img
start_filter filter3 -v -D shadow.verbose=1 -D shadow.handshake_timeout_ms=300 \
    file origin3.img shadow="$(uri $TESTDIR/flaky.sock)" shadow-connections=1 \
    shadow-control=$TESTDIR/filter3.ctl shadow-state=$TESTDIR/state3 \
    shadow-rate=2M
outage
# The second outage starts from 0.3 s again: a connection was up.
outage
"$NBDSHADOW" rate 0 $TESTDIR/filter3.ctl >/dev/null
wait_synced filter3 60
stop_filter filter3
same_files origin3.img shadow.img
check_sanitizer_log filter3.log
