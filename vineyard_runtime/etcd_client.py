"""A minimal client of etcd's v3 JSON gateway (health and key ranges), over urllib."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _prefix_end(prefix: str) -> str:
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return base64.b64encode(bytes(raw)).decode()


class EtcdClient:
    """Talks to one etcd endpoint such as ``http://127.0.0.1:2379``."""

    def __init__(self, endpoint: str, timeout: float = 2.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout

    def _post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(
            self.endpoint + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read() or b"{}")

    def healthy(self) -> bool:
        """True when etcd answers its health check."""
        try:
            with urllib.request.urlopen(self.endpoint + "/health", timeout=self.timeout) as resp:
                return json.loads(resp.read()).get("health") == "true"
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def keys(self, prefix: str, limit: int | None = None) -> list[str]:
        """The keys under ``prefix`` (the first ``limit`` of them, in key order)."""
        body: dict = {"key": _b64(prefix), "range_end": _prefix_end(prefix), "keys_only": True}
        if limit:
            body["limit"] = limit
        reply = self._post("/v3/kv/range", body)
        return [base64.b64decode(kv["key"]).decode() for kv in reply.get("kvs", [])]

    def get_prefix(self, prefix: str) -> dict[str, str]:
        """Every key under ``prefix`` with its value."""
        body = {"key": _b64(prefix), "range_end": _prefix_end(prefix)}
        reply = self._post("/v3/kv/range", body)
        return {
            base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")).decode()
            for kv in reply.get("kvs", [])
        }
