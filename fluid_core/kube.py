"""A small Kubernetes REST client for the objects the operator manages.

It speaks plain JSON dicts (the manifests the engine builds), applies them
idempotently (server-side apply, so that removed fields are removed), and filters by
labels on the client side.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fluid_core.errors import FluidError
from fluid_core.models import KINDS

#: (plural, namespaced) of every kind the operator touches. Kept by hand, not read by API
#: discovery: it is also the list of what the operator may manage (the chart's RBAC grants
#: exactly these), and discovery would cost requests at every start.
_BUILTIN: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "Service"): ("services", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "PersistentVolume"): ("persistentvolumes", False),
    ("v1", "PersistentVolumeClaim"): ("persistentvolumeclaims", True),
    ("v1", "Pod"): ("pods", True),
    ("v1", "Node"): ("nodes", False),
    ("v1", "Event"): ("events", True),
    ("apps/v1", "StatefulSet"): ("statefulsets", True),
    ("apps/v1", "DaemonSet"): ("daemonsets", True),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("networkpolicies", True),
    ("batch/v1", "Job"): ("jobs", True),
    ("batch/v1", "CronJob"): ("cronjobs", True),
}
for _kind, _cls in KINDS.items():
    _BUILTIN[("data.fluid.io/v1alpha1", _kind)] = (_cls.CRD.plural, True)


#: The field manager the operator applies as (server-side apply).
FIELD_MANAGER = "fluid-vineyard"
#: Digest of the manifest last applied to an object.
APPLIED_ANNOTATION = "data.fluid.io/applied-digest"


class KubeError(FluidError):
    """The API server refused a request."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"HTTP {status}: {message}")


@dataclass(frozen=True)
class Ref:
    api_version: str
    kind: str
    namespace: str | None
    name: str | None = None

    def path(self) -> str:
        try:
            plural, namespaced = _BUILTIN[(self.api_version, self.kind)]
        except KeyError:
            raise FluidError(f"the operator does not manage {self.api_version} {self.kind}") from None
        root = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if namespaced and self.namespace:
            root += f"/namespaces/{self.namespace}"
        root += f"/{plural}"
        return root + (f"/{self.name}" if self.name else "")


def ref_of(manifest: dict[str, Any]) -> Ref:
    meta = manifest["metadata"]
    return Ref(manifest["apiVersion"], manifest["kind"], meta.get("namespace"), meta["name"])


def _matches(labels: Mapping[str, str], selector: Mapping[str, str | None]) -> bool:
    """``None`` in the selector means: the key is present, whatever its value."""
    return all(k in labels and (v is None or labels[k] == v) for k, v in selector.items())


def _subset(desired: Any, actual: Any) -> bool:
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(_subset(v, actual.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(actual, list) and len(desired) == len(actual) and all(
            _subset(d, a) for d, a in zip(desired, actual))
    return bool(desired == actual)


class KubeClient:
    """JSON requests to the API server through a configured ``kubernetes`` ApiClient."""

    def __init__(self, api_client: Any) -> None:
        self.api = api_client

    @classmethod
    def from_environment(cls) -> "KubeClient":
        """In-cluster config when running in a pod, else $KUBECONFIG / ~/.kube/config."""
        import kubernetes  # noqa: PLC0415

        try:
            kubernetes.config.load_incluster_config()
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config()
        return cls(kubernetes.client.ApiClient())

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json") -> dict[str, Any] | None:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        method, url, headers, body, _ = self.api.param_serialize(
            method, path, header_params=headers, body=body, auth_settings=["BearerToken"])
        response = self.api.call_api(method, url, header_params=headers, body=body,
                                     _request_timeout=30)
        response.read()
        status = response.status
        text = response.data.decode() if response.data else ""
        if status == 404:
            return None
        if status >= 400:
            raise KubeError(status, text[:500])
        return json.loads(text) if text else {}

    # -- objects ---------------------------------------------------------------------

    def get(self, ref: Ref) -> dict[str, Any] | None:
        return self.request("GET", ref.path())

    def list(self, ref: Ref, labels: Mapping[str, str | None] | None = None) -> list[dict[str, Any]]:
        path = ref.path()
        if labels:
            terms = ",".join(k if v is None else f"{k}={v}" for k, v in labels.items())
            path += "?" + urllib.parse.urlencode({"labelSelector": terms})
        reply = self.request("GET", path) or {}
        items: list[dict[str, Any]] = reply.get("items", [])
        if ref.namespace:  # some servers ignore the namespace of a list: filter again
            items = [i for i in items if i.get("metadata", {}).get("namespace") in (None, ref.namespace)]
        if labels:  # and some ignore the selector
            items = [i for i in items if _matches(i.get("metadata", {}).get("labels") or {}, labels)]
        return items

    def apply(self, manifest: dict[str, Any]) -> str:
        """Server-side apply ``manifest`` as the ``fluid-vineyard`` field manager, so that
        a field left out of it is removed from the object; returns created/updated/unchanged.

        Nothing is sent when the object already carries this manifest (its digest, kept
        in an annotation) and nobody changed those fields since."""
        ref = ref_of(manifest)
        body = {k: v for k, v in manifest.items() if k != "status"}
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
        metadata = dict(body["metadata"])
        metadata["annotations"] = {**(metadata.get("annotations") or {}), APPLIED_ANNOTATION: digest}
        body["metadata"] = metadata
        current = self.get(ref)
        if current is not None and _subset(body, current):
            return "unchanged"
        query = "?" + urllib.parse.urlencode({"fieldManager": FIELD_MANAGER, "force": "true"})
        try:
            reply = self.request("PATCH", ref.path() + query, body, "application/apply-patch+yaml")
        except KubeError as error:  # a server without server-side apply (the emulator)
            if current is not None or error.status not in (404, 405, 415):
                raise
            self.request("POST", Ref(ref.api_version, ref.kind, ref.namespace).path(), body)
        else:
            made = ((reply or {}).get("metadata") or {}).get("uid")  # an API server returns what it made
            if current is None and not made and self.get(ref) is None:  # the emulator made nothing
                self.request("POST", Ref(ref.api_version, ref.kind, ref.namespace).path(), body)
        return "created" if current is None else "updated"

    def patch(self, ref: Ref, patch: dict[str, Any]) -> None:
        self.request("PATCH", ref.path(), patch, "application/merge-patch+json")

    def patch_status(self, ref: Ref, status: dict[str, Any], resource_version: str | None = None) -> None:
        """Merge ``status`` into the object's status subresource (with ``resource_version``:
        only if the object is still at that version, else KubeError 409)."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        self.request("PATCH", ref.path() + "/status", body, "application/merge-patch+json")

    def delete(self, ref: Ref) -> bool:
        """Delete if present; True when something was deleted."""
        return self.request("DELETE", ref.path()) is not None
