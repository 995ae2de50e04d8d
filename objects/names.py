"""The rule every new object name follows, and the check of it.

A name is segments separated by ``/``: no segment is empty, ``.`` or ``..``, none
holds a control character, a segment is at most ``MAX_SEGMENT_BYTES`` and the whole
name at most ``MAX_NAME_BYTES`` (UTF-8). The FUSE view shows segments as folders and
files, and exports and backups derive file paths from names, so a name that follows
the rule can never point outside its dataset's folder.

Only writes check it (put, allocate, streams, the FUSE view, data operations). Reads
and deletes accept any stored name, so an object made before the rule can still be
read and removed; exports refuse it.
"""

from __future__ import annotations

import unicodedata

from objects.errors import InvalidName
from vineyard_runtime.object_ids import is_inline_id, is_object_name

#: A segment becomes one file or folder name: Linux's NAME_MAX.
MAX_SEGMENT_BYTES = 255
#: Control characters, lone surrogates, and the line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
#: The whole name (an etcd key of the object directory, a path under an export root).
MAX_NAME_BYTES = 1024
#: Names the project keeps for itself: a store refuses to write them and lists none.
RESERVED_PREFIX = "__fluidv"


def name_problem(name: object) -> str | None:
    """Why ``name`` breaks the rule, or None when it follows it."""
    if not isinstance(name, str):
        return f"an object name is a string, not a {type(name).__name__}"
    if not name:
        return "an object name cannot be empty"
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        return f"an object name is at most {MAX_NAME_BYTES} bytes (UTF-8); this one has {size}"
    for index, char in enumerate(name):
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            return f"control character {char!r} at offset {index}; names hold printable characters only"
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            shown = "an empty segment ('//', or '/' at either end)" if not segment else f"a {segment!r} segment"
            return f"{shown}; names are segments separated by single '/', none of them '.' or '..'"
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            return f"segment {segment[:40]!r}… is longer than {MAX_SEGMENT_BYTES} bytes (a file name's limit)"
    return None


def check_name(name: object) -> str:
    """``name`` if it follows the rule; else :class:`InvalidName` saying which part breaks it."""
    problem = name_problem(name)
    if problem is not None:
        raise InvalidName(f"object name {_shown(name)} is refused: {problem}")
    assert isinstance(name, str)
    return name


def check_new_name(name: str) -> str:
    """A name a store writes: the rule, and none a store keeps for itself or reads as an id."""
    check_name(name)
    if name != name.strip():
        raise InvalidName(f"object name {name!r} must not start or end with spaces")
    if name.startswith(RESERVED_PREFIX):
        raise InvalidName(f"names starting with {RESERVED_PREFIX!r} are reserved")
    if is_object_name(name) or is_inline_id(name):
        raise InvalidName(f"name {name!r} looks like an object id; choose another name")
    return name


def _shown(name: object) -> str:
    text = repr(name)
    return text if len(text) <= 120 else text[:117] + "…"


__all__ = ["MAX_NAME_BYTES", "MAX_SEGMENT_BYTES", "RESERVED_PREFIX", "check_name", "check_new_name", "name_problem"]
