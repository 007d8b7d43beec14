"""Cluster mode: an etcd agent that claims this node's subnet of the cluster network
and programs the overlay to every peer from a watch (flannel's design, see
shared/notes/scaleout.md). The data plane is reached through the `DataPlane`
Protocol (the daemon hands in netlink's `Overlay`)."""

from sheep_runtime.cluster.agent import ClusterAgent, DataPlane
from sheep_runtime.cluster.model import ClusterConfig, NodeSettings, SubnetLease, vtep_mac

__all__ = ["ClusterAgent", "ClusterConfig", "DataPlane", "NodeSettings", "SubnetLease",
           "vtep_mac"]
