"""Every Prometheus metric of the daemon, in one place.

Names use the `sheep_` prefix and base units; labels stay bounded (network, phase,
op, result, kind, state) and never carry a container id or an address.
"""

from __future__ import annotations

import platform

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

# 100 µs .. 10 s
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                   0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The daemon's metrics, registered in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.build_info = Info("sheep_build", "Version of sheepd and its libraries.",
                               registry=r)
        self._network_metrics(r)
        self._kernel_metrics(r)
        self._daemon_metrics(r)
        self._cluster_metrics(r)
        # Known label values are exported at 0 from the start, so that increase() and
        # rate() see the first event too.
        for kind in ("link", "bridge", "address", "firewall", "overlay"):
            self.repairs.labels(kind)
        for kind in ("veth", "bridge", "netns", "container_dir", "neighbour"):
            self.leaks_collected.labels(kind)
        for kind in ("exit_record", "netns_pin", "row"):
            self.recovery_errors.labels(kind)

    def _network_metrics(self, r: CollectorRegistry) -> None:
        self.setup_seconds = Histogram(
            "sheep_network_setup_duration_seconds",
            "Time to attach a container to a network, by phase.",
            ["network", "phase"], buckets=LATENCY_BUCKETS, registry=r)
        self.teardown_seconds = Histogram(
            "sheep_network_teardown_duration_seconds",
            "Time to detach a container from a network, by phase.",
            ["network", "phase"], buckets=LATENCY_BUCKETS, registry=r)
        self.container_start_seconds = Histogram(
            "sheep_container_start_duration_seconds",
            "Time from the create call to the container's process running.",
            buckets=LATENCY_BUCKETS, registry=r)
        self.container_restarts = Counter(
            "sheep_container_restarts_total",
            "Containers started again by their restart policy.", registry=r)
        self.leases_allocated = Gauge("sheep_ipam_leases_allocated",
                                      "Addresses leased now.", ["network"], registry=r)
        self.leases_capacity = Gauge("sheep_ipam_leases_capacity",
                                     "Addresses that can be leased.", ["network"], registry=r)
        self.allocations = Counter("sheep_ipam_allocations", "Addresses leased.",
                                   ["network"], registry=r)
        self.releases = Counter("sheep_ipam_releases", "Leases released.",
                                ["network"], registry=r)
        self.exhausted = Counter("sheep_ipam_exhausted",
                                 "Allocations refused because the pool was full.",
                                 ["network"], registry=r)
        self.reclaimed = Counter("sheep_ipam_reclaimed",
                                 "Leases of vanished containers reclaimed.",
                                 ["network"], registry=r)
        self.networks = Gauge("sheep_networks", "Networks defined.", registry=r)

    def _kernel_metrics(self, r: CollectorRegistry) -> None:
        self.netlink_events = Counter("sheep_netlink_events", "Netlink events received.",
                                      ["type"], registry=r)
        self.netlink_lag = Histogram("sheep_netlink_event_lag_seconds",
                                     "Delay between a netlink event and its processing.",
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.netlink_resyncs = Counter("sheep_netlink_resyncs",
                                       "Full resyncs after the event socket overflowed.",
                                       registry=r)
        self.repairs = Counter("sheep_repairs", "Repairs of state changed from outside.",
                               ["kind"], registry=r)
        self.leaks_collected = Counter("sheep_leaks_collected",
                                       "Leaked kernel objects or leases removed.", ["kind"],
                                       registry=r)

    def _daemon_metrics(self, r: CollectorRegistry) -> None:
        self.containers = Gauge("sheep_containers", "Containers by state.", ["state"],
                                registry=r)
        self.operations = Counter("sheep_operations", "API operations by result.",
                                  ["op", "result"], registry=r)
        self.events = Counter("sheep_events", "Events published, by type.", ["type"],
                              registry=r)
        self.teardown_errors = Counter(
            "sheep_teardown_errors", "Steps of a teardown that failed (the rest still ran).",
            ["step"], registry=r)
        self.recovery_errors = Counter(
            "sheep_recovery_errors", "Records recovery could not make sense of, by kind.",
            ["kind"], registry=r)
        self.loop_lag = Histogram(
            "sheep_event_loop_lag_seconds",
            "How late the event loop ran a callback scheduled 100 ms ahead.",
            buckets=LATENCY_BUCKETS, registry=r)
        self.loop_cpu_wait = Histogram(
            "sheep_event_loop_cpu_wait_seconds",
            "Per 100 ms of the loop-lag measure, how long the loop's thread was ready to "
            "run but had no CPU (the host's CPUs were busy, not the loop).",
            buckets=LATENCY_BUCKETS, registry=r)
        self.task_failures = Counter(
            "sheep_task_failures", "Background tasks that died of an unexpected error.",
            ["task"], registry=r)
        self.dns_queries = Counter(
            "sheep_dns_queries", "DNS queries answered, by query type and result "
            "(answered, nxdomain, forwarded, servfail, refused).", ["type", "result"],
            registry=r)
        self.dns_forward_seconds = Histogram(
            "sheep_dns_forward_duration_seconds",
            "Time for an upstream resolver to answer a forwarded query (cache misses).",
            buckets=LATENCY_BUCKETS, registry=r)
        self.dns_cache_hits = Counter("sheep_dns_cache_hits",
                                      "Forwarded queries answered from the cache.", registry=r)

    def _cluster_metrics(self, r: CollectorRegistry) -> None:
        self.cluster_peers = Gauge("sheep_cluster_peers",
                                   "Other nodes holding a subnet of the cluster network.",
                                   registry=r)
        self.etcd_requests = Counter("sheep_etcd_requests", "etcd requests, by operation.",
                                     ["op"], registry=r)
        self.etcd_errors = Counter("sheep_etcd_errors", "etcd requests that failed.",
                                   ["op"], registry=r)
        self.etcd_seconds = Histogram("sheep_etcd_request_duration_seconds",
                                      "Round trip of an etcd request, by operation.",
                                      ["op"], buckets=LATENCY_BUCKETS, registry=r)
        self.route_programming_seconds = Histogram(
            "sheep_cluster_route_programming_seconds",
            "Time from a peer's subnet record reaching this node to its routes, "
            "neighbour and FDB entry being in place.", buckets=LATENCY_BUCKETS, registry=r)

    def set_build_info(self, *, version: str, pyroute2: str) -> None:
        self.build_info.info({"version": version, "python": platform.python_version(),
                              "pyroute2": pyroute2})
