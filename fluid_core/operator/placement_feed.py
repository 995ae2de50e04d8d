"""Feed the webhook's ``ViewCache`` from watch events and the runtimes' etcd.

Importing this module registers kopf handlers (nodes, runtimes) and a startup hook that
reads every runtime's object directory every few seconds (for placement, the datasets'
``cacheStates`` and the ``NAMES_LISTENERS``, OnEvent among them) and serves the webhook
when ``configure_webhook`` was called (``fluidv operator`` does).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kopf

from fluid_core.errors import InvalidResource
from fluid_core.models import GROUP, VERSION, VineyardRuntime, parse
from fluid_core.placement import PlacementConfig
from fluid_core.placement.cache import ViewCache
from fluid_core.placement.locations import read_directory
from fluid_core.reconcilers.translate import kube_runtime

CACHE = ViewCache()
#: Called with (dataset ``ns/name``, ``{object name: id}``) after each read of its directory.
NAMES_LISTENERS: list[Callable[[str, dict[str, str]], None]] = []


#: Seconds between reads of the runtimes' object directories (0: none).
REFRESH_SECONDS = float(os.environ.get("FLUIDV_LOCATIONS_SECONDS", "2"))


@dataclass
class WebhookSettings:
    host: str = "0.0.0.0"  # noqa: S104 - the API server reaches the webhook through its Service
    port: int = 9443
    certfile: str | None = None
    keyfile: str | None = None
    config: PlacementConfig | None = None
    refresh_seconds: float = REFRESH_SECONDS


_settings: WebhookSettings | None = None
_running: list[tuple[Any, threading.Event]] = []


def configure_webhook(settings: WebhookSettings | None) -> None:
    """Serve the webhook on operator start-up with these settings (None: do not serve)."""
    global _settings
    _settings = settings


@kopf.on.event("", "v1", "nodes")
def node_event(body: Any, type: str | None, **_: Any) -> None:  # noqa: A002
    """Nodes and their labels (cache labels included) as the API server reports them."""
    name = body["metadata"]["name"]
    if type == "DELETED":
        CACHE.drop_node(name)
    else:
        CACHE.set_node(name, body["metadata"].get("labels"))


@kopf.on.event(GROUP, VERSION, "vineyardruntimes")
def runtime_event(body: Any, type: str | None, **_: Any) -> None:  # noqa: A002
    """Runtimes and the etcd endpoint where their object locations are read."""
    meta = body["metadata"]
    if type == "DELETED" or meta.get("deletionTimestamp"):
        CACHE.drop_runtime(meta["namespace"], meta["name"])
        return
    try:
        runtime = parse(dict(body))
    except InvalidResource:
        return
    assert isinstance(runtime, VineyardRuntime)
    CACHE.set_runtime(runtime.namespace, runtime.name, kube_runtime(runtime).etcd_endpoint)


def refresh_locations(cache: ViewCache, stop: threading.Event, every: float, logger: Any) -> None:
    """Read each runtime's object locations every ``every`` seconds until ``stop``."""
    failing: set[str] = set()
    while not stop.wait(every):
        for dataset, endpoint in cache.runtimes().items():
            if not endpoint:
                continue
            try:
                located, ids = read_directory(endpoint, timeout=min(every, 2.0))
                cache.set_locations(dataset, located)
                failing.discard(dataset)
            except (OSError, ValueError) as exc:
                if dataset not in failing:  # say it once, not every round
                    logger.warning("object locations of %s unavailable from %s: %s", dataset, endpoint, exc)
                    failing.add(dataset)
                continue
            for listener in NAMES_LISTENERS:
                try:
                    listener(dataset, ids)
                except Exception:  # one listener's failure must not stop the refresher
                    logger.exception("listener of %s's object names failed", dataset)


@kopf.on.startup()
async def serve_webhook(logger: Any, **_: Any) -> None:
    """Start the location refresher, and the webhook server if configured, beside kopf's own loop."""
    stop = threading.Event()
    every = _settings.refresh_seconds if _settings is not None else REFRESH_SECONDS
    if every > 0:
        threading.Thread(target=refresh_locations, args=(CACHE, stop, every, logger),
                         name="locations", daemon=True).start()
    if _settings is None:
        _running.append((None, stop))
        return
    from fluid_core.metrics import observe_admission  # noqa: PLC0415
    from fluid_core.operator.webhook import WebhookServer  # noqa: PLC0415

    server = WebhookServer(CACHE.view, _settings.config, host=_settings.host, port=_settings.port,
                           certfile=_settings.certfile, keyfile=_settings.keyfile, observe=observe_admission).start()
    _running.append((server, stop))
    logger.info("admission webhook serving on %s", server.url)


def webhook_url() -> str | None:
    """Where the running webhook serves (None when it does not run)."""
    return _running[-1][0].url if _running and _running[-1][0] is not None else None


@kopf.on.cleanup()
async def stop_webhook(**_: Any) -> None:
    while _running:
        server, stop = _running.pop()
        stop.set()
        if server is not None:
            server.stop()
