"""Daemon configuration: command-line flags, each with an environment override."""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from sheep_runtime import __version__

DEFAULT_NETWORK = "sheep0"

#: Why `--listen` alone is refused, and what to do instead.
LISTEN_NEEDS_TLS = (
    "--listen serves the API over TCP with mutual TLS only: give --tls-cert and --tls-key "
    "(the server's certificate and key) and --tls-client-ca (the CA that signs the "
    "clients' certificates), or SHEEP_TLS_CERT, SHEEP_TLS_KEY and SHEEP_TLS_CLIENT_CA; "
    "the README's \"Security model\" shows how to make them with openssl")


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of the TCP listener: its certificate chain and key, and the CA bundle
    that client certificates must chain to."""

    cert: Path
    key: Path
    client_ca: Path


@dataclass(frozen=True)
class ClusterFlags:
    """Cluster mode (`--cluster-etcd`): how this node joins the etcd-coordinated
    cluster network."""

    etcd: tuple[str, ...]
    node_name: str
    underlay_address: str  # "" = the source address of the route to the first endpoint
    network: IPv4Network
    subnet_len: int
    backend: str
    vni: int = 42
    port: int = 4789
    reconcile_seconds: float = 30.0  # full reconcile of etcd against the kernel
    etcd_cacert: Path | None = None
    etcd_cert: Path | None = None
    etcd_key: Path | None = None


@dataclass(frozen=True)
class Config:
    """Everything `sheepd` needs to know at start."""

    state_dir: Path
    run_dir: Path
    socket: Path
    listen: str
    metrics_addr: str
    log_level: str
    log_format: str
    default_bridge: str
    default_subnet: IPv4Network
    default_subnet6: IPv6Network | None = None  # dual stack for the default network
    # MTU of the default network; None: 1500. Cluster mode sets the overlay's.
    default_mtu: int | None = None
    tls: TLSFiles | None = None  # set exactly when `listen` is
    socket_group: str = ""  # group that may use the socket (mode 0660), or none (0600)
    cni_socket: Path | None = None  # the CNI plugin's socket (mode 0600), or no CNI
    cluster: ClusterFlags | None = None  # cluster mode, or single host
    # Upstream DNS resolvers as "IP" or "IP:PORT"; none: the host's /etc/resolv.conf
    dns_upstreams: tuple[str, ...] = ()

    @property
    def db_path(self) -> Path:
        return self.state_dir / "sheep.db"

    @property
    def lock_path(self) -> Path:
        return self.state_dir / "sheepd.lock"

    @property
    def containers_dir(self) -> Path:
        return self.state_dir / "containers"

    @property
    def netns_dir(self) -> Path:
        return self.run_dir / "netns"


def _env(name: str, default: str) -> str:
    return os.environ.get(f"SHEEP_{name}", default)


def parse_args(argv: Sequence[str] | None = None) -> Config:
    """Build a Config from flags; every flag defaults to its SHEEP_* variable."""
    p = argparse.ArgumentParser(prog="sheepd", description="sheep-runtime daemon")
    p.add_argument("--version", action="version", version=f"sheepd {__version__}")
    p.add_argument("--state-dir", default=_env("STATE_DIR", "/var/lib/sheep"),
                   help="SQLite state and container logs (SHEEP_STATE_DIR)")
    p.add_argument("--run-dir", default=_env("RUN_DIR", "/run/sheep"),
                   help="socket and pinned namespaces (SHEEP_RUN_DIR)")
    p.add_argument("--socket", default=_env("SOCKET", ""),
                   help="API Unix socket, mode 0600 (SHEEP_SOCKET; default RUN_DIR/sheep.sock)")
    _add_api_flags(p)
    p.add_argument("--cni-socket", default=os.environ.get("SHEEP_CNI_SOCKET"),
                   help="Unix socket of the CNI plugin, mode 0600, empty to disable "
                        "(SHEEP_CNI_SOCKET; default RUN_DIR/cni.sock)")
    p.add_argument("--metrics-addr", default=_env("METRICS_ADDR", "127.0.0.1:9464"),
                   help="Prometheus endpoint HOST:PORT, empty to disable (SHEEP_METRICS_ADDR)")
    p.add_argument("--log-level", default=_env("LOG_LEVEL", "info"),
                   choices=["debug", "info", "warning", "error"], help="(SHEEP_LOG_LEVEL)")
    p.add_argument("--log-format", default=_env("LOG_FORMAT", "text"),
                   choices=["text", "json"], help="(SHEEP_LOG_FORMAT)")
    p.add_argument("--bridge", default=_env("BRIDGE", DEFAULT_NETWORK),
                   help="bridge of the default network sheep0 (SHEEP_BRIDGE)")
    p.add_argument("--default-subnet", default=_env("DEFAULT_SUBNET", "10.20.0.0/16"),
                   help="subnet of the default network (SHEEP_DEFAULT_SUBNET)")
    p.add_argument("--default-subnet6", default=_env("DEFAULT_SUBNET6", ""),
                   help="IPv6 subnet (/64 to /120) that makes the default network dual "
                        "stack when it is first created, e.g. fd00:20::/64; empty: IPv4 "
                        "only (SHEEP_DEFAULT_SUBNET6)")
    p.add_argument("--dns-upstream", default=_env("DNS_UPSTREAM", ""),
                   help="comma-separated upstream resolvers (IP or IP:PORT) for names that "
                        "are not containers' (SHEEP_DNS_UPSTREAM; default: the host's "
                        "/etc/resolv.conf)")
    _add_cluster_flags(p)
    a = p.parse_args(argv)
    tls = _listen_tls(p, a)
    cluster = _cluster_flags(p, a)
    run_dir = Path(a.run_dir)
    return Config(
        state_dir=Path(a.state_dir),
        run_dir=run_dir,
        socket=Path(a.socket) if a.socket else run_dir / "sheep.sock",
        listen=a.listen,
        metrics_addr=a.metrics_addr,
        log_level=a.log_level,
        log_format=a.log_format,
        default_bridge=a.bridge,
        default_subnet=IPv4Network(a.default_subnet),
        default_subnet6=_subnet6(p, a.default_subnet6),
        tls=tls,
        socket_group=a.socket_group,
        cni_socket=(run_dir / "cni.sock" if a.cni_socket is None
                    else Path(a.cni_socket) if a.cni_socket else None),
        cluster=cluster,
        dns_upstreams=tuple(u.strip() for u in a.dns_upstream.split(",") if u.strip()),
    )


def _subnet6(p: argparse.ArgumentParser, text: str) -> IPv6Network | None:
    if not text:
        return None
    try:
        net = IPv6Network(text)
    except ValueError as e:
        p.error(f"--default-subnet6: {e}")
    if not 64 <= net.prefixlen <= 120:
        p.error(f"--default-subnet6: {net} must be a /64 to /120")
    return net


def _add_api_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("remote API (mutual TLS only) and socket access")
    g.add_argument("--listen", default=_env("LISTEN", ""),
                   help="optional TCP listener such as 127.0.0.1:50051, mutual TLS only "
                        "(SHEEP_LISTEN)")
    g.add_argument("--tls-cert", default=_env("TLS_CERT", ""),
                   help="PEM certificate chain of the --listen server (SHEEP_TLS_CERT)")
    g.add_argument("--tls-key", default=_env("TLS_KEY", ""),
                   help="PEM private key of --tls-cert (SHEEP_TLS_KEY)")
    g.add_argument("--tls-client-ca", default=_env("TLS_CLIENT_CA", ""),
                   help="PEM CA bundle that client certificates must chain to "
                        "(SHEEP_TLS_CLIENT_CA)")
    g.add_argument("--socket-group", default=_env("SOCKET_GROUP", ""),
                   help="group given the socket, mode 0660: its members are root-equivalent "
                        "(SHEEP_SOCKET_GROUP)")


def _listen_tls(p: argparse.ArgumentParser, a: argparse.Namespace) -> TLSFiles | None:
    """The TLS files of `--listen`; a listener without all three, or TLS files without
    a listener, is a usage error (exit 2)."""
    given = {"--tls-cert": a.tls_cert, "--tls-key": a.tls_key,
             "--tls-client-ca": a.tls_client_ca}
    if not a.listen:
        if any(given.values()):
            p.error("--tls-cert, --tls-key and --tls-client-ca are for --listen, "
                    "which is not set")
        return None
    missing = [flag for flag, value in given.items() if not value]
    if missing:
        p.error(f"{LISTEN_NEEDS_TLS} (missing: {', '.join(missing)})")
    return TLSFiles(cert=Path(a.tls_cert), key=Path(a.tls_key),
                    client_ca=Path(a.tls_client_ca))


def _add_cluster_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cluster mode")
    g.add_argument("--cluster-etcd", default=_env("CLUSTER_ETCD", ""),
                   help="etcd endpoints URL[,URL]: turns cluster mode on (SHEEP_CLUSTER_ETCD)")
    g.add_argument("--node-name", default=_env("NODE_NAME", socket.gethostname()),
                   help="this node's name in the cluster (SHEEP_NODE_NAME; default: hostname)")
    g.add_argument("--underlay-address", default=_env("UNDERLAY_ADDRESS", ""),
                   help="address peers reach this host at (SHEEP_UNDERLAY_ADDRESS; default: "
                        "the source address of the route to the first etcd endpoint)")
    g.add_argument("--cluster-network", default=_env("CLUSTER_NETWORK", "10.20.0.0/16"),
                   help="the cluster's container network (SHEEP_CLUSTER_NETWORK)")
    g.add_argument("--cluster-subnet-len", type=int,
                   default=int(_env("CLUSTER_SUBNET_LEN", "24")),
                   help="prefix length of each node's slice (SHEEP_CLUSTER_SUBNET_LEN)")
    g.add_argument("--cluster-backend", default=_env("CLUSTER_BACKEND", "vxlan"),
                   choices=["vxlan", "host-gw"], help="(SHEEP_CLUSTER_BACKEND)")
    g.add_argument("--cluster-vni", type=int, default=int(_env("CLUSTER_VNI", "42")),
                   help="VXLAN network identifier (SHEEP_CLUSTER_VNI)")
    g.add_argument("--cluster-port", type=int, default=int(_env("CLUSTER_PORT", "4789")),
                   help="VXLAN UDP port (SHEEP_CLUSTER_PORT)")
    g.add_argument("--cluster-reconcile-seconds", type=float,
                   default=float(_env("CLUSTER_RECONCILE_SECONDS", "30")),
                   help="period of the full reconcile of etcd against the kernel "
                        "(SHEEP_CLUSTER_RECONCILE_SECONDS)")
    for name in ("cacert", "cert", "key"):
        g.add_argument(f"--etcd-{name}", default=_env(f"ETCD_{name.upper()}", ""),
                       help=f"PEM {name} for etcd's TLS (SHEEP_ETCD_{name.upper()})")


def _cluster_flags(p: argparse.ArgumentParser, a: argparse.Namespace) -> ClusterFlags | None:
    if not a.cluster_etcd:
        return None
    try:
        network = IPv4Network(a.cluster_network)
    except ValueError as e:
        p.error(f"--cluster-network: {e}")
    if not network.prefixlen < a.cluster_subnet_len <= 30:
        p.error(f"--cluster-subnet-len {a.cluster_subnet_len} does not fit in {network}")
    if bool(a.etcd_cert) != bool(a.etcd_key):
        p.error("--etcd-cert and --etcd-key go together")
    if not 1 <= a.cluster_vni <= 0xFFFFFF or not 1 <= a.cluster_port <= 65535:
        p.error("--cluster-vni must be 1-16777215 and --cluster-port 1-65535")
    if a.cluster_reconcile_seconds <= 0:
        p.error("--cluster-reconcile-seconds must be positive")
    return ClusterFlags(
        etcd=tuple(u.strip() for u in a.cluster_etcd.split(",") if u.strip()),
        node_name=a.node_name, underlay_address=a.underlay_address, network=network,
        subnet_len=a.cluster_subnet_len, backend=a.cluster_backend, vni=a.cluster_vni,
        port=a.cluster_port, reconcile_seconds=a.cluster_reconcile_seconds,
        etcd_cacert=Path(a.etcd_cacert) if a.etcd_cacert else None,
        etcd_cert=Path(a.etcd_cert) if a.etcd_cert else None,
        etcd_key=Path(a.etcd_key) if a.etcd_key else None)
