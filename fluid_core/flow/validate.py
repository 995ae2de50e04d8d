"""Check a flow before anything runs: references, cycles, processors, paths.

``flow_problems(resources)`` needs no cluster: ``fluidv validate`` calls it offline and
``LocalRunner`` (``fluidv run``) calls ``check_flow`` before it starts anything. What
only a cluster can answer (which node matches a ``nodeSelector``) is said by
``cluster_checks``, and checked when the flow runs.
"""

from __future__ import annotations

import posixpath
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from fluid_core.errors import FluidError
from fluid_core.flow.formats import FormatError, filesystem
from fluid_core.flow.ops import OperationFailed, load_function, script_argv
from fluid_core.models.operations import OperationKind


class FlowInvalid(FluidError, ValueError):
    """A flow that must not start; ``problems`` lists (where, what and how to fix)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("the flow cannot run: " + "; ".join(f"{where}: {what}" for where, what in problems))


@dataclass(frozen=True)
class FlowProblem:
    """One problem of a flow: the resource, the field path in it, what is wrong and how to fix it."""

    kind: str
    name: str
    field: str
    message: str

    @property
    def where(self) -> str:
        return f"{self.kind}/{self.name}: {self.field}"


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


def operations_of(resources: Iterable[Any]) -> list[Any]:
    """The data operations among ``resources``."""
    return [r for r in resources if r.kind in _operation_kinds()]


def _operation_kinds() -> set[str]:
    return {kind.value for kind in OperationKind}


def dataset_mounts(resources: Iterable[Any]) -> dict[str, list[dict[str, Any]]]:
    """Each Dataset's ``spec.mounts`` (the storage a DataLoad reads), by ``ns/name``."""
    return {f"{r.namespace}/{r.name}": [m.to_dict() for m in r.spec.mounts] for r in resources if r.kind == "Dataset"}


def dataset_restores(resources: Iterable[Any]) -> dict[str, str]:
    """Each Dataset's ``dataRestoreLocation.path``, by ``ns/name``, for those that have one."""
    return {f"{r.namespace}/{r.name}": r.spec.data_restore_location.path
            for r in resources if r.kind == "Dataset" and r.spec.data_restore_location is not None}


def _writable(location: str) -> str | None:
    """Whether ``location`` can be written: a file is written and deleted in it, and the
    folders made for that are removed again, so the check leaves nothing behind."""
    try:
        fs, root = filesystem(location)
        made = _first_missing(fs, root)
        fs.create_dir(root, recursive=True)
        try:
            probe = posixpath.join(root, f".fluidv-probe-{uuid.uuid4().hex}")
            with fs.open_output_stream(probe) as out:
                out.write(b"")
            fs.delete_file(probe)
        finally:
            if made is not None:
                fs.delete_dir(made)
    except (OSError, FormatError) as exc:
        return f"{location} is not writable ({exc}); choose a directory you can write"
    return None


def _first_missing(fs: Any, path: str) -> str | None:
    """The outermost folder of ``path`` that does not exist yet (None: ``path`` exists)."""
    missing = None
    while fs.get_file_info(path).type.name == "NotFound":
        missing, parent = path, posixpath.dirname(path.rstrip("/"))
        if not parent or parent == path:
            break
        path = parent
    return missing


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


def _load_source_problem(mounts: list[dict[str, Any]], path: str, local: bool) -> str | None:
    """What is wrong with a DataLoad target path: no mount of the dataset holds it, or
    (no mounts) it is not a file or directory to import; the dataset's root always warms."""
    from fluid_core.models.mounts import MountError, key_prefix, resolve, under  # noqa: PLC0415

    if not mounts:
        return None if key_prefix(path) == "" or not local else _exists(path)
    try:  # whether the path exists is known when the load runs: a step before may cache it
        for dataset_path in under(mounts, path):
            resolve(mounts, dataset_path)
    except MountError as exc:
        return str(exc)
    return None


def _processor_problems(op: Any, local: bool) -> list[tuple[str, str]]:
    """(field, problem) of a DataProcess's processor; on this machine only when ``local``."""
    processor = op.spec.processor
    if not local:
        return []
    if processor.function:
        try:
            load_function(processor.function)
        except OperationFailed as exc:
            return [("spec.processor.function", str(exc).split(": ", 1)[-1])]
    elif processor.script and shutil.which(script_argv(processor.script, "")[0]) is None:
        return [("spec.processor.script.command", f"{script_argv(processor.script, '')[0]!r} is not on PATH")]
    elif processor.job:
        return [("spec.processor.job", "a Job's podSpec runs on Kubernetes only; use processor.script or "
                                       "processor.function on the local cluster")]
    return []


def _storage_problems(op: Any, mounts: dict[str, list[dict[str, Any]]], dataset: str,
                      local: bool) -> list[tuple[str, str]]:
    """(field, problem) of what a DataLoad, DataMigrate or DataBackup reads or writes."""
    spec, found = op.spec, []
    if op.kind == "DataLoad":
        for index, target in enumerate(spec.target):
            problem = _load_source_problem(mounts.get(dataset) or [], target.path, local)
            if problem:
                found.append((f"spec.target[{index}].path", problem))
    if not local:  # the rest are paths of this machine
        return found
    if op.kind == "DataMigrate":
        if spec.to.external_storage is not None:
            problem = _writable(spec.to.external_storage.uri)
            if problem:
                found.append(("spec.to.externalStorage.uri", problem))
        if spec.from_.external_storage is not None:
            problem = _exists(spec.from_.external_storage.uri)
            if problem:
                found.append(("spec.from.externalStorage.uri", problem))
    elif op.kind == "DataBackup":
        problem = _local_problem(spec.backup_path, _writable)
        if problem:
            found.append(("spec.backupPath", problem))
    return found


def flow_problems(resources: list[Any], *, local: bool = True) -> list[FlowProblem]:
    """Every problem of the flow that ``resources`` (parsed Datasets and data operations)
    make, found without a cluster. ``local``: also check what the local cluster needs of
    this machine (load paths, export and backup targets, processors, restores); without
    it, only what holds anywhere (references, cycles, mounts)."""
    mounts = dataset_mounts(resources)
    operations = operations_of(resources)
    problems: list[FlowProblem] = []
    for dataset, location in dataset_restores(resources).items():
        problem = restore_problem(location) if local else None
        if problem:
            problems.append(FlowProblem("Dataset", dataset.split("/", 1)[1], "spec.dataRestoreLocation.path", problem))
    if local:  # on Kubernetes they may exist in the cluster already: see cluster_checks
        problems += [replace(p, message=f"{p.message} in this flow; {fix}") for p, fix in _missing_references(resources)]
    for op in operations:
        found: list[tuple[str, str]] = []
        if op.kind == "DataProcess":
            found += _processor_problems(op, local)
        found += _storage_problems(op, mounts, _dataset_of(op), local)
        problems += [FlowProblem(op.kind, op.name, where, message) for where, message in found]
    problems += _cycles(operations) + _duplicates(resources)
    return problems


def _dataset_of(op: Any) -> str:
    """``ns/name`` of the dataset an operation works on."""
    return f"{op.spec.dataset.namespace or op.namespace}/{op.spec.dataset.name}"


def _missing_references(resources: list[Any]) -> list[tuple[FlowProblem, str]]:
    """Operations naming a Dataset, a ``runAfter`` or a ``dependOn`` that is not among
    ``resources``: (the problem, saying what is missing; how to fix it in the flow)."""
    datasets = {f"{r.namespace}/{r.name}" for r in resources if r.kind == "Dataset"}
    operations = operations_of(resources)
    keys = {key_of(op) for op in operations}
    missing = []
    for op in operations:
        dataset = _dataset_of(op)
        if dataset not in datasets:
            missing.append((FlowProblem(op.kind, op.name, "spec.dataset.name", f"no Dataset {dataset}"),
                            "declare it (kind: Dataset) or fix the name"))
        after = op.spec.run_after
        if after is not None and (after.kind, after.name) not in keys:
            missing.append((FlowProblem(op.kind, op.name, "spec.runAfter", f"no {after.kind} {after.name!r}"),
                            "runAfter names an operation of the flow"))
        depend = after.affinity_strategy.depend_on if after is not None and after.affinity_strategy else None
        if depend is not None and (depend.kind, depend.name) not in keys:
            missing.append((FlowProblem(op.kind, op.name, "spec.runAfter.affinityStrategy.dependOn",
                                        f"no {depend.kind} {depend.name!r}"), "dependOn names an operation of the flow"))
    return missing


def check_flow(resources: list[Any], *, local: bool = True) -> None:
    """Raise ``FlowInvalid`` listing every problem ``flow_problems`` finds."""
    problems = flow_problems(resources, local=local)
    if problems:
        raise FlowInvalid([(p.where, p.message) for p in problems])


def cluster_checks(resources: list[Any], *, local: bool = True) -> list[FlowProblem]:
    """What only the cluster the flow runs on can answer, one entry per field: said as
    not checked by ``fluidv validate``. The local runner matches a ``nodeSelector`` when
    it places the step; on Kubernetes (not ``local``) a Dataset or operation that these
    resources name may exist in the cluster already."""
    found = [FlowProblem(op.kind, op.name, "spec.nodeSelector",
                         "matched against the cluster's node labels when the step runs; not checked here")
             for op in operations_of(resources) if getattr(op.spec, "node_selector", None)]
    if not local:
        found += [replace(p, message=f"{p.message} in these files: it must exist in the cluster; not checked here")
                  for p, _ in _missing_references(resources)]
    return found


def _duplicates(resources: list[Any]) -> list[FlowProblem]:
    """Datasets (by namespace and name) and operations (by kind and name) given more than
    once: only one of each could run."""
    counts = Counter((r.kind, r.namespace if r.kind == "Dataset" else "", r.name)
                     for r in resources if r.kind == "Dataset" or r.kind in _operation_kinds())
    return [FlowProblem(kind, name, "metadata.name",
                        f"{kind}/{name} is given {count} times in this flow; give each a name of its own")
            for (kind, _, name), count in counts.items() if count > 1]


def _cycles(operations: list[Any]) -> list[FlowProblem]:
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
            problems.append(FlowProblem(node[0], node[1], "spec.runAfter", f"cycle {names}; remove one runAfter"))
    return problems
