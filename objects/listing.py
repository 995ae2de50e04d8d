"""``store.list``: the names under a prefix, read again only where they changed.

A store keeps, per prefix it lists, the refs it built and the etcd revision they are
from. Each ``list`` reads in one request the entries put since that revision and how
many names there are; only when that number says some names were deleted does it read
the keys (without values) to drop them. A listing is as current as a full read (etcd
reads are linearizable), but a repeated listing of 10,000 names parses what changed,
not 10,000 entries.
"""

from __future__ import annotations

from collections.abc import Callable

from objects.directory import Directory, Entry
from objects.refs import ObjectRef


class Listing:
    """The names under ``prefix``, each as (ref, whether its value dies with its node)."""

    def __init__(self, prefix: str, make_ref: Callable[[Entry, str | None], ObjectRef]) -> None:
        self.prefix, self._make_ref = prefix, make_ref
        self._revision = 0
        self._known: dict[str, tuple[ObjectRef, bool]] = {}
        self._sorted: list[tuple[str, ObjectRef, bool]] = []

    def refresh(self, directory: Directory) -> list[tuple[str, ObjectRef, bool]]:
        """(name, ref, on_node) of every name under the prefix now, sorted by name."""
        changed, total, revision = directory.changes(self.prefix, self._revision)
        for name, entry in changed:
            self._known[name] = (self._make_ref(entry, name), entry.on_node)
        if len(self._known) != total:  # some were deleted since: keep what is there
            present = directory.names(self.prefix, revision)
            self._known = {name: known for name, known in self._known.items() if name in present}
        if changed or len(self._sorted) != len(self._known):
            self._sorted = [(name, *self._known[name]) for name in sorted(self._known)]
        self._revision = revision
        return self._sorted
