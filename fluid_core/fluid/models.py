"""The fluid-pysdk model classes a flow is written with (``Processor``,
``ScriptProcessor``, ``ExternalStorage``, ...): keyword arguments in snake_case, sent
as Fluid's camelCase documents."""

from __future__ import annotations

from typing import Any

from pydantic.alias_generators import to_camel


def wire(value: Any) -> Any:
    """``value`` as a Fluid document: models (ours, or fluid-pysdk's through their
    ``to_dict``) in camelCase, lists and dicts recursively, ``None`` left out."""
    if isinstance(value, FluidModel):
        return {to_camel(k): wire(v) for k, v in value.fields.items() if v is not None}
    if hasattr(value, "openapi_types") and hasattr(value, "attribute_map"):  # fluid-pysdk's, kubernetes'
        return {value.attribute_map[k]: wire(getattr(value, k)) for k in value.openapi_types
                if getattr(value, k) is not None}
    if isinstance(value, dict):  # already a document: keys are kept
        return {k: wire(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [wire(v) for v in value]
    return value


class FluidModel:
    """A model of Fluid's SDK: its fields as given."""

    def __init__(self, **fields: Any) -> None:
        self.fields = fields

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["fields"][name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> dict[str, Any]:
        return dict(wire(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.fields.items())})"


class Processor(FluidModel):
    """``script=ScriptProcessor(...)`` or ``job=JobProcessor(...)``."""


class ScriptProcessor(FluidModel):
    """``command``, ``source``, ``image``, ``image_tag``, ``env``, ``volumes``, ..."""


class JobProcessor(FluidModel):
    """``pod_spec``: a Kubernetes pod spec."""


class ExternalStorage(FluidModel):
    """``uri`` and ``encrypt_options``."""


class EncryptOption(FluidModel):
    pass


class EncryptOptionSource(FluidModel):
    pass


class SecretKeySelector(FluidModel):
    pass
