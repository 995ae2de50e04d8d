"""Kubernetes' Pod Security Standards (baseline and restricted), applied to the pods
the operator would create for a user, before it creates them.

The operator's account may create what its users may not; a pod it creates for a CR is
held to the level the operator is configured with (``restricted`` unless told), so a
user allowed only to create CRs gets no more than that level allows. ``secure_defaults``
fills in what ``restricted`` requires and a pod spec left unset (Fluid's examples do),
so that only explicit asks are refused. The rules follow the Pod Security Standards as
the API server's own PodSecurity admission enforces them (a test compares the two).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

LEVELS = ("privileged", "baseline", "restricted")

_BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})
_SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes"})
_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
_RESTRICTED_VOLUMES = frozenset({
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"})
_VOLUME_META = frozenset({"name"})


def _containers(pod: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in pod.get(field) or []:
            yield f"{field}[{container.get('name', '?')}]", container


def _context(part: dict[str, Any]) -> dict[str, Any]:
    return part.get("securityContext") or {}


def secure_defaults(pod: dict[str, Any]) -> dict[str, Any]:
    """``pod`` with what ``restricted`` requires filled in where it is unset: no
    privilege escalation, every capability dropped, a non-root user, the runtime's
    seccomp profile. What the pod sets itself is kept (and then judged)."""
    pod = copy.deepcopy(pod)
    pod_context = pod.setdefault("securityContext", {})
    containers = list(_containers(pod))
    if "runAsNonRoot" not in pod_context and not any("runAsNonRoot" in _context(c) for _, c in containers):
        pod_context["runAsNonRoot"] = True
    if "seccompProfile" not in pod_context and not any("seccompProfile" in _context(c) for _, c in containers):
        pod_context["seccompProfile"] = {"type": "RuntimeDefault"}
    for _, container in containers:
        context = container.setdefault("securityContext", {})
        adds = (context.get("capabilities") or {}).get("add") or []
        if not context.get("privileged") and "SYS_ADMIN" not in adds:  # the API server refuses both with it
            context.setdefault("allowPrivilegeEscalation", False)
        capabilities = context.setdefault("capabilities", {})
        if "ALL" not in (capabilities.get("drop") or []):
            capabilities["drop"] = list(capabilities.get("drop") or []) + ["ALL"]
    return pod


def violations(pod: dict[str, Any], level: str, *, exempt_volumes: frozenset[str] = frozenset()) -> list[str]:
    """What in ``pod`` (a pod spec) breaks ``level``, one line each; ``exempt_volumes``
    are volumes the operator itself made and judges otherwise (a backup's hostPath)."""
    if level not in LEVELS:
        raise ValueError(f"pod security level {level!r} is none of {', '.join(LEVELS)}")
    if level == "privileged":
        return []
    found = _baseline(pod, exempt_volumes)
    if level == "restricted":
        found += _restricted(pod, exempt_volumes)
    return found


def _baseline(pod: dict[str, Any], exempt: frozenset[str]) -> list[str]:
    found = [f"spec.{host}: true is not allowed" for host in ("hostNetwork", "hostPID", "hostIPC") if pod.get(host)]
    pod_context = _context(pod)
    parts = [("spec", pod_context)] + [(f"spec.{where}", _context(c)) for where, c in _containers(pod)]
    for where, context in parts:
        if (context.get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"{where}.securityContext.windowsOptions.hostProcess is not allowed")
        if (context.get("seccompProfile") or {}).get("type") == "Unconfined":
            found.append(f"{where}.securityContext.seccompProfile.type Unconfined is not allowed")
        if (context.get("appArmorProfile") or {}).get("type") == "Unconfined":
            found.append(f"{where}.securityContext.appArmorProfile.type Unconfined is not allowed")
        selinux = context.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in _SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
            found.append(f"{where}.securityContext.seLinuxOptions {selinux} is not allowed")
    for sysctl in pod_context.get("sysctls") or []:
        if sysctl.get("name") not in _SAFE_SYSCTLS:
            found.append(f"spec.securityContext.sysctls {sysctl.get('name')!r} is not a safe sysctl")
    for where, container in _containers(pod):
        context = _context(container)
        if context.get("privileged"):
            found.append(f"spec.{where}: privileged containers are not allowed")
        added = set((context.get("capabilities") or {}).get("add") or []) - _BASELINE_CAPABILITIES
        if added:
            found.append(f"spec.{where}: capabilities {sorted(added)} may not be added")
        if context.get("procMount", "Default") != "Default":
            found.append(f"spec.{where}.securityContext.procMount must be Default")
        if any(port.get("hostPort") for port in container.get("ports") or []):
            found.append(f"spec.{where}: hostPort is not allowed")
    for volume in pod.get("volumes") or []:
        if "hostPath" in volume and volume.get("name") not in exempt:
            found.append(f"spec.volumes[{volume.get('name')}]: hostPath volumes are not allowed")
    for key, value in ((pod.get("metadata") or {}).get("annotations") or {}).items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and value == "unconfined":
            found.append(f"annotation {key}: unconfined AppArmor is not allowed")
    return found


def _restricted(pod: dict[str, Any], exempt: frozenset[str]) -> list[str]:
    found = []
    if _context(pod).get("runAsUser") == 0:
        found.append("spec.securityContext.runAsUser 0 (root) is not allowed")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - _VOLUME_META
        if volume.get("name") not in exempt and "hostPath" not in kinds and not kinds <= _RESTRICTED_VOLUMES:
            found.append(f"spec.volumes[{volume.get('name')}]: {', '.join(sorted(kinds))} volumes are not allowed")
    pod_context = _context(pod)
    for where, container in _containers(pod):
        context = _context(container)
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"spec.{where}.securityContext.allowPrivilegeEscalation must be false")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"spec.{where}.securityContext.capabilities.drop must include ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"spec.{where}: only NET_BIND_SERVICE may be added")
        non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        if non_root is not True:
            found.append(f"spec.{where}: runAsNonRoot must be true (in the pod's or the container's securityContext)")
        if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
            found.append(f"spec.{where}: runAsUser 0 (root) is not allowed")
        seccomp = (context.get("seccompProfile") or pod_context.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"spec.{where}.securityContext.seccompProfile.type must be RuntimeDefault or Localhost")
    return found


__all__ = ["LEVELS", "secure_defaults", "violations"]
