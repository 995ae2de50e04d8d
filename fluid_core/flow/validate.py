"""Check a flow before anything runs: references, cycles, processors, paths."""

from __future__ import annotations

import posixpath
import shutil
import uuid
from collections.abc import Callable
from typing import Any

from fluid_core.errors import FluidError
from fluid_core.flow.formats import FormatError, filesystem
from fluid_core.flow.ops import OperationFailed, load_function, script_argv


class FlowInvalid(FluidError, ValueError):
    """A flow that must not start; ``problems`` lists (where, what and how to fix)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("the flow cannot run: " + "; ".join(f"{where}: {what}" for where, what in problems))


def key_of(resource: Any) -> tuple[str, str]:
    return resource.kind, resource.name


def order(operations: list[Any]) -> list[Any]:
    """Operations sorted so that each comes after the one it runs after (stable)."""
    by_key = {key_of(op): op for op in operations}
    done: list[Any] = []
    seen: set[tuple[str, str]] = set()

    def visit(op: Any) -> None:
        if key_of(op) in seen:
            return
        seen.add(key_of(op))
        after = op.spec.run_after
        if after is not None and (after.kind, after.name) in by_key:
            visit(by_key[(after.kind, after.name)])
        done.append(op)

    for op in operations:
        visit(op)
    return done


def _where(op: Any, field: str) -> str:
    return f"{op.kind}/{op.name}: {field}"


def _writable(location: str) -> str | None:
    try:
        fs, root = filesystem(location)
        fs.create_dir(root, recursive=True)
        probe = posixpath.join(root, f".fluidv-probe-{uuid.uuid4().hex}")
        with fs.open_output_stream(probe) as out:
            out.write(b"")
        fs.delete_file(probe)
    except (OSError, FormatError) as exc:
        return f"{location} is not writable ({exc}); choose a directory you can write"
    return None


def _local_problem(location: str, check: Callable[[str], str | None]) -> str | None:
    """What ``check`` finds wrong with a backup location on this machine."""
    from fluid_core.models.backup_location import BackupLocation  # noqa: PLC0415
    from fluid_core.models.mounts import MountError  # noqa: PLC0415

    try:
        return check(BackupLocation(location).local())
    except MountError as exc:
        return str(exc)


def restore_problem(location: str) -> str | None:
    """What is wrong with a ``dataRestoreLocation`` on this machine (None: a backup is there)."""
    from fluid_core.flow.ops import MANIFEST  # noqa: PLC0415

    def is_backup(path: str) -> str | None:
        missing = _exists(path)
        if missing:
            return missing
        fs, root = filesystem(path)
        if fs.get_file_info(posixpath.join(root, MANIFEST)).type.name != "File":
            return f"{path} holds no backup ({MANIFEST} missing); give the backupPath of a DataBackup"
        return None

    return _local_problem(location, is_backup)


def _exists(location: str) -> str | None:
    try:
        fs, root = filesystem(location)
        if fs.get_file_info(root).type.name == "NotFound":
            return f"{location} does not exist; give the path of a file or directory to load"
    except (OSError, FormatError) as exc:
        return f"cannot open {location}: {exc}"
    return None


def _load_source_problem(mounts: list[dict[str, Any]], path: str) -> str | None:
    """What is wrong with a DataLoad target path: no mount of the dataset holds it, or
    (no mounts) it is not a file or directory to import; the dataset's root always warms."""
    from fluid_core.models.mounts import MountError, key_prefix, resolve, under  # noqa: PLC0415

    if not mounts:
        return None if key_prefix(path) == "" else _exists(path)
    try:  # whether the path exists is known when the load runs: a step before may cache it
        for dataset_path in under(mounts, path):
            resolve(mounts, dataset_path)
    except MountError as exc:
        return str(exc)
    return None


def check(datasets: set[str], operations: list[Any], *, local: bool = True,
          mounts: dict[str, list[dict[str, Any]]] | None = None, restores: dict[str, str] | None = None) -> None:
    """Raise ``FlowInvalid`` listing every problem of ``operations`` (datasets: ``ns/name``;
    ``mounts``: each dataset's ``spec.mounts``; ``restores``: their ``dataRestoreLocation``)."""
    problems: list[tuple[str, str]] = []
    for dataset, location in (restores or {}).items():
        problem = restore_problem(location) if local else None
        if problem:
            problems.append((f"Dataset/{dataset.split('/', 1)[1]}: spec.dataRestoreLocation.path", problem))
    keys = {key_of(op) for op in operations}
    for op in operations:
        spec = op.spec
        dataset = f"{spec.dataset.namespace or op.namespace}/{spec.dataset.name}"
        if dataset not in datasets:
            problems.append((_where(op, "spec.dataset.name"),
                             f"no Dataset {dataset} in this flow; declare it (kind: Dataset) or fix the name"))
        after = spec.run_after
        if after is not None and (after.kind, after.name) not in keys:
            problems.append((_where(op, "spec.runAfter"),
                             f"no {after.kind} {after.name!r} in this flow; runAfter names an operation of the flow"))
        if op.kind == "DataProcess":
            processor = spec.processor
            if processor.function:
                try:
                    load_function(processor.function)
                except OperationFailed as exc:
                    problems.append((_where(op, "spec.processor.function"), str(exc).split(": ", 1)[-1]))
            elif processor.script and local and shutil.which(script_argv(processor.script, "")[0]) is None:
                problems.append((_where(op, "spec.processor.script.command"),
                                 f"{script_argv(processor.script, '')[0]!r} is not on PATH"))
            elif processor.job and local:
                problems.append((_where(op, "spec.processor.job"),
                                 "a Job's podSpec runs on Kubernetes only; use processor.script or "
                                 "processor.function on the local cluster"))
        elif op.kind == "DataLoad":
            behind = (mounts or {}).get(dataset) or []
            for index, target in enumerate(spec.target):
                problem = _load_source_problem(behind, target.path)
                if problem:
                    problems.append((_where(op, f"spec.target[{index}].path"), problem))
        elif op.kind == "DataMigrate":
            if spec.to.external_storage is not None:
                problem = _writable(spec.to.external_storage.uri)
                if problem:
                    problems.append((_where(op, "spec.to.externalStorage.uri"), problem))
            if spec.from_.external_storage is not None:
                problem = _exists(spec.from_.external_storage.uri)
                if problem:
                    problems.append((_where(op, "spec.from.externalStorage.uri"), problem))
        elif op.kind == "DataBackup":
            problem = _local_problem(spec.backup_path, _writable)
            if problem:
                problems.append((_where(op, "spec.backupPath"), problem))
    problems += _cycles(operations)
    if problems:
        raise FlowInvalid(problems)


def _cycles(operations: list[Any]) -> list[tuple[str, str]]:
    after = {key_of(op): (op.spec.run_after.kind, op.spec.run_after.name)
             for op in operations if op.spec.run_after is not None}
    reported: set[tuple[str, str]] = set()
    problems = []
    for start in after:
        path, node = [start], after.get(start)
        while node is not None and node not in path:
            path.append(node)
            node = after.get(node)
        if node is not None and node not in reported:
            loop = path[path.index(node):]
            reported.update(loop)
            names = " -> ".join(f"{k}/{n}" for k, n in loop + [node])
            problems.append((f"{node[0]}/{node[1]}: spec.runAfter", f"cycle {names}; remove one runAfter"))
    return problems
