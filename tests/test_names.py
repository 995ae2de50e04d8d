"""Object names and file paths never escape their dataset, export, backup or load root.

Names stored before the naming rule are planted with the rule switched off in this
process (``legacy_put``), as an older version or another client would have written
them; everything else goes through the code users run.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import string
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import objects
import objects.store
from support.reading import memory_used
from support.waiting import wait_for as wait
from fluid_core.flow import LocalRunner
from fluid_core.flow.context import StepContext
from fluid_core.flow.ops import OperationFailed, backup, export_objects, import_files
from fluid_core.models import parse
from objects import InvalidName, check_name
from objects.fuseview import DatasetView
from objects.names import MAX_NAME_BYTES, name_problem

API = "data.fluid.io/v1alpha1"
FUSE = os.path.exists("/dev/fuse") and shutil.which("fusermount3") is not None


@pytest.fixture
def store(shared_cluster):
    with objects.connect(shared_cluster.nodes[0].socket) as connected:
        yield connected


@contextlib.contextmanager
def rule_off():
    """Names as a client without the rule stored them."""
    checked = objects.names.check_name
    objects.names.check_name = lambda name: name
    try:
        yield
    finally:
        objects.names.check_name = checked


def legacy_put(store, value, name: str) -> None:
    with rule_off():
        store.put(value, name, replace=True)


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def run(cluster, *documents: dict) -> dict:
    runs = LocalRunner(cluster, [parse(d) for d in documents]).run(timeout=120)
    return {r.name: r for r in runs}


def dataset(name: str) -> dict:
    return {"apiVersion": API, "kind": "Dataset", "metadata": {"name": name}, "spec": {}}


def op(kind: str, name: str, ds: str, **spec: object) -> dict:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": {"dataset": {"name": ds}, **spec}}


# -- the rule ---------------------------------------------------------------------------

GOOD = ["a", "default/ds/x", "a/b/c.d", "é/日本/🙂", "a b/c", "..a/b..", ".hidden/x", "x" * 255]
BAD = {
    "default/ds/../../escape": "'..' segment",
    "a//b": "empty segment",
    "/a": "empty segment",
    "a/": "empty segment",
    "a/./b": "'.' segment",
    "..": "'..' segment",
    "a\nb": "control character '\\n'",
    "a\x00b": "control character",
    "a\x1bb": "control character",
    "a\u2028b": "control character",
    "x" * 256: "longer than 255 bytes",
    "/".join(["y" * 200] * 6): f"at most {MAX_NAME_BYTES} bytes",
    "": "cannot be empty",
}


@pytest.mark.parametrize("name", GOOD)
def test_names_that_follow_the_rule(name):
    assert name_problem(name) is None and check_name(name) == name


@pytest.mark.parametrize("name", list(BAD))
def test_names_that_break_the_rule_say_which_part(name):
    with pytest.raises(InvalidName, match="is refused: .*" + re.escape(BAD[name])):
        check_name(name)
    assert isinstance(InvalidName("x"), objects.ObjectsError)


# -- writes -----------------------------------------------------------------------------

def test_every_write_refuses_a_bad_name_and_leaves_nothing(store):
    used = memory_used(store)
    huge = "default/w/" + "z" * (1 << 20)  # a 1 MiB name
    for name in ["default/w/../../escape", "default/w//x", "default/w/a\nb", huge]:
        with pytest.raises(InvalidName):
            store.put(np.arange(100_000.0), name)
        with pytest.raises(InvalidName):
            with store.allocate(10, name=name) as array:
                array[:] = 1
        with pytest.raises(InvalidName):
            store.open_writer(name)
    assert store.list(prefix="default/w") == []
    assert memory_used(store) == used  # nothing half-made
    ref = store.put(np.arange(3.0), "default/w/fine/name")  # the rule leaves good names alone
    assert store.get(ref).tolist() == [0.0, 1.0, 2.0]
    store.delete_many(prefix="default/w/")


def test_a_legacy_name_can_still_be_read_and_deleted(store):
    legacy_put(store, np.arange(2.0), "default/old/../../x")
    assert store.get("default/old/../../x").tolist() == [0.0, 1.0]
    store.delete("default/old/../../x")
    assert not store.exists("default/old/../../x")


# -- exports and backups ----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["DataMigrate", "DataBackup"])
def test_exports_refuse_legacy_names_and_write_nothing_anywhere(shared_cluster, store, tmp_path, kind):
    legacy_put(store, np.arange(4.0), "default/leak/../../escaped")
    store.put(np.arange(2.0), "default/leak/fine", replace=True)
    root = tmp_path / "deep" / "er" / "out"
    if kind == "DataMigrate":
        spec = {"from": {"dataset": {"name": "leak"}}, "to": {"externalStorage": {"uri": f"file://{root}"}}}
    else:
        spec = {"backupPath": f"local://{root}"}
    runs = run(shared_cluster, dataset("leak"), op(kind, "out", "leak", **spec))
    assert runs["out"].phase == "Failed"
    assert "break the object naming rule" in runs["out"].message and "'../../escaped'" in runs["out"].message
    assert "Nothing was done" in runs["out"].message
    # the flow's check made the (empty) root; nothing was written in it or beside it
    assert [p for p in files_under(tmp_path) if (tmp_path / p).is_file()] == []
    store.delete_many(prefix="default/leak/")


def test_an_export_through_a_symlink_out_of_its_root_is_refused(store, tmp_path):
    outside, root = tmp_path / "outside", tmp_path / "export"
    outside.mkdir(), root.mkdir()
    (root / "sub").symlink_to(outside)
    store.put(np.arange(3.0), "default/sym/sub/x", replace=True)
    store.put(np.arange(3.0), "default/sym/a", replace=True)
    ctx = StepContext(store, "default", "sym")
    with pytest.raises(OperationFailed, match=r"refused, nothing was written: .* leads to .*/outside/x through a symbolic link"):
        export_objects(ctx, str(root))
    assert files_under(outside) == set() and files_under(root) == {"sub"}
    (root / "sub").unlink()
    (root / "a.npy").symlink_to(outside / "target.npy")  # a planted file link is refused too
    store.delete("default/sym/sub/x")
    with pytest.raises(OperationFailed, match="symbolic link"):
        export_objects(ctx, str(root))
    (root / "objects").symlink_to(outside)  # where a backup writes its files
    with pytest.raises(OperationFailed, match="symbolic link"):
        backup(ctx, str(root))
    assert files_under(outside) == set() and not (root / "fluidv-backup.json").exists()
    store.delete_many(prefix="default/sym/")


# -- loads and restores -----------------------------------------------------------------

def _backup_of(shared_cluster, store, tmp_path: Path) -> Path:
    store.put(np.arange(5.0), "default/vault2/a", replace=True)
    store.put(np.arange(3.0), "default/vault2/b", replace=True)
    target = tmp_path / "backup"
    runs = run(shared_cluster, dataset("vault2"), op("DataBackup", "save", "vault2", backupPath=str(target)))
    assert runs["save"].phase == "Complete", runs["save"].message
    store.delete_many(prefix="default/vault2/")
    return target


def _restore(shared_cluster, target: Path):
    return run(shared_cluster, dataset("vault2"), op("DataLoad", "restore", "vault2",
                                                      target=[{"path": str(target)}]))["restore"]


def test_a_restore_refuses_a_manifest_pointing_outside_and_restores_nothing(shared_cluster, store, tmp_path):
    target = _backup_of(shared_cluster, store, tmp_path)
    np.save(tmp_path / "secret.npy", np.full(3, 42.0))
    manifest_path = target / "fluidv-backup.json"
    good = json.loads(manifest_path.read_text())
    for entry, why in ((lambda m: m["objects"][1]["entry"].update(file="../secret.npy"), "outside the backup's root"),
                       (lambda m: m["objects"][1]["entry"].update(file="objects/../../secret.npy"),
                        "outside the backup's root"),
                       (lambda m: m["objects"][1]["entry"].update(file="objects/gone.npy"), "is named by"),
                       (lambda m: m["objects"][1].update(key="../../elsewhere"), "break the object naming rule")):
        manifest = json.loads(json.dumps(good))
        entry(manifest)
        manifest_path.write_text(json.dumps(manifest))
        restore = _restore(shared_cluster, target)
        assert restore.phase == "Failed" and why in restore.message, restore.message
        assert "nothing was restored" in restore.message.lower() or "Nothing was done" in restore.message
        assert store.list(prefix="default/vault2/") == [] and not store.exists("default/elsewhere")
    # the operator's restore Job runs `fluidv op restore`: refused with exit 1, nothing restored
    command = [sys.executable, "-m", "fluid_core.cli", "op", "restore", "vault2", "--path", str(target)]
    env = {**os.environ, "VINEYARD_IPC_SOCKET": shared_cluster.nodes[1].socket}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1 and "break the object naming rule" in done.stderr, done.stderr
    assert store.list(prefix="default/vault2/") == []
    manifest_path.write_text("{half a manifest")
    restore = _restore(shared_cluster, target)
    assert restore.phase == "Failed" and "is not valid JSON" in restore.message
    manifest_path.write_text(json.dumps(good))
    first = target / good["objects"][1]["entry"]["file"]
    first.unlink()
    first.symlink_to(tmp_path / "secret.npy")  # a file of the backup swapped for a link out
    restore = _restore(shared_cluster, target)
    assert restore.phase == "Failed" and "symbolic link" in restore.message
    assert store.list(prefix="default/vault2/") == []


def test_a_load_refuses_files_reached_through_links_out_of_its_root(shared_cluster, store, tmp_path):
    source, outside = tmp_path / "src", tmp_path / "outside"
    source.mkdir(), outside.mkdir()
    np.save(source / "mine.npy", np.arange(2.0))
    np.save(outside / "theirs.npy", np.arange(9.0))
    (source / "link.npy").symlink_to(outside / "theirs.npy")
    ctx = StepContext(store, "default", "ld")
    with pytest.raises(Exception, match="symbolic link") as failed:
        import_files(ctx, str(source))
    assert "OutsideRoot" in type(failed.value).__name__
    assert store.list(prefix="default/ld/") == []
    (source / "link.npy").unlink()
    (source / "a\nb.npy").write_bytes((source / "mine.npy").read_bytes())  # a file name no object can have
    with pytest.raises(OperationFailed, match=r"loading .* refused: 1 name\(s\) break the object naming rule"):
        import_files(ctx, str(source))
    assert store.list(prefix="default/ld/") == []
    # a dataset's mount is its load's root: a link out of the mount is refused as well
    (source / "a\nb.npy").unlink()
    (source / "sub").mkdir()
    (source / "sub" / "up.npy").symlink_to(outside / "theirs.npy")
    mounted = {**dataset("ld"), "spec": {"mounts": [{"mountPoint": f"local://{source}"}]}}
    runs = run(shared_cluster, mounted, op("DataLoad", "warm", "ld", target=[{"path": "/sub"}]))
    assert runs["warm"].phase == "Failed" and "symbolic link" in runs["warm"].message
    assert store.list(prefix="default/ld/") == []


# -- the FUSE view ----------------------------------------------------------------------

@pytest.mark.skipif(not FUSE, reason="needs /dev/fuse and fusermount3 (Debian package fuse3)")
def test_a_writable_mount_refuses_bad_names_and_hides_legacy_ones(shared_cluster, store, tmp_path):
    from objects.fusemount import is_mounted, unmount
    from vineyard_runtime.plumbing.processes import terminate

    legacy_put(store, np.arange(2.0), "default/box/../../escape")
    legacy_put(store, np.arange(2.0), "default/box/line\nbreak")
    store.put(np.arange(2.0), "default/box/shown", replace=True)
    point = tmp_path / "mnt"
    point.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "fluid_core.cli", "mount", "box", str(point), "--writable",
                             "--socket", shared_cluster.nodes[0].socket], stderr=subprocess.PIPE, text=True)
    try:
        wait(lambda: is_mounted(str(point)), message="mounted")
        assert sorted(os.listdir(point)) == ["shown.npy"]  # legacy names have no path
        for bad in ("new\nline.npy", "tab\there.npy", "esc\x1b.npy"):
            with pytest.raises(OSError) as refused:
                np.save(point / bad, np.arange(3.0))
            assert refused.value.errno == errno.EINVAL
        np.save(point / "good.npy", np.arange(3.0))
        assert sorted(os.listdir(point)) == ["good.npy", "shown.npy"]
        assert [r.name for r in store.list(prefix="default/box/") if name_problem(r.name) is None] == [
            "default/box/good", "default/box/shown"]
    finally:
        terminate([proc.pid], timeout=15)
        proc.wait()
        unmount(str(point))
    assert files_under(tmp_path) == {"mnt", ".mnt.fuse.log"}  # nothing written beside the mount
    assert "breaks the object naming rule" in (tmp_path / ".mnt.fuse.log").read_text()
    store.delete_many(prefix="default/box/")


# -- fuzz: nothing is ever created outside the roots ------------------------------------

ALPHABET = ["a", "b", "é", ".", "..", "/", "//", "\n", "\x00", " ", "\\", "~", "-", "日"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=6).map("".join),
                      min_size=1, max_size=4, unique=True),
       legacy=st.booleans())
def test_fuzzed_names_never_create_anything_outside_the_roots(store, tmp_path_factory, names, legacy):
    sandbox = tmp_path_factory.mktemp("fuzz")
    roots = {part: sandbox / part / "root" for part in ("export", "backup")}
    for root in roots.values():
        root.parent.mkdir(parents=True)
    ctx = StepContext(store, "default", "fz")
    view = DatasetView(store, "default/fz/", writable=True, ttl=0)
    accepted = []
    try:
        for name in names:
            full = f"default/fz/{name}"
            try:
                store.put(np.arange(2.0), full, replace=True)
                accepted.append(full)
                assert name_problem(full) is None
            except InvalidName:
                assert name_problem(full) is not None or full != full.strip()
                if legacy and "\x00" not in full:  # etcd keeps any byte but NUL in its keys here
                    with contextlib.suppress(objects.ObjectsError):
                        legacy_put(store, np.arange(2.0), full)
            try:  # the FUSE view's writes follow the same rule
                assert name_problem(view.name_for(f"/{name}.npy")) is None
            except OSError as exc:
                assert exc.errno == errno.EINVAL
        for path in view.tree():  # every path the view shows is a plain path inside it
            assert ".." not in path.split("/") and "\n" not in path and "//" not in path
        for write in (lambda: export_objects(ctx, str(roots["export"])), lambda: backup(ctx, str(roots["backup"]))):
            with contextlib.suppress(OperationFailed):
                write()
        if (roots["backup"] / "fluidv-backup.json").exists():
            store.delete_many(prefix="default/fz/")
            restored = StepContext(store, "default", "fz")
            import_files(restored, str(roots["backup"]))
            assert sorted(r.name for r in store.list(prefix="default/fz/")) == sorted(set(accepted))
        outside = {p for p in files_under(sandbox) if not any(p == part or p.startswith(f"{part}/root")
                                                              for part in roots)}
        assert outside == set(), f"created outside the roots: {outside}"
    finally:
        store.delete_many(prefix="default/fz/")
        shutil.rmtree(sandbox, ignore_errors=True)


def test_names_printable_ascii_round_trip_through_export(store, tmp_path):
    """Every printable ASCII character but ``/`` is a valid name character, and survives
    an export as a file name."""
    name = "".join(c for c in string.printable if c.isprintable() and c not in "/ ") + " x"
    store.put(np.arange(2.0), f"default/ascii/{name}", replace=True)
    ctx = StepContext(store, "default", "ascii")
    assert export_objects(ctx, str(tmp_path / "out")) == 1
    assert files_under(tmp_path / "out") == {f"{name}.npy"}
    store.delete_many(prefix="default/ascii/")
