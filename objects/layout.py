"""Object layouts held outside Vineyard: small values live inline in a directory entry.

The codecs write through a :class:`~objects.codecs.base.Context`. :class:`InlineContext`
gives them the same calls (``new_blob``, ``seal``, ``new_meta``, ``create``) but keeps
blobs as bytes and metadata as plain dicts, so a small value needs no Vineyard round
trip at all; ``to_json``/``from_json`` carry it in the entry. When a value outgrows the
budget, encoding stops with :class:`TooLarge` and the caller writes it to Vineyard.
"""

from __future__ import annotations

import base64
from typing import Any

from objects.codecs.base import Context, meta_fields

#: Values whose blobs add up to at most this many bytes are kept inline.
INLINE_MAX = 16 << 10


class TooLarge(Exception):
    """The value does not fit the inline budget."""


class InlineBlob(bytes):
    """A blob kept as bytes; reads are views of these bytes."""

    @property
    def is_empty(self) -> bool:
        return len(self) == 0

    @property
    def size(self) -> int:
        return len(self)


class LayoutMeta:
    """A dict-based stand-in for vineyard's ObjectMeta (typename, fields, members)."""

    def __init__(self, fields: dict[str, Any] | None = None,
                 members: dict[str, "LayoutMeta | InlineBlob"] | None = None) -> None:
        self.fields = dict(fields or {})
        self.members = dict(members or {})

    id = "inline"

    @property
    def typename(self) -> str:
        return str(self.fields["typename"])

    @property
    def nbytes(self) -> int:
        return int(self.fields.get("nbytes", 0))

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.fields[key] = value

    def add_member(self, name: str, member: "LayoutMeta | InlineBlob") -> None:
        self.members[name] = member

    def member(self, name: str) -> "LayoutMeta | InlineBlob":
        return self.members[name]

    get_member = member

    def to_json(self) -> dict[str, Any]:
        members = {
            name: {"blob": base64.b64encode(m).decode()} if isinstance(m, InlineBlob) else m.to_json()
            for name, m in self.members.items()
        }
        return {"fields": self.fields, "members": members}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LayoutMeta":
        members: dict[str, LayoutMeta | InlineBlob] = {}
        for name, m in data.get("members", {}).items():
            members[name] = InlineBlob(base64.b64decode(m["blob"])) if "blob" in m else cls.from_json(m)
        return cls(data.get("fields"), members)


class _Builder(bytearray):
    """A writable inline blob; ``copy`` mirrors vineyard's builder."""

    def copy(self, offset: int, address: int, size: int) -> None:
        import ctypes  # noqa: PLC0415

        view = memoryview(self)
        view[offset:offset + size] = ctypes.string_at(address, size)


class InlineContext(Context):
    """A Context whose blobs and metadata stay in this process (see the module doc)."""

    def __init__(self, node: str, labels: dict[str, str], *, allow_pickle: bool = False,
                 budget: int = INLINE_MAX) -> None:
        super().__init__(client=None, node=node, allow_pickle=allow_pickle, labels=labels)
        self.left = budget

    def new_blob(self, nbytes: int) -> Any:
        if nbytes > self.left:
            raise TooLarge(nbytes)
        self.left -= nbytes
        return _Builder(nbytes)

    def seal(self, builder: Any) -> Any:
        return InlineBlob(builder)

    def abort(self, builder: Any) -> None:
        return None

    def empty_blob(self) -> Any:
        return InlineBlob(b"")

    def new_meta(self, kind: str, header: dict[str, Any], nbytes: int) -> Any:
        return LayoutMeta(meta_fields(kind, header, nbytes, self.labels))

    def create(self, meta: Any) -> Any:
        return meta
