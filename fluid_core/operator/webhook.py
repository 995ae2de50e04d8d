"""The mutating admission webhook: AdmissionReview in, placement JSON Patch out.

Served over HTTPS by aiohttp in a thread of its own, so admissions never queue behind
reconciles; the view comes from a callable (a ``ViewCache``), never from a remote call.
Every request is bounded: a body larger than ``max_body`` gets 413, a body still arriving
after ``read_timeout`` gets 408, and a connection that sends no complete request within
``idle_timeout`` is closed, so slow or hostile clients cannot hold the server.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from fluid_core.errors import FluidError
from fluid_core.operator.peers import peer_problem
from fluid_core.placement import ClusterView, PlacementConfig, mutate

log = logging.getLogger(__name__)
REVIEW_API = "admission.k8s.io/v1"
PATH = "/mutate-pods"
VALIDATE_PATH = "/validate-pods"
MAX_BODY = 4 * 1024 * 1024  # an AdmissionReview carries one object, which etcd caps at 1.5 MiB
READ_TIMEOUT = 10.0  # the API server's default timeoutSeconds for a webhook call
IDLE_TIMEOUT = 30.0
#: how often the certificate files are checked: a Secret mounted as a volume changes
#: in place when it is renewed (cert-manager) or replaced (a reinstall)
CERT_CHECK_SECONDS = 10.0


class BadReview(FluidError, ValueError):
    """An AdmissionReview body that cannot be answered (HTTP 400)."""


class WebhookError(FluidError):
    """The webhook server could not start."""


def _request_of(body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The AdmissionReview's request and its object, or BadReview saying what is missing."""
    if not isinstance(body, dict):
        raise BadReview("the body is not a JSON object; send an admission.k8s.io/v1 AdmissionReview")
    if body.get("apiVersion") != REVIEW_API or body.get("kind") != "AdmissionReview":
        raise BadReview(f"expected apiVersion {REVIEW_API} and kind AdmissionReview, got "
                        f"{body.get('apiVersion')!r} {body.get('kind')!r}")
    request = body.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("uid"), str):
        raise BadReview("request.uid is missing")
    obj = request.get("object")
    if not isinstance(obj, dict):
        raise BadReview("request.object is missing: the webhook mutates Pods on CREATE")
    return request, obj


def review(body: Any, view: ClusterView, config: PlacementConfig | None = None) -> dict[str, Any]:
    """The AdmissionReview answer to ``body``: always allowed, with a JSON Patch when
    the pod mounts a dataset or consumes objects."""
    request, obj = _request_of(body)
    response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
    if obj.get("kind", "Pod") == "Pod":
        _check_pod_shape(obj)
        try:
            patch = mutate(obj, view, config)
        except Exception as exc:
            log.exception("placement failed for %s", (obj.get("metadata") or {}).get("name"))
            response["warnings"] = [f"fluid-vineyard placement skipped: {exc}"]
            patch = []
        if patch:
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return {"apiVersion": REVIEW_API, "kind": "AdmissionReview", "response": response}


def review_peers(body: Any, view: ClusterView) -> dict[str, Any]:
    """The AdmissionReview answer of ``/validate-pods``: a pod may carry a runtime's peer
    label only when it is that runtime's own or mounts its dataset (:mod:`.peers`)."""
    request, obj = _request_of(body)
    _check_pod_shape(obj)
    namespace = str(request.get("namespace") or (obj.get("metadata") or {}).get("namespace") or "default")
    runtimes = [key.split("/", 1)[1] for key in view.datasets if key.startswith(namespace + "/")]
    username = str((request.get("userInfo") or {}).get("username") or "")
    problem = peer_problem(obj, username, runtimes)
    response: dict[str, Any] = {"uid": request["uid"], "allowed": problem is None}
    if problem is not None:
        response["status"] = {"code": 403, "reason": "Forbidden", "message": problem}
    return {"apiVersion": REVIEW_API, "kind": "AdmissionReview", "response": response}


#: the parts of a Pod that placement reads, and the JSON type each must have
_POD_SHAPE: tuple[tuple[tuple[str, ...], type], ...] = (
    (("metadata",), dict), (("metadata", "labels"), dict), (("metadata", "annotations"), dict),
    (("spec",), dict), (("spec", "volumes"), list), (("spec", "containers"), list),
    (("spec", "initContainers"), list), (("spec", "affinity"), dict), (("spec", "nodeSelector"), dict),
)


def _check_pod_shape(pod: dict[str, Any]) -> None:
    """BadReview naming the first part of ``pod`` that has the wrong JSON type (the API
    server never sends one: it decodes pods before admission; a direct caller might)."""
    for path, kind in _POD_SHAPE:
        value: Any = pod
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        where = "request.object." + ".".join(path)
        if value is not None and not isinstance(value, kind):
            raise BadReview(f"{where} must be a JSON {'object' if kind is dict else 'array'}, "
                            f"got {type(value).__name__}")
        if isinstance(value, dict) and path[-1] in ("labels", "annotations", "nodeSelector") and not all(
                isinstance(v, str) for v in value.values()):
            raise BadReview(f"{where} must map strings to strings")
        if isinstance(value, list) and not all(isinstance(item, dict) for item in value):
            raise BadReview(f"{where} must be an array of JSON objects")


class ServingCertificate:
    """The webhook's certificate and key, loaded into ``context`` again whenever the
    files change; a half-written pair is skipped and the one loaded before kept."""

    def __init__(self, certfile: str, keyfile: str | None) -> None:
        self.certfile, self.keyfile = certfile, keyfile
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certfile, keyfile)
        self._seen = self._version()

    def _version(self) -> tuple[tuple[str, int, int], ...]:
        files = [self.certfile] + ([self.keyfile] if self.keyfile else [])
        versions = []
        for path in files:
            real = os.path.realpath(path)  # a mounted Secret swaps a symbolic link
            try:
                info = os.stat(real)
            except OSError:
                return ()
            versions.append((real, info.st_mtime_ns, info.st_size))
        return tuple(versions)

    def refresh(self) -> bool:
        """Load the files again if they changed since the last load; True when it did."""
        version = self._version()
        if not version or version == self._seen:
            return False
        try:
            self.context.load_cert_chain(self.certfile, self.keyfile)
        except (OSError, ssl.SSLError) as exc:
            log.warning("the webhook keeps its certificate: the new files do not load (%s)", exc)
            return False
        self._seen = version
        log.info("the webhook serves the certificate in %s again, as it changed", self.certfile)
        return True


class WebhookServer:
    """HTTPS server of ``POST /mutate-pods`` and ``GET /healthz``.

    ``with WebhookServer(cache.view, certfile=..., keyfile=...) as server: server.url``
    """

    def __init__(self, view: Callable[[], ClusterView], config: PlacementConfig | None = None, *,
                 host: str = "127.0.0.1", port: int = 0, certfile: str | None = None,
                 keyfile: str | None = None, observe: Callable[[float, bool], None] | None = None,
                 max_body: int = MAX_BODY, read_timeout: float = READ_TIMEOUT,
                 idle_timeout: float = IDLE_TIMEOUT, cert_check_seconds: float = CERT_CHECK_SECONDS) -> None:
        self._view, self._config = view, config
        self._max_body, self._read_timeout, self._idle_timeout = max_body, read_timeout, idle_timeout
        self.host, self.port = host, port
        self._certfile, self._keyfile = certfile, keyfile
        self._cert_check = cert_check_seconds
        self._observe = observe
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self._certfile else "http"
        return f"{scheme}://{self.host}:{self.port}"

    async def _mutate(self, request: Any) -> Any:
        return await self._answer(request, lambda body: review(body, self._view(), self._config), observe=True)

    async def _validate(self, request: Any) -> Any:
        return await self._answer(request, lambda body: review_peers(body, self._view()), observe=False)

    async def _answer(self, request: Any, answer_of: Callable[[Any], dict[str, Any]], *, observe: bool) -> Any:
        from aiohttp import web  # noqa: PLC0415

        started = time.perf_counter()
        try:
            raw = await asyncio.wait_for(request.read(), self._read_timeout)
        except TimeoutError:
            return web.Response(status=408, text=f"the body did not arrive within {self._read_timeout:g} s\n")
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text=f"the body is larger than {self._max_body} bytes; "
                                                 "an AdmissionReview of one pod is far smaller\n")
        try:
            answer = answer_of(json.loads(raw))
        except (ValueError, BadReview) as exc:  # json errors are ValueErrors
            return web.Response(status=400, text=f"bad AdmissionReview: {exc}\n")
        except RecursionError:
            return web.Response(status=400, text="bad AdmissionReview: JSON nested too deeply\n")
        if observe and self._observe is not None:
            self._observe(time.perf_counter() - started, "patch" in answer["response"])
        return web.json_response(answer)

    async def _serve(self, ready: threading.Event) -> None:
        from aiohttp import web  # noqa: PLC0415

        app = web.Application(client_max_size=self._max_body)
        app.router.add_post(PATH, self._mutate)
        app.router.add_post(VALIDATE_PATH, self._validate)
        async def healthz(_: Any) -> Any:
            return web.Response(text="ok\n")

        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None, keepalive_timeout=self._idle_timeout)
        await runner.setup()
        serving = ServingCertificate(self._certfile, self._keyfile) if self._certfile else None
        site = web.TCPSite(runner, self.host, self.port, ssl_context=serving.context if serving else None,
                           backlog=1024)
        try:
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self._stopped = asyncio.Event()
            ready.set()
            while True:
                try:
                    await asyncio.wait_for(self._stopped.wait(), self._cert_check)
                    break
                except TimeoutError:
                    if serving is not None:
                        serving.refresh()
        finally:
            await runner.cleanup()

    def start(self) -> "WebhookServer":
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self._serve(ready))
            except BaseException as exc:  # noqa: BLE001 - reported by start()
                self._error = exc
                ready.set()
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name="webhook", daemon=True)
        self._thread.start()
        ready.wait(30)
        if self._error is not None:
            problem = self._error
            if isinstance(problem, OSError) and problem.errno == 98:
                raise WebhookError(f"port {self.port} on {self.host} is in use; choose another with --webhook-port")
            raise WebhookError(f"the webhook could not start on {self.host}:{self.port}: {problem}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(30)

    def __enter__(self) -> "WebhookServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
