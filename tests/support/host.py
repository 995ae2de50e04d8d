"""What a test changes on the machine, recorded so that it can be put back.

``HostState`` remembers sysctls, whether folders existed, the root namespace's iptables
rules, and the mounts and cgroups made under given roots; ``restore()`` undoes each,
also after a failure, and says what it could not undo.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


def run(argv: list[str], *, check: bool = True, netns: str | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a short command (inside network namespace ``netns`` when given)."""
    if netns is not None:
        argv = ["nsenter", f"--net=/var/run/netns/{netns}", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done


def sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def mounts_under(root: str) -> list[str]:
    """Mount points at or below ``root``, deepest (last mounted) first."""
    found = []
    with open("/proc/self/mountinfo") as table:
        for line in table:
            point = line.split()[4].replace("\\040", " ")
            if point == root or point.startswith(root.rstrip("/") + "/"):
                found.append(point)
    return list(reversed(found))


def unmount_all(root: str) -> list[str]:
    """Unmount everything at or below ``root`` (lazily when busy); what is still mounted."""
    for _ in range(5):
        points = mounts_under(root)
        if not points:
            return []
        for point in points:
            if run(["umount", point], check=False).returncode != 0:
                run(["umount", "-l", point], check=False)
    return mounts_under(root)


def cgroup_controllers() -> list[Path]:
    """The cgroup v1 hierarchies of this machine (``/sys/fs/cgroup/<controller>``)."""
    base = Path("/sys/fs/cgroup")
    return sorted(p for p in base.iterdir() if p.is_dir() and not p.is_symlink() and p.name != "unified"
                  and (p / "cgroup.procs").exists())


def cgroup_hierarchies() -> list[Path]:
    """Every hierarchy a container's cgroup may appear in: the v1 controllers and, on a
    hybrid machine, the cgroup2 one (``unified``), where runc mirrors its groups."""
    unified = Path("/sys/fs/cgroup/unified")
    return [*cgroup_controllers(), *([unified] if (unified / "cgroup.procs").exists() else [])]


def cgroup_pids(group: str) -> set[int]:
    """Every process in ``/<group>`` and below, in any hierarchy."""
    pids: set[int] = set()
    for controller in cgroup_hierarchies():
        top = controller / group.strip("/")
        if not top.exists():
            continue
        for directory, _, files in os.walk(top):
            if "cgroup.procs" in files:
                try:
                    pids.update(int(p) for p in (Path(directory) / "cgroup.procs").read_text().split())
                except OSError:
                    continue
    return pids


def remove_cgroup(group: str) -> list[str]:
    """Remove ``/<group>`` and every cgroup below it in each hierarchy, deepest first."""
    left = []
    for controller in cgroup_hierarchies():
        top = controller / group.strip("/")
        if not top.exists():
            continue
        for directory, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
            try:
                os.rmdir(directory)
            except OSError as exc:
                left.append(f"{directory}: {exc.strerror}")
    return left


@dataclass
class HostState:
    """The machine as it was before a test cluster came up."""

    sysctls: dict[str, str] = field(default_factory=dict)
    #: folders that did not exist before (removed again if empty, or if ``owned``)
    absent: list[str] = field(default_factory=list)
    owned: set[str] = field(default_factory=set)
    iptables: str = ""

    @classmethod
    def record(cls, sysctls: list[str], folders: list[str], owned: set[str]) -> "HostState":
        """Remember ``sysctls``' values, which of ``folders`` are missing now, and the
        root namespace's iptables rules. ``owned`` folders are removed whole afterwards."""
        state = cls(owned=owned)
        for name in sysctls:
            state.sysctls[name] = sysctl_path(name).read_text().strip()
        state.absent = [f for f in folders if not os.path.lexists(f)]
        state.iptables = iptables_rules()
        return state

    def restore(self) -> list[str]:
        """Put every recorded value back; what could not be put back."""
        problems = []
        for name, value in self.sysctls.items():
            try:
                if sysctl_path(name).read_text().strip() != value:
                    sysctl_path(name).write_text(value)
            except OSError as exc:
                problems.append(f"sysctl {name}: {exc.strerror}")
        for folder in sorted(self.absent, key=len, reverse=True):
            if not os.path.isdir(folder) or os.path.islink(folder):
                continue
            if folder in self.owned:
                shutil.rmtree(folder, ignore_errors=True)
            else:
                try:
                    os.rmdir(folder)
                except OSError:
                    problems.append(f"{folder} existed not before and is not empty now: {os.listdir(folder)}")
        if iptables_rules() != self.iptables:
            problems.append("the root namespace's iptables rules changed")
        return problems


def iptables_rules() -> str:
    """The root namespace's rules, every table (empty without iptables)."""
    if shutil.which("iptables-save") is None:
        return ""
    lines = run(["iptables-save"], check=False).stdout.splitlines()
    return "\n".join(re.sub(r" \[\d+:\d+\]$", "", line) for line in lines if not line.startswith("#"))


__all__ = ["HostState", "cgroup_controllers", "cgroup_hierarchies", "cgroup_pids", "mounts_under", "remove_cgroup", "run", "unmount_all"]
