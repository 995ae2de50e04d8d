"""What each operation does, given its spec and a ``StepContext`` on its node."""

from __future__ import annotations

import errno
import importlib
import json
import os
import posixpath
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from fluid_core.errors import FluidError
from fluid_core.flow.context import StepContext
from fluid_core.flow.formats import (
    EXTENSIONS,
    RAW,
    FormatError,
    filesystem,
    read_file,
    read_value,
    write_value,
)
from fluid_core.flow.rooted import OutsideRoot, Rooted
from fluid_core.models.object_names import dataset_prefix
from fluid_core.stamps import now_stamp

#: The file that makes a directory a backup (DataBackup writes it; DataLoad restores it).
MANIFEST = "fluidv-backup.json"
BACKUP_FORMAT = "fluid-vineyard-backup/v1"


class OperationFailed(FluidError):
    """An operation could not do its work; the message says what and how to fix it."""


def script_argv(script: Any, source_file: str) -> list[str]:
    """How a script processor runs on the local cluster, as Fluid's chart runs it: its
    ``command`` followed by the file holding its ``source``. Without a command (on
    Kubernetes: the image's entrypoint) the file is run by ``sh``."""
    command = list(script.command) or ["sh"]
    return command + ([source_file] if script.source else [])


def load_function(reference: str) -> Callable[..., Any]:
    """``module:function`` or ``path/to/file.py:function`` -> the function. A script
    file is never run as ``__main__`` again (see ``fluid_core.flow.scripts``)."""
    module_name, _, attribute = reference.rpartition(":")
    if module_name.endswith(".py"):
        from fluid_core.flow.scripts import ScriptError, load_script_function  # noqa: PLC0415

        try:
            return load_script_function(module_name, attribute)
        except ScriptError as exc:
            raise OperationFailed(f"processor.function: {exc}") from None
    try:
        module = importlib.import_module(module_name)
    except (ImportError, OSError, SyntaxError) as exc:
        raise OperationFailed(f"processor.function: cannot import {module_name!r}: {exc}") from None
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise OperationFailed(f"processor.function: {module_name!r} has no {attribute!r}")
    if not callable(target):
        raise OperationFailed(f"processor.function: {reference!r} is not callable")
    return target  # type: ignore[no-any-return]


def _paths(fs: Rooted, root: str) -> list[tuple[str, str]]:
    """(path, key) of every loadable file under ``root`` (a file or a directory), each
    checked to stay inside ``fs``'s root."""
    from pyarrow import fs as pafs  # noqa: PLC0415

    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise OperationFailed(f"{root} does not exist")
    if info.type == pafs.FileType.File:  # named by itself: any file, a raw one keeping its extension
        stem, ext = posixpath.splitext(posixpath.basename(root))
        return [(root, stem if ext.lower() in EXTENSIONS else posixpath.basename(root))]
    found = []
    for item in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        ext = posixpath.splitext(item.path)[1].lower()
        if item.type == pafs.FileType.File and ext in EXTENSIONS:
            found.append((fs.check(item.path), posixpath.splitext(posixpath.relpath(item.path, root))[0]))
    return sorted(found)


def _refuse_bad_names(ctx: StepContext, keys: Iterable[str], doing: str, *, stored: bool = False) -> None:
    """OperationFailed, before anything is done, when a key's object name breaks the
    naming rule: a file or manifest key that cannot become a name, or (``stored``: keys
    as listed, taken as they are) an object stored before the rule."""
    from objects.names import name_problem  # noqa: PLC0415

    base = dataset_prefix(ctx.namespace, ctx.dataset)
    bad = [(key, problem) for key in keys
           if (problem := name_problem(base + key if stored else ctx.name(key))) is not None]
    if bad:
        shown = "; ".join(f"{key!r}: {problem}" for key, problem in bad[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise OperationFailed(f"{doing} refused: {len(bad)} name(s) break the object naming rule{more}: {shown}. "
                              "Nothing was done; rename the objects or files, or delete them")


def in_order(work: Callable[..., Any], jobs: Iterable[tuple[Any, tuple[Any, ...]]],
             workers: int = 1) -> Iterator[tuple[Any, Any]]:
    """``(tag, work(*args))`` for each ``(tag, args)`` of ``jobs``, in order, with up to
    ``workers`` calls of ``work`` running at once in threads; ``jobs`` is drawn (and the
    results used) in the caller's thread, so a store client is only used there."""
    if workers <= 1:
        for tag, args in jobs:
            yield tag, work(*args)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="migrate") as pool:
        pending: deque[tuple[Any, Future[Any]]] = deque()
        for tag, args in jobs:
            pending.append((tag, pool.submit(work, *args)))
            if len(pending) > workers:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


def import_files(ctx: StepContext, location: str, *, key: str | None = None, fmt: str | None = None,
                 skip: frozenset[str] = frozenset(), workers: int = 1, within: str | None = None) -> tuple[int, int]:
    """Files (or a backup) at ``location`` into the dataset: (objects loaded, files left
    out because their key is in ``skip``, i.e. cached already); ``workers`` files are
    read at once. No file outside ``within`` (default: ``location``) is read."""
    plain, root = filesystem(location)
    fs = Rooted(plain, filesystem(within)[1] if within else root, what="the load's root")
    if fmt == "backup" or _is_backup(fs, root):
        return restore(ctx, plain, root), 0
    single = fs.get_file_info(root).type.name == "File"
    found, jobs = _paths(fs, root), []
    for path, relative in found:
        kind = fmt or EXTENSIONS.get(posixpath.splitext(path)[1].lower()) or RAW  # only a file named by itself
        name = (key or relative) if single else (f"{key}/{relative}" if key else relative)
        if name not in skip:
            jobs.append((name, (path, fs, kind)))
    _refuse_bad_names(ctx, (name for name, _ in jobs), f"loading {location}")
    try:
        for name, value in in_order(read_file, jobs, workers):
            ctx.put(name, value)
    except FormatError as exc:
        raise OperationFailed(str(exc)) from None
    return len(jobs), len(found) - len(jobs)


def _found(location: str) -> bool:
    fs, root = filesystem(location)
    return bool(fs.get_file_info(root).type.name != "NotFound")


def warm(ctx: StepContext, spec: Any) -> str:
    """Fluid's DataLoad: make the objects under each ``target[].path`` (the whole
    dataset when there is no target) resident, loading from the dataset's mounts what is
    not cached yet, and keep ``replicas`` copies (on further nodes: ``ctx.replica_stores``
    locally, one pod per copy on Kubernetes). A dataset without mounts has no storage
    behind it: its target paths are then files or directories to import (this project's
    extension)."""
    from fluid_core.models.operations import LoadTarget  # noqa: PLC0415

    loaded = cached = 0
    copied: dict[str, int] = {}
    for target in spec.target or [LoadTarget(path="/")]:
        copies = target.replicas or 1
        if ctx.replica_index >= copies:
            continue  # this pod makes a further copy, and this target wants fewer
        new, kept, keys = _warm_target(ctx, target)
        loaded, cached = loaded + new, cached + kept
        stores = [ctx.store] if ctx.replica_index > 0 else ctx.replica_stores[:copies - 1]
        for store in stores:
            for key in keys:
                store.get(ctx.name(key))  # read on that node: it keeps a copy
            copied[str(store.node)] = copied.get(str(store.node), 0) + len(keys)
    summary = f"loaded {loaded} object(s); {cached} cached already"
    if copied:
        summary += "; copies on " + ", ".join(f"{node} ({n})" for node, n in sorted(copied.items()))
    return summary


def _warm_target(ctx: StepContext, target: Any) -> tuple[int, int, list[str]]:
    """One DataLoad target: (objects loaded, objects cached already, keys it covers)."""
    from fluid_core.models.mounts import MountError, key_prefix, resolve, under  # noqa: PLC0415

    mounts = list(ctx.mounts)
    if not mounts:
        if key_prefix(target.path) == "" and not target.format:
            held = ctx.keys()  # nothing behind the dataset: all of it is what is cached
            return 0, len(held), held
        before = set(ctx.written)
        loaded = import_files(ctx, target.path, key=target.name, fmt=target.format)[0]
        return loaded, 0, [ctx.key_of(name) for name in ctx.written if name not in before]
    try:
        places = [resolve(mounts, path) for path in under(mounts, target.path)]
    except MountError as exc:
        raise OperationFailed(str(exc)) from None
    loaded = cached = 0
    keys: list[str] = []
    for source, at, mount_root in places:
        prefix = key_prefix(at)
        stem, ext = posixpath.splitext(prefix)
        key = target.name or (stem if ext.lower() in EXTENSIONS else prefix) or None
        present = frozenset(ctx.keys(key or ""))
        if not _found(source):
            if not present:
                raise OperationFailed(f"{at}: nothing there, neither cached nor at {source} in the "
                                      "dataset's mounts")
            cached += len(present)  # put in the cache by an earlier step (a migration in)
        else:
            new, kept = import_files(ctx, source, key=key, fmt=target.format, skip=present, within=mount_root)
            loaded, cached = loaded + new, cached + kept
        keys.extend(ctx.keys(key or ""))
    return loaded, cached, sorted(set(keys))


def export_objects(ctx: StepContext, location: str, prefix: str = "", *, workers: int = 1) -> int:
    """The dataset's objects under ``prefix`` as files at ``location``, ``workers`` files
    written at once; returns how many."""
    plain, root = filesystem(location)
    fs = Rooted(plain, root, what="the export's root")
    keys = ctx.keys(prefix.strip("/"))
    _refuse_bad_names(ctx, keys, f"the export to {location}", stored=True)
    try:
        for key in keys:  # a symbolic link in the way refuses the export before it starts
            fs.path(key)
    except OutsideRoot as exc:
        raise OperationFailed(f"the export to {location} refused, nothing was written: {exc}") from None
    fs.create_dir(root)

    def write(key: str, value: Any) -> None:
        try:
            write_value(value, fs, fs.path(key))
        except (FormatError, OutsideRoot) as exc:
            raise OperationFailed(f"{key}: {exc}") from None

    for _ in in_order(write, ((key, (key, ctx.get(key))) for key in keys), workers):
        pass
    return len(keys)


def _is_backup(fs: Any, root: str) -> bool:
    return bool(fs.get_file_info(posixpath.join(root, MANIFEST)).type.name == "File")


def _rebase(entry: Any, old: str, new: str) -> Any:
    if isinstance(entry, dict):
        out = {k: _rebase(v, old, new) for k, v in entry.items()}
        for field in ("file", "dir"):
            if field in entry and isinstance(entry[field], str) and entry[field].startswith(old):
                out[field] = new + entry[field][len(old):]
        return out
    if isinstance(entry, list):
        return [_rebase(v, old, new) for v in entry]
    return entry


def backup(ctx: StepContext, location: str) -> int:
    """Every object of the dataset (data, name, type, labels) under ``location``."""
    plain, root = filesystem(location)
    fs = Rooted(plain, root, what="the backup's root")
    keys = ctx.keys()
    _refuse_bad_names(ctx, keys, f"the backup to {location}", stored=True)
    fs.create_dir(root)
    objects = []
    for index, key in enumerate(keys):
        ref = ctx.store.info(ctx.name(key))
        try:
            entry = write_value(ctx.get(key), fs, fs.path(f"objects/{index:06d}"), table_format="arrow")
        except (FormatError, OutsideRoot) as exc:
            raise OperationFailed(f"{key}: {exc}") from None
        objects.append({"key": key, "typename": ref.typename, "nbytes": ref.nbytes, "labels": dict(ref.labels),
                        "entry": _rebase(entry, root + "/", "")})
    manifest = {"format": BACKUP_FORMAT, "dataset": f"{ctx.namespace}/{ctx.dataset}",
                "created": now_stamp(), "objects": objects}
    with fs.open_output_stream(fs.path(MANIFEST)) as out:
        out.write(json.dumps(manifest, indent=1).encode())
    return len(objects)


def _on_this_machine(location: str) -> str:
    from fluid_core.models.backup_location import BackupLocation  # noqa: PLC0415
    from fluid_core.models.mounts import MountError  # noqa: PLC0415

    try:
        return BackupLocation(location).local()
    except MountError as exc:
        raise OperationFailed(str(exc)) from None


def restore_dataset(ctx: StepContext, location: str) -> str:
    """A Dataset's ``dataRestoreLocation``: the backup there into the dataset, unless the
    dataset holds objects already (it was restored, or written, before)."""
    held = len(ctx.keys())
    if held:
        return f"nothing restored: the dataset holds {held} object(s) already"
    fs, root = filesystem(_on_this_machine(location))
    if not _is_backup(fs, root):
        raise OperationFailed(f"{location} holds no backup ({MANIFEST} missing); give the backupPath of a DataBackup")
    return f"restored {restore(ctx, fs, root)} object(s) from {location}"


def _entry_paths(entry: Any) -> Iterator[str]:
    """Every file and folder a backup entry names."""
    if isinstance(entry, dict):
        for field in ("file", "dir"):
            if field in entry:
                yield str(entry[field])
        for value in entry.values():
            yield from _entry_paths(value)
    elif isinstance(entry, list):
        for value in entry:
            yield from _entry_paths(value)


def restore(ctx: StepContext, plain: Any, root: str) -> int:
    """Objects of a backup back into the dataset, with their original labels. The
    manifest is checked whole first: a name that breaks the naming rule, or a file that
    lies outside the backup's root, refuses the restore before anything is read."""
    fs = Rooted(plain, root, what="the backup's root")
    with fs.open_input_file(fs.path(MANIFEST)) as handle:
        try:
            manifest = json.loads(handle.read())
        except ValueError as exc:
            raise OperationFailed(f"{root}/{MANIFEST} is not valid JSON ({exc}); nothing was restored") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BACKUP_FORMAT:
        raise OperationFailed(f"{root}/{MANIFEST} is not a {BACKUP_FORMAT} manifest")
    items = manifest.get("objects")
    if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("key"), str)
                                               and isinstance(i.get("entry"), dict) for i in items):
        raise OperationFailed(f"{root}/{MANIFEST}: 'objects' must list entries with a key and an entry")
    _refuse_bad_names(ctx, (item["key"] for item in items), f"the restore from {root}")
    entries = [_rebase(item["entry"], "", root + "/") for item in items]
    try:
        for entry in entries:
            for path in _entry_paths(entry):
                if fs.get_file_info(path).type.name == "NotFound":
                    raise OperationFailed(f"the restore from {root} refused, nothing was restored: {path} "
                                          f"is named by {MANIFEST} but missing; the backup is incomplete")
    except OutsideRoot as exc:
        raise OperationFailed(f"the restore from {root} refused, nothing was restored: {exc}") from None
    for done, (item, entry) in enumerate(zip(items, entries)):
        try:
            value = read_value(entry, fs)
        except (FormatError, OutsideRoot) as exc:
            raise OperationFailed(f"{item['key']}: {exc} ({done} object(s) restored before it)") from None
        ctx.put(item["key"], value, labels=item.get("labels") or {}, run_labels=False)
    return len(items)


def execute(kind: str, spec: Any, ctx: StepContext) -> str:
    """Run one operation of ``kind`` with its parsed ``spec``; a one-line summary. A file
    it cannot read or write fails it with OperationFailed saying which, and as whom."""
    try:
        return _execute(kind, spec, ctx)
    except OSError as exc:  # storage the step cannot reach: one line, not a traceback
        who = (f" (this step runs as uid {os.getuid()}, gid {os.getgid()}: the folder must let that user "
               "in, or the operation run as a user it does)" if exc.errno in (errno.EACCES, errno.EPERM) else "")
        raise OperationFailed(f"{kind}: {exc}{who}") from None


def _execute(kind: str, spec: Any, ctx: StepContext) -> str:
    if kind == "DataLoad":
        return warm(ctx, spec)
    if kind == "DataBackup":
        return f"backed up {backup(ctx, _on_this_machine(spec.backup_path))} object(s) to {spec.backup_path}"
    if kind == "DataMigrate":
        if spec.to.external_storage is not None:
            prefix = spec.from_.dataset.path if spec.from_.dataset else "/"
            count = export_objects(ctx, spec.to.external_storage.uri, prefix, workers=spec.parallelism)
            return f"wrote {count} object(s) to {spec.to.external_storage.uri}"
        assert spec.from_.external_storage is not None
        base = (spec.to.dataset.path if spec.to.dataset else "/").strip("/") or None
        count, _ = import_files(ctx, spec.from_.external_storage.uri, key=base, workers=spec.parallelism)
        return f"read {count} object(s) from {spec.from_.external_storage.uri}"
    if kind == "DataProcess":
        function = load_function(spec.processor.function)
        ctx.params = dict(spec.processor.params)
        result = function(ctx)
        return "done" if result is None else str(result)[:200]
    raise OperationFailed(f"{kind} cannot run in a step process")


__all__ = ["OperationFailed", "execute", "load_function"]
