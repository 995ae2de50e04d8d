"""User types made of arrays and tables: ``objects.register(type, to_parts, from_parts)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from objects.errors import ObjectsError


@dataclass(frozen=True)
class CustomType:
    """How to split a user type into storable parts and join it back."""

    cls: type
    name: str
    to_parts: Callable[[Any], Any]
    from_parts: Callable[[Any], Any]


_BY_TYPE: dict[type, CustomType] = {}
_BY_NAME: dict[str, CustomType] = {}


def qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register(
    cls: type,
    to_parts: Callable[[Any], Any],
    from_parts: Callable[[Any], Any],
    *,
    name: str | None = None,
) -> None:
    """Store instances of ``cls`` as ``to_parts(value)`` and rebuild them with ``from_parts``.

    ``to_parts`` returns anything ``put`` accepts (typically a dict of arrays and
    tables); each array or table in it is shared without a copy. ``name`` identifies
    the type in the store (default: its qualified name) and must be the same in the
    processes that read it.
    """
    if not isinstance(cls, type):
        raise TypeError(f"register() needs a class, got {cls!r}")
    entry = CustomType(cls, name or qualified_name(cls), to_parts, from_parts)
    _BY_TYPE[cls] = entry
    _BY_NAME[entry.name] = entry


def unregister(cls: type) -> None:
    """Forget a registration made with :func:`register`."""
    entry = _BY_TYPE.pop(cls, None)
    if entry is not None:
        _BY_NAME.pop(entry.name, None)


def for_value(value: Any) -> CustomType | None:
    for cls in type(value).__mro__:
        if cls in _BY_TYPE:
            return _BY_TYPE[cls]
    return None


def by_name(name: str) -> CustomType:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ObjectsError(
            f"the object was stored as custom type {name!r}, which is not registered in this "
            "process; call objects.register() for it before get()"
        ) from None
