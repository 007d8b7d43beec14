#!/usr/bin/env bash
# The main job (`make run`, after `make install` put sheepd and sheepctl on PATH): start
# sheepd (if it is not running), import a `minimal` image (Debian's busybox-static, built
# here: nothing is downloaded), run two containers on it on the default network, show
# their addresses and prove the first reaches its gateway and the second. Leaves the
# daemon and containers running; running it again replaces the image and containers.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "make run needs root (it creates namespaces and a bridge)"; exit 1; }
STATE_DIR=${SHEEP_STATE_DIR:-/var/lib/sheep}
RUN_DIR=${SHEEP_RUN_DIR:-/run/sheep}
export SHEEP_SOCKET=${SHEEP_SOCKET:-$RUN_DIR/sheep.sock}
BIN=${PREFIX:-/usr/local}/bin  # where `make install` linked the commands
mkdir -p "$STATE_DIR"
scripts/apt-install.sh busybox-static

if ! $BIN/sheepctl version >/dev/null 2>&1; then
  echo "starting sheepd (log: $STATE_DIR/sheepd.log)"
  setsid $BIN/sheepd --state-dir "$STATE_DIR" --run-dir "$RUN_DIR" \
    >>"$STATE_DIR/sheepd.log" 2>&1 < /dev/null &
  for _ in $(seq 100); do $BIN/sheepctl version >/dev/null 2>&1 && break; sleep 0.1; done
fi
$BIN/sheepctl version >/dev/null || { tail -20 "$STATE_DIR/sheepd.log"; exit 1; }

# The `minimal` image: /bin/busybox and links to a few of its applets.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
chmod 1777 "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in sh sleep cat ls hostname; do ln -s busybox "$work/rootfs/bin/$applet"; done
tar -C "$work/rootfs" --owner=0 --group=0 -cf "$work/minimal.tar" .
echo "+ sheepctl image import minimal minimal.tar"
$BIN/sheepctl image import minimal "$work/minimal.tar" >/dev/null
$BIN/sheepctl images

# The containers of an earlier run go first: the names are fixed.
for name in net-test net-peer; do $BIN/sheepctl rm -f "$name" >/dev/null 2>&1 || true; done
field() { .venv/bin/python -c "import json,sys; c=json.load(sys.stdin); print($1)"; }
echo "+ sheepctl run --name net-test -d minimal /bin/sleep 3600"
$BIN/sheepctl run --name net-test -d minimal /bin/sleep 3600
$BIN/sheepctl run --name net-peer -d minimal /bin/sleep 3600 >/dev/null
c=$($BIN/sheepctl inspect net-test)
peer=$($BIN/sheepctl inspect net-peer)
id=$(field "c['id']" <<<"$c"); state=$(field "c['state']" <<<"$c"); pid=$(field "c['pid']" <<<"$c")
ip=$(field "c['networks'][0]['ip_address']" <<<"$c")
gw=$(field "c['networks'][0]['gateway']" <<<"$c")
netns=$(field "c['netns_path']" <<<"$c")
peer_ip=$(field "c['networks'][0]['ip_address']" <<<"$peer")
echo "container: id=$id state=$state pid=$pid address=$ip"
echo "+ ping the gateway $gw and the peer container $peer_ip from inside net-test"
nsenter --net="$netns" ping -c1 -W2 "$gw" | grep -E "bytes from|loss"
nsenter --net="$netns" ping -c1 -W2 "$peer_ip" | grep -E "bytes from|loss"
$BIN/sheepctl ps
echo
echo "sheepd is running (pid $(cat "$STATE_DIR/sheepd.lock")). Try: sheepctl --help"
echo "Remove the demo: sheepctl rm -f net-test net-peer; stop the daemon: make stop"
