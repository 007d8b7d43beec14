"""A proxy over the real SQLite store that logs each call and fails the armed one
with StoreError before it reaches the database (a transaction that never began)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from sheep_runtime.errors import StoreError
from sheep_runtime.model import Attachment, Container, ContainerState, Network
from sheep_runtime.ops import backends
from tests.fakes.calls import CallLog


class FaultyStore:
    """`Store` with every call logged as "store.<method>"."""

    def __init__(self, inner: backends.Store, calls: CallLog) -> None:
        self.inner = inner
        self._calls = calls

    @property
    def unreadable(self) -> dict[tuple[str, str], str]:
        return self.inner.unreadable

    @unreadable.setter
    def unreadable(self, value: dict[tuple[str, str], str]) -> None:
        self.inner.unreadable = value

    def _write(self, name: str) -> None:
        self._calls.record(f"store.{name}", mutating=True, error=StoreError)

    def _read(self, name: str) -> None:
        self._calls.record(f"store.{name}", mutating=False)

    def add_network(self, net: Network) -> None:
        self._write("add_network")
        self.inner.add_network(net)

    def remove_network(self, network_id: str) -> None:
        self._write("remove_network")
        self.inner.remove_network(network_id)

    def networks(self) -> list[Network]:
        self._read("networks")
        return self.inner.networks()

    def ipam_cursor(self, network_id: str) -> IPv4Address | None:
        self._read("ipam_cursor")
        return self.inner.ipam_cursor(network_id)

    def ipam_cursor6(self, network_id: str) -> IPv6Address | None:
        self._read("ipam_cursor6")
        return self.inner.ipam_cursor6(network_id)

    def add_container(self, c: Container) -> None:
        self._write("add_container")
        self.inner.add_container(c)

    def update_container(self, c: Container) -> None:
        self._write("update_container")
        self.inner.update_container(c)

    def mark_removing(self, container_id: str) -> None:
        self._write("mark_removing")
        self.inner.mark_removing(container_id)

    def remove_container(self, container_id: str) -> None:
        self._write("remove_container")
        self.inner.remove_container(container_id)

    def container(self, container_id: str) -> Container | None:
        self._read("container")
        return self.inner.container(container_id)

    def containers(self) -> list[Container]:
        self._read("containers")
        return self.inner.containers()

    def count_containers_by_state(self) -> dict[ContainerState, int]:
        self._read("count_containers_by_state")
        return self.inner.count_containers_by_state()

    def find_containers(self, ref: str) -> list[Container]:
        self._read("find_containers")
        return self.inner.find_containers(ref)

    def add_attachment(self, a: Attachment, *, dynamic: bool, dynamic6: bool = False
                       ) -> None:
        self._write("add_attachment")
        self.inner.add_attachment(a, dynamic=dynamic, dynamic6=dynamic6)

    def remove_attachment(self, container_id: str, network_id: str) -> None:
        self._write("remove_attachment")
        self.inner.remove_attachment(container_id, network_id)

    def attachments(self, *, container_id: str | None = None,
                    network_id: str | None = None) -> list[Attachment]:
        self._read("attachments")
        return self.inner.attachments(container_id=container_id, network_id=network_id)

    def attachment(self, container_id: str, network_id: str) -> Attachment | None:
        self._read("attachment")
        return self.inner.attachment(container_id, network_id)

    def attachments_by_host_interface(self, host_interface: str) -> list[Attachment]:
        self._read("attachments_by_host_interface")
        return self.inner.attachments_by_host_interface(host_interface)

    def lease_holder(self, network_id: str, address: IPv4Address | IPv6Address
                     ) -> str | None:
        self._read("lease_holder")
        return self.inner.lease_holder(network_id, address)

    def close(self) -> None:
        self._read("close")
        self.inner.close()
