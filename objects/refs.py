"""``ObjectRef``: what the store knows about one object."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ObjectRef:
    """An object's id, name, type, size, the node holding it, and its labels."""

    id: str
    name: str | None
    typename: str
    nbytes: int
    node: str
    instance_id: int
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    def __str__(self) -> str:
        return self.name or self.id
