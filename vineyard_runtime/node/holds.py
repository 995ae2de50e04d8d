"""Holds on one node's shared memory: readers' pins and frees deferred until they let go.

vineyardd 0.24.2 frees a deleted blob at once, even while other processes map it, and
hands the memory to the next allocation: a reader's read-only view would silently show
another object's bytes. So every process that reads an object of a node pins it first,
with a shared ``flock`` on ``<holds>/<key>.pin`` (``key``: the directory id of the
object), and a delete goes through :meth:`NodeHolds.free`: it writes what to free into
``<key>.doomed``, then frees it at once only if it can take the exclusive lock.
Otherwise the last reader to let go frees it, or the node's sweeper does. A lock dies
with its process, so a killed reader pins nothing.

Writes in flight are held too: a process filling blobs for a name keeps an exclusive
lock on ``w-<pid>-<n>.writing``, which lists the blobs; the sweeper frees the blobs of
a writer that died before it named or dropped them (see :class:`Writing`). A stream's
writer keeps one such record for its whole life, saying which blobs it published.

The holds directory sits beside the node's socket (``<socket>.holds``), so every
process that can reach the node's memory can reach its holds, in both modes. It is as
open as the socket's folder: the owner's alone (a local cluster's default), its group's
(``--group``), or everyone's who can reach the folder (a dataset's mount on Kubernetes,
where the pods of any user that mount the dataset read the node's objects; they could
delete them through the socket anyway).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import json
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

log = logging.getLogger("fluidv.holds")


#: Deletes vineyard objects or blobs by id (deep); raises what vineyard raises.
Delete = Callable[[list[str]], None]
#: True when ``name`` is in the object directory as the entry of this id.
Named = Callable[[str, str], bool]



def holds_dir(socket: str) -> str:
    """Where the holds of the node listening on ``socket`` live (a link is followed)."""
    return os.path.realpath(socket) + ".holds"


def _try_lock(fd: int, how: int) -> bool:
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _share_like_parent(path: str) -> int:
    """Give the holds the openness of the socket's folder (each reader pins there): its
    owner's, its group's, or everyone's who can enter it; the mode of the files in them."""
    info, parent = os.stat(path), os.stat(os.path.dirname(path))
    if parent.st_mode & 0o001:
        mode, files = 0o777, 0o666
    elif parent.st_mode & 0o070:
        mode, files = stat.S_ISGID | 0o770, 0o660
    else:
        mode, files = 0o700, 0o600
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != mode:  # once, not at every connect
        os.chmod(path, mode)
    return files


@dataclass
class _Pinned:
    """This process's shared lock on one key, counted (one flock per process and key)."""

    fd: int
    count: int = 0


class NodeHolds:
    """The holds of one node (a directory); safe to share between threads."""

    _pins: dict[str, _Pinned] = {}  # by pin path: one lock per process, whatever the store
    _lock = threading.Lock()

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(path, mode=0o700, exist_ok=True)
        self.file_mode = _share_like_parent(path)

    @classmethod
    def for_socket(cls, socket: str) -> "NodeHolds | None":
        """The holds of the node at ``socket``; None where they cannot be kept (a
        read-only directory), and then reads are not pinned."""
        try:
            return cls(holds_dir(socket))
        except OSError as exc:
            log.warning("no holds beside %s (%s): deleted objects are freed under their readers", socket, exc)
            return None

    def _file(self, key: str, kind: str) -> str:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"not a hold key: {key!r}")
        return os.path.join(self.path, f"{key}.{kind}")

    # -- readers -------------------------------------------------------------------

    def pin(self, key: str) -> "Pin":
        """Pin ``key`` until the returned Pin is released (waits only while a free of
        ``key`` is deciding, a few milliseconds)."""
        path = self._file(key, "pin")
        with self._lock:
            held = self._pins.get(path)
            if held is None:
                fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, self.file_mode)
                fcntl.flock(fd, fcntl.LOCK_SH)
                held = self._pins[path] = _Pinned(fd)
            held.count += 1
        return Pin(self, key, path)

    def _unpin(self, key: str, path: str, delete: Delete | None) -> None:
        with self._lock:
            held = self._pins[path]
            held.count -= 1
            if held.count:
                return
            del self._pins[path]
            fd = held.fd
        try:
            # the last reader of this process: free what a delete left, if nobody else reads
            if delete is not None and os.path.exists(self._file(key, "doomed")) and _try_lock(fd, fcntl.LOCK_EX):
                self._free_locked(key, delete)
        except Exception as exc:  # noqa: BLE001 - the sweeper frees it later
            log.debug("freeing %s on release failed: %s", key, exc)
        finally:
            os.close(fd)

    # -- deleters ------------------------------------------------------------------

    def free(self, key: str, ids: list[str], delete: Delete) -> bool:
        """Free ``ids`` (what ``key`` holds, with what an earlier free of ``key`` left)
        now if nobody reads ``key``, else once the last reader lets go. True when freed now."""
        doomed = self._file(key, "doomed")
        temporary = f"{doomed}.{os.getpid()}.{threading.get_ident()}.tmp"
        with self._doomed_lock():  # two frees of one key (a node's copy, a delete) both count
            try:
                with open(doomed) as handle:
                    ids = sorted(set(json.load(handle)) | set(ids))
            except FileNotFoundError:
                pass
            with open(temporary, "w") as handle:
                json.dump(ids, handle)
            os.replace(temporary, doomed)  # first doomed, then try: a reader letting go sees it
        return self._try_free(key, delete)

    @contextlib.contextmanager
    def _doomed_lock(self) -> Iterator[None]:
        """The node's lock on writing doomed files (an flock of the holds folder)."""
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _try_free(self, key: str, delete: Delete) -> bool:
        path = self._file(key, "pin")
        with self._lock:
            if path in self._pins:  # this very process still reads it
                return False
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, self.file_mode)
        try:
            if not _try_lock(fd, fcntl.LOCK_EX):
                return False
            return self._free_locked(key, delete)
        finally:
            os.close(fd)

    def _free_locked(self, key: str, delete: Delete) -> bool:
        """Free what ``<key>.doomed`` lists; the caller holds the exclusive lock."""
        doomed = self._file(key, "doomed")
        try:
            with open(doomed) as handle:
                ids = json.load(handle)
        except FileNotFoundError:
            return True  # freed by someone else meanwhile
        delete(ids)
        _unlink(doomed)
        _unlink(self._file(key, "pin"))  # only now: a reader that opened it finds the ids gone
        return True

    def has_work(self) -> bool:
        """True when deletes wait for readers or writes are in flight."""
        return any(name.endswith((".doomed", ".writing")) for name in os.listdir(self.path))

    def pending(self) -> list[str]:
        """Keys freed by a delete but still read (or not yet swept)."""
        return sorted(name[:-len(".doomed")] for name in os.listdir(self.path) if name.endswith(".doomed"))

    # -- writers -------------------------------------------------------------------

    def writing(self) -> "Writing":
        """A record of the blobs this process is about to fill (see :class:`Writing`)."""
        return Writing(self)

    # -- the node's sweeper --------------------------------------------------------

    def sweep(self, delete: Delete, named: Named) -> int:
        """Free what deletes left and nobody reads any more, and the blobs of writers
        that died before naming them; return how many were freed."""
        freed = 0
        for key in self.pending():
            try:
                freed += self._try_free(key, delete)
            except Exception as exc:  # noqa: BLE001 - tried again next sweep
                log.debug("sweeping %s: %s", key, exc)
        for name in os.listdir(self.path):
            if name.endswith(".writing"):
                freed += Writing.reclaim(os.path.join(self.path, name), delete, named)
        return freed


class Pin:
    """One pin of a key; :meth:`release` once (``delete``: how to free the key if it
    was deleted meanwhile and this was its last reader)."""

    def __init__(self, holds: NodeHolds, key: str, path: str) -> None:
        self._holds, self.key, self._path = holds, key, path
        self._released = False
        self._guard = threading.Lock()

    def release(self, delete: Delete | None = None) -> None:
        with self._guard:
            if self._released:
                return
            self._released = True
        self._holds._unpin(self.key, self._path, delete)


_WRITES = itertools.count()
#: lines a record may grow to before it is written anew with what it still holds
COMPACT_LINES = 4096


@dataclass
class Writing:
    """Blobs of one write in flight, listed in ``w-<pid>-<n>.writing`` under an
    exclusive lock for as long as the writer lives; :meth:`done` when the blobs are
    named or freed. A file whose lock can be taken belongs to a dead writer, and
    :meth:`reclaim` frees what it lists, unless the name it was writing holds it."""

    holds: NodeHolds
    blobs: list[str] = field(default_factory=list)
    _fd: int | None = None

    def __post_init__(self) -> None:
        self.path = os.path.join(self.holds.path, f"w-{os.getpid()}-{next(_WRITES)}.writing")
        self._lock = threading.Lock()  # a stream's writer adds, its flusher publishes
        self._lines = 0
        self._named = False

    def add(self, blob_id: str) -> None:
        """Record ``blob_id`` before filling it (a crash from here on frees it)."""
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                                   self.holds.file_mode)
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            self.blobs.append(blob_id)
            self._line(blob_id)

    def published(self, blob_ids: list[str]) -> None:
        """Say that blobs recorded here were published (a stream's chunks): a reclaim
        leaves them to whoever deletes what they were published as. The record is
        written anew with what is left once it grows long (a stream may run for days)."""
        with self._lock:
            if self._fd is None or not blob_ids:
                return
            gone = set(blob_ids)
            self.blobs = [blob for blob in self.blobs if blob not in gone]
            if self._lines < COMPACT_LINES or self._named:
                self._line(json.dumps({"published": blob_ids}))
                return
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
            os.write(self._fd, "".join(blob + "\n" for blob in self.blobs).encode())
            self._lines = len(self.blobs)

    def unpublished(self) -> list[str]:
        """The blobs recorded here and not published."""
        with self._lock:
            return list(self.blobs)

    def naming(self, name: str, entry_id: str) -> None:
        """Say which name the blobs are about to get (as directory entry ``entry_id``)."""
        with self._lock:
            if self._fd is not None:
                self._named = True
                self._line(json.dumps({"name": name, "entry": entry_id}))

    def _line(self, text: str) -> None:
        assert self._fd is not None
        os.write(self._fd, (text + "\n").encode())
        self._lines += 1

    def done(self) -> None:
        """The blobs are named or freed: forget them."""
        if self._fd is not None:
            _unlink(self.path)
            os.close(self._fd)
            self._fd = None

    @staticmethod
    def reclaim(path: str, delete: Delete, named: Named) -> int:
        """Free the blobs of the dead writer of ``path``; 0 while its writer lives."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return 0
        try:
            if not _try_lock(fd, fcntl.LOCK_EX):
                return 0
            with open(path) as handle:
                lines = [line.strip() for line in handle if line.strip()]
            notes = [json.loads(line) for line in lines if line.startswith("{")]
            published = {blob for note in notes for blob in note.get("published", [])}
            blobs = [line for line in lines if not line.startswith("{") and line not in published]
            names = [note for note in notes if "name" in note]
            kept = any(named(n["name"], n["entry"]) for n in names)  # it died after naming them
            if blobs and not kept:
                with contextlib.suppress(Exception):  # some are gone already
                    delete(blobs)
            _unlink(path)
            return 1
        finally:
            os.close(fd)


@contextlib.contextmanager
def writing(holds: NodeHolds | None) -> Iterator[Writing | None]:
    """A :class:`Writing` of ``holds`` for the block (None without holds), forgotten at its end."""
    if holds is None:
        yield None
        return
    record = holds.writing()
    try:
        yield record
    finally:
        record.done()
