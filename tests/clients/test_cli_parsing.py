"""sheepctl's parsing and printing without a daemon: docker's units, restart policies,
durations and times, --log-opt, -e, -p, the argument layout of the new commands, usage
errors (125), and the pure formatting of ps, stats, logs and events."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sheep.runtime.v1 import runtime_pb2 as pb
from sheep_client import builders, cli, commands, output, parsing, ports, stats
from sheep_client.container_io import LogWriter

KiB, MiB, GiB = 1024, 1024**2, 1024**3


@pytest.mark.parametrize(("text", "expected"), [
    ("0", 0), ("1024", 1024), ("1024b", 1024), ("512k", 512 * KiB), ("512K", 512 * KiB),
    ("512m", 512 * MiB), ("512M", 512 * MiB), ("512mb", 512 * MiB), ("512MiB", 512 * MiB),
    ("1g", GiB), ("1.5g", 3 * GiB // 2), ("2t", 2 * 1024 * GiB), ("1 g", GiB)])
def test_memory_takes_docker_binary_units(text: str, expected: int) -> None:
    assert parsing.parse_memory(text) == expected


@pytest.mark.parametrize("text", ["", "m", "-1m", "1x", "1gg", "one", "1i", "1.2.3g"])
def test_bad_memory_sizes_say_what_to_write(text: str) -> None:
    with pytest.raises(ValueError, match=r"bad memory size .*e\.g\. 512m, 1g"):
        parsing.parse_memory(text)


@pytest.mark.parametrize(("text", "name", "retries"), [
    ("no", "no", 0), ("always", "always", 0), ("unless-stopped", "unless-stopped", 0),
    ("on-failure", "on-failure", 0), ("on-failure:3", "on-failure", 3),
    ("on-failure:0", "on-failure", 0)])
def test_restart_policies(text: str, name: str, retries: int) -> None:
    assert parsing.parse_restart_policy(text) == pb.RestartPolicy(name=name,
                                                                  max_retries=retries)


@pytest.mark.parametrize(("text", "why"), [
    ("sometimes", "use no, on-failure"), ("always:3", "only on-failure takes"),
    ("on-failure:x", "a number >= 0"), ("on-failure:-1", "a number >= 0"),
    ("on-failure:", "a number >= 0"), ("", "use no, on-failure")])
def test_bad_restart_policies(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parsing.parse_restart_policy(text)


@pytest.mark.parametrize(("text", "seconds"), [
    ("0", 0.0), ("10m", 600.0), ("1h30s", 3630.0), ("1.5h", 5400.0), ("300ms", 0.3),
    ("2h45m", 9900.0), ("1m30.5s", 90.5), (".5s", 0.5), ("1us", 1e-6), ("1µs", 1e-6),
    ("5ns", 5e-9), ("-1m", -60.0), ("+2s", 2.0)])
def test_durations_as_go_writes_them(text: str, seconds: float) -> None:
    assert parsing.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "1d", "m", "1h 30m", "h1", "10mm", "1.2.3s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parsing.parse_duration(text)


NOW = 1_714_557_600.0  # 2024-05-01T10:00:00Z


@pytest.mark.parametrize(("text", "when"), [
    ("10m", NOW - 600), ("1h30s", NOW - 3630), ("0", NOW),
    ("2024-05-01T09:00:00Z", NOW - 3600), ("2024-05-01T09:00:00.25Z", NOW - 3599.75),
    ("2024-05-01T11:00:00+02:00", NOW - 3600), ("1714557000", NOW - 600),
    ("1714557000.5", NOW - 599.5)])
def test_since_takes_rfc3339_unix_seconds_or_a_duration(text: str, when: float) -> None:
    assert parsing.parse_time(text, now=NOW) == pytest.approx(when)


def test_a_time_without_zone_is_local_as_docker_reads_it() -> None:
    local = datetime(2024, 5, 1, 9, 0, 0).timestamp()
    assert parsing.parse_time("2024-05-01T09:00:00", now=NOW) == local
    assert parsing.parse_time("2024-05-01", now=NOW) == datetime(2024, 5, 1).timestamp()


@pytest.mark.parametrize("text", ["yesterday", "10x", "2024-13-01T00:00:00Z", ""])
def test_bad_times(text: str) -> None:
    with pytest.raises(ValueError, match="bad time"):
        parsing.parse_time(text, now=NOW)


def test_log_opts_max_size_is_decimal_as_docker_json_file() -> None:
    assert parsing.parse_log_opt("max-size=10m") == ("max-size", 10_000_000)
    assert parsing.parse_log_opt("max-size=1k") == ("max-size", 1000)
    assert parsing.parse_log_opt("max-size=2048") == ("max-size", 2048)
    assert parsing.parse_log_opt("max-file=3") == ("max-file", 3)
    assert parsing.log_config([("max-size", 10_000_000), ("max-file", 3)]) == \
        pb.LogConfig(max_bytes=10_000_000, max_files=3)
    assert parsing.log_config([("max-file", 2), ("max-file", 5)]) == pb.LogConfig(max_files=5)
    assert parsing.log_config([]) is None


@pytest.mark.parametrize(("text", "why"), [
    ("max-size", "use KEY=VALUE"), ("max-size=0", "must be positive"),
    ("max-size=ten", "bad max-size"), ("max-file=0", "max-file is a number >= 1"),
    ("max-file=x", "max-file is a number >= 1"), ("compress=true", "unknown log opt")])
def test_bad_log_opts(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parsing.parse_log_opt(text)


def test_env_key_alone_takes_the_callers_value_as_docker() -> None:
    environ = {"HOME": "/root", "EMPTY": ""}
    assert parsing.parse_env(["A=1", "B=x=y", "HOME", "EMPTY", "UNSET", "C="], environ) == \
        {"A": "1", "B": "x=y", "HOME": "/root", "EMPTY": "", "C": ""}
    with pytest.raises(ValueError, match="bad environment variable '=1'"):
        parsing.parse_env(["=1"], environ)


def test_cpus_pids_and_tail() -> None:
    assert parsing.parse_cpus("1.5") == 1.5 and parsing.parse_cpus("0") == 0.0
    for bad in ("-1", "nan", "inf", "two"):
        with pytest.raises(ValueError, match="bad cpus"):
            parsing.parse_cpus(bad)
    assert [parsing.parse_pids_limit(t) for t in ("100", "0", "-1")] == [100, 0, 0]
    with pytest.raises(ValueError, match="bad pids limit"):
        parsing.parse_pids_limit("many")
    assert [parsing.parse_tail(t) for t in ("all", "0", "10", "-1")] == [None, 0, 10, None]
    with pytest.raises(ValueError, match="bad tail"):
        parsing.parse_tail("last")


@pytest.mark.parametrize(("spec", "expected"), [
    ("8080:80", ("tcp", "", 8080, 80, 1)),
    ("127.0.0.1:8080-8081:80-81/udp", ("udp", "127.0.0.1", 8080, 80, 2)),
    ("0.0.0.0:80:80", ("tcp", "0.0.0.0", 80, 80, 1)),
    ("[::1]:8080:80", ("tcp", "::1", 8080, 80, 1)),
    ("[2001:db8::5]:8080-8081:80-81/udp", ("udp", "2001:db8::5", 8080, 80, 2)),
    ("[::]:80:80", ("tcp", "::", 80, 80, 1)),
    ("[2001:DB8:0:0::5]:53:53/udp", ("udp", "2001:db8::5", 53, 53, 1))])  # canonical text
def test_publish_specs_as_docker_writes_them(spec: str,
                                             expected: tuple[str, str, int, int, int]) -> None:
    p = ports.parse_port(spec)
    assert (p.protocol, p.host_ip, p.host_port, p.container_port, p.count) == expected


@pytest.mark.parametrize(("spec", "why"), [
    ("bogus", "use .*an IPv6 HOST_IP in brackets"),
    ("::1:8080:80", "use .*an IPv6 HOST_IP in brackets"),
    ("[::1]8080:80", "use "), ("[::1:8080:80", "use "), ("::1]:8080:80", "use "),
    ("[::1]:8080:80/sctp", "use "),
    ("[::g]:80:80", "'::g' is not an IPv6 address"),
    ("[]:80:80", "'' is not an IPv6 address"),
    ("[10.0.0.1]:80:80", "'10.0.0.1' is not an IPv6 address"),
    ("999.0.0.1:80:80", "'999.0.0.1' is not an IPv4 address"),
    ("localhost:80:80", "'localhost' is not an IPv4 address"),
    ("[::1]:8080-8082:80-81", "host and container ranges differ in size")])
def test_bad_publish_specs_name_the_spec(spec: str, why: str) -> None:
    with pytest.raises(ValueError, match=rf"^bad port spec {re.escape(repr(spec))}: {why}"):
        ports.parse_port(spec)


# -- the argument layout ------------------------------------------------------------


def test_run_takes_dockers_lifecycle_and_limit_flags() -> None:
    a = cli.build_parser().parse_args([
        "run", "-d", "--rm", "--restart", "on-failure:3", "--stop-signal", "SIGINT",
        "--stop-timeout", "30", "-m", "512m", "--cpus", "0.5", "--pids-limit", "64",
        "--log-opt", "max-size=10m", "--log-opt", "max-file=3", "-e", "K=V", "-w", "/tmp",
        "minimal", "sh", "-c", "echo hi", "-d"])
    assert (a.detach, a.rm, a.restart, a.stop_signal, a.stop_timeout, a.memory, a.cpus,
            a.pids_limit, a.log_opt, a.env, a.workdir) == (
        True, True, pb.RestartPolicy(name="on-failure", max_retries=3), "SIGINT", 30,
        512 * MiB, 0.5, 64, [("max-size", 10_000_000), ("max-file", 3)], ["K=V"], "/tmp")
    assert a.command == ["minimal", "sh", "-c", "echo hi", "-d"]  # after IMAGE: the command's


def test_the_new_commands_parse_as_docker_writes_them() -> None:
    p = cli.build_parser()
    a = p.parse_args(["exec", "-e", "A=1", "-w", "/", "web", "ls", "-l", "-e", "x"])
    assert (a.env, a.workdir, a.container, a.command) == (["A=1"], "/", "web",
                                                          ["ls", "-l", "-e", "x"])
    a = p.parse_args(["logs", "-f", "--tail", "5", "-t", "--since", "10m", "web"])
    assert (a.follow, a.tail, a.timestamps, a.container) == (True, 5, True, "web")
    assert isinstance(a.since, float) and a.until is None
    assert p.parse_args(["logs", "-n", "all", "web"]).tail is None
    assert p.parse_args(["stats"]).stream is False  # one shot by default
    assert p.parse_args(["stats", "--stream", "a", "b"]).containers == ["a", "b"]
    assert p.parse_args(["stats", "--no-stream"]).stream is False
    assert p.parse_args(["restart", "-t", "3", "a", "b"]).ids == ["a", "b"]
    assert p.parse_args(["stop", "a"]).time is None  # the container's own stop timeout
    assert p.parse_args(["run", "--pids-limit", "-1", "--", "/bin/true"]).pids_limit == 0
    for argv in (["start", "a", "b"], ["wait", "a", "b"], ["rm", "-f", "a", "b"],
                 ["inspect", "a", "b"], ["info"], ["version", "--format", "json"],
                 ["network", "rm", "a", "b"], ["port", "web", "80/tcp"],
                 ["events", "--since", "1h", "--until", "2024-05-01T10:00:00Z"]):
        assert p.parse_args(argv).fn is not None


@pytest.mark.parametrize("argv", [
    ["ps", "--format", "yaml"], ["run", "--memory", "lots", "--", "/bin/true"],
    ["run", "--restart", "sometimes", "--", "/bin/true"], ["logs", "--since", "x", "web"],
    ["stats", "--stream", "--no-stream"], ["stop", "-t", "-1", "web"], ["bogus"],
    ["run", "--log-opt", "max-file=0", "--", "/bin/true"]])
def test_usage_errors_exit_125_as_docker(argv: list[str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(argv)
    assert exit_.value.code == 125
    assert "error: " in capsys.readouterr().err


def test_rm_with_a_restart_policy_conflicts_before_any_call(
        capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--socket", "/nonexistent.sock", "run", "--rm", "--restart", "always",
                     "--", "/bin/true"])
    assert (code, capsys.readouterr().err) == (
        125, "sheepctl: conflicting options: --restart and --rm\n")


def test_create_request_carries_the_new_fields() -> None:
    req = builders.create_container(
        ["/bin/true"], restart_policy="on-failure:2", stop_signal="SIGINT",
        stop_timeout_seconds=5, resources=pb.Resources(memory_bytes=MiB, cpus=1.5,
                                                       pids_limit=9),
        log=pb.LogConfig(max_bytes=1000, max_files=2), auto_remove=True)
    assert (req.restart_policy, req.stop_signal, req.stop_timeout_seconds, req.auto_remove) \
        == (pb.RestartPolicy(name="on-failure", max_retries=2), "SIGINT", 5, True)
    assert (req.resources.memory_bytes, req.resources.cpus, req.log.max_files) == (MiB, 1.5, 2)
    assert not builders.create_container(["/bin/true"]).HasField("restart_policy")
    logs = builders.logs("web", follow=True, tail=0, since=NOW)
    assert logs.HasField("tail") and logs.tail == 0 and logs.since.seconds == int(NOW)
    assert not builders.logs("web").HasField("tail")


# -- printing -----------------------------------------------------------------------


def ts(when: float) -> Timestamp:
    t = Timestamp()
    t.FromNanoseconds(int(when * 1e9))
    return t


@pytest.mark.parametrize(("seconds", "text"), [
    (0.4, "Less than a second"), (1, "1 second"), (59, "59 seconds"),
    (60, "About a minute"), (119, "About a minute"), (120, "2 minutes"),
    (3599, "59 minutes"), (3600, "About an hour"), (7200, "2 hours"),
    (47 * 3600, "47 hours"), (3 * 86400, "3 days"), (20 * 86400, "2 weeks"),
    (90 * 86400, "3 months"), (800 * 86400, "2 years")])
def test_ages_read_as_dockers(seconds: float, text: str) -> None:
    assert output.human_duration(seconds) == text


def test_sizes_tables_and_times() -> None:
    assert [output.binary_size(n) for n in (0, 1023, 1536 * KiB, 512 * MiB, 3 * GiB)] == \
        ["0B", "1023B", "1.5MiB", "512MiB", "3GiB"]
    assert [output.size(n) for n in (648, 1234, 10**7)] == ["648B", "1.23kB", "10MB"]
    assert output.table(["A", "LONG HEADER"], [["value", "x"]]) == \
        ["A       LONG HEADER", "value   x"]
    assert output.rfc3339_nano(ts(NOW + 0.5)) == "2024-05-01T10:00:00.500000000Z"


def test_ps_status_as_docker() -> None:
    now = NOW
    running = pb.Container(state=pb.Container.RUNNING, started_at=ts(now - 300))
    exited = pb.Container(state=pb.Container.EXITED, exit_code=3, finished_at=ts(now - 2))
    restarting = pb.Container(state=pb.Container.EXITED, exit_code=1, restarting=True,
                              finished_at=ts(now - 1))
    assert [commands.status(c, now) for c in (running, exited, restarting,
                                              pb.Container(state=pb.Container.CREATED))] == [
        "Up 5 minutes", "Exited (3) 2 seconds ago", "Restarting (1) 1 second ago", "Created"]


def test_ps_and_port_write_ipv6_host_addresses_in_brackets() -> None:
    assert [ports.host_address(ip, 8080) for ip in ("", "10.0.0.1", "::", "2001:db8::5")] \
        == ["0.0.0.0:8080", "10.0.0.1:8080", "[::]:8080", "[2001:db8::5]:8080"]
    c = pb.Container(ports=[pb.PortMapping(protocol="udp", host_ip="::", host_port=53,
                                           container_port=53, count=1),
                            pb.PortMapping(host_port=8080, container_port=80, count=2)])
    assert commands._ports(c) == "[::]:53->53/udp, 0.0.0.0:8080-8081->80-81/tcp"


def stats_sample(cpu_ns: int, at: float, *, limit: int = 0) -> pb.ContainerStats:
    return pb.ContainerStats(
        container_id="ab" * 32, name="web", time=ts(at), cgroup_readable=True,
        cpu_usage_ns=cpu_ns, memory_usage_bytes=64 * MiB, memory_limit_bytes=limit,
        pids_current=3, interfaces=[pb.InterfaceStats(rx_bytes=1234, tx_bytes=648),
                                    pb.InterfaceStats(rx_bytes=1000, tx_bytes=0)])


def test_stats_cpu_percent_needs_two_samples() -> None:
    first, second = stats_sample(10**9, NOW), stats_sample(int(1.5e9), NOW + 2)
    assert stats.cpu_percent(first, second) == pytest.approx(25.0)
    assert stats.cpu_percent(second, second) is None  # no time went by
    one_shot = stats.frame([second], None)
    assert one_shot[0].split("   ")[:3] == ["CONTAINER ID", "NAME", "CPU TIME"]
    assert one_shot[1].split() == ["abababababab", "web", "1.50s", "64MiB", "/", "unlimited",
                                   "--", "2.23kB", "/", "648B", "3"]
    streamed = stats.frame([stats_sample(int(1.5e9), NOW + 2, limit=256 * MiB)],
                           {first.container_id: first})
    assert "CPU %" in streamed[0]
    assert streamed[1].split()[2:7] == ["25.00%", "64MiB", "/", "256MiB", "25.00%"]
    unreadable = pb.ContainerStats(container_id="cd" * 32, name="db")
    assert stats.frame([unreadable], None)[1].split()[2:] == \
        ["--", "--", "/", "--", "--", "0B", "/", "0B", "--"]


def test_log_writer_splits_streams_and_stamps_each_line_once() -> None:
    out, err = io.BytesIO(), io.BytesIO()
    w = LogWriter(timestamps=True, flush=False, stdout=out, stderr=err)
    for stream, data, partial, at in ((pb.LogEntry.STDOUT, b"hel", True, NOW),
                                      (pb.LogEntry.STDERR, b"oops\n", False, NOW + 1),
                                      (pb.LogEntry.STDOUT, b"lo\n", False, NOW + 2),
                                      (pb.LogEntry.STDOUT, b"\xff\x00raw\n", False, NOW + 3)):
        w.write(pb.LogEntry(stream=stream, data=data, partial=partial, time=ts(at)))
    assert out.getvalue() == (b"2024-05-01T10:00:00.000000000Z hello\n"
                              b"2024-05-01T10:00:03.000000000Z \xff\x00raw\n")
    assert err.getvalue() == b"2024-05-01T10:00:01.000000000Z oops\n"
    plain = io.BytesIO()
    w = LogWriter(timestamps=False, flush=True, stdout=plain, stderr=plain)
    w.write(pb.LogEntry(stream=pb.LogEntry.STDOUT, data=b"as is\n"))
    assert plain.getvalue() == b"as is\n"


def test_events_print_as_dockers() -> None:
    when = ts(datetime(2024, 5, 1, 10, tzinfo=UTC).timestamp())
    exited = pb.Event(time=when, type="container.exited", container_id="c" * 64,
                      attributes={"name": "web", "exit_code": "0"})
    assert commands.event_line(exited) == (f"2024-05-01T10:00:00.000000000Z container exited "
                                           f"{'c' * 64} (exit_code=0, name=web)")
    attached = pb.Event(time=when, type="network.attached", container_id="c" * 64,
                        network="backend", attributes={"address": "10.30.0.2"})
    assert commands.event_line(attached) == (
        f"2024-05-01T10:00:00.000000000Z network attached backend "
        f"(address=10.30.0.2, container={'c' * 64})")
    created = pb.Event(time=when, type="network.created", network="backend")
    assert commands.event_line(created) == \
        "2024-05-01T10:00:00.000000000Z network created backend"
