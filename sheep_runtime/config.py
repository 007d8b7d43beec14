"""Daemon configuration: command-line flags, each with an environment override."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path

DEFAULT_NETWORK = "sheep0"


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
    # Test-only: names of attach/create steps that fail on purpose (see ops/faults.py).
    faults: frozenset[str] = frozenset()

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
    p.add_argument("--state-dir", default=_env("STATE_DIR", "/var/lib/sheep"),
                   help="SQLite state and container logs (SHEEP_STATE_DIR)")
    p.add_argument("--run-dir", default=_env("RUN_DIR", "/run/sheep"),
                   help="socket and pinned namespaces (SHEEP_RUN_DIR)")
    p.add_argument("--socket", default=_env("SOCKET", ""),
                   help="API Unix socket, mode 0600 (SHEEP_SOCKET; default RUN_DIR/sheep.sock)")
    p.add_argument("--listen", default=_env("LISTEN", ""),
                   help="optional TCP listener such as 127.0.0.1:50051 (SHEEP_LISTEN)")
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
    a = p.parse_args(argv)
    run_dir = Path(a.run_dir)
    faults = frozenset(f for f in _env("FAULTS", "").split(",") if f)
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
        faults=faults,
    )
