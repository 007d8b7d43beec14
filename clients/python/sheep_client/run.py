"""sheepctl run: create a container from docker's options; in the foreground, stream
its output while it runs and return its exit status, as `docker run` does."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import grpc
from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_client.client import SheepClient
from sheep_client.container_io import LogWriter
from sheep_client.errors import NotFound, from_rpc_error
from sheep_client.parsing import log_config, parse_env
from sheep_client.ports import parse_port

#: How long `run -d` watches for a command that cannot start (found and executed
#: within milliseconds of the start; 0.5 s leaves a wide margin on a loaded host).
EARLY_EXIT_SECONDS = 0.5
#: Exit statuses of a command that could not be run, as a shell and docker give them.
CANNOT_EXECUTE, NOT_FOUND = 126, 127
#: The retained events of a new container: replay all of them (none is older).
REPLAY_ALL = 1.0


def image_and_command(a: argparse.Namespace) -> tuple[str, list[str]]:
    """`run`'s IMAGE and command: the first argument is the image unless it is --, an
    absolute path (no image name is) or --rootfs was given."""
    args: list[str] = a.command
    if args[:1] == ["--"]:
        return "", args[1:]
    if not args or args[0].startswith("/") or a.rootfs:
        return "", args
    return args[0], args[1:]


def networks(a: argparse.Namespace) -> list[pb.NetworkAttachmentRequest]:
    """The networks of `run`: --network ones (sheep0 if none but --ip, -p or
    --network-alias ask for one), with the aliases on each, --ip and -p on the first."""
    ports = [parse_port(p) for p in a.publish]
    nets = [pb.NetworkAttachmentRequest(network=n, aliases=a.network_alias)
            for n in a.network]
    if not nets and (a.ip or ports or a.network_alias):
        nets = [pb.NetworkAttachmentRequest(network="sheep0", aliases=a.network_alias)]
    if nets:
        nets[0].ip = a.ip
        nets[0].ports.extend(ports)
    return nets


def resources(a: argparse.Namespace) -> pb.Resources | None:
    """--memory, --cpus and --pids-limit as a Resources message; None without them."""
    if not (a.memory or a.cpus or a.pids_limit):
        return None
    return pb.Resources(memory_bytes=a.memory, cpus=a.cpus, pids_limit=a.pids_limit)


def restart_policy(a: argparse.Namespace) -> pb.RestartPolicy | None:
    """--restart; with --rm only "no" (docker: "Conflicting options")."""
    policy: pb.RestartPolicy | None = a.restart
    if a.rm and policy is not None and policy.name not in ("", "no"):
        raise ValueError("conflicting options: --restart and --rm")
    return policy


def create(api: SheepClient, a: argparse.Namespace) -> pb.Container:
    """Create and start the container `run` describes. --rm with -d makes the daemon
    remove it when it exits; in the foreground `run` removes it itself."""
    image, command = image_and_command(a)
    if not image and not command:
        raise ValueError("run needs an image or a command: sheepctl run [OPTIONS] IMAGE "
                         "[COMMAND [ARG...]] or sheepctl run [OPTIONS] -- COMMAND [ARG...]")
    try:
        return api.create_container(
            command, name=a.name, env=parse_env(a.env, os.environ), hostname=a.hostname,
            networks=networks(a), network_mode=a.network_mode, privileged=a.privileged,
            cap_add=a.cap_add, image=image,
            rootfs=os.path.abspath(a.rootfs) if a.rootfs else "", working_dir=a.workdir,
            restart_policy=restart_policy(a), stop_signal=a.stop_signal,
            stop_timeout_seconds=a.stop_timeout, resources=resources(a),
            log=log_config(a.log_opt), auto_remove=a.rm and a.detach)
    except NotFound as e:
        if image and e.resource is not None and e.resource.type == "image":
            raise NotFound(e.code, f"{e.details} (sheepctl images lists them; a command "
                           "on the host's root goes after --: sheepctl run [OPTIONS] -- "
                           f"{' '.join([image, *command])})") from None
        raise


def early_exit(api: SheepClient, c: pb.Container) -> int | None:
    """The container's exit status if it exits within EARLY_EXIT_SECONDS, else None.
    From its retained events, which outlive an auto-removed container."""
    with api.watch_events({"container": c.id, "type": "container.exited"}, since=REPLAY_ALL,
                          duration=EARLY_EXIT_SECONDS) as events:
        for e in events:
            return int(e.attributes.get("exit_code", "0")) & 0xFF
    return None


def cannot_run(c: pb.Container, code: int | None, *, removed: bool) -> bool:
    """Tell the user a command was not found or not executable; True if so."""
    why = {NOT_FOUND: "not found", CANNOT_EXECUTE: "not executable"}.get(code or 0)
    if why is None:
        return False
    what = c.command[0] if c.command else "the command"
    then = "it was removed (--rm)" if removed else \
        f"it stays, exited, as {c.name}: sheepctl rm {c.name}"
    print(f"sheepctl: {what}: {why} in the container (exit {code}); {then}",
          file=sys.stderr)
    return True


class ExitWaiter:
    """A WaitContainer call started at once, so that an exit (and a restart by its
    policy) while the output streams is not missed; `result()` blocks for it."""

    def __init__(self, api: SheepClient, container_id: str) -> None:
        self._future: Any = api.stub.WaitContainer.future(
            pb.WaitContainerRequest(id=container_id))

    def result(self) -> int:
        """The exit status, 0-255 as a shell sees it (-1, unknown, is 255)."""
        try:
            resp: pb.WaitContainerResponse = self._future.result()
        except grpc.RpcError as e:  # the failed call itself
            raise from_rpc_error(e) from None
        return resp.exit_code & 0xFF

    def cancel(self) -> None:
        self._future.cancel()


def foreground(api: SheepClient, a: argparse.Namespace, c: pb.Container) -> int:
    """Stream the container's stdout and stderr to ours until it exits; remove it with
    --rm; its exit status. Interrupted, it leaves the container running."""
    waiter = ExitWaiter(api, c.id)
    try:
        writer = LogWriter(timestamps=False, flush=True)
        with api.logs(c.id, follow=True) as entries:
            for entry in entries:
                writer.write(entry)
        code = waiter.result()
    except KeyboardInterrupt:
        print(f"\nsheepctl: {c.name} goes on running: sheepctl stop {c.name}",
              file=sys.stderr)
        raise
    finally:
        waiter.cancel()
    if a.rm:
        api.remove_container(c.id, force=True)
    cannot_run(c, code, removed=a.rm)
    return code


def cmd_run(api: SheepClient, a: argparse.Namespace) -> int:
    """Create and start a container. -d: print its id once it runs; else stream its
    output, wait for the exit and return its status (125 if the daemon failed)."""
    c = create(api, a)
    if not a.detach:
        return foreground(api, a, c)
    code = early_exit(api, c)
    if cannot_run(c, code, removed=a.rm):
        return code or 0
    print(c.id)
    return 0
