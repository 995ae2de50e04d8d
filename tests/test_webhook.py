"""The admission webhook over HTTPS: real server, real TLS, malformed bodies, the CLI."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request

import jsonpatch
import pytest

from support.waiting import wait_for
from fluid_core.operator.certs import self_signed
from fluid_core.operator.webhook import WebhookError, WebhookServer
from fluid_core.placement.cache import ViewCache
from vineyard_runtime.plumbing.processes import terminate

ZONE = "topology.kubernetes.io/zone"


def admission(pod: dict, uid: str = "u-1") -> dict:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "operation": "CREATE", "object": pod}}


POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "train", "namespace": "default", "annotations": {"data.fluid.io/consumes": "x"}},
       "spec": {"containers": [{"name": "c", "image": "i", "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "demo"}}]}}


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    cert, key = self_signed(["127.0.0.1"], tmp_path_factory.mktemp("tls"))
    context = ssl.create_default_context(cafile=cert)
    return cert, key, context


@pytest.fixture
def cache():
    cache = ViewCache()
    cache.set_node("n1", {ZONE: "a"})
    cache.set_node("n2", {ZONE: "b", "fluid.io/s-default-demo": "true"})
    cache.set_runtime("default", "demo", None)
    cache.set_locations("default/demo", {"default/demo/x": {"n1": 4096}, "other/y/z": {"n2": 1}})
    return cache


def post(url: str, body: bytes, context: ssl.SSLContext) -> tuple[int, bytes]:
    request = urllib.request.Request(url + "/mutate-pods", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_https_admission_returns_a_patch_that_applies(tls, cache):
    cert, key, context = tls
    with WebhookServer(cache.view, certfile=cert, keyfile=key) as server:
        status, raw = post(server.url, json.dumps(admission(POD)).encode(), context)
        assert status == 200
        answer = json.loads(raw)["response"]
        assert answer["uid"] == "u-1" and answer["allowed"] is True and answer["patchType"] == "JSONPatch"
        mutated = jsonpatch.apply_patch(POD, json.loads(base64.b64decode(answer["patch"])))
        preferred = mutated["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        assert preferred[0]["preference"]["matchExpressions"][0]["key"] == "fluid.io/s-default-demo"
        assert {"weight": 100, "preference": {"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["n1"]}]}} in preferred
        assert mutated["spec"]["containers"][0]["env"] == [
            {"name": "VINEYARD_CONFIG", "value": "/data/vineyard-config.yaml"}]
        # the mutated pod comes back unchanged; a later view change is seen at once
        again = json.loads(post(server.url, json.dumps(admission(mutated)).encode(), context)[1])["response"]
        assert "patch" not in again
        cache.drop_runtime("default", "demo")
        plain = json.loads(post(server.url, json.dumps(admission(POD)).encode(), context)[1])["response"]
        assert "patch" not in plain and plain["allowed"] is True


@pytest.mark.parametrize("body, needle", [
    (b"{not json", "bad AdmissionReview"),
    (b"[]", "not a JSON object"),
    (json.dumps({"apiVersion": "v1", "kind": "Pod"}).encode(), "expected apiVersion"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(), "request.uid"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                 "request": {"uid": "x"}}).encode(), "request.object"),
    (json.dumps(admission({**POD, "metadata": ["not", "a", "map"]})).encode(), "request.object.metadata"),
    (json.dumps(admission({**POD, "spec": "not a map"})).encode(), "request.object.spec"),
    (json.dumps(admission({**POD, "metadata": {"name": "p", "annotations": ["x"]}})).encode(),
     "request.object.metadata.annotations"),
    (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "x", "object": '
     + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001 + b"}", "nested too deeply"),
])
def test_malformed_reviews_get_400_and_the_server_lives_on(tls, cache, body, needle):
    cert, key, context = tls
    with WebhookServer(cache.view, certfile=cert, keyfile=key) as server:
        status, raw = post(server.url, body, context)
        assert status == 400 and needle in raw.decode()
        assert post(server.url, json.dumps(admission(POD)).encode(), context)[0] == 200


def test_oversized_and_deeply_nested_bodies_are_refused(tls, cache):
    cert, key, context = tls
    with WebhookServer(cache.view, certfile=cert, keyfile=key, max_body=64 * 1024) as server:
        status, raw = post(server.url, b" " * (65 * 1024), context)
        assert status == 413 and b"larger than 65536 bytes" in raw
        status, raw = post(server.url, b"[" * 60_000, context)
        assert status == 400 and b"nested too deeply" in raw
        assert post(server.url, json.dumps(admission(POD)).encode(), context)[0] == 200


def tls_connection(server: WebhookServer, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection((server.host, server.port), timeout=10)
    return context.wrap_socket(raw, server_hostname=server.host)


def hung_clients(server: WebhookServer, context: ssl.SSLContext) -> list[socket.socket]:
    """Three connections that stall: no TLS handshake, half a header, half a body."""
    silent = socket.create_connection((server.host, server.port), timeout=10)  # no TLS handshake at all
    half_header = tls_connection(server, context)
    half_header.sendall(b"POST /mutate-pods HTTP/1.1\r\nHost: x\r\n")
    slow_body = tls_connection(server, context)
    slow_body.sendall(b"POST /mutate-pods HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 1000\r\n\r\n{\"apiVersion\"")
    return [silent, half_header, slow_body]


def unanswered(sock: socket.socket) -> bool:
    """True while the server has neither answered nor closed ``sock``."""
    sock.setblocking(False)
    try:
        return not sock.recv(1)
    except (BlockingIOError, ssl.SSLWantReadError):
        return True
    finally:
        sock.setblocking(True)


def test_others_are_served_while_slow_and_silent_clients_hang_on(tls, cache):
    """With timeouts no test run reaches, a request is answered while three clients stall
    on the server, and they are still waiting afterwards: the stalled ones hold nothing."""
    cert, key, context = tls
    with WebhookServer(cache.view, certfile=cert, keyfile=key, read_timeout=600, idle_timeout=600) as server:
        hung = hung_clients(server, context)
        try:
            assert post(server.url, json.dumps(admission(POD)).encode(), context)[0] == 200
            assert [unanswered(sock) for sock in hung] == [True, True, True]
        finally:
            for sock in hung:
                sock.close()


def test_slow_and_silent_clients_do_not_stay_forever(tls, cache):
    cert, key, context = tls
    with WebhookServer(cache.view, certfile=cert, keyfile=key, read_timeout=1.0, idle_timeout=2.0) as server:
        _, half_header, slow_body = hung = hung_clients(server, context)
        try:
            slow_body.settimeout(60)
            reply = slow_body.recv(4096)
            assert reply.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in reply
            half_header.settimeout(60)
            assert half_header.recv(4096) == b""  # closed once idle_timeout passed
        finally:
            for sock in hung:
                sock.close()
        assert post(server.url, json.dumps(admission(POD)).encode(), context)[0] == 200


def test_port_in_use_is_a_clear_error(tls, cache):
    cert, key, _ = tls
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(WebhookError, match=f"port {port} .* is in use"):
            WebhookServer(cache.view, port=port, certfile=cert, keyfile=key).start()


def test_fluidv_webhook_serves_a_view_file(tmp_path, tls):
    cert, key, context = tls
    view = tmp_path / "view.json"
    view.write_text(json.dumps({"nodes": {"n1": {}}, "datasets": {"default/demo": ["n1"]}}))
    proc = subprocess.Popen([sys.executable, "-m", "fluid_core.cli", "webhook", "--view", str(view), "--port", "0",
                             "--cert", cert, "--key", key], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving https://127.0.0.1:"), line + proc.stderr.read()
        url = line.split()[1].removesuffix("/mutate-pods")
        status, raw = post(url, json.dumps(admission(POD)).encode(), context)
        assert status == 200 and "patch" in json.loads(raw)["response"]
    finally:
        terminate([proc.pid])
        proc.wait()
    assert proc.returncode == 0


def test_fluidv_webhook_rejects_a_bad_view(tmp_path):
    view = tmp_path / "view.json"
    view.write_text(json.dumps({"datasets": {"demo": ["n1"]}}))
    run = subprocess.run([sys.executable, "-m", "fluid_core.cli", "webhook", "--view", str(view)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "error: datasets: 'demo' is not 'namespace/name'" in run.stderr


def _mount_like_a_secret(root, cert: str, key: str, version: str) -> None:
    """The layout the kubelet gives a Secret volume: files behind ``..data``, a link it swaps."""
    data = root / f"..{version}"
    data.mkdir()
    shutil.copyfile(cert, data / "tls.crt")
    shutil.copyfile(key, data / "tls.key")
    link = root / "..data.tmp"
    link.symlink_to(data.name)
    os.replace(link, root / "..data")
    for name in ("tls.crt", "tls.key"):
        if not (root / name).is_symlink():
            (root / name).symlink_to(f"..data/{name}")


def test_a_renewed_certificate_is_served_without_a_restart(tmp_path, cache, caplog):
    first = self_signed(["127.0.0.1"], tmp_path / "first")
    second = self_signed(["127.0.0.1"], tmp_path / "second")
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    _mount_like_a_secret(mounted, *first, version="1")
    trusts = {n: ssl.create_default_context(cafile=pair[0]) for n, pair in (("first", first), ("second", second))}
    body = json.dumps(admission(POD)).encode()
    with WebhookServer(cache.view, certfile=str(mounted / "tls.crt"), keyfile=str(mounted / "tls.key"),
                       cert_check_seconds=0.2) as server:
        assert post(server.url, body, trusts["first"])[0] == 200
        (tmp_path / "bad.crt").write_text("not a certificate")
        (tmp_path / "bad.key").write_text("nor a key")
        _mount_like_a_secret(mounted, str(tmp_path / "bad.crt"), str(tmp_path / "bad.key"), version="2")
        wait_for(lambda: any("keeps its certificate" in r.getMessage() for r in caplog.records), timeout=30,
                 message="the server tried the pair that does not load")  # and skipped it: the old one stays
        assert post(server.url, body, trusts["first"])[0] == 200
        _mount_like_a_secret(mounted, *second, version="3")
        wait_for(lambda: _answers(server.url, body, trusts["second"]), timeout=10, message="the new certificate served")
        assert not _answers(server.url, body, trusts["first"])


def _answers(url: str, body: bytes, context: ssl.SSLContext) -> bool:
    try:
        return post(url, body, context)[0] == 200
    except (ssl.SSLError, OSError):
        return False
