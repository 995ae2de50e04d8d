"""kopf's start-up handlers: how kopf logs in (as the operator's own client) and the
operator's settings."""

from __future__ import annotations

import logging
import re
from typing import Any

import kopf

from fluid_core.operator.cycle import (
    FINALIZER,
    WORKERS,
    client,
)


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf connects with the same configuration as the operator's own client. Not
    kopf's ``login_via_client``: that loads the configuration from the environment again,
    while ``use_client`` may have pointed the operator at another server."""
    cfg = client().api.configuration
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        token=bearer_token(cfg),
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


def bearer_token(cfg: Any) -> str | None:
    """The token of a kubernetes client configuration, read again from its file when it
    has one: in a pod, the ServiceAccount token is rotated by the kubelet, and the
    client keeps it as ``"bearer <token>"`` (lower case) until its refresh hook runs."""
    if cfg.refresh_api_key_hook is not None:
        cfg.refresh_api_key_hook(cfg)
    keys = cfg.api_key or {}
    header = str(keys.get("authorization") or keys.get("BearerToken") or "").strip()
    return re.sub(r"(?i)^bearer\s+", "", header) or None


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    # Warnings and errors become Kubernetes events (the reconcilers post their own
    # events too); an event per handler run would cost a request each.
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = WORKERS
