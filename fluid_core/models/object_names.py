"""The naming rule of a dataset's objects: key ``k`` of dataset ``ns/ds`` is the store
name ``ns/ds/k``; the dataset's objects are the names under ``ns/ds/``."""

from __future__ import annotations


def dataset_prefix(namespace: str, dataset: str) -> str:
    """The prefix every object name of dataset ``namespace/dataset`` starts with."""
    return f"{namespace}/{dataset}/"


def object_name(namespace: str, dataset: str, key: str) -> str:
    """The store name of ``key`` in dataset ``namespace/dataset``."""
    return dataset_prefix(namespace, dataset) + key.lstrip("/")
