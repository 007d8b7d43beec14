"""Netlink backend: the only package that talks to the kernel through pyroute2.

Every failure leaves it as a `KernelError` (`LinkError`, `NamespaceError`) with
context and the kernel's errno, chained to the original exception.
"""

from sheep_runtime.netlink.container_netns import ContainerNetns
from sheep_runtime.netlink.container_side import (
    InterfaceState,
    add_default_route,
    bring_up_loopback,
    configure_interface,
    read_interface,
)
from sheep_runtime.netlink.errors import LinkError, NamespaceError, NetlinkBackendError
from sheep_runtime.netlink.links import LinkInfo, LinkManager, set_sysctl
from sheep_runtime.netlink.namespaces import (
    create_pinned_netns,
    delete_pinned_netns,
    is_pinned_netns,
    open_route_socket,
    run_in_netns,
)
from sheep_runtime.netlink.transport import RouteSocket

__all__ = [
    "ContainerNetns",
    "InterfaceState",
    "LinkError",
    "LinkInfo",
    "LinkManager",
    "NamespaceError",
    "NetlinkBackendError",
    "RouteSocket",
    "add_default_route",
    "bring_up_loopback",
    "configure_interface",
    "create_pinned_netns",
    "delete_pinned_netns",
    "is_pinned_netns",
    "open_route_socket",
    "read_interface",
    "run_in_netns",
    "set_sysctl",
]
