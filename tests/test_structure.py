"""The structure check that ``make lint`` runs (``tests/support/structure.py --check``)
finds import circles of any length, and only those."""

from __future__ import annotations

from support.structure import circles


def test_circles_are_found_whatever_their_length_and_only_they():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"f"}, "f": {"e"}, "g": {"g", "d"}}
    assert circles(graph) == [["a", "b", "c"], ["e", "f"]]
    chain = {f"m{i}": {f"m{i + 1}"} for i in range(5000)} | {"m5000": {"m0"}}  # deeper than the recursion limit
    assert circles(chain) == [sorted(chain)]

