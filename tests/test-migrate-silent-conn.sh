#!/usr/bin/env bash
# A shadow server that accepts a connection but never finishes its
# handshake (here: a proxy that serves one connection at a time and
# leaves any other one silent, neither greeting nor closing it).  Each
# attempt is abandoned after 10 s (HANDSHAKE_TIMEOUT), so start-up gives
# the silent connection up and goes on with the one that works; the
# engine used to wait on the silent one forever and never serve.
source "${abs_top_srcdir}/tests/functions.sh"
requires python3 --version

size=$((16 * 1024 * 1024))
ctl=$TESTDIR/proxy.ctl
random_file origin.img $size
truncate -s $size shadow.img
start_nbdkit shadow file shadow.img

# The proxy relays a connection to the real shadow while no other
# relayed one is open; any other connection is held open in silence.
cat > silent-proxy.py <<'PY'
import os, socket, sys, threading
listen_path, target_path, log_path = sys.argv[1:4]
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
    server = socket.socket(socket.AF_UNIX)
    server.connect(target_path)
    t = threading.Thread(target=pump, args=(server, client), daemon=True)
    t.start()
    pump(client, server)
    t.join()
    client.close()
    server.close()
    with lock:
        relayed -= 1

listener = socket.socket(socket.AF_UNIX)
listener.bind(listen_path + ".tmp")
os.rename(listen_path + ".tmp", listen_path)
listener.listen(16)
while True:
    client, _ = listener.accept()
    with lock:
        silent = relayed > 0
        if not silent:
            relayed += 1
    if silent:
        held.append(client)
        log("held a connection in silence")
    else:
        log("relayed a connection")
        threading.Thread(target=relay, args=(client,), daemon=True).start()
PY
python3 silent-proxy.py $TESTDIR/silent.sock $TESTDIR/shadow.sock \
    silent.log &
proxy_pid=$!
cleanup_fn "kill $proxy_pid 2>/dev/null; wait $proxy_pid 2>/dev/null"
for (( i=0; i<100; i++ )); do
    [ -S silent.sock ] && break
    sleep 0.1
done
[ -S silent.sock ] || fail "the proxy did not start"

t0=$(date +%s)
start_filter proxy file origin.img shadow="$(uri $TESTDIR/silent.sock)" \
    shadow-control=$ctl shadow-state=$TESTDIR/state
t1=$(date +%s)
[ $(( t1 - t0 )) -le 40 ] || fail "start-up took $(( t1 - t0 )) s"
grep -q "held a connection in silence" silent.log ||
    fail "the proxy never held a connection: the test checks nothing"
wait_log proxy.log "no handshake within 10 s" 5
wait_log proxy.log "going on with 1 of 2 connections" 5
wait_synced proxy 60
stop_filter proxy
same_files origin.img shadow.img
