"""How the project spells a vineyard object or blob id: ``o`` and 16 hex digits (as
vineyard prints them), the one spelling used in names, layouts, holds and requests;
and the id of a value kept inline in its directory entry: ``i`` and 16 hex digits."""

from __future__ import annotations

import itertools
import os
import re
import secrets
from collections.abc import Iterator
from typing import Any

_OBJECT_ID = re.compile(r"^o[0-9a-f]{16}$")
_INLINE_ID = re.compile(r"^i[0-9a-f]{16}$")
#: (pid, its random origin, its counter): a process draws its own origin at its first id,
#: and a forked child (the flow runner forks steps from a helper that imported this
#: module) its own again, or it would repeat its parent's ids
_inline: tuple[int, int, Iterator[int]] | None = None


def object_name(object_id: Any) -> str:
    """``o`` and the 16 hex digits of ``object_id`` (an int or vineyard's ObjectID)."""
    return f"o{int(object_id):016x}"


def object_id(name: str) -> int:
    """The id ``object_name`` spelled as ``name``."""
    return int(name[1:], 16)


def is_object_name(text: str) -> bool:
    """True when ``text`` is spelled as ``object_name`` spells an id."""
    return bool(_OBJECT_ID.match(text))


def new_inline_id() -> str:
    """A cluster-unique id for an inline value: 32 random bits of this process, then a counter."""
    global _inline
    pid = os.getpid()
    if _inline is None or _inline[0] != pid:
        _inline = (pid, secrets.randbits(32), itertools.count())
    return f"i{_inline[1]:08x}{next(_inline[2]) & 0xFFFFFFFF:08x}"


def is_inline_id(text: str) -> bool:
    """True when ``text`` is spelled as ``new_inline_id`` spells one."""
    return bool(_INLINE_ID.match(text))


__all__ = ["is_inline_id", "is_object_name", "new_inline_id", "object_id", "object_name"]
