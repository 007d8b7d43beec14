"""The sheep nftables table: pure rule building, atomic apply, and change monitoring."""

from sheep_runtime.firewall.monitor import FirewallMonitor
from sheep_runtime.firewall.nft import Firewall
from sheep_runtime.firewall.rules import (
    FirewallState,
    NetworkRules,
    PortRule,
    build_ruleset,
    validate,
)

__all__ = [
    "Firewall",
    "FirewallMonitor",
    "FirewallState",
    "NetworkRules",
    "PortRule",
    "build_ruleset",
    "validate",
]
