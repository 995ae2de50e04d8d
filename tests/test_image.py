"""The project's container image, built without a registry, runs in a real containerd.

``tests/support/images.py`` builds the image and the pause image once per content hash into a cache
outside the repository (the first time takes a few minutes: debootstrap, wheels, install).
Here a private containerd (Debian's: its own root, state, sockets, CNI folder and runc root
under the test's folder) imports both archives as a node's would, and ``ctr run`` runs the
image as its own user in an empty network namespace: the CLI, vineyardd, etcd, fusermount3
and the project's packages. The pause program holds until SIGTERM, then exits 0, and as a
PID namespace's init reaps the orphans left to it. Every process started here is stopped by
pid and every mount under the test's folder is unmounted, also when a test fails.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from support import images as build
from support.containerd import Containerd, remove_shim_sockets, shim_sockets
from vineyard_runtime.plumbing.processes import log_tail, spawn, terminate
from vineyard_runtime.plumbing.waiting import wait_until

pytestmark = pytest.mark.timeout(1800)  # the first build: debootstrap, wheels, install, gzip

#: What the image test needs on the machine, and the Debian package that brings it (debootstrap
#: and chroot build the image: asked for even when the cache holds it, so that a machine
#: without them fails here rather than at the first change of the image's content).
TOOLS = {"containerd": "containerd", "ctr": "containerd", "runc": "runc", "debootstrap": "debootstrap",
         "chroot": "coreutils", "unshare": "util-linux", "nsenter": "util-linux", "umount": "mount"}


def _require_tools() -> None:
    """Fail (not skip) with what to install when the machine lacks a tool or root."""
    missing = [f"{tool} (apt-get install {package})" for tool, package in TOOLS.items()
               if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")]
    if missing:
        pytest.fail(f"the image test needs {', '.join(missing)}; make test installs them", pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("the image test runs containerd and builds in a chroot: run it as root", pytrace=False)


def _tool(name: str) -> str:
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    assert found, name
    return found


@dataclass(frozen=True)
class Images:
    """The two archives (``build.BuiltImage``): the project's image and the pause image."""

    image: Any  # build.BuiltImage
    pause: Any


@pytest.fixture(scope="module")
def images() -> Images:
    """Both archives, from the cache or built now."""
    _require_tools()
    try:
        image = build.build_image()
        pause = build.build_pause()
    except build.ImageBuildError as error:
        pytest.fail(f"building the image failed: {error}", pytrace=False)
    print(image.summary(), pause.summary(), sep="\n", file=sys.stderr)
    return Images(image, pause)


def _archive_member(archive: Path, name: str) -> bytes:
    with tarfile.open(archive) as outer:
        member = outer.extractfile(name)
        assert member is not None, f"{archive} has no file {name}"
        return member.read()


def _manifest(archive: Path) -> dict[str, Any]:
    manifests = json.loads(_archive_member(archive, "manifest.json"))
    assert len(manifests) == 1, manifests
    return dict(manifests[0])


def _image_config(archive: Path) -> dict[str, Any]:
    return dict(json.loads(_archive_member(archive, _manifest(archive)["Config"])))


def _processes_with_parent(parent: int) -> list[int]:
    """Pids whose parent is ``parent``, zombies included (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("PPid", "").strip() == str(parent):
            found.append(int(entry))
    return found


@pytest.fixture(scope="module")
def containerd(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    """A private containerd with both images imported into the kubelet's namespace."""
    run_dir_existed = Path("/run/containerd").exists()  # the shims' sockets go there, whatever the config
    sockets = shim_sockets()
    daemon = Containerd(tmp_path_factory.mktemp("containerd"))
    try:
        daemon.start()
        for built in (images.image, images.pause):
            daemon.import_image(built.archive)
        yield daemon
    finally:
        problems = daemon.stop()
        if not problems:  # nothing mounted or running under it any more: its images go too
            shutil.rmtree(daemon.directory / "root", ignore_errors=True)
        remove_shim_sockets(sockets)
        if not run_dir_existed:
            shutil.rmtree("/run/containerd", ignore_errors=True)
        assert not problems, f"the test containerd left: {'; '.join(problems)}"


def test_a_second_build_builds_nothing(images: Images) -> None:
    again = build.build_image()
    pause = build.build_pause()
    assert (again.built, again.archive, again.name) == (False, images.image.archive, images.image.name)
    assert (pause.built, pause.archive) == (False, images.pause.archive)
    assert again.archive_bytes == images.image.archive_bytes


def test_the_image_is_named_after_its_content_and_configured_as_the_dockerfile(images: Images) -> None:
    tag = build.content_hash(build.ROOT, build.PROJECT_FILES + build.RECIPE_FILES)[:16]
    assert images.image.name == f"docker.io/fluid-vineyard/fluid-vineyard:{tag}"
    assert _manifest(images.image.archive)["RepoTags"] == [images.image.name]
    config = _image_config(images.image.archive)
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert config["config"]["User"] == "65532"
    assert config["config"]["Cmd"] == ["fluidv", "--help"]
    path = next(env for env in config["config"]["Env"] if env.startswith("PATH="))
    assert "/usr/local/bin" in path.split("=", 1)[1].split(":")
    assert len(config["rootfs"]["diff_ids"]) == 1
    dockerfile = (build.ROOT / "Dockerfile").read_text()
    assert " ".join(build.PACKAGES) in dockerfile, "the Dockerfile's apt-get line and PACKAGES differ"
    assert 'CMD ["fluidv", "--help"]' in dockerfile and "USER 65532" in dockerfile


def test_both_images_are_in_the_kubelets_namespace(images: Images, containerd: Containerd) -> None:
    listed = containerd.ctr("images", "ls", "-q").stdout.split()
    assert images.image.name in listed and images.pause.name in listed, listed


@pytest.mark.parametrize(("command", "expected"), [
    ((), "Usage: fluidv"),  # the image's CMD
    (("fluidv", "--version"), f"fluidv {version('fluid-vineyard')} (vineyardd {version('vineyard-bdist')})"),
    (("vineyardd", "--version"), "vineyardd version 0.24.2"),
    (("etcd", "--version"), "etcd Version:"),
    (("fusermount3", "-V"), "fusermount3 version:"),
    (("python3", "-c", "import objects, fluid_core, vineyard_runtime, vineyard, mfusepy; print('imported')"),
     "imported"),
    (("id", "-u"), "65532"),
    (("python3", "-c", "import getpass; print(getpass.getuser())"), "fluidv"),  # kopf names itself so
], ids=["cmd", "fluidv", "vineyardd", "etcd", "fusermount3", "packages", "user", "user-name"])
def test_the_image_runs(images: Images, containerd: Containerd, command: tuple[str, ...], expected: str) -> None:
    done = containerd.run(images.image.name, *command)
    assert done.returncode == 0, f"{command or 'CMD'} exited {done.returncode}: {done.stdout[-1500:]} {done.stderr[-1500:]}"
    assert expected in done.stdout + done.stderr, done.stdout[-1500:] + done.stderr[-1500:]


def test_the_demo_runs_in_the_image_etcd_vineyardd_and_clients_together(images: Images,
                                                                        containerd: Containerd) -> None:
    """A local cluster inside one container, as the image's user: etcd, two vineyardd nodes,
    and the pipeline's steps sharing objects through them over loopback only."""
    done = containerd.run(images.image.name, "fluidv", "demo", "--nodes", "2", "--size-mib", "16")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "evaluation: accuracy" in output and "cluster stopped" in output, output[-3000:]


def test_the_image_carries_no_compiler_and_no_test_extras(images: Images, containerd: Containerd) -> None:
    probe = ("import importlib.util, shutil; "
             "print([shutil.which(c) for c in ('gcc', 'cc', 'c++', 'go')], "
             "[m for m in ('pytest', 'mypy', 'torch', 'hypothesis') if importlib.util.find_spec(m)])")
    done = containerd.run(images.image.name, "python3", "-c", probe)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[None, None, None, None] []"


def test_pause_holds_until_sigterm_then_exits_zero(images: Images, containerd: Containerd) -> None:
    cid, argv = containerd.run_argv(images.pause.name, ())
    log = containerd.directory / f"{cid}.log"
    holder = spawn(argv, log_path=str(log))
    try:
        def running() -> bool:
            tasks = containerd.ctr("tasks", "ls").stdout.splitlines()
            return any(line.split()[:1] == [cid] and "RUNNING" in line for line in tasks)

        assert wait_until(running, 60, interval=0.1), f"the pause container never ran: {log_tail(str(log))}"
        assert holder.poll() is None, "pause exited on its own"
        assert containerd.ctr("tasks", "kill", "-s", "SIGTERM", cid).returncode == 0
        assert holder.wait(timeout=60) == 0, log_tail(str(log))
    finally:
        if holder.poll() is None:
            containerd.ctr("tasks", "kill", "-s", "SIGKILL", cid)
            terminate([holder.pid])
        holder.wait(timeout=30)


@pytest.fixture
def pause_binary(images: Images, tmp_path: Path) -> Path:
    """The pause image's /pause, taken out of its archive's layer."""
    layer = _archive_member(images.pause.archive, _manifest(images.pause.archive)["Layers"][0])
    with tarfile.open(fileobj=gzip.GzipFile(fileobj=io.BytesIO(layer))) as files:
        member = files.extractfile("pause")
        assert member is not None
        path = tmp_path / "pause"
        path.write_bytes(member.read())
    path.chmod(0o755)
    return path


def test_pause_reaps_the_orphans_of_its_pid_namespace(pause_binary: Path, tmp_path: Path) -> None:
    log = str(tmp_path / "unshare.log")
    unshare = spawn([_tool("unshare"), "--pid", "--fork", "--kill-child", str(pause_binary)], log_path=log)
    pause: int | None = None
    try:
        pause = wait_until(lambda: next(iter(_processes_with_parent(unshare.pid)), None), 30)
        assert pause, f"pause did not start under unshare: {log_tail(log)}"
        # A shell in pause's namespace leaves a sleep behind (its output away from run()'s
        # pipes): the orphan goes to the namespace's init, pause. Killed, it must be reaped.
        orphan = "sleep 600 </dev/null >/dev/null 2>&1 & exit 0"
        done = subprocess.run([_tool("nsenter"), f"--target={pause}", "--pid", "--", "sh", "-c", orphan],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        orphans = wait_until(lambda: _processes_with_parent(pause), 30)
        assert orphans, "the orphan never reached pause"
        for pid in orphans:
            os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: not _processes_with_parent(pause), 60), \
            f"pause left children unreaped: {_processes_with_parent(pause)}"
        os.kill(pause, signal.SIGTERM)
        assert unshare.wait(timeout=60) == 0, log_tail(log)
    finally:
        # unshare ignores SIGTERM while it waits: pause's end (and with it its namespace's) ends it
        terminate([pid for pid in (pause, unshare.pid) if pid])
        unshare.wait(timeout=30)
