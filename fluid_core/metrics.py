"""Prometheus metrics of the operator and the webhook (the bridge and the FUSE view add
their own), and a small HTTP server for ``/metrics`` and ``/healthz``."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)
RECONCILES = Counter("fluidv_reconciles", "Reconciles by kind and result", ["kind", "result"], registry=REGISTRY)
RECONCILE_SECONDS = Histogram("fluidv_reconcile_seconds", "Reconcile latency by kind", ["kind"], registry=REGISTRY)
ADMISSIONS = Counter("fluidv_webhook_admissions", "Admissions answered, by whether a patch was made",
                     ["patched"], registry=REGISTRY)
ADMISSION_SECONDS = Histogram("fluidv_webhook_admission_seconds", "Admission latency", registry=REGISTRY,
                              buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))


@contextlib.contextmanager
def reconciling(kind: str) -> Iterator[None]:
    """Count and time one reconcile of ``kind`` (result ``ok`` or ``error``)."""
    started, result = time.perf_counter(), "error"
    try:
        yield
        result = "ok"
    finally:
        RECONCILES.labels(kind=kind, result=result).inc()
        RECONCILE_SECONDS.labels(kind=kind).observe(time.perf_counter() - started)


def observe_admission(seconds: float, patched: bool) -> None:
    ADMISSIONS.labels(patched=str(patched).lower()).inc()
    ADMISSION_SECONDS.observe(seconds)


class MetricsServer:
    """Serves ``/metrics`` (the registry) and ``/healthz`` (``healthy()``: 200 or 503)."""

    def __init__(self, host: str, port: int, healthy: Callable[[], bool] = lambda: True,
                 registry: Any = REGISTRY) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    body, status, kind = generate_latest(registry), 200, CONTENT_TYPE_LATEST
                elif self.path.startswith("/healthz"):
                    ok = server.healthy()
                    body, status, kind = (b"ok\n" if ok else b"unhealthy\n"), (200 if ok else 503), "text/plain"
                else:
                    body, status, kind = b"not found\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.healthy = healthy
        try:
            self._http = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            from fluid_core.errors import FluidError  # noqa: PLC0415

            raise FluidError(f"cannot serve metrics on {host}:{port}: {exc.strerror}; choose another port") from None
        self.port = self._http.server_address[1]
        self._thread = threading.Thread(target=self._http.serve_forever, name="metrics", daemon=True)

    def start(self) -> "MetricsServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
