#!/usr/bin/python3 -IS
"""sheep: the CNI plugin of sheep-runtime, a thin shim in front of sheepd.

It answers VERSION itself and forwards every other command (ADD, DEL, CHECK, GC,
STATUS), with the CNI_* environment and the stdin config, as one JSON request over
sheepd's Unix socket; it prints sheepd's answer on stdout and exits 0 or 1. When
sheepd is unreachable ADD fails fast (code 11) and DEL is queued on disk for sheepd to
drain at its next start, then succeeds: a DEL must never get stuck.

One file, standard library only and no import from sheep_runtime: it is installed on
its own as /opt/cni/bin/sheep. The shebang says `-IS`, not `-I -S`: Linux passes a
shebang's arguments as one word, and python3 refuses "-I -S". Every call pays the
interpreter start, so the hot path imports only C modules that are built in or tiny:
`_json` and `_socket` instead of `json` and `socket` (10 ms of imports here), `posix`
instead of `os`, no `from __future__` nor collections.abc (6 ms more). The slow paths
(errors, the DEL queue) import what they need. sheepd imports the protocol constants
and `check_request` from here, so both ends validate alike.
"""

import _json
import _socket
import posix
import sys

#: CNI versions this plugin speaks; results are converted by sheepd.
SUPPORTED_VERSIONS = ("0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST_VERSION = SUPPORTED_VERSIONS[-1]
DEFAULT_SOCKET = "/run/sheep/cni.sock"
DEFAULT_STATE_DIR = "/var/lib/sheep"
DEFAULT_NETWORK = "sheep0"
#: Version of the request sheepd receives on its socket.
PROTOCOL = 1
#: The DEL queue below the state dir, and its bound.
QUEUE_DIR = "cni-del-queue"
QUEUE_LOCK = ".lock"
QUEUE_MAX = 256

# Error codes of the CNI spec (0-99 are the spec's, 100+ ours).
INCOMPATIBLE_VERSION = 1
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
DECODING_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50

#: Environment each command needs (as the spec says: DEL may come without a netns).
REQUIRED_ENV: dict[str, tuple[str, ...]] = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "GC": (),
    "STATUS": (),
}
#: The first spec version that has the command.
SINCE_VERSION: dict[str, str] = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}

CONNECT_SECONDS = 2.0
# Below the usual runtime timeouts; sheepd finishes the operation even if we give up.
ANSWER_SECONDS = 55.0
# How long a DEL waits for sheepd to finish draining the queue (it holds the lock).
QUEUE_LOCK_SECONDS = 10.0
MAX_ANSWER = 1 << 20

Problem = tuple[int, str, str]  # code, msg, details


class Failure(Exception):
    """A call that ends in the spec's error object."""

    def __init__(self, code: int, msg: str, details: str) -> None:
        super().__init__(msg)
        self.problem: Problem = (code, msg, details)


class _Context:
    """What the C scanner of `_json` reads from json.JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> object:
        raise ValueError(f"{name} is not JSON")


# typeshed calls the context a scanner: it is anything with JSONDecoder's attributes.
_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]


def loads(text: str) -> object:
    """json.loads without importing json on the happy path."""
    s = text.strip()
    try:
        value, end = _scan(s, 0)
        if end == len(s):
            return value
    except Exception:  # the C scanner raises well only once json.decoder is imported
        pass
    import json  # the slow path: a precise error message, or the value after all
    return json.loads(s)


def _quote(s: str) -> str:
    return str(_json.encode_basestring_ascii(s))


def error_json(version: str, problem: Problem) -> str:
    """The spec's error object."""
    code, msg, details = problem
    return (f'{{"cniVersion":{_quote(version)},"code":{code},"msg":{_quote(msg)},'
            f'"details":{_quote(details)}}}')


def version_json(version: str) -> str:
    versions = ",".join(_quote(v) for v in SUPPORTED_VERSIONS)
    return f'{{"cniVersion":{_quote(version)},"supportedVersions":[{versions}]}}'


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split(".") if p.isdigit())


def requested_version(conf: object) -> str:
    """The config's cniVersion if it is a string, else the latest we speak."""
    v = conf.get("cniVersion") if isinstance(conf, dict) else None
    return v if isinstance(v, str) and v else LATEST_VERSION


def _valid_container_id(cid: str) -> bool:
    # ^[A-Za-z0-9][A-Za-z0-9_.-]*$, as libcni validates it
    return cid.isascii() and cid[0].isalnum() and all(c.isalnum() or c in "_.-" for c in cid)


def _valid_ifname(name: str) -> bool:
    # As libcni: at most IFNAMSIZ-1 bytes, not . or .., no / : or whitespace
    return (len(name.encode()) <= 15 and name not in (".", "..")
            and not any(c in "/:" or c.isspace() for c in name))


def _check_env(command: str, env: dict[str, str]) -> Problem | None:
    if command not in REQUIRED_ENV:
        return (INVALID_ENV, f"unknown CNI_COMMAND {command!r}" if command
                else "CNI_COMMAND is not set", "INVALID_ARGUMENT: CNI_COMMAND")
    for var in REQUIRED_ENV[command]:
        if not env.get(var):
            return INVALID_ENV, f"{var} is required for {command}", f"INVALID_ARGUMENT: {var}"
    cid, ifname, netns = (env.get(v, "") for v in ("CNI_CONTAINERID", "CNI_IFNAME",
                                                   "CNI_NETNS"))
    if cid and not _valid_container_id(cid):
        return (INVALID_ENV, f"invalid CNI_CONTAINERID {cid!r}: use [A-Za-z0-9_.-], "
                "starting with a letter or digit", "INVALID_ARGUMENT: CNI_CONTAINERID")
    if ifname and not _valid_ifname(ifname):
        return (INVALID_ENV, f"invalid CNI_IFNAME {ifname!r}: at most 15 bytes, "
                "no '/', ':' or spaces", "INVALID_ARGUMENT: CNI_IFNAME")
    if netns and command != "DEL" and not netns.startswith("/"):
        return (INVALID_ENV, f"CNI_NETNS {netns!r} is not an absolute path",
                "INVALID_ARGUMENT: CNI_NETNS")
    return None


def _check_config(command: str, conf: object) -> Problem | None:
    if not isinstance(conf, dict):
        return INVALID_CONFIG, "the network config is not a JSON object", "INVALID_ARGUMENT"
    version = conf.get("cniVersion")
    if version not in SUPPORTED_VERSIONS:
        return (INCOMPATIBLE_VERSION, f"cniVersion {version!r} is not supported; this "
                f"plugin speaks {', '.join(SUPPORTED_VERSIONS)}", "INVALID_ARGUMENT: cniVersion")
    since = SINCE_VERSION.get(command)
    if since and _version_tuple(str(version)) < _version_tuple(since):
        return (INCOMPATIBLE_VERSION, f"cniVersion {version} has no {command} "
                f"(since {since})", "INVALID_ARGUMENT: cniVersion")
    if not isinstance(conf.get("name"), str) or not conf["name"]:
        return INVALID_CONFIG, "the network config has no name", "INVALID_ARGUMENT: name"
    for key in ("network", "socket", "stateDir"):
        if key in conf and (not isinstance(conf[key], str) or not conf[key]):
            return (INVALID_CONFIG, f"config key {key!r} must be a non-empty string",
                    f"INVALID_ARGUMENT: {key}")
    return None


def check_request(env: dict[str, str], conf: object) -> Problem | None:
    """The first thing wrong with a request (env problems first), or None."""
    command = env.get("CNI_COMMAND", "")
    return _check_env(command, env) or _check_config(command, conf)


def encode_request(env: dict[str, str], raw_config: str) -> bytes:
    """The request sheepd reads: {"v", "env": CNI_* only, "config": stdin verbatim}."""
    pairs = ",".join(f"{_quote(k)}:{_quote(v)}" for k, v in sorted(env.items())
                     if k.startswith("CNI_"))
    return f'{{"v":{PROTOCOL},"env":{{{pairs}}},"config":{raw_config.strip()}}}'.encode()


def _connect(path: str) -> _socket.socket:
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.settimeout(CONNECT_SECONDS)
        s.connect(path)
    except BaseException:
        s.close()
        raise
    return s


def _exchange(s: _socket.socket, request: bytes) -> tuple[int, bytes]:
    """Send the request, read sheepd's answer: b"<exit status>\\n<stdout>"."""
    try:
        s.settimeout(ANSWER_SECONDS)
        s.sendall(request)
        s.shutdown(_socket.SHUT_WR)
        chunks = []
        size = 0
        while chunk := s.recv(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_ANSWER:
                raise OSError("sheepd's answer is too long")
    finally:
        s.close()
    status, sep, out = b"".join(chunks).partition(b"\n")
    if not sep or status not in (b"0", b"1"):
        raise OSError("sheepd closed the connection without an answer")
    return int(status), out


def _unreachable(e: OSError) -> bool:
    """sheepd is not running (no socket, or nobody listening on it): as opposed to a
    busy or slow sheepd, which must not get a DEL queued behind its back."""
    return isinstance(e, FileNotFoundError | ConnectionRefusedError)


def _queue_del(state_dir: str, socket_path: str, request: bytes,
               env: dict[str, str]) -> tuple[int, bytes]:
    """Retry once under the queue's shared lock (sheepd drains it holding the lock
    exclusively before it serves), then record the DEL for sheepd's next start."""
    import hashlib
    import os

    qdir = os.path.join(state_dir, QUEUE_DIR)
    os.makedirs(qdir, mode=0o700, exist_ok=True)
    lock = os.open(os.path.join(qdir, QUEUE_LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _lock_shared(lock)
        try:
            return _exchange(_connect(socket_path), request)
        except OSError as e:
            if not _unreachable(e):
                raise
        key = f"{env['CNI_CONTAINERID']}\0{env['CNI_IFNAME']}".encode()
        digest = hashlib.sha256(key).hexdigest()[:16]
        # Plugins share the lock: two racing DELs may both write; a DEL runs twice fine.
        entries = [n for n in os.listdir(qdir) if n.endswith(".json")]
        if not any(n.endswith(f"-{digest}.json") for n in entries):  # else queued already
            if len(entries) >= QUEUE_MAX:
                raise Failure(TRY_AGAIN_LATER, f"sheepd is not reachable and its DEL queue "
                              f"is full ({QUEUE_MAX} entries)", "UNAVAILABLE: DEL_QUEUE_FULL")
            _write_entry(qdir, digest, request)
        return 0, b""
    finally:
        os.close(lock)


def _lock_shared(fd: int) -> None:
    import fcntl
    import time

    deadline = time.monotonic() + QUEUE_LOCK_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise Failure(TRY_AGAIN_LATER, "sheepd is draining its DEL queue",
                              "UNAVAILABLE: DEL_QUEUE_LOCKED") from None
            time.sleep(0.01)


def _write_entry(qdir: str, digest: str, request: bytes) -> None:
    """`<ns>-<digest>.json`, atomically: written to a temp file, synced, renamed."""
    import os
    import time

    tmp = os.path.join(qdir, f".tmp-{digest}-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, request)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, os.path.join(qdir, f"{time.time_ns()}-{digest}.json"))
    dirfd = os.open(qdir, os.O_RDONLY)
    try:
        os.fsync(dirfd)  # the rename itself survives a crash
    finally:
        os.close(dirfd)


def _forward(command: str, env: dict[str, str], conf: dict[str, object],
             raw: str) -> tuple[int, bytes]:
    request = encode_request(env, raw)
    socket_path = str(conf.get("socket", DEFAULT_SOCKET))
    try:
        return _exchange(_connect(socket_path), request)
    except OSError as e:
        if _unreachable(e) and command == "DEL":
            state_dir = str(conf.get("stateDir", DEFAULT_STATE_DIR))
            return _queue_del(state_dir, socket_path, request, env)
        why = f"sheepd is not reachable on {socket_path}: {e.strerror or e}"
        code = NOT_AVAILABLE if command == "STATUS" else TRY_AGAIN_LATER
        raise Failure(code, why, "UNAVAILABLE") from e


def run(env: dict[str, str], raw: str) -> tuple[int, str]:
    """One plugin call: (exit status, stdout)."""
    command = env.get("CNI_COMMAND", "")
    try:
        conf = loads(raw)
    except ValueError as e:
        if command == "VERSION":  # answered whatever came with it
            return 0, version_json(LATEST_VERSION)
        return 1, error_json(LATEST_VERSION, (DECODING_FAILURE,
                             f"the network config is not JSON: {e}", "INVALID_ARGUMENT"))
    version = requested_version(conf)
    if command == "VERSION":
        return 0, version_json(version)
    problem = check_request(env, conf)
    if problem is not None:
        return 1, error_json(version, problem)
    assert isinstance(conf, dict)
    try:
        status, out = _forward(command, env, conf, raw)
    except Failure as f:
        return 1, error_json(version, f.problem)
    except OSError as e:
        return 1, error_json(version, (TRY_AGAIN_LATER, f"talking to sheepd failed: {e}",
                                       "UNAVAILABLE"))
    return status, out.decode()


def main() -> int:
    """Entry point: CNI_* in the environment, the config on stdin, the answer on stdout."""
    raw = sys.stdin.buffer.read().decode("utf-8", "replace")
    env = {k.decode(errors="surrogateescape"): v.decode(errors="surrogateescape")
           for k, v in posix.environ.items()}
    status, out = run(env, raw)
    if out:
        sys.stdout.buffer.write(out.encode() + (b"" if out.endswith("\n") else b"\n"))
        sys.stdout.buffer.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
