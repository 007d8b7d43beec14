#!/usr/bin/env bash
# Prometheus (Debian's package) scraping a running sheepd, with the shipped alert rules.
#
#   scripts/observe.sh [start]  start it in the background, wait for the first scrape of
#                               sheepd, print the URL (`make observe`)
#   scripts/observe.sh run      the same in the foreground (exec: for a supervisor, a test)
#   scripts/observe.sh stop     stop the Prometheus that `start` started
#   scripts/observe.sh status   is it running, and is sheepd up for it
#
# Environment (defaults in brackets):
#   SHEEP_METRICS_ADDR  sheepd's --metrics-addr to scrape      [127.0.0.1:9464]
#   PROMETHEUS_ADDR     where Prometheus listens               [127.0.0.1:9090]
#   PROMETHEUS_DATA     its TSDB, config, log and pid file     [/var/tmp/sheep-prometheus]
#   SCRAPE_INTERVAL     scrape and rule evaluation interval    [15s]
#   NETNS               a pinned network namespace to run it in, e.g. a test sandbox's
#                       (sheepd's metrics address is then the one inside that netns)
# The dashboard (deploy/grafana/sheep-runtime.json) is imported into Grafana pointed at
# this Prometheus.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cmd="${1:-start}"
target="${SHEEP_METRICS_ADDR:-127.0.0.1:9464}"
listen="${PROMETHEUS_ADDR:-127.0.0.1:9090}"
data="${PROMETHEUS_DATA:-/var/tmp/sheep-prometheus}"
interval="${SCRAPE_INTERVAL:-15s}"
netns="${NETNS:-}"
pidfile="$data/prometheus.pid"
url="http://$listen"

die() { echo "observe: $*" >&2; exit 1; }

in_netns() {
  if [ -n "$netns" ]; then nsenter --net="$netns" -- "$@"; else "$@"; fi
}

# GET a URL (from inside NETNS if set) and print the body; fails on an HTTP error.
fetch() {
  in_netns python3 -c 'import sys, urllib.request
sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"
}

running() {
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

sheepd_up() {
  fetch "$url/api/v1/query?query=up%7Bjob%3D%22sheepd%22%7D%3D%3D1" 2>/dev/null \
    | grep -q '"result":\[{'
}

write_config() {
  mkdir -p "$data"
  sed -e "s|127\.0\.0\.1:9464|$target|" \
      -e "s|^\(  *\)scrape_interval: .*|\1scrape_interval: $interval|" \
      -e "s|^\(  *\)evaluation_interval: .*|\1evaluation_interval: $interval|" \
      -e "s|^\(  *\)scrape_timeout: .*|\1scrape_timeout: $interval|" \
      -e "s|^\(  *\)- alerts\.yml$|\1- $repo/deploy/prometheus/alerts.yml|" \
      "$repo/deploy/prometheus/prometheus.yml" > "$data/prometheus.yml"
  if command -v promtool >/dev/null; then
    promtool check config "$data/prometheus.yml" >/dev/null || die "bad config $data/prometheus.yml"
  fi
}

prometheus_argv=(prometheus --config.file="$data/prometheus.yml"
                 --storage.tsdb.path="$data/tsdb" --storage.tsdb.retention.time=7d
                 --web.listen-address="$listen")

case "$cmd" in
  run)
    command -v prometheus >/dev/null || die "prometheus is not installed (apt-get install prometheus)"
    write_config
    echo "observe: Prometheus on $url scraping sheepd at $target every $interval" >&2
    if [ -n "$netns" ]; then exec nsenter --net="$netns" -- "${prometheus_argv[@]}"; fi
    exec "${prometheus_argv[@]}"
    ;;
  start)
    command -v prometheus >/dev/null || die "prometheus is not installed (apt-get install prometheus)"
    running && { echo "observe: already running (pid $(cat "$pidfile")): $url"; exit 0; }
    fetch "http://$target/metrics" >/dev/null 2>&1 \
      || echo "observe: warning: no sheepd metrics at http://$target/metrics yet (make run?)" >&2
    write_config
    if [ -n "$netns" ]; then
      setsid nsenter --net="$netns" -- "${prometheus_argv[@]}" >"$data/prometheus.log" 2>&1 &
    else
      setsid "${prometheus_argv[@]}" >"$data/prometheus.log" 2>&1 &
    fi
    echo $! > "$pidfile"
    # The first scrape comes about 5 s after the start whatever the interval.
    for _ in $(seq 1 120); do
      running || die "prometheus exited; see $data/prometheus.log"
      sheepd_up && break
      sleep 0.5
    done
    sheepd_up || echo "observe: warning: sheepd not up for Prometheus yet (see $url/targets)" >&2
    echo "Prometheus: $url  (pid $(cat "$pidfile"), data and log in $data)"
    echo "  targets:  $url/targets    alerts: $url/alerts"
    echo "  try:      $url/graph?g0.expr=sheep_ipam_leases_allocated"
    echo "  Grafana:  import deploy/grafana/sheep-runtime.json with this Prometheus as data source"
    echo "  stop:     scripts/observe.sh stop"
    ;;
  stop)
    if running; then
      pid="$(cat "$pidfile")"
      kill "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      echo "observe: stopped Prometheus (pid $pid)"
    else
      echo "observe: not running"
    fi
    rm -f "$pidfile"
    ;;
  status)
    running || { echo "observe: not running"; exit 1; }
    if sheepd_up; then state="up"; else state="DOWN"; fi
    echo "observe: Prometheus $url (pid $(cat "$pidfile")); sheepd at $target is $state"
    ;;
  *)
    sed -n '2,20p' "$0" >&2; exit 2
    ;;
esac
