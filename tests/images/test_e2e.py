"""Containers on images through a real sheepd: an OCI layout made by the test from
Debian's busybox-static is imported over the API; a container on it sees only the
image's files, its own hostname and resolv.conf; its writes go to its own upper
layer and go with it; two containers on one image do not see each other's writes."""

from __future__ import annotations

import os
import tarfile
import time
from pathlib import Path

import grpc
import pytest
from sheep.runtime.v1 import runtime_pb2 as pb

from tests.images.builders import Entry, busybox_entries, layer, oci_layout
from tests.logtext import log_text
from tests.sandbox import Sandbox

pytestmark = pytest.mark.kernel

SCRIPT = ("ls /; echo host=$(cat /etc/hostname); echo cwd=$(pwd); echo env=$GREETING; "
          "cat /etc/resolv.conf; echo mine > /written; echo done; sleep 60")


def wait_log(c: pb.Container, marker: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = log_text(c.log_path)
        if marker in text or time.monotonic() > deadline:
            return text
        time.sleep(0.02)


def overlays_under(root: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f
                if " - overlay " in line and line.split()[4].startswith(str(root))]


@pytest.fixture
def minimal(box: Sandbox, tmp_path: Path) -> pb.Image:
    extra = [Entry("etc", tarfile.DIRTYPE), Entry("etc/.wh.image-release"),
             Entry("srv", tarfile.DIRTYPE), Entry("srv/motd", data=b"top layer\n")]
    src = oci_layout(tmp_path / "minimal", [layer(busybox_entries()), layer(extra)],
                     config={"Env": ["PATH=/bin", "GREETING=from-image"],
                             "Cmd": ["/bin/sh", "-c", SCRIPT], "WorkingDir": "/srv"})
    image: pb.Image = box.api.ImportImage(pb.ImportImageRequest(name="minimal",
                                                                source=str(src)))
    return image


def test_container_sees_only_its_image(box: Sandbox, minimal: pb.Image) -> None:
    c = box.run(name="on-image", image="minimal", hostname="imgbox")
    text = wait_log(c, "done")
    listing = text.split("host=")[0].split()
    assert set(listing) <= {"bin", "etc", "srv", "tmp", "proc", "dev", "sys"}, text
    assert {"bin", "srv"} <= set(listing)
    assert "host=imgbox" in text and "cwd=/srv" in text and "env=from-image" in text
    cdir = box.state_dir / "containers" / c.id
    assert (cdir / "etc/resolv.conf").read_text().strip() in text
    root = Path(f"/proc/{c.pid}/root")
    assert not (root / "etc/image-release").exists()  # whited out by the top layer
    assert not (root / "usr").exists() and not (root / str(box.state_dir)[1:]).exists()
    assert (cdir / "upper/written").read_text() == "mine\n"
    box.api.RemoveContainer(pb.RemoveContainerRequest(id=c.id, force=True))
    assert not cdir.exists() and overlays_under(box.state_dir) == []


def test_two_containers_on_one_image_keep_their_writes(box: Sandbox, minimal: pb.Image
                                                       ) -> None:
    a = box.run(name="a", image="minimal")
    wait_log(a, "done")
    b = box.run("/bin/sh", "-c", "test -e /written && echo seen || echo absent; "
                "echo b > /b-only; sleep 60", name="b", image=minimal.id[7:19])
    assert "absent" in wait_log(b, "absent")
    assert not (Path(f"/proc/{a.pid}/root") / "b-only").exists()
    with pytest.raises(grpc.RpcError) as err:
        box.api.RemoveImage(pb.RemoveImageRequest(id="minimal"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    for c in (a, b):
        box.api.RemoveContainer(pb.RemoveContainerRequest(id=c.id, force=True))
    assert overlays_under(box.state_dir) == []
    box.api.RemoveImage(pb.RemoveImageRequest(id="minimal"))
    assert box.api.ListImages(pb.ListImagesRequest()).images == []
    assert os.listdir(box.state_dir / "images" / "layers") == []


def test_command_is_required_without_image_cmd(box: Sandbox, tmp_path: Path) -> None:
    src = oci_layout(tmp_path / "nocmd", [layer(busybox_entries())])
    box.api.ImportImage(pb.ImportImageRequest(name="nocmd", source=str(src)))
    with pytest.raises(grpc.RpcError) as err:
        box.run(name="x", image="nocmd")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        box.run(name="y", image="no-such-image")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert os.listdir(box.state_dir / "containers") == []


def test_malformed_import_is_invalid_argument(box: Sandbox, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(layer([Entry("../escape", data=b"!")]))
    with pytest.raises(grpc.RpcError) as err:
        box.api.ImportImage(pb.ImportImageRequest(name="bad", source=str(bad)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert os.listdir(box.state_dir / "images" / "tmp") == []
