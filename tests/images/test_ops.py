"""CreateContainer with an image or a rootfs directory, over the fakes (no privilege):
the image's Entrypoint, Cmd, Env and WorkingDir fill in what the request leaves out;
every failure of a create leaves no root prepared; removal and leak collection
release roots."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from sheep_runtime.model import Image
from tests.ops.daemon import Daemon, running_daemon
from tests.ops.helpers import collect_leaks, rpc_error

IMAGE = Image(name="app", id="sha256:" + "ab" * 32, layers=("sha256:" + "cd" * 32,),
              created_at=0.0, size=1, env=("PATH=/bin", "MODE=image", "KEEP=1"),
              cmd=("serve", "--port", "80"), entrypoint=("/bin/app",), working_dir="/srv")


@pytest.fixture
async def d(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with running_daemon(tmp_path / "state") as daemon:
        daemon.machine.images.add(IMAGE)
        yield daemon


async def test_image_config_fills_in_the_request(d: Daemon) -> None:
    c = await d.api.CreateContainer(pb.CreateContainerRequest(image="app", network_mode="none"))
    spec = d.machine.processes.spec_of(c.id)
    assert spec.argv == ("/bin/app", "serve", "--port", "80")
    assert dict(spec.env) == {"PATH": "/bin", "MODE": "image", "KEEP": "1"}
    assert spec.cwd == "/srv" and spec.rootfs == d.machine.images.roots[c.id]
    c2 = await d.api.CreateContainer(pb.CreateContainerRequest(
        image="app", command=["--debug"], env={"MODE": "request"}, working_dir="/tmp",
        network_mode="none"))
    spec = d.machine.processes.spec_of(c2.id)
    assert spec.argv == ("/bin/app", "--debug") and spec.env["MODE"] == "request"
    assert spec.cwd == "/tmp" and tuple(c2.command) == spec.argv


async def test_no_image_keeps_the_host_view_and_requires_a_command(d: Daemon) -> None:
    c = await d.api.CreateContainer(pb.CreateContainerRequest(command=["sleep", "1"],
                                                              network_mode="none"))
    spec = d.machine.processes.spec_of(c.id)
    assert spec.rootfs is None and spec.cwd == "/"
    bad: tuple[dict[str, Any], ...] = (
        {}, {"rootfs": "/srv/tree"}, {"command": ["x"], "rootfs": "relative"},
        {"command": ["x"], "image": "app", "rootfs": "/t"}, {"command": ["x"], "rootfs": "/"})
    for fields in bad:
        request = pb.CreateContainerRequest(network_mode="none", **fields)
        e = await rpc_error(d.api.CreateContainer(request))
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, request
    request = pb.CreateContainerRequest(image="nope", network_mode="none")
    e = await rpc_error(d.api.CreateContainer(request))
    assert e.code() == grpc.StatusCode.NOT_FOUND


async def test_every_failed_create_leaves_no_root(d: Daemon) -> None:
    request = pb.CreateContainerRequest(image="app")
    n = 0
    while True:
        d.machine.calls.fail_nth(n)
        try:
            await d.api.CreateContainer(request)
        except grpc.aio.AioRpcError:
            assert d.machine.images.roots == {}, f"root left when call #{n} failed"
            n += 1
            continue
        finally:
            d.machine.calls.disarm()
        break
    assert n > 3 and len(d.machine.images.roots) == 1


async def test_remove_and_leak_collection_release_roots(d: Daemon, tmp_path: Path) -> None:
    c = await d.api.CreateContainer(pb.CreateContainerRequest(image="app", network_mode="none"))
    e = await rpc_error(d.api.RemoveImage(pb.RemoveImageRequest(id="app")))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    await d.api.RemoveContainer(pb.RemoveContainerRequest(id=c.id, force=True))
    assert d.machine.images.roots == {}
    await d.api.RemoveImage(pb.RemoveImageRequest(id="app"))
    assert (await d.api.ListImages(pb.ListImagesRequest())).images == []
    # A root whose container has no record (a daemon killed mid-create) is released.
    orphan = d.config.containers_dir / ("0" * 64)
    await d.machine.images.prepare_rootfs("0" * 64, container_dir=orphan, image=IMAGE)
    await collect_leaks(d)
    assert d.machine.images.roots == {} and not orphan.exists()
