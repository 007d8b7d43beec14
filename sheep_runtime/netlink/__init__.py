"""Netlink backend: links, namespaces and kernel events over one netlink codec.

Every failure leaves it as a `KernelError` (`LinkError`, `NamespaceError`) with
context and the kernel's errno, chained to the original exception.
"""

from sheep_runtime.netlink.container_netns import ContainerNetns
from sheep_runtime.netlink.errors import LinkError, NamespaceError, NetlinkBackendError
from sheep_runtime.netlink.links import LinkManager
from sheep_runtime.netlink.monitor import NetlinkMonitor
from sheep_runtime.netlink.namespaces import (
    PinnedNamespaces,
    create_pinned_netns,
    delete_pinned_netns,
    is_pinned_netns,
    run_in_netns,
)

__all__ = [
    "ContainerNetns",
    "LinkError",
    "LinkManager",
    "NamespaceError",
    "NetlinkBackendError",
    "NetlinkMonitor",
    "PinnedNamespaces",
    "create_pinned_netns",
    "delete_pinned_netns",
    "is_pinned_netns",
    "run_in_netns",
]
