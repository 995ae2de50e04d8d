"""The operator's kopf login in a pod: the ServiceAccount token as the kubernetes client
keeps it in-cluster (``"bearer <token>"``, lower case), read again once rotated."""

from __future__ import annotations

import datetime

from kubernetes.client import Configuration
from kubernetes.config.incluster_config import InClusterConfigLoader

from fluid_core.operator.startup import bearer_token


def test_the_in_cluster_token_is_sent_bare_and_read_again_after_rotation(tmp_path):
    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("first-token")
    ca.write_text("a certificate")
    loader = InClusterConfigLoader(token_filename=str(token), cert_filename=str(ca), environ={
        "KUBERNETES_SERVICE_HOST": "198.19.200.1", "KUBERNETES_SERVICE_PORT": "443"})
    cfg = Configuration()
    loader.load_and_set(cfg)
    assert cfg.api_key["BearerToken"] == "bearer first-token"  # what kopf got before: "Bearer bearer ..."
    assert bearer_token(cfg) == "first-token"

    token.write_text("second-token")  # the kubelet rotated it, and the client's refresh period passed
    loader.token_expires_at = datetime.datetime.now() - datetime.timedelta(seconds=1)
    assert bearer_token(cfg) == "second-token"


def test_a_kubeconfig_token_is_sent_as_it_is():
    cfg = Configuration()
    cfg.api_key = {"authorization": "Bearer from-kubeconfig"}
    assert bearer_token(cfg) == "from-kubeconfig"
    assert bearer_token(Configuration()) is None
