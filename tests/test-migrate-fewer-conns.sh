#!/usr/bin/env bash
# A shadow that advertises multi-conn but takes one connection at a time
# (nbdkit's limit filter, limit=1): the filter asks for two by default,
# and the server refuses the second while the first is up.  Start-up
# goes on with the one connection (it used to retry the other for 60 s
# and then fail), says so, and the migration completes over it.
source "${abs_top_srcdir}/tests/functions.sh"
requires python3 --version
requires nbdkit --filter=limit null --version

size=$((16 * 1024 * 1024))
ctl=$TESTDIR/proxy.ctl
random_file origin.img $size
truncate -s $size shadow.img
# (No client of our own connects to it before the filter's probe: the
# limit would refuse the probe.  connections == 2 in the status below
# says that it advertised multi-conn.)
start_nbdkit shadow --filter=limit file shadow.img limit=1
t0=$(date +%s)
start_filter proxy file origin.img shadow="$(uri $TESTDIR/shadow.sock)" \
    shadow-control=$ctl shadow-state=$TESTDIR/state
t1=$(date +%s)
[ $(( t1 - t0 )) -le 20 ] || fail "start-up took $(( t1 - t0 )) s"
wait_log proxy.log "going on with 1 of 2 connections" 10
ctl_json $ctl | json_get errors.shadows.0 > shadow.json
python3 - <<'PY' || fail "connections in status: $(cat shadow.json)"
import json
s = json.load(open("shadow.json"))
assert s["connections"] == 2 and s["connections_up"] == 1, s
PY
wait_synced proxy 60
stop_filter proxy
same_files origin.img shadow.img
