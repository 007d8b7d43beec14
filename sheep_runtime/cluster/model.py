"""Plain types of cluster mode and their etcd encoding (flannel's JSON layout)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from sheep_runtime.errors import InvalidArgument

PREFIX = b"/sheep/"
CONFIG_KEY = b"/sheep/config"
SUBNETS = b"/sheep/subnets/"


@dataclass(frozen=True)
class ClusterConfig:
    """`/sheep/config`: what every node of the cluster must agree on."""

    network: IPv4Network
    subnet_len: int = 24
    backend: str = "vxlan"
    vni: int = 42
    port: int = 4789

    def __post_init__(self) -> None:
        if not self.network.prefixlen < self.subnet_len <= 30:
            raise InvalidArgument(f"subnet length /{self.subnet_len} does not fit in the "
                                  f"cluster network {self.network}", field="cluster_subnet_len")
        if self.backend not in ("vxlan", "host-gw"):
            raise InvalidArgument(f"unknown cluster backend {self.backend!r}",
                                  field="cluster_backend")

    def encode(self) -> bytes:
        return json.dumps({"Network": str(self.network), "SubnetLen": self.subnet_len,
                           "Backend": {"Type": self.backend, "VNI": self.vni,
                                       "Port": self.port}}, sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> ClusterConfig:
        d = json.loads(raw)
        b = d.get("Backend", {})
        return cls(network=IPv4Network(d["Network"]), subnet_len=int(d["SubnetLen"]),
                   backend=b.get("Type", "vxlan"), vni=int(b.get("VNI", 42)),
                   port=int(b.get("Port", 4789)))

    def differences(self, stored: ClusterConfig) -> list[str]:
        """Each field where `stored` (etcd's) differs from this node's flags."""
        fields = (("network", "--cluster-network"), ("subnet_len", "--cluster-subnet-len"),
                  ("backend", "--cluster-backend"), ("vni", "VNI"), ("port", "UDP port"))
        return [f"{flag}: the cluster has {getattr(stored, f)}, this node {getattr(self, f)}"
                for f, flag in fields if getattr(stored, f) != getattr(self, f)]


@dataclass(frozen=True)
class SubnetLease:
    """`/sheep/subnets/<subnet>`: the node holding a subnet, where peers reach it."""

    subnet: IPv4Network
    node: str
    public_ip: IPv4Address
    backend: str
    vtep_mac: str

    @property
    def key(self) -> bytes:
        return subnet_key(self.subnet)

    def encode(self) -> bytes:
        data = {"VtepMAC": self.vtep_mac} if self.vtep_mac else {}
        return json.dumps({"NodeID": self.node, "PublicIP": str(self.public_ip),
                           "BackendType": self.backend, "BackendData": data},
                          sort_keys=True).encode()

    @classmethod
    def decode(cls, key: bytes, raw: bytes) -> SubnetLease:
        d = json.loads(raw)
        return cls(subnet=parse_key(key), node=str(d["NodeID"]),
                   public_ip=IPv4Address(d["PublicIP"]), backend=str(d["BackendType"]),
                   vtep_mac=str(d.get("BackendData", {}).get("VtepMAC", "")))


@dataclass(frozen=True)
class EtcdTLS:
    """PEM files for etcd's client TLS; `cert`/`key` only for client certificates."""

    cacert: Path | None = None
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True)
class NodeSettings:
    """This node's side of cluster mode, from the flags."""

    name: str
    underlay: IPv4Address
    endpoints: tuple[str, ...]
    config: ClusterConfig
    tls: EtcdTLS | None = None
    lease_ttl: int = 6 * 3600  # a reservation, not a liveness signal
    reconcile_seconds: float = 30.0

    @property
    def device(self) -> str:
        """The VXLAN device's name: sheep.<VNI>."""
        return f"sheep.{self.config.vni}"


def subnet_key(subnet: IPv4Network) -> bytes:
    return SUBNETS + f"{subnet.network_address}-{subnet.prefixlen}".encode()


def parse_key(key: bytes) -> IPv4Network:
    addr, _, length = key[len(SUBNETS):].decode().partition("-")
    return IPv4Network(f"{addr}/{length}")


def vtep_mac(node: str) -> str:
    """A deterministic, locally administered unicast MAC for the node's VTEP: set at
    creation and re-set if anything (systemd's MACAddressPolicy) rewrites it."""
    raw = bytearray(hashlib.sha256(b"sheep-vtep:" + node.encode()).digest()[:6])
    raw[0] = (raw[0] & 0xFC) | 0x02
    return raw.hex(":")
