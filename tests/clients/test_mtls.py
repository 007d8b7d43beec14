"""The TCP listener takes mutual TLS only, every mutating call is audited, and errors
stay small whatever the client sent.

A throwaway PKI made with `cryptography`: a CA, the daemon's certificate for 127.0.0.1
(IP SAN), a client certificate "alice" from that CA and "mallory" from another CA. A
real sheepd runs in a sandbox netns with `--listen 127.0.0.1:50051`; its TCP port
exists only in that netns, so the TCP clients (sheepctl, the asyncio client, a raw
grpc client, grpcurl) run there too, under nsenter. The Unix socket is a file: the
test process uses it directly."""

from __future__ import annotations

import datetime
import grp
import ipaddress
import json
import os
import re
import shlex
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sheep.runtime.v1 import runtime_pb2 as pb
from sheep_client import InvalidArgument, NotFound, SheepClient, target

from sheep_runtime.api.audit import MUTATING_PREFIXES
from tests.sandbox import REPO, Sandbox

kernel = pytest.mark.kernel

ADDRESS = "127.0.0.1:50051"  # inside the sandbox netns, which is fresh: always free
GRPCURL_DOC = REPO / "clients" / "grpcurl.md"
BIN = Path(sys.executable).parent

# -- a throwaway PKI ------------------------------------------------------------------------

Key = ec.EllipticCurvePrivateKey


def _cert(cn: str, key: Key, *, issuer: tuple[str, Key] | None = None,
          san: x509.GeneralName | None = None,
          usage: x509.ObjectIdentifier | None = None) -> x509.Certificate:
    issuer_cn, issuer_key = issuer or (cn, key)
    now = datetime.datetime.now(datetime.UTC)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None),
                        critical=True))
    if san is not None:
        b = b.add_extension(x509.SubjectAlternativeName([san]), critical=False)
    if usage is not None:
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _write(d: Path, name: str, cert: x509.Certificate, key: Key) -> None:
    (d / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / f"{name}-key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))


def make_pki(d: Path) -> Path:
    """ca.pem; server.pem (127.0.0.1); client.pem ("alice", same CA);
    other-client.pem ("mallory", another CA); each with its NAME-key.pem."""
    ca_key, other_key = ec.generate_private_key(ec.SECP256R1()), \
        ec.generate_private_key(ec.SECP256R1())
    _write(d, "ca", _cert("test-ca", ca_key), ca_key)
    for name, cn, issuer, extra in (
            ("server", "sheepd", ("test-ca", ca_key),
             {"san": x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
              "usage": ExtendedKeyUsageOID.SERVER_AUTH}),
            ("client", "alice", ("test-ca", ca_key),
             {"usage": ExtendedKeyUsageOID.CLIENT_AUTH}),
            ("other-client", "mallory", ("other-ca", other_key),
             {"usage": ExtendedKeyUsageOID.CLIENT_AUTH})):
        key = ec.generate_private_key(ec.SECP256R1())
        _write(d, name, _cert(cn, key, issuer=issuer, **extra), key)
    return d


def tls_flags(d: Path) -> list[str]:
    return ["--listen", ADDRESS, "--tls-cert", str(d / "server.pem"),
            "--tls-key", str(d / "server-key.pem"), "--tls-client-ca", str(d / "ca.pem")]


def socket_group() -> grp.struct_group:
    for name in ("nogroup", "daemon", "users"):
        try:
            return grp.getgrnam(name)
        except KeyError:
            continue
    pytest.fail("no group to give the socket (nogroup, daemon, users)")


# -- running clients inside the sandbox -----------------------------------------------------

def in_box(box: Sandbox, *argv: str, cwd: Path = REPO,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={box.netns}", "--", *argv], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=60)


def sheepctl(box: Sandbox, pki: Path, *argv: str, client: str = "client"
             ) -> subprocess.CompletedProcess[str]:
    return in_box(box, sys.executable, "-m", "sheep_client.cli", "--host",
                  f"tcp://{ADDRESS}", "--tls-ca", str(pki / "ca.pem"),
                  "--tls-cert", str(pki / f"{client}.pem"),
                  "--tls-key", str(pki / f"{client}-key.pem"), *argv)


# A raw grpc client: a CreateContainer with only the CA (no client certificate), or
# over plaintext; prints the status code name.
RAW_CREATE = """
import sys, grpc
from sheep.runtime.v1 import runtime_pb2 as pb, runtime_pb2_grpc as pb_grpc
mode, ca = sys.argv[1:3]
ch = (grpc.insecure_channel(sys.argv[3]) if mode == "plaintext" else grpc.secure_channel(
    sys.argv[3], grpc.ssl_channel_credentials(open(ca, "rb").read())))
try:
    pb_grpc.RuntimeServiceStub(ch).CreateContainer(pb.CreateContainerRequest(
        name="intruder", command=["/bin/sleep", "60"], network_mode="none"), timeout=10)
    print("OK")
except grpc.RpcError as e:
    print(e.code().name)
"""

# The asyncio client over TCP, its TLS files from SHEEP_TLS_* only.
ASYNC_CLIENT = """
import asyncio, json, sys
from sheep_client import AsyncSheepClient
async def main():
    async with AsyncSheepClient(host=sys.argv[1], timeout=30) as c:
        v = await c.version()
        made = await c.create_network("via-aio", "10.77.0.0/24")
        gone = await c.remove_network(made.id)
        print(json.dumps({"api": v.api_version, "created": made.id, "removed": gone}))
asyncio.run(main())
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_box(tmp_path_factory: pytest.TempPathFactory, pki: Path) -> Iterator[Sandbox]:
    """One sheepd with the TLS listener and its socket given to a group."""
    box = Sandbox(tmp_path_factory.mktemp("tls-box"))
    try:
        box.start(extra=[*tls_flags(pki), "--socket-group", socket_group().gr_name])
        yield box
    finally:
        box.close()


def audit_events_until_marker(box: Sandbox, since: float) -> list[dict[str, str]]:
    """The `api.audit` events since `since`, read up to a marker call made last (a
    RemoveContainer of a missing id over the Unix socket), so none is missed."""
    marker = f"marker-{time.monotonic_ns()}"
    out: list[dict[str, str]] = []
    with SheepClient(socket=str(box.socket), timeout=30) as c, \
            c.watch_events({"type": "api.audit"}, since=since, duration=30) as events:
        with pytest.raises(NotFound):
            c.remove_container(marker)
        for e in events:
            out.append(dict(e.attributes))
            if e.attributes["method"] == "RemoveContainer" and \
                    e.attributes["code"] == "NOT_FOUND":
                return out
    pytest.fail(f"no audit event of the marker call; saw {out}")


# -- the tests ------------------------------------------------------------------------------

@kernel
def test_good_certificate_works_and_is_audited(tls_box: Sandbox, pki: Path) -> None:
    t0 = time.time()
    v = sheepctl(tls_box, pki, "version", "--format", "json")
    assert v.returncode == 0, v.stderr
    assert json.loads(v.stdout)["api_version"] == "v1"
    run = sheepctl(tls_box, pki, "run", "-d", "--name", "by-alice", "--network-mode",
                   "none", "--", "/bin/sleep", "60")
    assert run.returncode == 0, run.stderr
    cid = run.stdout.split()[0]
    with SheepClient(socket=str(tls_box.socket), timeout=30) as c:
        assert c.inspect("by-alice").id == cid
        c.remove_container(cid, force=True)  # over the socket: identity "unix"
    events = audit_events_until_marker(tls_box, t0)
    by = {(e["method"], e["identity"], e["code"]) for e in events}
    assert ("CreateContainer", "alice", "OK") in by
    assert ("RemoveContainer", "unix", "OK") in by
    assert not [e for e in events if e["method"] == "Version"]  # reads are not audited
    (alice,) = [e for e in events if e["identity"] == "alice"]
    assert alice["peer"].startswith("ipv4:127.0.0.1:")
    assert re.search(r"audit: method=CreateContainer peer=ipv4:127\.0\.0\.1:\d+ "
                     r"identity=alice code=OK", tls_box.log())


@kernel
def test_asyncio_client_takes_its_tls_files_from_the_environment(tls_box: Sandbox,
                                                                 pki: Path) -> None:
    env = dict(os.environ, SHEEP_TLS_CA=str(pki / "ca.pem"),
               SHEEP_TLS_CERT=str(pki / "client.pem"),
               SHEEP_TLS_KEY=str(pki / "client-key.pem"))
    p = in_box(tls_box, sys.executable, "-c", ASYNC_CLIENT, f"tcp://{ADDRESS}", env=env)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["api"] == "v1" and out["created"] == out["removed"]


@kernel
def test_clients_without_a_good_certificate_are_refused(tls_box: Sandbox,
                                                        pki: Path) -> None:
    t0 = time.time()
    for mode in ("no-client-cert", "plaintext"):
        p = in_box(tls_box, sys.executable, "-c", RAW_CREATE, mode, str(pki / "ca.pem"),
                   ADDRESS)
        assert p.stdout.strip() == "UNAVAILABLE", (mode, p.stdout, p.stderr)
    other = sheepctl(tls_box, pki, "run", "-d", "--name", "intruder", "--network-mode",
                     "none", "--", "/bin/sleep", "60", client="other-client")
    assert other.returncode == 125 and "UNAVAILABLE" in other.stderr, other.stderr
    # sheepctl itself will not dial TCP without TLS files.
    bare = in_box(tls_box, sys.executable, "-m", "sheep_client.cli", "--host",
                  f"tcp://{ADDRESS}", "version", env={
                      k: v for k, v in os.environ.items() if not k.startswith("SHEEP_TLS")})
    assert bare.returncode == 125 and "mutual TLS only" in bare.stderr, bare.stderr
    with SheepClient(socket=str(tls_box.socket), timeout=30) as c:
        assert [x.name for x in c.list_containers(all=True)
                if x.name == "intruder"] == []
    assert {e["identity"] for e in audit_events_until_marker(tls_box, t0)} == {"unix"}


@kernel
def test_socket_group_gets_the_socket_with_mode_0660(tls_box: Sandbox) -> None:
    st = os.stat(tls_box.socket)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == \
        (0, socket_group().gr_gid, 0o660)


@kernel
@pytest.mark.parametrize("size", [10 * 1024, 1 << 20])
def test_huge_names_get_invalid_argument_with_a_short_message(tls_box: Sandbox,
                                                              size: int) -> None:
    with SheepClient(socket=str(tls_box.socket), timeout=30) as c:
        with pytest.raises(InvalidArgument) as ia:
            c.create_container(["/bin/true"], name="n" * size, network_mode="none")
        with pytest.raises(NotFound) as nf:
            c.inspect("i" * size)
        assert c.version().api_version == "v1"
    assert ia.value.field == "name" and len(ia.value.details) < 600
    assert re.search(r"'n+\.\.\.\[truncated, \d+ characters\]\.\.\.n+'",
                     ia.value.details), ia.value.details
    assert nf.value.resource is not None and "[truncated, " in nf.value.resource.name


@kernel
@pytest.mark.parametrize("flags", [["--listen", ADDRESS],
                                   ["--listen", ADDRESS, "--tls-cert", "/x.pem"]])
def test_listen_without_tls_files_is_refused(tmp_path: Path, flags: list[str]) -> None:
    box = Sandbox(tmp_path)
    try:
        box.start(extra=flags, wait=False)
        assert box.proc is not None
        assert box.proc.wait(timeout=30) == 2
        assert "mutual TLS only" in box.log() and "--tls-client-ca" in box.log()
        assert not box.socket.exists()
    finally:
        box.close()


@kernel
def test_unknown_socket_group_stops_sheepd(tmp_path: Path) -> None:
    box = Sandbox(tmp_path)
    try:
        box.start(extra=["--socket-group", "sheep-no-such-group"], wait=False)
        assert box.proc is not None
        assert box.proc.wait(timeout=30) != 0
        assert "socket group 'sheep-no-such-group' does not exist" in box.log()
    finally:
        box.close()


# -- the mutual TLS recipes of clients/grpcurl.md -------------------------------------------

def tls_recipes() -> dict[str, str]:
    """The ```sh blocks of grpcurl.md whose first line is `# tls: NAME`."""
    out = {}
    for block in re.findall(r"^```sh\n(.*?)^```$", GRPCURL_DOC.read_text(),
                            flags=re.M | re.S):
        first, _, rest = block.partition("\n")
        m = re.fullmatch(r"# tls: ([a-z0-9-]+)", first.strip())
        if m:
            out[m[1]] = rest
    return out


@kernel
def test_grpcurl_doc_tls_recipes(tmp_path: Path) -> None:
    """openssl makes the files, sheepd starts with the doc's flags, grpcurl lists the
    services and calls Version with the client certificate."""
    r = tls_recipes()
    assert sorted(r) == ["list", "make-certificates", "start-sheepd", "version"]
    pki = tmp_path / "pki"
    pki.mkdir()
    made = subprocess.run(["bash", "-e", "-c", r["make-certificates"]], cwd=pki,
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(os.stat(pki / "client-key.pem").st_mode) == 0o600
    argv = shlex.split(r["start-sheepd"].replace("\\\n", " "))
    assert argv[0] == "sheepd"
    (tmp_path / "box").mkdir()
    box = Sandbox(tmp_path / "box")
    try:
        box.start(extra=[str(pki / a) if (pki / a).is_file() else a for a in argv[1:]])
        assert stat.S_IMODE(os.stat(box.socket).st_mode) == 0o600
        env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        listed = in_box(box, "bash", "-c", r["list"], cwd=pki, env=env)
        assert listed.returncode == 0, listed.stderr
        assert "sheep.runtime.v1.RuntimeService" in listed.stdout.split()
        version = in_box(box, "bash", "-c", r["version"], cwd=pki, env=env)
        assert version.returncode == 0, version.stderr
        assert json.loads(version.stdout)["api_version"] == "v1"
        no_cert = in_box(box, "bash", "-c", r["list"].replace(
            "-cert client.pem -key client-key.pem ", ""), cwd=pki, env=env)
        assert no_cert.returncode != 0
    finally:
        box.close()


def test_rpcs_are_the_ones_the_audit_knows() -> None:
    """Every mutating RPC is audited: each method is a read or has a mutating prefix."""
    reads = ("List", "Inspect", "Watch", "Version", "Wait", "Logs", "Stats", "Get")
    for m in pb.DESCRIPTOR.services_by_name["RuntimeService"].methods:
        assert m.name.startswith(MUTATING_PREFIXES) != m.name.startswith(reads), m.name


def test_client_addresses_and_tcp_needs_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    for address, grpc_target in [("tcp://127.0.0.1:50051", "127.0.0.1:50051"),
                                 ("127.0.0.1:50051", "127.0.0.1:50051"),
                                 ("unix:///run/x.sock", "unix:/run/x.sock"),
                                 ("unix:/run/x.sock", "unix:/run/x.sock"),
                                 ("/run/x.sock", "unix:/run/x.sock"),
                                 ("./x.sock", "unix:./x.sock")]:
        assert target(host=address) == grpc_target
    for var in ("SHEEP_TLS_CA", "SHEEP_TLS_CERT", "SHEEP_TLS_KEY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="missing: tls_ca, tls_cert, tls_key"):
        SheepClient(host="tcp://127.0.0.1:1")
    monkeypatch.setenv("SHEEP_TLS_CA", "/nonexistent/ca.pem")
    with pytest.raises(ValueError, match=re.escape("cannot read tls_ca /nonexistent/ca.pem")):
        SheepClient(host="tcp://127.0.0.1:1", tls_cert="/c.pem", tls_key="/k.pem")
    SheepClient(host="unix:///nonexistent.sock").close()  # TLS is for TCP only
