#!/usr/bin/env python3
"""Generate the API reference (docs/api.md) from the .proto's descriptors and comments,
and keep the descriptor snapshot that guards API stability.

    scripts/gen-api-docs.py                   # write docs/api.md
    scripts/gen-api-docs.py --check           # exit 1 if docs/api.md is stale
    scripts/gen-api-docs.py --write-snapshot  # record the current API as the baseline
    scripts/gen-api-docs.py --compat          # exit 1 on a breaking change vs the baseline

The descriptors come from protoc (grpc_tools) with --include_source_info, so every
element's leading comment is in SourceCodeInfo. Only the standard library, protobuf
and grpcio-tools are needed.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.resources
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2 as d

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "proto"
PROTO = "sheep/runtime/v1/runtime.proto"
DOCS = REPO / "docs" / "api.md"
SNAPSHOT = REPO / "proto" / "sheep" / "runtime" / "v1" / "descriptor_snapshot.json"

# SourceCodeInfo path tags (descriptor.proto field numbers).
FILE_MESSAGE, FILE_ENUM, FILE_SERVICE, FILE_SYNTAX = 4, 5, 6, 12
MSG_FIELD, MSG_NESTED, MSG_ENUM = 2, 3, 4
ENUM_VALUE, SERVICE_METHOD = 2, 2

SCALARS = {
    d.FieldDescriptorProto.TYPE_DOUBLE: "double", d.FieldDescriptorProto.TYPE_FLOAT: "float",
    d.FieldDescriptorProto.TYPE_INT64: "int64", d.FieldDescriptorProto.TYPE_UINT64: "uint64",
    d.FieldDescriptorProto.TYPE_INT32: "int32", d.FieldDescriptorProto.TYPE_FIXED64: "fixed64",
    d.FieldDescriptorProto.TYPE_FIXED32: "fixed32", d.FieldDescriptorProto.TYPE_BOOL: "bool",
    d.FieldDescriptorProto.TYPE_STRING: "string", d.FieldDescriptorProto.TYPE_BYTES: "bytes",
    d.FieldDescriptorProto.TYPE_UINT32: "uint32", d.FieldDescriptorProto.TYPE_SFIXED32:
    "sfixed32", d.FieldDescriptorProto.TYPE_SFIXED64: "sfixed64",
    d.FieldDescriptorProto.TYPE_SINT32: "sint32", d.FieldDescriptorProto.TYPE_SINT64: "sint64",
}


# -- descriptors ----------------------------------------------------------------------

def compile_proto(proto_root: Path = PROTO_ROOT, proto: str = PROTO) -> d.FileDescriptorProto:
    """The FileDescriptorProto of `proto`, with SourceCodeInfo (comments)."""
    from grpc_tools import protoc  # type: ignore[import-untyped, unused-ignore]

    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        rc = protoc.main(["protoc", f"-I{proto_root}", f"-I{well_known}",
                          "--include_source_info", f"--descriptor_set_out={out}",
                          str(proto_root / proto)])
        if rc != 0:
            raise RuntimeError(f"protoc failed ({rc}) on {proto}")
        fds = d.FileDescriptorSet.FromString(out.read_bytes())
    (fdp,) = [f for f in fds.file if f.name == proto]
    return fdp


def comments(fdp: d.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    """Leading (else trailing) comment of every element, by SourceCodeInfo path."""
    out: dict[tuple[int, ...], str] = {}
    for loc in fdp.source_code_info.location:
        text = loc.leading_comments or loc.trailing_comments
        if text.strip():
            out[tuple(loc.path)] = "\n".join(line[1:] if line.startswith(" ") else line
                                             for line in text.strip("\n").split("\n"))
    return out


def file_comment(fdp: d.FileDescriptorProto) -> str:
    """The comment block at the top of the file (attached to `syntax`)."""
    for loc in fdp.source_code_info.location:
        if tuple(loc.path) == (FILE_SYNTAX,):
            blocks = [*loc.leading_detached_comments, loc.leading_comments]
            text = "\n\n".join(b.strip("\n") for b in blocks if b.strip())
            return "\n".join(line[1:] if line.startswith(" ") else line
                             for line in text.split("\n"))
    return ""


def walk_messages(fdp: d.FileDescriptorProto) -> Iterator[tuple[str, tuple[int, ...],
                                                                 d.DescriptorProto]]:
    """(full name, path, message) of every message, nested ones included, map entries
    excluded, in declaration order."""
    def walk(prefix: str, path: tuple[int, ...], msgs: Any) -> Iterator[Any]:
        for i, m in enumerate(msgs):
            if m.options.map_entry:
                continue
            name = f"{prefix}.{m.name}"
            yield name, (*path, i), m
            yield from walk(name, (*path, i, MSG_NESTED), m.nested_type)

    yield from walk(fdp.package, (FILE_MESSAGE,), fdp.message_type)


def walk_enums(fdp: d.FileDescriptorProto) -> Iterator[tuple[str, tuple[int, ...],
                                                              d.EnumDescriptorProto]]:
    """(full name, path, enum) of every enum, top-level and nested."""
    for i, e in enumerate(fdp.enum_type):
        yield f"{fdp.package}.{e.name}", (FILE_ENUM, i), e
    for name, path, m in walk_messages(fdp):
        for i, e in enumerate(m.enum_type):
            yield f"{name}.{e.name}", (*path, MSG_ENUM, i), e


def _map_entries(fdp: d.FileDescriptorProto) -> dict[str, d.DescriptorProto]:
    out: dict[str, d.DescriptorProto] = {}

    def walk(prefix: str, msgs: Any) -> None:
        for m in msgs:
            name = f"{prefix}.{m.name}"
            if m.options.map_entry:
                out[name] = m
            walk(name, m.nested_type)

    walk("." + fdp.package, fdp.message_type)
    return out


def field_type(f: d.FieldDescriptorProto, maps: dict[str, d.DescriptorProto]) -> str:
    """The field's type as written in .proto (message/enum types fully qualified)."""
    if f.type_name in maps:
        k, v = maps[f.type_name].field
        return f"map<{field_type(k, maps)}, {field_type(v, maps)}>"
    if f.type in SCALARS:
        return SCALARS[f.type]
    return f.type_name.lstrip(".")


def field_label(f: d.FieldDescriptorProto, maps: dict[str, d.DescriptorProto]) -> str:
    """"map", "repeated", "optional" (explicit presence) or "singular"."""
    if f.type_name in maps:
        return "map"
    if f.label == d.FieldDescriptorProto.LABEL_REPEATED:
        return "repeated"
    return "optional" if f.proto3_optional else "singular"


# -- completeness of comments -----------------------------------------------------------

def missing_comments(fdp: d.FileDescriptorProto) -> list[str]:
    """Every service, RPC, message, field, enum and enum value without a comment."""
    c = comments(fdp)
    missing = []
    for i, s in enumerate(fdp.service):
        if (FILE_SERVICE, i) not in c:
            missing.append(f"service {s.name}")
        for j, rpc in enumerate(s.method):
            if (FILE_SERVICE, i, SERVICE_METHOD, j) not in c:
                missing.append(f"rpc {s.name}.{rpc.name}")
    for name, path, m in walk_messages(fdp):
        if path not in c:
            missing.append(f"message {name}")
        for j, f in enumerate(m.field):
            if (*path, MSG_FIELD, j) not in c:
                missing.append(f"field {name}.{f.name}")
    for name, path, e in walk_enums(fdp):
        if path not in c:
            missing.append(f"enum {name}")
        for j, v in enumerate(e.value):
            if (*path, ENUM_VALUE, j) not in c:
                missing.append(f"enum value {name}.{v.name}")
    return missing


# -- Markdown ---------------------------------------------------------------------------

def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _anchor(full_name: str) -> str:
    return full_name.replace(".", "-").lower()


def _type_link(t: str, local: set[str]) -> str:
    """A type, linked to its section when it is defined in this file."""
    if t.startswith("map<"):
        return f"`{t}`"
    if t in local:
        return f"[`{t.rsplit('.', 1)[-1]}`](#{_anchor(t)})" if "." in t else f"`{t}`"
    return f"`{t}`"


def render(fdp: d.FileDescriptorProto) -> str:
    """docs/api.md: services and RPCs, messages with field tables, enums."""
    c = comments(fdp)
    maps = _map_entries(fdp)
    msgs = list(walk_messages(fdp))
    enums = list(walk_enums(fdp))
    local = {n for n, _, _ in msgs} | {n for n, _, _ in enums}
    pkg = fdp.package
    out = [f"# `{pkg}` API reference", "",
           f"<!-- Generated by scripts/gen-api-docs.py from proto/{fdp.name}. "
           "Do not edit: change the .proto's comments and run the script. -->", ""]
    header = file_comment(fdp)
    if header:
        out += [header, ""]
    out += ["Types are proto3; in JSON (grpcurl, proto-loader) fields keep these names, "
            "64-bit integers are strings and enums are their names.", ""]
    out += ["## Contents", ""]
    for s in fdp.service:
        out.append(f"- Service [`{s.name}`](#{_anchor(f'{pkg}.{s.name}')})")
    out.append("- Messages: " + ", ".join(f"[`{n[len(pkg) + 1:]}`](#{_anchor(n)})"
                                          for n, _, _ in msgs))
    if enums:
        out.append("- Enums: " + ", ".join(f"[`{n[len(pkg) + 1:]}`](#{_anchor(n)})"
                                           for n, _, _ in enums))
    out.append("")
    for i, s in enumerate(fdp.service):
        full = f"{pkg}.{s.name}"
        out += [f'<a id="{_anchor(full)}"></a>', "", f"## Service `{full}`", "",
                c.get((FILE_SERVICE, i), ""), "",
                "| RPC | Request | Response |", "|---|---|---|"]
        for rpc in s.method:
            req = ("stream " if rpc.client_streaming else "") + \
                _type_link(rpc.input_type.lstrip("."), local)
            resp = ("stream " if rpc.server_streaming else "") + \
                _type_link(rpc.output_type.lstrip("."), local)
            out.append(f"| [`{rpc.name}`](#{_anchor(f'{full}.{rpc.name}')}) | {req} | {resp} |")
        out.append("")
        for j, rpc in enumerate(s.method):
            sig = (f"rpc {rpc.name}({'stream ' if rpc.client_streaming else ''}"
                   f"{rpc.input_type.rsplit('.', 1)[-1]}) returns "
                   f"({'stream ' if rpc.server_streaming else ''}"
                   f"{rpc.output_type.rsplit('.', 1)[-1]})")
            out += [f'<a id="{_anchor(f"{full}.{rpc.name}")}"></a>', "",
                    f"### {rpc.name}", "", f"`{sig}`", "",
                    c.get((FILE_SERVICE, i, SERVICE_METHOD, j), ""), ""]
    out += ["## Messages", ""]
    for name, path, m in msgs:
        out += [f'<a id="{_anchor(name)}"></a>', "", f"### `{name[len(pkg) + 1:]}`", "",
                c.get(path, ""), ""]
        if not m.field:
            out += ["No fields.", ""]
            continue
        out += ["| Field | Number | Type | Description |", "|---|---|---|---|"]
        for j, f in enumerate(m.field):
            label = field_label(f, maps)
            t = _type_link(field_type(f, maps), local)
            if label in ("repeated", "optional"):
                t = f"{label} {t}"
            out.append(f"| `{f.name}` | {f.number} | {t} | "
                       f"{_cell(c.get((*path, MSG_FIELD, j), ''))} |")
        out.append("")
    if enums:
        out += ["## Enums", ""]
    for name, path, e in enums:
        out += [f'<a id="{_anchor(name)}"></a>', "", f"### `{name[len(pkg) + 1:]}`", "",
                c.get(path, ""), "", "| Name | Number | Description |", "|---|---|---|"]
        for j, v in enumerate(e.value):
            out.append(f"| `{v.name}` | {v.number} | "
                       f"{_cell(c.get((*path, ENUM_VALUE, j), ''))} |")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


# -- stability snapshot -----------------------------------------------------------------

def snapshot(fdp: d.FileDescriptorProto) -> dict[str, Any]:
    """The wire- and API-relevant shape of the file: for each message, field name ->
    (number, type, label); for each enum, value name -> number; for each RPC, its
    input, output and streaming."""
    maps = _map_entries(fdp)
    return {
        "package": fdp.package,
        "services": {
            f"{fdp.package}.{s.name}": {
                rpc.name: {"input": rpc.input_type.lstrip("."),
                           "output": rpc.output_type.lstrip("."),
                           "client_streaming": rpc.client_streaming,
                           "server_streaming": rpc.server_streaming}
                for rpc in s.method}
            for s in fdp.service},
        "messages": {
            name: {f.name: {"number": f.number, "type": field_type(f, maps),
                            "label": field_label(f, maps)} for f in m.field}
            for name, _, m in walk_messages(fdp)},
        "enums": {name: {v.name: v.number for v in e.value}
                  for name, _, e in walk_enums(fdp)},
    }


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What `new` breaks of `old`: removed services, RPCs, messages, fields, enums or
    enum values; changed RPC signatures; renumbered, retyped or relabelled fields;
    renumbered enum values; a field number reused under another name. Additions are
    fine."""
    out: list[str] = []
    if old.get("package") != new.get("package"):
        out.append(f"package changed: {old.get('package')} -> {new.get('package')}")
    for svc, rpcs in old.get("services", {}).items():
        if svc not in new.get("services", {}):
            out.append(f"service {svc} removed")
            continue
        for rpc, sig in rpcs.items():
            now = new["services"][svc].get(rpc)
            if now is None:
                out.append(f"rpc {svc}.{rpc} removed")
                continue
            for key in ("input", "output", "client_streaming", "server_streaming"):
                if sig[key] != now.get(key):
                    out.append(f"rpc {svc}.{rpc}: {key} changed: {sig[key]} -> {now.get(key)}")
    for msg, fields in old.get("messages", {}).items():
        if msg not in new.get("messages", {}):
            out.append(f"message {msg} removed")
            continue
        now_fields = new["messages"][msg]
        by_number = {f["number"]: name for name, f in now_fields.items()}
        for name, f in fields.items():
            now = now_fields.get(name)
            if now is None:
                reused = by_number.get(f["number"])
                out.append(f"field {msg}.{name} (#{f['number']}) removed"
                           + (f"; its number is now field {reused!r}" if reused else ""))
                continue
            for key in ("number", "type", "label"):
                if f[key] != now.get(key):
                    out.append(f"field {msg}.{name}: {key} changed: {f[key]} -> {now.get(key)}")
    for enum, values in old.get("enums", {}).items():
        if enum not in new.get("enums", {}):
            out.append(f"enum {enum} removed")
            continue
        for value, number in values.items():
            now = new["enums"][enum].get(value)
            if now is None:
                out.append(f"enum value {enum}.{value} (= {number}) removed")
            elif now != number:
                out.append(f"enum value {enum}.{value}: number changed: {number} -> {now}")
    return out


def additions(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What `new` adds to `old` (allowed, but the snapshot should record it)."""
    out: list[str] = []
    for kind in ("services", "messages", "enums"):
        for name, members in new.get(kind, {}).items():
            before = old.get(kind, {}).get(name)
            if before is None:
                out.append(f"{kind[:-1]} {name} added")
                continue
            out += [f"{kind[:-1]} {name}: {m} added" for m in members if m not in before]
    return out


def load_snapshot(path: Path = SNAPSHOT) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def dump_snapshot(snap: dict[str, Any]) -> str:
    return json.dumps(snap, indent=2, sort_keys=True) + "\n"


# -- command line -----------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DOCS, help="Markdown output (docs/api.md)")
    p.add_argument("--check", action="store_true", help="fail if --out is stale")
    p.add_argument("--compat", action="store_true",
                   help="fail on a breaking change against the snapshot")
    p.add_argument("--write-snapshot", action="store_true",
                   help="record the current API as the stability baseline")
    a = p.parse_args(argv)
    fdp = compile_proto()
    missing = missing_comments(fdp)
    if missing:
        print("elements without a comment:\n  " + "\n  ".join(missing), file=sys.stderr)
    if a.write_snapshot:
        if SNAPSHOT.exists():
            broken = breaking_changes(load_snapshot(), snapshot(fdp))
            if broken:
                print("refusing to record a breaking change:\n  " + "\n  ".join(broken),
                      file=sys.stderr)
                return 1
        SNAPSHOT.write_text(dump_snapshot(snapshot(fdp)))
        print(f"wrote {SNAPSHOT.relative_to(REPO)}")
        return 0
    if a.compat:
        broken = breaking_changes(load_snapshot(), snapshot(fdp))
        for line in broken:
            print(f"BREAKING: {line}", file=sys.stderr)
        return 1 if broken else 0
    text = render(fdp)
    if a.check:
        current = a.out.read_text() if a.out.exists() else ""
        if current != text:
            sys.stderr.writelines(difflib.unified_diff(
                current.splitlines(True), text.splitlines(True), str(a.out), "generated"))
            print(f"{a.out} is stale: run scripts/gen-api-docs.py", file=sys.stderr)
            return 1
        return 0
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
