"""Root file systems with the CPythons users have beside the host's, to run tests on them.

Each is Debian's: ``debootstrap --variant=minbase`` of the suite that carries the Python
(CPython 3.13 from Debian 13 "trixie", 3.14 and 3.15 from the testing suite "forky"),
with a venv in ``/opt/venv`` holding the project's dependencies and the test tools, their
wheels picked from PyPI by the host's pip for that Python (so the chroot needs no
network). Roots are kept in ``$FLUIDV_PYTHONS_CACHE``, else
``$XDG_CACHE_HOME/fluid-vineyard/pythons``, else ``~/.cache/fluid-vineyard/pythons``, one
per Python and content (the suite, the packages, the requirements): `make
pythons` (part of `make test`'s set-up) builds what is missing, and a second run builds
nothing.

At test time the project's own wheel goes into an overlay of the root, and the tests run
there in new PID, mount and network namespaces (:func:`run_in_root`): every process they
start ends with them, every mount goes with the namespace, and the only network is a
loopback of its own.

    python tests/support/pythons.py [3.13 3.14 3.15]   # build what is missing; print the roots
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))  # tests/: this file's package (support)

from support import images  # noqa: E402
from support.images import ARCH, MIRROR, ImageBuildError, locked, need_program, need_root, run_logged, scratch_dir  # noqa: E402


@dataclass(frozen=True)
class Python:
    """A CPython of a Debian suite."""

    version: str
    suite: str
    #: debootstrap's script for the suite (bookworm's debootstrap knows no "forky")
    script: str

    @property
    def packages(self) -> tuple[str, ...]:
        return (f"python{self.version}", f"python{self.version}-venv", "ca-certificates")


PYTHONS = {
    "3.13": Python("3.13", "trixie", "trixie"),
    "3.14": Python("3.14", "forky", "sid"),
    "3.15": Python("3.15", "forky", "sid"),
}
#: the test tools a run needs beside the project's dependencies (no vineyard: it has no
#: wheels past 3.12, and the tests that need it skip)
TEST_TOOLS = ("pytest>=8", "pytest-timeout>=2.2", "pytest-asyncio>=0.23", "hypothesis>=6.100")
#: the manylinux platforms whose wheels suit these suites' glibc (2.41 and later)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux_2_12_x86_64", "manylinux2010_x86_64", "linux_x86_64")
VENV = "/opt/venv"
#: the roots kept per Python (the most recently used); older ones are removed
KEEP = 2


class PythonRootError(ImageBuildError):
    """A root file system could not be built or used; the message says why."""


def cache_dir() -> Path:
    return images.cache_dir("pythons", "FLUIDV_PYTHONS_CACHE")


def requirements() -> list[str]:
    """The project's dependencies (from pyproject.toml) and the test tools."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return sorted([*project["dependencies"], *TEST_TOOLS])


def root_path(python: Python, cache: Path | None = None) -> Path:
    """Where the root of ``python`` for the current content is (built or not)."""
    key = hashlib.sha256(json.dumps([python.version, python.suite, python.script, MIRROR, ARCH,
                                     list(python.packages), requirements(), PLATFORMS, VENV]).encode()).hexdigest()
    return (cache or cache_dir()) / f"cpython{python.version}-{key[:16]}"


def is_built(root: Path) -> bool:
    """True when ``root`` holds a whole root (its venv's python is a link into it, which
    is dangling seen from outside)."""
    return os.path.lexists(root / VENV.lstrip("/") / "bin" / "python")


def _say(message: str) -> None:
    print(f"[pythons {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def build_root(python: Python, cache: Path | None = None) -> Path:
    """The root of ``python``: from the cache, else built (about two minutes)."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    out = root_path(python, cache)
    with locked(cache):
        if is_built(out):
            os.utime(out)
            return out
        need_root()
        debootstrap = need_program("debootstrap", "debootstrap")
        log = cache / f"{out.name}.log"
        log.write_text("")
        started = time.monotonic()
        with scratch_dir(cache, "build-") as work:
            rootfs = work / "rootfs"
            _say(f"debootstrap {python.suite} with {', '.join(python.packages)} (log {log}) ...")
            run_logged([debootstrap, "--variant=minbase", f"--arch={ARCH}", f"--include={','.join(python.packages)}",
                  python.suite, str(rootfs), MIRROR, f"/usr/share/debootstrap/scripts/{python.script}"],
                 log, f"debootstrap of Debian {python.suite} from {MIRROR}")
            wheelhouse = rootfs / "tmp" / "wheelhouse"
            _say(f"wheels for CPython {python.version} ...")
            run_logged([sys.executable, "-m", "pip", "--disable-pip-version-check", "download", "--only-binary=:all:",
                  "--python-version", python.version, "--implementation", "cp",
                  *[arg for platform in PLATFORMS for arg in ("--platform", platform)],
                  "-d", str(wheelhouse), *requirements()], log, f"collecting the wheels for CPython {python.version}")
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
            venv = f"{VENV}/bin"
            script = (f"python{python.version} -m venv {VENV} && "
                      f"{venv}/pip install --quiet --disable-pip-version-check --no-index --find-links /tmp/wheelhouse "
                      + " ".join(shlex.quote(r) for r in requirements()))
            run_logged([need_program("chroot", "coreutils"), str(rootfs), "/bin/sh", "-c", script], log,
                 f"the venv of CPython {python.version} in the chroot", env=env)
            shutil.rmtree(wheelhouse)
            for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
                deb.unlink()
            os.replace(rootfs, out)
        _say(f"{out} built in {time.monotonic() - started:.0f} s")
        _prune(cache, python)
        return out


def _prune(cache: Path, python: Python) -> None:
    roots = sorted((p for p in cache.glob(f"cpython{python.version}-*") if p.is_dir()),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    for old in roots[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)
        (cache / f"{old.name}.log").unlink(missing_ok=True)


def build_wheel(out: Path) -> Path:
    """The project's wheel, built from this checkout into ``out`` (no network)."""
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "--no-deps",
                           "--no-build-isolation", "-w", str(out), str(ROOT)], capture_output=True, text=True)
    wheels = list(out.glob("fluid_vineyard-*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        raise PythonRootError(f"building the project's wheel failed: {done.stderr[-2000:]}")
    return wheels[0]


#: run in the new namespaces: the overlay over the root, what a process needs of it, then
#: the command in a chroot; the namespaces' end takes every mount and process with them
_INSIDE = """set -e
ip link set lo up
mount -t tmpfs -o size=4g fluidv-pythons "$SCRATCH"
mkdir -p "$SCRATCH/upper" "$SCRATCH/work" "$SCRATCH/root"
mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$SCRATCH/upper,workdir=$SCRATCH/work" "$SCRATCH/root"
mount -t proc proc "$SCRATCH/root/proc"
mount --rbind /dev "$SCRATCH/root/dev"
mount -t tmpfs tmpfs "$SCRATCH/root/dev/shm"
mkdir -p "$SCRATCH/root/src" "$SCRATCH/root/wheels"
mount --bind -o ro "$SOURCE" "$SCRATCH/root/src"
mount --bind -o ro "$WHEELS" "$SCRATCH/root/wheels"
exec chroot "$SCRATCH/root" python -c "$REAPER" /bin/sh -c "$COMMAND"
"""
#: the namespace's first process (its init): runs the command and reaps every orphan the
#: tests leave (a zombie would look alive to them), then ends, and with it the namespace
_REAPER = """import os, sys
child = os.fork()
if child == 0:
    os.execv(sys.argv[1], sys.argv[1:])
while True:
    pid, status = os.waitpid(-1, 0)
    if pid == child:
        sys.exit(min(abs(os.waitstatus_to_exitcode(status)) or 0, 255))
"""


def run_in_root(root: Path, wheel: Path, command: str, scratch: Path, *,
                timeout: float) -> subprocess.CompletedProcess[str]:
    """Install ``wheel`` into an overlay of ``root`` and run ``command`` (sh) there, the
    checkout read-only at ``/src``, in new PID, mount and network namespaces."""
    ip = need_program("ip", "iproute2")
    env = {"PATH": f"{VENV}/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin:{os.path.dirname(ip)}", "HOME": "/root",
           "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": "/tmp",
           "SCRATCH": str(scratch), "LOWER": str(root), "REAPER": _REAPER, "SOURCE": str(ROOT), "WHEELS": str(wheel.parent),
           "COMMAND": (f"pip install --quiet --disable-pip-version-check --no-deps --no-index /wheels/{wheel.name} "
                       f"&& cd /tmp && {command}")}
    scratch.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["unshare", "--pid", "--fork", "--kill-child", "--mount", "--net",
                           "--propagation", "private", "/bin/sh", "-c", _INSIDE],
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)


def main(argv: list[str]) -> int:
    """Build the roots of ``argv``'s Pythons (all by default) and print their paths."""
    wanted = argv or list(PYTHONS)
    unknown = [v for v in wanted if v not in PYTHONS]
    if unknown:
        print(f"usage: pythons.py [{' '.join(PYTHONS)}]: unknown {', '.join(unknown)}", file=sys.stderr)
        return 2
    try:
        for version in wanted:
            print(build_root(PYTHONS[version]))
    except ImageBuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
