"""What a test needs that the project installs only with an extra: vineyard's own Python
client (the ``vineyard`` extra, wheels for CPython 3.12 at most)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pytest


def vineyard_client_installed() -> bool:
    """True when vineyard's Python client is installed (found without importing it)."""
    try:
        version("vineyard")
    except PackageNotFoundError:
        return False
    return True


#: for tests of what only vineyard's own client does (they run wherever it installs)
needs_vineyard_client = pytest.mark.skipif(
    not vineyard_client_installed(),
    reason="vineyard's own Python client (the vineyard extra) has no wheels for this Python",
)
