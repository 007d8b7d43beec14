"""The v1 API contract: its reference docs are fresh, every element is documented, and
it stays compatible with the committed descriptor snapshot (additions only)."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from google.protobuf import descriptor_pb2

REPO = Path(__file__).resolve().parents[2]


def _load_gen() -> ModuleType:
    path = REPO / "scripts" / "gen-api-docs.py"
    spec = importlib.util.spec_from_file_location("gen_api_docs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_api_docs", module)
    spec.loader.exec_module(module)
    return module


gen = _load_gen()


@pytest.fixture(scope="module")
def fdp() -> descriptor_pb2.FileDescriptorProto:
    return gen.compile_proto()


@pytest.fixture(scope="module")
def current(fdp: descriptor_pb2.FileDescriptorProto) -> dict[str, Any]:
    return gen.snapshot(fdp)  # type: ignore[no-any-return]


# -- (a) docs/api.md is what the generator makes now ---------------------------------------

def test_api_reference_is_fresh(tmp_path: Path) -> None:
    out = tmp_path / "api.md"
    assert gen.main(["--out", str(out)]) == 0
    committed = (REPO / "docs" / "api.md").read_text()
    assert out.read_text() == committed, \
        "docs/api.md is stale: run scripts/gen-api-docs.py and commit the result"


def test_api_reference_covers_every_rpc_message_and_field(
        fdp: descriptor_pb2.FileDescriptorProto) -> None:
    text = gen.render(fdp)
    for s in fdp.service:
        for rpc in s.method:
            assert f"### {rpc.name}\n" in text
    for name, _, m in gen.walk_messages(fdp):
        assert f"### `{name[len(fdp.package) + 1:]}`" in text
        for f in m.field:
            assert f"| `{f.name}` | {f.number} |" in text, f"{name}.{f.name}"


# -- (b) every element carries a comment ---------------------------------------------------

def test_every_rpc_message_field_and_enum_value_has_a_comment(
        fdp: descriptor_pb2.FileDescriptorProto) -> None:
    assert gen.missing_comments(fdp) == []


def test_missing_comment_is_detected(fdp: descriptor_pb2.FileDescriptorProto) -> None:
    stripped = descriptor_pb2.FileDescriptorProto()
    stripped.CopyFrom(fdp)
    container_id = ("sheep.runtime.v1.Container", "id")
    for loc in stripped.source_code_info.location:
        path = tuple(loc.path)
        for name, mpath, m in gen.walk_messages(stripped):
            if name == container_id[0] and path == (*mpath, gen.MSG_FIELD, 0):
                assert m.field[0].name == container_id[1]
                loc.leading_comments = ""
                loc.trailing_comments = ""
    assert gen.missing_comments(stripped) == ["field sheep.runtime.v1.Container.id"]


# -- (c) stability: no breaking change against the committed snapshot ----------------------

def test_no_breaking_change_against_snapshot(current: dict[str, Any]) -> None:
    broken = gen.breaking_changes(gen.load_snapshot(), current)
    assert broken == [], "breaking changes to sheep.runtime.v1:\n  " + "\n  ".join(broken)


def test_snapshot_records_every_addition(current: dict[str, Any]) -> None:
    added = gen.additions(gen.load_snapshot(), current)
    assert added == [], ("the API grew; record it so it stays protected: "
                         "scripts/gen-api-docs.py --write-snapshot\n  " + "\n  ".join(added))


def _changed(snap: dict[str, Any], kind: str, *keys: str, value: Any = None,
             delete: bool = False) -> dict[str, Any]:
    """A copy of `snap` with one entry set to `value` (or deleted)."""
    out = copy.deepcopy(snap)
    node = out[kind]
    for k in keys[:-1]:
        node = node[k]
    if delete:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return out


C = "sheep.runtime.v1.Container"
SVC = "sheep.runtime.v1.RuntimeService"
STATE = "sheep.runtime.v1.Container.State"


@pytest.mark.parametrize(("change", "expected"), [
    (lambda s: _changed(s, "messages", C, "pid", delete=True),
     "field sheep.runtime.v1.Container.pid (#4) removed"),
    (lambda s: _changed(s, "messages", C, "pid", "number", value=40),
     "field sheep.runtime.v1.Container.pid: number changed: 4 -> 40"),
    (lambda s: _changed(s, "messages", C, "pid", "type", value="int64"),
     "field sheep.runtime.v1.Container.pid: type changed: int32 -> int64"),
    (lambda s: _changed(s, "messages", C, "command", "label", value="singular"),
     "field sheep.runtime.v1.Container.command: label changed: repeated -> singular"),
    (lambda s: _changed(s, "messages", "sheep.runtime.v1.Network", delete=True),
     "message sheep.runtime.v1.Network removed"),
    (lambda s: _changed(s, "services", SVC, "Version", delete=True),
     "rpc sheep.runtime.v1.RuntimeService.Version removed"),
    (lambda s: _changed(s, "services", SVC, "WatchEvents", "server_streaming", value=False),
     "rpc sheep.runtime.v1.RuntimeService.WatchEvents: server_streaming changed: "
     "True -> False"),
    (lambda s: _changed(s, "services", SVC, "Inspect", "output",
                        value="sheep.runtime.v1.Network"),
     "rpc sheep.runtime.v1.RuntimeService.Inspect: output changed: "
     "sheep.runtime.v1.Container -> sheep.runtime.v1.Network"),
    (lambda s: _changed(s, "enums", STATE, "EXITED", delete=True),
     "enum value sheep.runtime.v1.Container.State.EXITED (= 3) removed"),
    (lambda s: _changed(s, "enums", STATE, "EXITED", value=7),
     "enum value sheep.runtime.v1.Container.State.EXITED: number changed: 3 -> 7"),
], ids=["field-removed", "field-renumbered", "field-retyped", "field-relabelled",
        "message-removed", "rpc-removed", "rpc-streaming-changed", "rpc-output-changed",
        "enum-value-removed", "enum-value-renumbered"])
def test_comparison_reports_breaking_changes(current: dict[str, Any], change: Any,
                                             expected: str) -> None:
    """The snapshot check can fail: each synthetic breaking change is reported by name."""
    assert gen.breaking_changes(current, change(current)) == [expected]


def test_comparison_reports_a_renamed_field_with_its_reused_number(
        current: dict[str, Any]) -> None:
    renamed = _changed(current, "messages", C, "pid", delete=True)
    renamed["messages"][C]["host_pid"] = {"number": 4, "type": "int32", "label": "singular"}
    assert gen.breaking_changes(current, renamed) == [
        "field sheep.runtime.v1.Container.pid (#4) removed; its number is now field "
        "'host_pid'"]


def test_comparison_allows_additions(current: dict[str, Any]) -> None:
    grown = copy.deepcopy(current)
    grown["messages"][C]["labels"] = {"number": 99, "type": "map<string, string>",
                                      "label": "map"}
    grown["messages"]["sheep.runtime.v1.Volume"] = {"path": {"number": 1, "type": "string",
                                                             "label": "singular"}}
    grown["services"][SVC]["Attach"] = {"input": "sheep.runtime.v1.InspectRequest",
                                      "output": "sheep.runtime.v1.Event",
                                      "client_streaming": False, "server_streaming": True}
    grown["enums"][STATE]["PAUSED"] = 5
    assert gen.breaking_changes(current, grown) == []
    assert sorted(gen.additions(current, grown)) == sorted([
        "message sheep.runtime.v1.Container: labels added",
        "message sheep.runtime.v1.Volume added",
        "service sheep.runtime.v1.RuntimeService: Attach added",
        "enum sheep.runtime.v1.Container.State: PAUSED added"])


def test_snapshot_matches_the_generated_python_descriptor(current: dict[str, Any]) -> None:
    """The stubs clients import describe the same API as the .proto (no stale stubs)."""
    from sheep.runtime.v1 import runtime_pb2

    generated = descriptor_pb2.FileDescriptorProto()
    runtime_pb2.DESCRIPTOR.CopyToProto(generated)
    assert gen.breaking_changes(current, gen.snapshot(generated)) == []
    assert gen.additions(current, gen.snapshot(generated)) == []
