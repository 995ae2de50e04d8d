"""What a CR may ask of the operator: operator settings, checked before anything is
created for the CR, so that a user allowed only to create CRs gets no more through the
operator's account than these settings allow.

- ``allowedImages``: image prefixes a runtime or an operation may run (empty: any);
- ``hostPathRoots``: where on a node a runtime's tiered store or a backup may live;
- ``podSecurity``: the Pod Security Standard an operation's pod is held to
  (``restricted`` unless told; ``baseline`` or ``privileged`` loosen it);
- ``serviceAccounts``: the ServiceAccounts of the CR's namespace an operation may run
  as (empty: any of that namespace; a pod never runs as another namespace's).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

from fluid_core.errors import FluidError
from fluid_core.models.runtime import project_image_ref
from fluid_core.reconcilers.pod_security import LEVELS, secure_defaults, violations

#: tiered-store and backup locations on a node that need no setting: shared memory and
#: the usual data mounts
DEFAULT_HOST_PATH_ROOTS = ("/dev/shm", "/mnt", "/var/lib/fluid", "/var/lib/fluid-vineyard")


class PolicyError(FluidError, ValueError):
    """The policy settings themselves are wrong."""


@dataclass(frozen=True)
class Policy:
    allowed_images: tuple[str, ...] = ()
    host_path_roots: tuple[str, ...] = DEFAULT_HOST_PATH_ROOTS
    pod_security: str = "restricted"
    service_accounts: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.pod_security not in LEVELS:
            raise PolicyError(f"podSecurity {self.pod_security!r} is none of {', '.join(LEVELS)}")
        for root in self.host_path_roots:
            if not root.startswith("/") or posixpath.normpath(root) != root.rstrip("/") or root == "/":
                raise PolicyError(f"hostPathRoots entry {root!r} must be an absolute, normalized path other than /")

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None) -> "Policy":
        """The policy of a settings mapping (the operator's ``--policy`` YAML)."""
        data = dict(data or {})
        unknown = set(data) - {"allowedImages", "hostPathRoots", "podSecurity", "serviceAccounts"}
        if unknown:
            raise PolicyError(f"unknown policy settings {sorted(unknown)}; known: allowedImages, hostPathRoots, "
                              "podSecurity, serviceAccounts")
        return cls(allowed_images=tuple(data.get("allowedImages") or ()),
                   host_path_roots=tuple(data.get("hostPathRoots") or DEFAULT_HOST_PATH_ROOTS),
                   pod_security=str(data.get("podSecurity") or "restricted"),
                   service_accounts=tuple(data.get("serviceAccounts") or ()))

    def image_problem(self, image: str, where: str) -> str | None:
        if not self.allowed_images or any(image.startswith(prefix) for prefix in self.allowed_images):
            return None
        return (f"{where}: image {image!r} is not allowed; the operator allows images starting with "
                f"{', '.join(self.allowed_images)} (policy allowedImages)")

    def host_path_problem(self, path: str, where: str) -> str | None:
        normal = posixpath.normpath(path)
        if path.startswith("/") and ".." not in path.split("/") and any(
                normal == root or normal.startswith(root.rstrip("/") + "/") for root in self.host_path_roots):
            return None
        return (f"{where}: host path {path!r} is outside what the operator allows ({', '.join(self.host_path_roots)}; "
                "policy hostPathRoots)")

    def review_pod(self, pod: dict[str, Any], *, own_host_paths: frozenset[str] = frozenset(),
                   ) -> tuple[dict[str, Any], list[str]]:
        """The pod to create (``restricted``'s settings filled in where unset) and what
        in it breaks the policy. ``own_host_paths``: volumes the operator made from a
        field it understands (a backup's ``local://``), held to ``hostPathRoots`` only."""
        if self.pod_security == "restricted":
            pod = secure_defaults(pod)
        problems = violations(pod, self.pod_security, exempt_volumes=own_host_paths)
        for volume in pod.get("volumes") or []:
            host = (volume.get("hostPath") or {}).get("path")
            if host is not None:
                problem = self.host_path_problem(str(host), f"spec.volumes[{volume.get('name')}]")
                if problem:
                    problems.append(problem)
        for field_name in ("initContainers", "containers"):
            for container in pod.get(field_name) or []:
                problem = self.image_problem(str(container.get("image", "")),
                                             f"spec.{field_name}[{container.get('name', '?')}]")
                if problem:
                    problems.append(problem)
        account = pod.get("serviceAccountName") or pod.get("serviceAccount")
        if account and self.service_accounts and account not in self.service_accounts:
            problems.append(f"spec.serviceAccountName {account!r} is not allowed; the operator allows "
                            f"{', '.join(self.service_accounts)} (policy serviceAccounts)")
        return pod, problems

    def review_runtime(self, images: dict[str, str], host_paths: dict[str, str],
                       privileged: dict[str, str] | None = None) -> list[str]:
        """What of a runtime's images (by where they are set), node paths and privileged
        containers (by the field that asks for them: the image they would run) breaks the
        policy. A privileged container runs the operator's own image only, whatever else
        the policy allows: a CR must not get a privileged pod of an image of its choice."""
        problems = [self.image_problem(image, where) for where, image in images.items()]
        problems += [self.host_path_problem(path, where) for where, path in host_paths.items()]
        own = project_image_ref()
        problems += [f"{where} runs {image!r} privileged; a privileged container runs only the operator's own "
                     f"image {own!r}: leave the image unset" for where, image in (privileged or {}).items()
                     if image != own]
        return [p for p in problems if p]

__all__ = ["DEFAULT_HOST_PATH_ROOTS", "Policy", "PolicyError"]
