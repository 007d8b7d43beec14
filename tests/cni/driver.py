"""A small libcni of the tests: runs a CNI plugin the way libcni does (CNI_* in the
environment, the network config on stdin, the answer on stdout), caches each ADD
result and hands it back as `prevResult` to DEL and CHECK, and drops it after DEL."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CALL_TIMEOUT = 60.0  # only against hangs


@dataclass(frozen=True)
class Outcome:
    """What one plugin call printed and how it exited."""

    status: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout) if self.stdout.strip() else None

    def error(self) -> dict[str, Any]:
        """The spec's error object (the call must have failed)."""
        assert self.status == 1, f"expected a failure, got {self}"
        err = self.json
        assert isinstance(err, dict) and set(err) == {"cniVersion", "code", "msg", "details"}, err
        return err


@dataclass
class Cni:
    """One network (a one-plugin conflist) driven through `plugin`.

    `prefix` runs the plugin under another command (e.g. nsenter into the "host"
    netns, where a runtime runs it)."""

    plugin: Path
    conf: dict[str, Any]
    name: str = "sheepnet"
    version: str = "1.0.0"
    prefix: Sequence[str] = ()
    cache: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def config(self, *, prev: dict[str, Any] | None = None,
               runtime: dict[str, Any] | None = None,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The plugin's stdin: its conf plus what libcni injects."""
        out = {**self.conf, "name": self.name, "cniVersion": self.version, **(extra or {})}
        if runtime:
            out["runtimeConfig"] = runtime
        if prev is not None:
            out["prevResult"] = prev
        return out

    def exec(self, command: str, *, cid: str = "", netns: str = "", ifname: str = "",
             stdin: str | None = None, conf: dict[str, Any] | None = None,
             env: dict[str, str] | None = None) -> Outcome:
        """One call with libcni's environment (the runtime's own env is inherited)."""
        full = {**os.environ, "CNI_COMMAND": command, "CNI_CONTAINERID": cid,
                "CNI_NETNS": netns, "CNI_IFNAME": ifname, "CNI_ARGS": "IgnoreUnknown=1",
                "CNI_PATH": str(self.plugin.parent), **(env or {})}
        text = stdin if stdin is not None else json.dumps(conf or self.config())
        p = subprocess.run([*self.prefix, str(self.plugin)], input=text, env=full,
                           capture_output=True, text=True, timeout=CALL_TIMEOUT)
        return Outcome(p.returncode, p.stdout, p.stderr)

    def version_probe(self) -> Outcome:
        """libcni's VERSION call (with its dummy variables)."""
        return self.exec("VERSION", netns="dummy", ifname="dummy",
                         stdin=json.dumps({"cniVersion": self.version}))

    def add(self, cid: str, netns: str, ifname: str = "eth0", *,
            ports: Iterable[dict[str, Any]] = (), prev: dict[str, Any] | None = None
            ) -> Outcome:
        ports = list(ports)
        conf = self.config(prev=prev, runtime={"portMappings": ports} if ports else None)
        out = self.exec("ADD", cid=cid, netns=netns, ifname=ifname, conf=conf)
        if out.status == 0:
            self.cache[(cid, ifname)] = out.json
        return out

    def delete(self, cid: str, netns: str = "", ifname: str = "eth0") -> Outcome:
        prev = self.cache.get((cid, ifname))
        out = self.exec("DEL", cid=cid, netns=netns, ifname=ifname,
                        conf=self.config(prev=prev))
        if out.status == 0:
            self.cache.pop((cid, ifname), None)
        return out

    def check(self, cid: str, netns: str, ifname: str = "eth0") -> Outcome:
        return self.exec("CHECK", cid=cid, netns=netns, ifname=ifname,
                         conf=self.config(prev=self.cache.get((cid, ifname))))

    def gc(self, valid: Iterable[tuple[str, str]]) -> Outcome:
        attachments = [{"containerID": c, "ifname": i} for c, i in valid]
        return self.exec("GC", conf=self.config(
            extra={"cni.dev/valid-attachments": attachments}))

    def status(self) -> Outcome:
        return self.exec("STATUS")
