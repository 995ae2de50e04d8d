"""Read the custom resources of YAML files: one file, or a set of files and folders."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from fluid_core.errors import FluidError, InvalidResource
from fluid_core.models import AnyResource, parse

#: What a folder contributes to a set of files (as ``kubectl apply -f DIR`` reads).
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Document:
    """A YAML (or JSON) document and where it starts: ``file:line``."""

    data: Any
    source: str


def _read(path: str) -> list[Document]:
    """The non-empty documents of ``path``, each with its first line; FluidError when
    the file is unreadable or not YAML."""
    try:
        with open(path) as handle:
            loader = yaml.SafeLoader(handle)
            try:
                found = []
                while loader.check_node():
                    node = loader.get_node()
                    if node is None:
                        break
                    data = loader.construct_document(node)
                    if data is not None:
                        found.append(Document(data, f"{path}:{node.start_mark.line + 1}"))
                return found
            finally:
                loader.dispose()
    except OSError as exc:
        raise FluidError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise FluidError(f"{path} is not valid YAML: {exc}") from None


def load_documents(path: str) -> list[dict[str, Any]]:
    """The non-empty YAML documents of ``path``; FluidError when unreadable."""
    return [document.data for document in _read(path)]


def manifest_files(path: str, *, recursive: bool = False) -> list[str]:
    """``path`` itself when it is a file (whatever its name), else the ``.yaml``, ``.yml``
    and ``.json`` files in the folder, sorted, and in its subfolders with ``recursive``;
    FluidError when it does not exist or a folder holds none."""
    if not os.path.isdir(path):
        if not os.path.exists(path):
            raise FluidError(f"{path} does not exist")
        return [path]
    found = []
    for folder, subfolders, files in os.walk(path):
        subfolders.sort()
        found += [os.path.join(folder, f) for f in sorted(files) if f.endswith(MANIFEST_SUFFIXES)]
        if not recursive:
            break
    if not found:
        where = "in it or its subfolders" if recursive else "in it (-R reads its subfolders too)"
        raise FluidError(f"{path} is a folder with no {', '.join(MANIFEST_SUFFIXES)} file {where}")
    return found


def load_set(paths: Sequence[str], *, recursive: bool = False) -> tuple[list[Document], list[tuple[str, str]]]:
    """Every document of ``paths`` (files and folders, as ``kubectl apply -f`` takes
    them), and (path, problem) for each path or file that could not be read."""
    documents: list[Document] = []
    problems: list[tuple[str, str]] = []
    for path in paths:
        try:
            files = manifest_files(path, recursive=recursive)
        except FluidError as exc:
            problems.append((path, str(exc)))
            continue
        for file in files:
            try:
                documents += _read(file)
            except FluidError as exc:
                problems.append((file, str(exc)))
    return documents, problems


def parse_all(documents: list[dict[str, Any]]) -> tuple[list[AnyResource], list[InvalidResource]]:
    """Every valid resource, and one InvalidResource per invalid document."""
    resources: list[AnyResource] = []
    problems: list[InvalidResource] = []
    for document in documents:
        try:
            resources.append(parse(document))
        except InvalidResource as exc:
            problems.append(exc)
    return resources, problems
