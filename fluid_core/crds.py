"""CustomResourceDefinitions generated from the models (``fluidv crds``)."""

from __future__ import annotations

import copy
import os
from typing import Any

import yaml

from fluid_core.models import GROUP, KINDS, VERSION, Resource
from fluid_core.models.base import NOT_APPLIED

_DROP = {"title", "$defs", "discriminator", NOT_APPLIED}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Turn pydantic's JSON schema into a Kubernetes structural schema."""
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**copy.deepcopy(target), **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    options = node.get("anyOf")
    if options is not None and node.get("x-kubernetes-int-or-string"):
        return {k: copy.deepcopy(v) for k, v in node.items()
                if k not in _DROP and not (k == "default" and v is None)}  # already structural
    if options is not None:
        kept = [o for o in options if o.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(kept) == 1:
            result = _structural({**kept[0], **rest}, defs)
            if len(kept) < len(options):
                result["nullable"] = True
            return result
        raise ValueError(f"cannot express anyOf {options} in a structural schema")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or (key == "default" and value is None):
            continue
        if key == "const":
            out["enum"] = [value]
            out.setdefault("type", "string")
        elif key == "additionalProperties" and value is True:
            out["x-kubernetes-preserve-unknown-fields"] = True
        elif key == "additionalProperties" and value is False:
            continue  # unknown fields are pruned by the API server
        elif key == "properties":
            out[key] = {name: _structural(prop, defs) for name, prop in value.items()}
        else:
            out[key] = _structural(value, defs)
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if out.get("x-kubernetes-preserve-unknown-fields") and "type" not in out:
        out["type"] = "object"
    return out


def openapi_schema(cls: type[Resource]) -> dict[str, Any]:
    """The openAPIV3Schema of ``cls``."""
    schema = cls.model_json_schema(by_alias=True, mode="validation")
    defs = schema.get("$defs", {})
    root = _structural(schema, defs)
    root["properties"]["metadata"] = {"type": "object"}
    root["properties"]["apiVersion"] = {"type": "string"}
    root["properties"]["kind"] = {"type": "string"}
    for drop in ("required",):
        root.pop(drop, None)
    if "spec" in schema.get("required", []):
        root["required"] = ["spec"]
    for field in ("status",):
        root["properties"][field] = _strip_defaults(root["properties"][field])
    return dict(root)


def _strip_defaults(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_defaults(v) for k, v in node.items() if k != "default"}
    if isinstance(node, list):
        return [_strip_defaults(v) for v in node]
    return node


def crd(cls: type[Resource]) -> dict[str, Any]:
    """The CustomResourceDefinition of ``cls``."""
    kind = cls.model_fields["kind"].default
    info = cls.CRD
    names: dict[str, Any] = {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": info.plural,
        "singular": kind.lower(),
        "categories": list(info.categories),
    }
    if info.short_names:
        names["shortNames"] = list(info.short_names)
    columns = []
    for name, kind_of, path, priority in info.columns:
        column: dict[str, Any] = {"name": name, "type": kind_of, "jsonPath": path}
        if priority:
            column["priority"] = priority
        columns.append(column)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{info.plural}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "fluid-vineyard"}},
        "spec": {
            "group": GROUP,
            "names": names,
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": openapi_schema(cls)},
                "subresources": {"status": {}, **({"scale": dict(info.scale)} if info.scale else {})},
                "additionalPrinterColumns": columns,
            }],
        },
    }


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD, for every kind."""
    return {f"{GROUP}_{cls.CRD.plural}.yaml": crd(cls) for cls in KINDS.values()}


def render(document: dict[str, Any]) -> str:
    return str(yaml.safe_dump(document, sort_keys=False))


def write_crds(out_dir: str) -> list[str]:
    """Write every CRD into ``out_dir``; return the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for filename, document in all_crds().items():
        path = os.path.join(out_dir, filename)
        with open(path, "w") as handle:
            handle.write("# Generated by `fluidv crds` from fluid_core/models; do not edit.\n")
            handle.write(render(document))
        written.append(path)
    return written
