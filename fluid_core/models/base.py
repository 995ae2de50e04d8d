"""Shared pieces of the API models: camelCase fields, metadata, conditions, names, sizes."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from enum import Enum
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

from vineyard_runtime.errors import InvalidSpec
from vineyard_runtime.quantity import QUANTITY_PATTERN, parse_quantity

GROUP = "data.fluid.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class Model(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are errors."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", use_enum_values=True,
        validate_default=True,
    )

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    @model_validator(mode="wrap")
    @classmethod
    def _name_unknown_fields(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        """Say which field an unknown one was probably meant to be, instead of pydantic's
        "Extra inputs are not permitted"."""
        try:
            return handler(data)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            if not any(_unknown_here(e) for e in errors):
                raise
            details = [InitErrorDetails(
                type=PydanticCustomError(e["type"] if not _unknown_here(e) else "unknown_field", "{message}",
                                         {"message": unknown_field(cls, str(e["loc"][0])) if _unknown_here(e)
                                          else e["msg"]}),
                loc=e["loc"], input=e["input"]) for e in errors]
            raise ValidationError.from_exception_data(exc.title, details) from None


def _unknown_here(error: Any) -> bool:
    """An unknown field of the model being validated itself (not of one inside it)."""
    return bool(error["type"] == "extra_forbidden" and len(error["loc"]) == 1)


def unknown_field(model: type[BaseModel], field: str) -> str:
    """What to say of ``field``, which ``model`` does not have: the closest field it has
    (as written in YAML), else every field it has."""
    spelled = {name: info.alias or name for name, info in model.model_fields.items()}
    candidates = {key.lower(): wire for name, wire in spelled.items() for key in (name, wire)}
    close = difflib.get_close_matches(field.lower(), list(candidates), n=1, cutoff=0.6)
    if close:
        return f"unknown field `{field}`; did you mean `{candidates[close[0]]}`?"
    return f"unknown field `{field}`; the fields here are: {', '.join(sorted(spelled.values())) or 'none'}"


def _quantity(value: str) -> str:
    try:
        parse_quantity(value, what="quantity", kubernetes=True)
    except InvalidSpec as exc:
        raise ValueError(str(exc)) from None
    return value


def _dns1035(value: str) -> str:
    if len(value) > 63 or not DNS1035.match(value):
        raise ValueError(
            f"{value!r} must be a DNS-1035 label: at most 63 lower-case letters, digits or '-', "
            "starting with a letter and ending with a letter or digit"
        )
    return value


def _dns1123(value: str) -> str:
    if len(value) > 253 or not DNS1123.match(value):
        raise ValueError(f"{value!r} must be a DNS-1123 subdomain (lower-case, digits, '-', '.')")
    return value


# The validators give the messages; WithJsonSchema puts the same rule into the CRDs.
def _int_as_string(value: object) -> object:
    """Kubernetes quantities may be integers (bytes), as in Fluid's ``quota: 1073741824``."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Quantity = Annotated[
    str, BeforeValidator(_int_as_string), AfterValidator(_quantity),
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True,
                    "pattern": QUANTITY_PATTERN}),
]
Name1035 = Annotated[
    str, AfterValidator(_dns1035),
    WithJsonSchema({"type": "string", "maxLength": 63, "pattern": DNS1035.pattern}),
]
Namespace = Annotated[
    str, AfterValidator(_dns1123),
    WithJsonSchema({"type": "string", "maxLength": 253, "pattern": DNS1123.pattern}),
]
#: Free-form objects (node selectors, pod specs, resources): kept as given.
Passthrough = Annotated[dict[str, Any], Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})]


#: Marks a field accepted for Fluid's sake whose setting this project does not act on
#: in some mode: ``{"mode": "local" | "all", "what": ...}``.
NOT_APPLIED = "x-fluidv-not-applied"


def _not_applied(mode: str, what: str, default_factory: Any = None) -> Any:
    extra: dict[str, Any] = {NOT_APPLIED: {"mode": mode, "what": what}}
    if default_factory is not None:
        return Field(default_factory=default_factory, json_schema_extra=extra)
    return Field(None, json_schema_extra=extra)


def not_applied_locally(what: str, default_factory: Any = None) -> Any:
    """A field applied on Kubernetes (to a Job's pod) that the local runner cannot honour."""
    return _not_applied("local", what, default_factory)


def not_applied(what: str, default_factory: Any = None) -> Any:
    """A field of Fluid's that means nothing for a Vineyard object cache."""
    return _not_applied("all", what, default_factory)


def unapplied_fields(model: BaseModel, mode: str, path: str = "") -> list[tuple[str, str]]:
    """(field path, what it asks for) of every field set in ``model`` (recursively) that
    is not acted on in ``mode`` (``"local"`` or ``"kubernetes"``)."""
    found: list[tuple[str, str]] = []
    for name in sorted(model.model_fields_set):
        info = type(model).model_fields.get(name)
        if info is None:
            continue
        where = f"{path}.{info.alias or name}" if path else (info.alias or name)
        value = getattr(model, name)
        extra = info.json_schema_extra
        marker: Any = extra.get(NOT_APPLIED) if isinstance(extra, dict) else None
        if marker and value not in (None, [], {}) and (marker["mode"] == "all" or mode == marker["mode"]):
            found.append((where, marker["what"]))
            continue
        children = value if isinstance(value, list) else [value]
        for index, child in enumerate(children):
            if isinstance(child, BaseModel):
                found += unapplied_fields(child, mode, f"{where}[{index}]" if isinstance(value, list) else where)
    return found


def not_applied_warnings(model: BaseModel, mode: str, path: str = "spec") -> list[str]:
    """A line per field of ``model`` that is set but not acted on in ``mode``."""
    everywhere = {p for p, _ in unapplied_fields(model, "kubernetes", path)}
    return [f"{p}: {what} is accepted for Fluid's sake and not applied"
            + ("" if p in everywhere else " on the local cluster (it is on Kubernetes)")
            for p, what in unapplied_fields(model, mode, path)]


class Metadata(BaseModel):
    """The parts of ObjectMeta the operator reads; the rest is kept as given."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: Name1035
    namespace: Namespace = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    uid: str | None = None


class ConditionStatus(str, Enum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(Model):
    """A Kubernetes-style condition; fields other writers add (Fluid's lastProbeTime) are ignored."""

    model_config = ConfigDict(extra="ignore")

    type: str
    status: ConditionStatus
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = None
    last_update_time: str | None = None


@dataclass(frozen=True)
class CrdInfo:
    """How a resource appears in its CustomResourceDefinition."""

    plural: str
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ("fluid",)
    #: (name, type, JSONPath, priority)
    columns: tuple[tuple[str, str, str, int], ...] = ()
    #: the ``scale`` subresource's paths, when the resource has one
    scale: dict[str, str] | None = None


class StatusModel(Model):
    """A resource's status: written by the operator, possibly by another version of it (an
    upgrade, or a rollback), so fields this version does not know are ignored, not errors."""

    model_config = ConfigDict(extra="ignore")

    @classmethod
    def read(cls, status: "StatusModel | Mapping[str, Any] | None") -> Self:
        """The status as read from a resource: fields of other versions ignored, and a
        field this version cannot read left out (the rest, its phase say, still counts)."""
        if isinstance(status, cls):
            return status
        data = dict(status or {})
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            unreadable = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
        try:
            return cls.model_validate({k: v for k, v in data.items() if k not in unreadable})
        except ValidationError:
            return cls()


class Resource(Model):
    """A custom resource: apiVersion, kind, metadata, spec, status."""

    api_version: Literal["data.fluid.io/v1alpha1"] = Field("data.fluid.io/v1alpha1", alias="apiVersion")
    metadata: Metadata

    CRD: ClassVar[CrdInfo]

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace
