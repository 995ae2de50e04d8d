"""A read-only (or ``--writable``) FUSE view of a dataset's named objects.

Tensors appear as ``.npy``, tables and data frames as ``.arrow`` (IPC file) and
``.parquet``, nested structures as directories, name prefixes as folders. ``stat``
sizes are exact. A ``.npy`` is its header followed by the array's own shared-memory
buffer, so reads are slices of shared memory; tables are encoded once per object
version and served from that buffer. With ``writable``, closing a written ``.npy``,
``.arrow`` or ``.parquet`` file creates the object and ``rm`` deletes it.

``python -m objects.fuseview MOUNTPOINT --socket S --prefix ns/dataset/`` serves a mount;
``fluidv mount`` supervises it.
"""

from __future__ import annotations

import argparse
import errno
import io
import logging
import os
import stat
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from objects.errors import ObjectsError
from objects.names import name_problem

log = logging.getLogger("fluidv.fuse")
TABLE_KINDS = ("Arrow", "Pandas")
ARRAY_KINDS = ("NDArray", "Tensor")
WRITABLE_SUFFIXES = (".npy", ".arrow", ".parquet")


@dataclass(frozen=True)
class Node:
    """A path of the view: a directory, or an object shown in one format."""

    is_dir: bool
    name: str | None = None  # the store name
    fmt: str | None = None  # npy, arrow, parquet
    item: tuple[Any, ...] = ()  # the path inside a nested object


class _Span:
    """``size`` bytes at ``address`` inside a buffer kept alive by ``owner``: mfusepy
    copies it straight into the kernel's buffer (``ctypes.memmove`` takes the address),
    so a read is one copy out of shared memory."""

    __slots__ = ("_as_parameter_", "owner", "size")

    def __init__(self, address: int, size: int, owner: Any) -> None:
        import ctypes  # noqa: PLC0415

        self._as_parameter_, self.size, self.owner = ctypes.c_void_p(address), size, owner

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return self.size > 0


class Content:
    """The bytes of one file, served by slices."""

    def __init__(self, parts: list[Any]) -> None:
        import numpy as np  # noqa: PLC0415

        self.parts = [np.frombuffer(p, dtype=np.uint8) for p in parts if len(memoryview(p).cast("B"))]
        self.size = sum(p.nbytes for p in self.parts)

    def read(self, size: int, offset: int) -> Any:
        """The bytes at ``offset``: a span of one part, or a copy when a read crosses parts."""
        position, pieces = 0, []
        for part in self.parts:
            end = position + part.nbytes
            if offset < end and size > 0:
                start = max(offset - position, 0)
                length = min(size, part.nbytes - start)
                pieces.append((part, start, length))
                size -= length
                offset += length
            position = end
        if len(pieces) == 1:
            part, start, length = pieces[0]
            return _Span(part.ctypes.data + start, length, part)
        return b"".join(part[start:start + length].tobytes() for part, start, length in pieces)


def npy_content(array: Any) -> Content:
    import numpy as np  # noqa: PLC0415

    fortran = array.flags.f_contiguous and not array.flags.c_contiguous
    if not (array.flags.c_contiguous or array.flags.f_contiguous):
        array = np.ascontiguousarray(array)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": np.lib.format.dtype_to_descr(array.dtype),
                                                  "fortran_order": bool(fortran), "shape": array.shape})
    data = array.reshape(-1, order="F" if fortran else "C").view(np.uint8) if array.size else b""
    return Content([header.getvalue(), data])


def table_of(value: Any) -> Any:
    import pyarrow as pa  # noqa: PLC0415

    from objects.codecs.arrow import as_table  # noqa: PLC0415

    if isinstance(value, (pa.Table, pa.RecordBatch, pa.Array, pa.ChunkedArray)):
        return as_table(value)[0]
    import pandas as pd  # noqa: PLC0415

    if isinstance(value, pd.Series):
        value = value.to_frame()
    return pa.Table.from_pandas(value, preserve_index=True)


def table_content(value: Any, fmt: str) -> Content:
    import pyarrow as pa  # noqa: PLC0415

    table = table_of(value)
    sink = pa.BufferOutputStream()
    if fmt == "parquet":
        import pyarrow.parquet as pq  # noqa: PLC0415

        pq.write_table(table, sink)
    else:
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    return Content([sink.getvalue()])


def _format_of(value: Any) -> list[str]:
    import numpy as np  # noqa: PLC0415

    if isinstance(value, np.ndarray) or type(value).__module__.startswith("torch"):
        return ["npy"]
    module = type(value).__module__
    if module.startswith(("pyarrow", "pandas")):
        return ["arrow", "parquet"]
    return []


class DatasetView:
    """The paths of a dataset's objects and their contents (thread-safe)."""

    def __init__(self, store: Any, prefix: str, *, writable: bool = False, ttl: float = 1.0,
                 on_bytes: Callable[[int], None] | None = None) -> None:
        self.store, self.prefix, self.writable = store, prefix, writable
        self._ttl, self._on_bytes = ttl, on_bytes
        self._lock = threading.RLock()
        self._tree: dict[str, Node] = {}
        self._refs: dict[str, Any] = {}
        self._listed = 0.0
        self._contents: OrderedDict[tuple[str, str, tuple[Any, ...]], Content] = OrderedDict()
        self._structures: dict[tuple[str, str], dict[str, Node]] = {}
        self._hidden: set[str] = set()

    # -- the tree --------------------------------------------------------------------

    def invalidate(self) -> None:
        with self._lock:
            self._listed = 0.0

    def tree(self) -> dict[str, Node]:
        with self._lock:
            if time.monotonic() - self._listed < self._ttl:
                return self._tree
            tree: dict[str, Node] = {"/": Node(True)}
            refs = {}
            for ref in self.store.list(prefix=self.prefix):
                key = ref.name[len(self.prefix):].strip("/")
                if not key or name_problem(ref.name) is not None:
                    self._hide(ref.name)  # stored before the naming rule: no path can show it
                    continue
                refs[ref.name] = ref
                kind = ref.typename.split("::")[-1]
                self._parents(tree, "/" + key)
                if kind in ARRAY_KINDS:
                    tree[f"/{key}.npy"] = Node(False, ref.name, "npy")
                elif kind in TABLE_KINDS:
                    tree[f"/{key}.arrow"] = Node(False, ref.name, "arrow")
                    tree[f"/{key}.parquet"] = Node(False, ref.name, "parquet")
                elif kind == "Nested":
                    try:
                        tree.update(self._nested("/" + key, ref))
                    except ObjectsError as exc:  # one that would unpickle, say: not shown, the rest are
                        self._hide(ref.name, str(exc))
            live = {ref.id for ref in refs.values()}
            self._structures = {k: v for k, v in self._structures.items() if k[1] in live}
            self._tree, self._refs, self._listed = tree, refs, time.monotonic()
            return tree

    def _hide(self, what: str, why: str = "it breaks the object naming rule (objects.names)") -> None:
        if what not in self._hidden:  # say it once per name, not on every listing
            self._hidden.add(what)
            log.warning("%r is not shown: %s", what, why)

    @staticmethod
    def _parents(tree: dict[str, Node], path: str) -> None:
        parts = path.strip("/").split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            tree.setdefault("/" + "/".join(parts[:depth]), Node(True))

    def _nested(self, path: str, ref: Any) -> dict[str, Node]:
        """The paths of a nested object, read once per object version."""
        key = (path, ref.id)
        if key in self._structures:
            return self._structures[key]
        name = ref.name
        tree = {path: Node(True, name)}

        def walk(value: Any, at: str, item: tuple[Any, ...]) -> None:
            entries = value.items() if isinstance(value, dict) else enumerate(value)
            for key, child in entries:
                if name_problem(str(key)) is not None or "/" in str(key):
                    self._hide(f"{name}[{key!r}]")  # a member key that is no file name
                    continue
                child_path, child_item = f"{at}/{key}", item + (key,)
                if isinstance(child, (dict, list, tuple)):
                    tree[child_path] = Node(True, name, None, child_item)
                    walk(child, child_path, child_item)
                for fmt in _format_of(child):
                    tree[f"{child_path}.{fmt}"] = Node(False, name, fmt, child_item)

        walk(self.store.get(ref, allow_pickle=False), path, ())  # the view never unpickles
        self._structures[key] = tree
        return tree

    def lookup(self, path: str) -> Node | None:
        return self.tree().get(path)

    def listdir(self, path: str) -> list[str]:
        base = path.rstrip("/") + "/"
        return sorted({p[len(base):].split("/")[0] for p in self.tree() if p.startswith(base) and p != base})

    # -- contents ---------------------------------------------------------------------

    def content(self, node: Node) -> Content:
        assert node.name is not None and node.fmt is not None
        ref = self._refs.get(node.name) or self.store.info(node.name)
        key = (ref.id, node.fmt, node.item)
        with self._lock:
            if key in self._contents:
                self._contents.move_to_end(key)
                return self._contents[key]
        value = self.store.get(ref, allow_pickle=False)
        for step in node.item:
            value = value[step]
        if node.fmt == "npy":
            if not hasattr(value, "dtype") or type(value).__module__.startswith("torch"):
                value = value.numpy() if hasattr(value, "numpy") else value
            content = npy_content(value)
        else:
            content = table_content(value, node.fmt)
        with self._lock:
            self._contents[key] = content
            while len(self._contents) > 32:
                self._contents.popitem(last=False)
        return content

    def served(self, count: int) -> None:
        if self._on_bytes is not None:
            self._on_bytes(count)

    # -- writing ----------------------------------------------------------------------

    def name_for(self, path: str) -> str:
        """The object a written file becomes; EINVAL when its name breaks the naming rule."""
        stem, suffix = os.path.splitext(path.strip("/"))
        if suffix not in WRITABLE_SUFFIXES:
            raise OSError(errno.EINVAL, f"only {', '.join(WRITABLE_SUFFIXES)} files can be written")
        problem = name_problem(self.prefix + stem)
        if problem is not None:
            raise OSError(errno.EINVAL, f"{path}: {problem}")
        return self.prefix + stem

    def commit(self, path: str, data: Any) -> None:
        """Turn a written file into an object (replacing one of the same name)."""
        import numpy as np  # noqa: PLC0415
        import pyarrow as pa  # noqa: PLC0415

        data.seek(0)
        suffix = os.path.splitext(path)[1]
        try:
            if suffix == ".npy":
                value = np.load(data, allow_pickle=False)
            elif suffix == ".arrow":
                raw = pa.py_buffer(data.read())
                try:
                    value = pa.ipc.open_file(raw).read_all()
                except pa.ArrowInvalid:
                    value = pa.ipc.open_stream(raw).read_all()
            else:
                import pyarrow.parquet as pq  # noqa: PLC0415

                value = pq.read_table(data)
        except (ValueError, OSError, pa.ArrowException) as exc:
            raise OSError(errno.EIO, f"{path} is not a valid {suffix} file: {exc}") from None
        self.store.put(value, self.name_for(path), replace=True)
        self.invalidate()

    def remove(self, path: str) -> None:
        node = self.lookup(path)
        if node is None or node.is_dir or node.item:
            raise OSError(errno.ENOENT if node is None else errno.EPERM, path)
        self.store.delete(node.name)
        self.invalidate()


def _errno_of(exc: BaseException) -> int:
    from objects.errors import InvalidName, ObjectNotFound, StoreFull  # noqa: PLC0415

    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    if isinstance(exc, InvalidName):
        return errno.EINVAL
    if isinstance(exc, ObjectNotFound):
        return errno.ENOENT
    if isinstance(exc, StoreFull):
        return errno.ENOSPC
    return errno.EIO


def operations(view: DatasetView) -> Any:
    """The mfusepy Operations serving ``view``."""
    import mfusepy  # noqa: PLC0415

    started = time.time_ns()
    uid, gid = os.getuid(), os.getgid()

    def guarded(method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            try:
                return method(*args)
            except mfusepy.FuseOSError:
                raise
            except BaseException as exc:  # noqa: BLE001 - every failure becomes an errno
                code = _errno_of(exc)
                if code != errno.ENOENT:
                    log.error("%s %s failed: %s", method.__name__, args[1] if len(args) > 1 else "", exc)
                raise mfusepy.FuseOSError(code) from None
        call.__name__ = method.__name__
        return call

    class Ops(mfusepy.Operations):  # type: ignore[misc]
        use_ns = True  # times in nanoseconds

        def __init__(self) -> None:
            self.writing: dict[str, Any] = {}
            self._guard = threading.Lock()

        @guarded
        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            with self._guard:
                if path in self.writing:
                    size = self.writing[path].seek(0, io.SEEK_END)
                    return {"st_mode": stat.S_IFREG | 0o644, "st_nlink": 1, "st_size": size, "st_uid": uid,
                            "st_gid": gid, "st_mtime": time.time_ns(), "st_ctime": started, "st_atime": started}
            node = view.lookup(path)
            if node is None:
                raise mfusepy.FuseOSError(errno.ENOENT)
            write = 0o200 if view.writable else 0
            if node.is_dir:
                return {"st_mode": stat.S_IFDIR | 0o555 | write, "st_nlink": 2, "st_uid": uid, "st_gid": gid,
                        "st_mtime": started, "st_ctime": started, "st_atime": started}
            return {"st_mode": stat.S_IFREG | 0o444 | write, "st_nlink": 1, "st_size": view.content(node).size,
                    "st_uid": uid, "st_gid": gid, "st_mtime": started, "st_ctime": started, "st_atime": started}

        @guarded
        def readdir(self, path: str, fh: int) -> list[str]:
            node = view.lookup(path)
            if node is None or not node.is_dir:
                raise mfusepy.FuseOSError(errno.ENOTDIR if node else errno.ENOENT)
            return [".", "..", *view.listdir(path)]

        @guarded
        def open(self, path: str, flags: int) -> int:
            if flags & (os.O_WRONLY | os.O_RDWR) and not view.writable:
                raise mfusepy.FuseOSError(errno.EROFS)
            if view.lookup(path) is None:
                raise mfusepy.FuseOSError(errno.ENOENT)
            return 0

        @guarded
        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            node = view.lookup(path)
            if node is None or node.is_dir:
                raise mfusepy.FuseOSError(errno.ENOENT)
            data = view.content(node).read(size, offset)
            view.served(len(data))
            return data  # type: ignore[no-any-return]

        @guarded
        def create(self, path: str, mode: int, fi: Any = None) -> int:
            if not view.writable:
                raise mfusepy.FuseOSError(errno.EROFS)
            view.name_for(path)  # EINVAL for other suffixes
            with self._guard:
                self.writing[path] = tempfile.SpooledTemporaryFile(max_size=64 << 20)  # noqa: SIM115
            return 0

        @guarded
        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            with self._guard:
                spool = self.writing.get(path)
            if spool is None:
                raise mfusepy.FuseOSError(errno.EROFS if not view.writable else errno.EBADF)
            spool.seek(offset)
            spool.write(data)
            return len(data)

        @guarded
        def truncate(self, path: str, length: int, fh: int | None = None) -> int:
            with self._guard:
                spool = self.writing.get(path)
            if spool is None:
                raise mfusepy.FuseOSError(errno.EROFS if not view.writable else errno.EPERM)
            spool.truncate(length)
            return 0

        @guarded
        def flush(self, path: str, fh: int) -> int:
            with self._guard:
                spool = self.writing.pop(path, None)
            if spool is not None:
                try:
                    view.commit(path, spool)
                finally:
                    spool.close()
            return 0

        @guarded
        def release(self, path: str, fh: int) -> int:
            return 0

        @guarded
        def unlink(self, path: str) -> int:
            if not view.writable:
                raise mfusepy.FuseOSError(errno.EROFS)
            view.remove(path)
            return 0

        @guarded
        def mkdir(self, path: str, mode: int) -> int:
            raise mfusepy.FuseOSError(errno.EROFS if not view.writable else errno.EPERM)

    return Ops()


def serve(mountpoint: str, store: Any, prefix: str, *, writable: bool = False, allow_other: bool = False,
          on_bytes: Callable[[int], None] | None = None) -> None:
    """Mount and serve until unmounted or signalled (runs in the foreground);
    ``allow_other``: users other than the mounting one may read it (their modes apply)."""
    import mfusepy  # noqa: PLC0415

    view = DatasetView(store, prefix, writable=writable, on_bytes=on_bytes)
    extra = {"allow_other": True} if allow_other else {}
    mfusepy.FUSE(operations(view), mountpoint, foreground=True, ro=not writable, nothreads=False,
                 fsname=f"fluidv:{prefix.rstrip('/')}", default_permissions=True, **extra)


#: how the mount process starts the line that says why it could not serve
ERROR_MARK = "error: "


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - the mount process
    parser = argparse.ArgumentParser(prog="python -m objects.fuseview")
    parser.add_argument("mountpoint")
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--socket")
    parser.add_argument("--config")
    parser.add_argument("--workdir")
    parser.add_argument("--node")
    parser.add_argument("--writable", action="store_true")
    parser.add_argument("--allow-other", action="store_true", help="let other users read it")
    parser.add_argument("--metrics-port", type=int, help="serve fluidv_fuse_bytes_served on this port")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from objects import connect  # noqa: PLC0415

    on_bytes = None
    if args.metrics_port is not None:
        from prometheus_client import Counter, start_http_server  # noqa: PLC0415

        served = Counter("fluidv_fuse_bytes_served", "Bytes read through the FUSE view")
        start_http_server(args.metrics_port, addr="0.0.0.0")  # noqa: S104 - scraped in-cluster
        on_bytes = served.inc
    try:
        store = connect(args.socket, config=args.config, workdir=args.workdir, node=args.node)
    except ObjectsError as exc:  # one line for the supervisor to report, not a traceback
        print(f"{ERROR_MARK}{exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    with store:
        serve(args.mountpoint, store, args.prefix, writable=args.writable, allow_other=args.allow_other,
              on_bytes=on_bytes)


if __name__ == "__main__":
    main(sys.argv[1:])
