"""In-memory fakes of the backend Protocols of `sheep_runtime/ops/backends.py`, for
the fast tier: real ops, real SQLite store, no privilege.

A `Machine` is what outlives a daemon restart: the kernel model, the pinned
namespaces, the firewall table and the container processes, with one call log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sheep_runtime.ops.runtime import Backends
from sheep_runtime.store import Store
from tests.fakes.calls import INJECTED, Call, CallLog
from tests.fakes.firewall import FakeFirewall
from tests.fakes.images import FakeImages
from tests.fakes.kernel import FakeKernel
from tests.fakes.links import FakeContainerLinks, FakeLinks
from tests.fakes.namespaces import FakeNamespaces
from tests.fakes.processes import FakeProcesses
from tests.fakes.store import FaultyStore

__all__ = [
    "INJECTED",
    "Call",
    "CallLog",
    "FakeContainerLinks",
    "FakeFirewall",
    "FakeImages",
    "FakeKernel",
    "FakeLinks",
    "FakeNamespaces",
    "FakeProcesses",
    "FaultyStore",
    "Machine",
]


@dataclass
class Machine:
    """The fake host: everything a daemon finds when it starts."""

    calls: CallLog = field(default_factory=CallLog)
    kernel: FakeKernel = field(default_factory=FakeKernel)
    firewall: FakeFirewall = field(init=False)
    namespaces: FakeNamespaces = field(init=False)
    processes: FakeProcesses = field(init=False)
    images: FakeImages = field(init=False)

    def __post_init__(self) -> None:
        self.firewall = FakeFirewall(self.calls)
        self.namespaces = FakeNamespaces(self.kernel, self.calls)
        self.processes = FakeProcesses(self.kernel, self.calls)
        self.images = FakeImages(self.calls)

    def backends(self, db_path: Path) -> tuple[Backends, FaultyStore]:
        """Backends for one daemon run over the SQLite store at `db_path`."""
        store = FaultyStore(Store(db_path), self.calls)
        return Backends(links=FakeLinks(self.kernel, self.calls), namespaces=self.namespaces,
                        firewall=self.firewall, store=store, processes=self.processes,
                        images=self.images), store
