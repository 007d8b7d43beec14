#!/usr/bin/env bash
# The main job (`make run`, after `make install` put sheepd and sheepctl on PATH): start
# sheepd (if it is not running), create two containers on the default network, show
# their addresses and prove the first reaches its gateway and the second. Leaves the
# daemon and containers running.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "make run needs root (it creates namespaces and a bridge)"; exit 1; }
STATE_DIR=${SHEEP_STATE_DIR:-/var/lib/sheep}
RUN_DIR=${SHEEP_RUN_DIR:-/run/sheep}
export SHEEP_SOCKET=${SHEEP_SOCKET:-$RUN_DIR/sheep.sock}
BIN=${PREFIX:-/usr/local}/bin  # where `make install` linked the commands
mkdir -p "$STATE_DIR"

if ! $BIN/sheepctl version >/dev/null 2>&1; then
  echo "starting sheepd (log: $STATE_DIR/sheepd.log)"
  setsid $BIN/sheepd --state-dir "$STATE_DIR" --run-dir "$RUN_DIR" \
    >>"$STATE_DIR/sheepd.log" 2>&1 < /dev/null &
  for _ in $(seq 100); do $BIN/sheepctl version >/dev/null 2>&1 && break; sleep 0.1; done
fi
$BIN/sheepctl version >/dev/null || { tail -20 "$STATE_DIR/sheepd.log"; exit 1; }

field() { .venv/bin/python -c "import json,sys; c=json.load(sys.stdin); print($1)"; }
suffix=$(head -c3 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "+ sheepctl run -d --name demo-$suffix -- sleep infinity"
$BIN/sheepctl run -d --name "demo-$suffix" -- sleep infinity
$BIN/sheepctl run -d --name "peer-$suffix" -- sleep infinity >/dev/null
c=$($BIN/sheepctl inspect "demo-$suffix")
peer=$($BIN/sheepctl inspect "peer-$suffix")
id=$(field "c['id']" <<<"$c"); state=$(field "c['state']" <<<"$c"); pid=$(field "c['pid']" <<<"$c")
ip=$(field "c['networks'][0]['ip_address']" <<<"$c")
gw=$(field "c['networks'][0]['gateway']" <<<"$c")
netns=$(field "c['netns_path']" <<<"$c")
peer_ip=$(field "c['networks'][0]['ip_address']" <<<"$peer")
echo "container: id=$id state=$state pid=$pid address=$ip"
echo "+ ping the gateway $gw and the peer container $peer_ip from inside demo-$suffix"
nsenter --net="$netns" ping -c1 -W2 "$gw" | grep -E "bytes from|loss"
nsenter --net="$netns" ping -c1 -W2 "$peer_ip" | grep -E "bytes from|loss"
$BIN/sheepctl ps
echo
echo "sheepd is running (pid $(cat "$STATE_DIR/sheepd.lock")). Try: sheepctl --help"
echo "Remove the demo: sheepctl rm -f demo-$suffix peer-$suffix; stop the daemon: make stop"
