"""A step's function from a script file (``path/to/script.py:function``), without
running the script's flow again.

A user writes a function and a flow that runs it in one script, and runs
``python script.py``. The step process (and, in the caller's process, the flow's
validation) must get that function without the flow running a second time:

- In the process whose ``__main__`` is the script, the function is taken from
  ``__main__`` itself: nothing is executed.
- Elsewhere the script is imported as a module whose ``__name__`` is not
  ``"__main__"``, as Python's multiprocessing imports its main script, so an
  ``if __name__ == "__main__":`` block does not run. A script with such a block runs
  everything outside it, as any imported module does.
- A script without one runs its top level only as far as the function needs: its
  statements up to the function's definition, and after it the imports, ``def``\\s,
  ``class``\\es and assignments that call nothing. The import stops before the first
  other statement (the code that starts a cluster or builds and runs the flow).
- Wherever the import is, ``flow.run()`` and ``bind_runtime()`` called while it runs
  stop it there (``stop_if_importing``), so a step never starts a flow of its own.

An import that fails, or stops before the function is defined, raises ``ScriptError``
saying at which line and what to do.
"""

from __future__ import annotations

import ast
import hashlib
import os
import sys
import traceback
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from fluid_core.errors import FluidError

#: The advice every failed import of a script ends with.
GUARD_HINT = ('a step imports the script that defines its function (its __name__ is not "__main__"): put the '
              'code that starts clusters and runs flows under `if __name__ == "__main__":`')

#: The script being imported by this thread, while it is.
_IMPORTING: ContextVar[str | None] = ContextVar("fluidv_importing_script", default=None)


class ScriptError(FluidError):
    """A script's function cannot be loaded; the message says where and how to fix it."""


class ScriptImportStopped(BaseException):
    """Raised inside a script being imported for a step, where it would start a flow or
    a cluster; the loader catches it and keeps what the script defined so far."""

    def __init__(self, what: str, line: int | None) -> None:
        super().__init__(what)
        self.what, self.line = what, line


def importing_script() -> str | None:
    """The script this thread imports for a step, if it is importing one."""
    return _IMPORTING.get()


def stop_if_importing(what: str) -> None:
    """Stop the import of a step's script here (``what``: the call, e.g. ``flow.run()``):
    a no-op unless this thread is importing one."""
    path = _IMPORTING.get()
    if path is not None:
        raise ScriptImportStopped(what, _line_in(path, traceback.extract_stack()))


def _line_in(path: str, frames: list[traceback.FrameSummary]) -> int | None:
    """The line of ``path`` deepest in ``frames`` (where the script called in)."""
    for frame in reversed(frames):
        if frame.filename == path:
            return frame.lineno
    return None


def _same_file(a: str | None, b: str) -> bool:
    if not a:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def script_path(module: Any) -> str | None:
    """The script file of a module that is a script (``__main__``, or one this loader
    imported), else None: functions of such modules are named ``path.py:function``."""
    if module is None:
        return None
    if getattr(module, "__name__", None) == "__main__" or getattr(module, "__fluidv_script__", None):
        path = getattr(module, "__file__", None)
        return str(path) if path else None
    return None


def load_script_function(path: str, attribute: str) -> Callable[..., Any]:
    """``attribute`` (a dotted qualname) of the script at ``path``; ScriptError when the
    script cannot be read, fails, or does not define it before its flow."""
    main = sys.modules.get("__main__")
    stopped: ScriptImportStopped | None = None
    if _same_file(getattr(main, "__file__", None), path):
        module: Any = main
    else:
        module, stopped = _import(path, attribute.split(".")[0])
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part, None)
        if target is None:
            if stopped is not None:
                at = f" at line {stopped.line}" if stopped.line else ""
                raise ScriptError(f"{path} stopped{at}, at its {stopped.what}, before defining {attribute!r}: "
                                  f"define the function above that line, or {GUARD_HINT}")
            raise ScriptError(f"{path} has no {attribute!r}")
    if not callable(target):
        raise ScriptError(f"{path}:{attribute} is not callable")
    return target  # type: ignore[no-any-return]


def _import(path: str, first: str) -> tuple[types.ModuleType, ScriptImportStopped | None]:
    """The script as a module (not ``__main__``), run as far as ``first`` needs."""
    try:
        with open(path, "rb") as handle:
            source = handle.read()
    except OSError as exc:
        raise ScriptError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        raise ScriptError(f"{path}, line {exc.lineno}: {exc.msg}") from None
    name = f"__fluidv_script_{hashlib.sha1(os.path.realpath(path).encode()).hexdigest()[:12]}__"
    module = types.ModuleType(name)
    module.__file__ = path
    module.__fluidv_script__ = path  # type: ignore[attr-defined]
    code = compile(ast.Module(body=statements_to_run(tree, first), type_ignores=[]), path, "exec")
    previous = sys.modules.get(name)
    sys.modules[name] = module  # as an import does: dataclasses, pickle and typing look it up
    stopped = None
    try:
        with _importing(path):
            exec(code, module.__dict__)  # the user's own script, as an import runs it
    except ScriptImportStopped as exc:
        stopped = exc
    except Exception as exc:  # noqa: BLE001 - any failure of the user's code is reported with its line
        _forget(name, previous)
        line = _line_in(path, traceback.extract_tb(exc.__traceback__))
        at = f" at line {line}" if line else ""
        raise ScriptError(f"importing {path} ran its top level, which failed{at}: {type(exc).__name__}: {exc}. "
                          f"{GUARD_HINT}") from None
    except BaseException:
        _forget(name, previous)
        raise
    return module, stopped


def _forget(name: str, previous: types.ModuleType | None) -> None:
    if previous is None:
        sys.modules.pop(name, None)
    else:
        sys.modules[name] = previous


@contextmanager
def _importing(path: str) -> Iterator[None]:
    token = _IMPORTING.set(path)
    try:
        yield
    finally:
        _IMPORTING.reset(token)


def statements_to_run(tree: ast.Module, first: str) -> list[ast.stmt]:
    """The top-level statements of a script to run for its name ``first``: all of them
    when it has an ``if __name__ == "__main__":`` block or does not define ``first`` at
    top level; else those up to ``first``'s definition and the definitions after it."""
    body = list(tree.body)
    if any(_is_main_guard(statement) for statement in body):
        return body
    defined = next((i for i, statement in enumerate(body) if first in _names_bound(statement)), None)
    if defined is None:
        return body
    end = defined + 1
    while end < len(body) and _defines_only(body[end]):
        end += 1
    return body[:end]


def _is_main_guard(statement: ast.stmt) -> bool:
    if not isinstance(statement, ast.If) or not isinstance(statement.test, ast.Compare):
        return False
    test = statement.test
    sides = [test.left, *test.comparators]
    return (len(sides) == 2 and isinstance(test.ops[0], ast.Eq)
            and any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
            and any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides))


def _names_bound(statement: ast.stmt) -> set[str]:
    """Names a top-level statement binds (definitions, imports, plain assignments)."""
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {statement.name}
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return {(alias.asname or alias.name).split(".")[0] for alias in statement.names}
    targets: list[ast.expr] = []
    if isinstance(statement, ast.Assign):
        targets = list(statement.targets)
    elif isinstance(statement, ast.AnnAssign):
        targets = [statement.target]
    return {node.id for target in targets for node in ast.walk(target) if isinstance(node, ast.Name)}


def _defines_only(statement: ast.stmt) -> bool:
    """True for a statement that only defines names: an import, a ``def``, a ``class``,
    a docstring, or an assignment whose value calls nothing."""
    if isinstance(statement, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                              ast.Pass)):
        return True
    if isinstance(statement, ast.Expr):
        return isinstance(statement.value, ast.Constant)
    if isinstance(statement, (ast.Assign, ast.AnnAssign)):
        value = statement.value
        return value is None or not any(isinstance(node, (ast.Call, ast.Await, ast.Yield, ast.YieldFrom,
                                                          ast.NamedExpr)) for node in ast.walk(value))
    return False


__all__ = ["GUARD_HINT", "ScriptError", "ScriptImportStopped", "importing_script", "load_script_function",
           "script_path", "statements_to_run", "stop_if_importing"]
