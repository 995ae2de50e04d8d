"""CRD schemas as JSON Schema, for validating documents in tests."""

from __future__ import annotations

from typing import Any


def as_jsonschema(node: Any) -> Any:
    """openAPIV3 -> JSON schema: ``nullable`` becomes a null type; k8s extensions go."""
    if isinstance(node, list):
        return [as_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: as_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes") and k != "nullable"}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out
