"""The state store: containers, networks and attachments (which are the leases) in
SQLite (WAL). Each change is one transaction, so a daemon killed at any instant
restarts from a consistent state. Calls are sub-millisecond and run on the loop."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from pathlib import Path
from typing import Any, TypeVar

from sheep_runtime.errors import AlreadyExists, StoreError
from sheep_runtime.model import (
    Attachment,
    Container,
    ContainerState,
    LogConfig,
    Network,
    NetworkRequest,
    PortMapping,
    Resources,
    RestartPolicy,
)
from sheep_runtime.store.schema import INDEXES, MIGRATIONS, SCHEMA, SCHEMA_VERSION

log = logging.getLogger(__name__)
T = TypeVar("T")


class Store:
    """Durable state of the daemon."""

    def __init__(self, path: Path) -> None:
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL survives a killed process (what we promise); FULL would add an
            # fsync per commit for power loss, at a cost on every attach.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)
            self._migrate()
            self._db.executescript(INDEXES)
        except sqlite3.Error as e:
            raise StoreError(f"open state store {path}: {e}") from e
        # Rows that could not be decoded, as (table, key, error): skipped by every read,
        # reported by recovery instead of stopping the daemon.
        self.unreadable: dict[tuple[str, str], str] = {}
        # Decoded containers by id, with the raw row each came from: a read of an
        # unchanged row skips its JSON decode (~60 us), and an attach or a detach reads
        # its container 3-4 times (resolve, lock, DNS index).
        self._decoded: dict[str, tuple[tuple[object, ...], Container]] = {}

    def _migrate(self) -> None:
        for table, column, definition in MIGRATIONS:
            have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', ?)",
                         (str(SCHEMA_VERSION),))

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic change; rolled back on any exception."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise StoreError(f"begin transaction: {e}") from e
        try:
            yield self._db
        except sqlite3.IntegrityError as e:
            self._db.execute("ROLLBACK")
            raise AlreadyExists(f"conflicting record: {e}") from e
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    # -- networks ---------------------------------------------------------------

    def add_network(self, net: Network) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO networks(id, name, bridge, bridge_mac, subnet, gateway, mtu,"
                " internal, icc, created_at, dns, subnet6, gateway6)"
                " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (net.id, net.name, net.bridge, net.bridge_mac, str(net.subnet),
                 str(net.gateway), net.mtu, int(net.internal), int(net.icc), net.created_at,
                 int(net.dns), _text(net.subnet6), _text(net.gateway6)))

    def remove_network(self, network_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM networks WHERE id=?", (network_id,))

    def networks(self) -> list[Network]:
        rows = self._db.execute("SELECT * FROM networks ORDER BY created_at").fetchall()
        return [_network(r) for r in rows]

    def ipam_cursor(self, network_id: str) -> IPv4Address | None:
        row = self._db.execute("SELECT ipam_cursor FROM networks WHERE id=?",
                               (network_id,)).fetchone()
        return IPv4Address(row[0]) if row and row[0] else None

    def ipam_cursor6(self, network_id: str) -> IPv6Address | None:
        row = self._db.execute("SELECT ipam_cursor6 FROM networks WHERE id=?",
                               (network_id,)).fetchone()
        return IPv6Address(row[0]) if row and row[0] else None

    # -- containers -------------------------------------------------------------

    def add_container(self, c: Container) -> None:
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM containers WHERE name=?", (c.name,)).fetchone():
                raise AlreadyExists(f"a container named {c.name!r} already exists",
                                    reason="NAME_TAKEN", resource_type="container",
                                    resource_name=c.name)
            db.execute(
                "INSERT INTO containers(id, name, command, env, hostname, network_mode, state,"
                " created_at, netns_path, privileged, capabilities, owner, cni_container_id,"
                " cni_ifname, image, rootfs, working_dir, requests, run_config)"
                " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (c.id, c.name, json.dumps(list(c.command)), json.dumps(dict(c.env)),
                 c.hostname, c.network_mode, c.state.value, c.created_at, c.netns_path,
                 int(c.privileged), json.dumps(list(c.capabilities)), c.owner,
                 c.cni_container_id, c.cni_ifname, c.image, c.rootfs, c.working_dir,
                 _requests_json(c.requests), json.dumps(_run_config(c))))

    def update_container(self, c: Container) -> None:
        """Persist what changes over a container's life: state, pids, exit, times,
        restart counters and the addresses its requests prefer."""
        with self.transaction() as db:
            db.execute(
                "UPDATE containers SET state=?, pid=?, pid_start_time=?, shim_pid=?,"
                " shim_start_time=?, exit_code=?, started_at=?, finished_at=?,"
                " state_reason=?, requests=?, restart_count=?, restart_backoff=?,"
                " stopped_by_user=? WHERE id=?",
                (c.state.value, c.pid, c.pid_start_time, c.shim_pid, c.shim_start_time,
                 c.exit_code, c.started_at, c.finished_at, c.state_reason,
                 _requests_json(c.requests), c.restart_count, c.restart_backoff,
                 int(c.stopped_by_user), c.id))

    def mark_removing(self, container_id: str) -> None:
        """Record that the container's removal has begun (finished at start if cut)."""
        with self.transaction() as db:
            db.execute("UPDATE containers SET removing=1 WHERE id=?", (container_id,))

    def remove_container(self, container_id: str) -> None:
        """Delete the container and, by cascade, all its attachments (leases)."""
        with self.transaction() as db:
            db.execute("DELETE FROM containers WHERE id=?", (container_id,))
        self._decoded.pop(container_id, None)

    def container(self, container_id: str) -> Container | None:
        row = self._db.execute("SELECT * FROM containers WHERE id=?",
                               (container_id,)).fetchone()
        found = self._decode_containers([row] if row else [])
        return found[0] if found else None

    def containers(self) -> list[Container]:
        rows = self._db.execute("SELECT * FROM containers ORDER BY created_at").fetchall()
        return self._decode_containers(rows)

    def _decode_containers(self, rows: list[sqlite3.Row]) -> list[Container]:
        out = []
        for r in rows:
            raw = tuple(r)
            memo = self._decoded.get(r["id"])
            if memo is None or memo[0] != raw:
                decoded = self._decode("containers", [r], _container)
                if not decoded:
                    continue
                memo = self._decoded[r["id"]] = (raw, decoded[0])
            out.append(memo[1])
        return out

    def _decode(self, table: str, rows: list[sqlite3.Row],
                decode: Callable[[sqlite3.Row], T]) -> list[T]:
        """Decode rows, skipping (and remembering) any that cannot be: one bad row must
        not take every read, or the daemon's start, down with it."""
        out = []
        for r in rows:
            try:
                out.append(decode(r))
            except (ValueError, TypeError, KeyError) as e:
                key = (table, str(r[0]))
                if key not in self.unreadable:
                    log.error("state store: unreadable %s row %s: %s", table, r[0], e)
                self.unreadable[key] = f"{type(e).__name__}: {e}"
        return out

    def count_containers_by_state(self) -> dict[ContainerState, int]:
        rows = self._db.execute("SELECT state, COUNT(*) FROM containers WHERE owner='sheep'"
                                " GROUP BY state")
        known = {s.value for s in ContainerState}
        return {ContainerState(state): n for state, n in rows if state in known}

    def find_containers(self, ref: str) -> list[Container]:
        """Containers matching `ref` as full id, then name, then id prefix."""
        for sql in ("SELECT * FROM containers WHERE id=?",
                    "SELECT * FROM containers WHERE name=?"):
            rows = self._db.execute(sql, (ref,)).fetchall()
            if rows:
                return self._decode_containers(rows)
        if not ref or len(ref) > 64 or any(ch not in "0123456789abcdef" for ch in ref):
            return []
        rows = self._db.execute("SELECT * FROM containers WHERE id LIKE ? ORDER BY id",
                                (ref + "%",)).fetchall()
        return self._decode_containers(rows)

    # -- attachments (leases) -----------------------------------------------------

    def add_attachment(self, a: Attachment, *, dynamic: bool, dynamic6: bool = False
                       ) -> None:
        """Record the attachment (the leases); a `dynamic` (`dynamic6`) lease also moves
        the network's IPv4 (IPv6) next-fit cursor, in the same transaction (a static one
        never does)."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO attachments(container_id, network_id, interface_name, address,"
                " prefix, gateway, mac, host_interface, ports, seq, aliases, address6,"
                " prefix6, gateway6) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (a.container_id, a.network_id, a.interface_name, str(a.address.ip),
                 a.address.network.prefixlen, str(a.gateway), a.mac, a.host_interface,
                 json.dumps([_port_dict(p) for p in a.ports]), a.seq,
                 json.dumps(list(a.aliases)), _text(a.address6 and a.address6.ip),
                 a.address6.network.prefixlen if a.address6 else None, _text(a.gateway6)))
            if dynamic:
                db.execute("UPDATE networks SET ipam_cursor=? WHERE id=?",
                           (str(a.address.ip), a.network_id))
            if dynamic6 and a.address6 is not None:
                db.execute("UPDATE networks SET ipam_cursor6=? WHERE id=?",
                           (str(a.address6.ip), a.network_id))

    def remove_attachment(self, container_id: str, network_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM attachments WHERE container_id=? AND network_id=?",
                       (container_id, network_id))

    def attachments(self, *, container_id: str | None = None,
                    network_id: str | None = None) -> list[Attachment]:
        sql, args = "SELECT * FROM attachments", []
        where = []
        if container_id is not None:
            where.append("container_id=?")
            args.append(container_id)
        if network_id is not None:
            where.append("network_id=?")
            args.append(network_id)
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._db.execute(sql + " ORDER BY container_id, seq", args).fetchall()
        return self._decode("attachments", rows, _attachment)

    def attachment(self, container_id: str, network_id: str) -> Attachment | None:
        row = self._db.execute(
            "SELECT * FROM attachments WHERE container_id=? AND network_id=?",
            (container_id, network_id)).fetchone()
        found = self._decode("attachments", [row] if row else [], _attachment)
        return found[0] if found else None

    def attachments_by_host_interface(self, host_interface: str) -> list[Attachment]:
        rows = self._db.execute("SELECT * FROM attachments WHERE host_interface=?",
                                (host_interface,)).fetchall()
        return self._decode("attachments", rows, _attachment)

    def lease_holder(self, network_id: str, address: IPv4Address | IPv6Address
                     ) -> str | None:
        column = "address" if address.version == 4 else "address6"
        row = self._db.execute(
            f"SELECT container_id FROM attachments WHERE network_id=? AND {column}=?",
            (network_id, str(address))).fetchone()
        return str(row[0]) if row else None


def _network(r: sqlite3.Row) -> Network:
    return Network(id=r["id"], name=r["name"], bridge=r["bridge"], bridge_mac=r["bridge_mac"],
                   subnet=IPv4Network(r["subnet"]), gateway=IPv4Address(r["gateway"]),
                   mtu=r["mtu"], internal=bool(r["internal"]), icc=bool(r["icc"]),
                   created_at=r["created_at"], dns=bool(r["dns"]),
                   subnet6=IPv6Network(r["subnet6"]) if r["subnet6"] else None,
                   gateway6=IPv6Address(r["gateway6"]) if r["gateway6"] else None)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _container(r: sqlite3.Row) -> Container:
    return Container(
        id=r["id"], name=r["name"], command=tuple(json.loads(r["command"])),
        env=json.loads(r["env"]), hostname=r["hostname"], network_mode=r["network_mode"],
        state=ContainerState(r["state"]), created_at=r["created_at"],
        netns_path=r["netns_path"], pid=r["pid"], pid_start_time=r["pid_start_time"],
        shim_pid=r["shim_pid"], shim_start_time=r["shim_start_time"],
        exit_code=r["exit_code"], started_at=r["started_at"], finished_at=r["finished_at"],
        removing=bool(r["removing"]), state_reason=r["state_reason"],
        privileged=bool(r["privileged"]), capabilities=tuple(json.loads(r["capabilities"])),
        owner=r["owner"], cni_container_id=r["cni_container_id"], cni_ifname=r["cni_ifname"],
        image=r["image"], rootfs=r["rootfs"], working_dir=r["working_dir"],
        requests=tuple(_request(d) for d in json.loads(r["requests"])),
        restart_count=r["restart_count"], restart_backoff=r["restart_backoff"],
        stopped_by_user=bool(r["stopped_by_user"]), **_from_run_config(r["run_config"]))


def _run_config(c: Container) -> dict[str, Any]:
    return {"restart_policy": {"name": c.restart_policy.name,
                               "max_retries": c.restart_policy.max_retries},
            "stop_signal": c.stop_signal, "stop_timeout": c.stop_timeout,
            "resources": {"memory_bytes": c.resources.memory_bytes,
                          "cpus": c.resources.cpus, "pids_limit": c.resources.pids_limit},
            "log": {"max_bytes": c.log.max_bytes, "max_files": c.log.max_files},
            "auto_remove": c.auto_remove}


def _from_run_config(text: str) -> dict[str, Any]:
    d = json.loads(text)
    out: dict[str, Any] = {k: d[k] for k in ("stop_signal", "stop_timeout", "auto_remove")
                           if k in d}
    for key, kind in (("restart_policy", RestartPolicy), ("resources", Resources),
                      ("log", LogConfig)):
        if key in d:
            out[key] = kind(**d[key])
    return out


def _requests_json(requests: tuple[NetworkRequest, ...]) -> str:
    return json.dumps([
        {"network_id": n.network_id, "ip": str(n.ip) if n.ip else None,
         "ports": [_port_dict(p) for p in n.ports], "interface_name": n.interface_name,
         "aliases": list(n.aliases), "last_ip": _text(n.last_ip), "ip6": _text(n.ip6),
         "last_ip6": _text(n.last_ip6)}
        for n in requests])


def _request(d: dict[str, Any]) -> NetworkRequest:
    return NetworkRequest(
        network_id=d["network_id"], ip=IPv4Address(d["ip"]) if d["ip"] else None,
        ports=tuple(PortMapping(**p) for p in d["ports"]),
        interface_name=d["interface_name"], aliases=tuple(d["aliases"]),
        last_ip=IPv4Address(d["last_ip"]) if d["last_ip"] else None,
        ip6=IPv6Address(d["ip6"]) if d.get("ip6") else None,
        last_ip6=IPv6Address(d["last_ip6"]) if d.get("last_ip6") else None)


def _attachment(r: sqlite3.Row) -> Attachment:
    return Attachment(
        container_id=r["container_id"], network_id=r["network_id"],
        interface_name=r["interface_name"],
        address=IPv4Interface(f"{r['address']}/{r['prefix']}"),
        gateway=IPv4Address(r["gateway"]), mac=r["mac"], host_interface=r["host_interface"],
        ports=tuple(PortMapping(**p) for p in json.loads(r["ports"])), seq=r["seq"],
        aliases=tuple(json.loads(r["aliases"])),
        address6=IPv6Interface(f"{r['address6']}/{r['prefix6']}") if r["address6"] else None,
        gateway6=IPv6Address(r["gateway6"]) if r["gateway6"] else None)


def _port_dict(p: PortMapping) -> dict[str, Any]:
    return {"protocol": p.protocol, "host_ip": p.host_ip, "host_port": p.host_port,
            "container_port": p.container_port, "count": p.count}

