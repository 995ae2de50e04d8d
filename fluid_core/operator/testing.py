"""Run the real operator against kmock's Kubernetes emulator, each in its own thread.

For tests and benchmarks of the operator, and for users who test their own flows
without a cluster. Needs the ``kmock`` package (a test dependency).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from fluid_core.kube import KubeClient, Ref
from fluid_core.models import API_VERSION, KINDS
from vineyard_runtime.plumbing.waiting import wait_until

START_TIMEOUT = 30.0


def _emulator_class(counts: Counter[tuple[str, str]]) -> type:
    """kmock's emulator, forgetting each request once it has been answered.

    kmock keeps every request for test assertions and scans them all on each new
    request, so with an unbounded history every call is slower than the one before
    (10 ms after 200 requests, 120 ms after 1500). Only requests in flight are kept;
    ``counts`` tallies (METHOD, path) of every request instead. Created objects get a
    uid and a resourceVersion as a real API server gives them (kmock's patches need both).
    """
    import kmock  # noqa: PLC0415

    class Emulator(kmock.KubernetesEmulator):
        async def _handle(self, request: Any) -> Any:
            method = str(request.method).upper().rsplit(".", 1)[-1]
            counts[(method, request.url.path)] += 1
            if method == "POST" and isinstance(request.data, dict) and isinstance(request.data.get("metadata"), dict):
                request.data["metadata"].setdefault("uid", str(uuid.uuid4()))
                request.data["metadata"].setdefault("resourceVersion", "1")
            try:
                return await super()._handle(request)
            finally:
                for index, seen in enumerate(self._requests):
                    if seen is request:
                        del self._requests[index]
                        break

    return Emulator


class EmulatedCluster:
    """kmock's KubernetesEmulator with this project's resources registered.

    ``with EmulatedCluster() as cluster: cluster.start_operator(); cluster.kube.get(...)``
    """

    def __init__(self) -> None:
        self.kube: KubeClient | None = None
        self.emulator: Any = None
        #: How many requests the emulator answered, by (METHOD, path).
        self.requests: Counter[tuple[str, str]] = Counter()
        self.url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_server: asyncio.Event | None = None
        self._server_thread: threading.Thread | None = None
        self._operator_thread: threading.Thread | None = None
        self._operator_stop = threading.Event()
        self._failures: list[BaseException] = []

    # -- the API server ----------------------------------------------------------------

    def __enter__(self) -> "EmulatedCluster":
        ready = threading.Event()
        self._server_thread = threading.Thread(target=self._serve, args=(ready,), name="kmock", daemon=True)
        self._server_thread.start()
        if not ready.wait(START_TIMEOUT) or self.url is None:
            raise RuntimeError(f"the emulated API server did not start: {self._failures}")
        import kubernetes  # noqa: PLC0415

        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        self.kube = KubeClient(kubernetes.client.ApiClient(configuration))
        return self

    def _serve(self, ready: threading.Event) -> None:
        import kmock  # noqa: PLC0415

        async def main() -> None:
            self._stop_server = asyncio.Event()
            async with _emulator_class(self.requests)() as emulator, kmock.Server(emulator):
                emulator.resources.load_bundled()
                for kind, cls in KINDS.items():
                    emulator.resources[f"{API_VERSION}/{cls.CRD.plural}"] = kmock.ResourceInfo(
                        kind=kind, namespaced=True, subresources={"status"},
                        verbs={"list", "watch", "get", "create", "patch", "delete"})
                self.emulator = emulator
                self.url = str(emulator.url).rstrip("/")
                self._loop = asyncio.get_running_loop()
                ready.set()
                await self._stop_server.wait()

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported by __enter__/__exit__
            self._failures.append(exc)
            ready.set()

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop_operator()
        finally:  # the API server stops even when the operator failed or did not stop
            self.stop_server()

    def stop_server(self) -> None:
        """Stop the emulated API server and wait for its thread; RuntimeError if it stays."""
        if self._loop is not None and self._stop_server is not None:
            try:
                self._loop.call_soon_threadsafe(self._stop_server.set)
            except RuntimeError:  # its loop has ended already
                pass
        if self._server_thread is not None:
            self._server_thread.join(START_TIMEOUT)
            alive = self._server_thread.is_alive()
            self._server_thread = None
            if alive:
                raise RuntimeError("the emulated API server did not stop")

    # -- the operator ----------------------------------------------------------------

    def start_operator(self, namespaces: tuple[str, ...] = ("default",)) -> None:
        """Run the operator (the handlers of ``fluid_core.operator.handlers``) in a thread."""
        import kopf  # noqa: PLC0415

        from fluid_core.operator import cycle, handlers, placement_feed  # noqa: F401,PLC0415 - registers the handlers

        assert self.kube is not None, "enter the context first"
        cycle.use_client(self.kube)
        placement_feed.CACHE.reset()  # runtimes of an earlier emulated cluster are gone
        settings = kopf.OperatorSettings()
        settings.scanning.disabled = True  # the emulator answers 500 on namespace listings
        settings.watching.client_timeout = 30  # it ignores timeoutSeconds
        settings.watching.server_timeout = 30
        ready = threading.Event()
        self._operator_stop.clear()

        def run() -> None:
            try:
                asyncio.run(kopf.operator(settings=settings, namespaces=list(namespaces),
                                          stop_flag=self._operator_stop, ready_flag=ready,
                                          standalone=True))
            except asyncio.CancelledError:
                pass  # kopf ends its tasks as cancelled when the stop flag is set
            except BaseException as exc:  # noqa: BLE001 - re-raised by stop_operator
                self._failures.append(exc)
                ready.set()

        self._operator_thread = threading.Thread(target=run, name="operator", daemon=True)
        self._operator_thread.start()
        if not ready.wait(START_TIMEOUT):
            raise RuntimeError("the operator did not start")

    def stop_operator(self) -> None:
        """Stop the operator thread; re-raise what it failed with."""
        if self._operator_thread is None:
            return
        from fluid_core.operator import cycle  # noqa: PLC0415

        self._operator_stop.set()
        self._operator_thread.join(START_TIMEOUT)
        alive = self._operator_thread.is_alive()
        self._operator_thread = None
        cycle.use_client(None)
        if alive:
            raise RuntimeError("the operator did not stop")
        if self._failures:
            raise self._failures[0]

    # -- helpers -----------------------------------------------------------------------

    def create(self, manifest: dict[str, Any]) -> None:
        """Create an object the way ``kubectl create`` would."""
        assert self.kube is not None
        meta = manifest["metadata"]
        ref = Ref(manifest["apiVersion"], manifest["kind"], meta.get("namespace"))
        self.kube.request("POST", ref.path(), manifest)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0, message: str = "") -> Any:
        """Poll ``predicate`` until it is truthy; AssertionError with ``message`` at timeout."""
        last: list[Any] = [None]

        def asked() -> Any:
            last[0] = predicate()
            return last[0]

        found = wait_until(asked, timeout)
        if found is None:
            raise AssertionError(f"timed out: {message} (last: {last[0]!r})")
        return found
