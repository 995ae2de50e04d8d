"""A Kubernetes cluster of real nodes for end-to-end tests: the network
(``support.netns``), the control plane listening on its gateway (``control_plane``),
and containerd, kubelet and kube-proxy per node (``support.nodes``), running the
project's image built without a registry (``tests/support/images.py``).

``with RealCluster(workdir) as cluster:`` brings it all up and takes it all down again,
in reverse order, also when the start fails half-way; the machine is left as it was
(``stop()`` raises when something could not be undone, so a leak fails the run).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.netns import GATEWAY, SERVICE_RANGE, Network
from support.nodes import RealNodes


@dataclass
class RealCluster:
    """``nodes`` real nodes (and ``kwok_nodes`` simulated ones) under one control plane."""

    workdir: Path
    nodes: int = 2
    kwok_nodes: int = 0
    crds: tuple[dict[str, Any], ...] = ()
    network: Network | None = None
    control_plane: Any = None
    real: RealNodes | None = None
    images: dict[str, str] = field(default_factory=dict)  # role -> image reference
    timings: dict[str, float] = field(default_factory=dict)

    def __enter__(self) -> "RealCluster":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        from control_plane import ControlPlane

        from support.images import build_image, build_pause

        began = time.monotonic()
        project, pause = build_image(), build_pause()
        self.images = {"project": project.name, "pause": pause.name}
        self.timings["images"] = time.monotonic() - began
        began = time.monotonic()
        self.network = Network(self.nodes).up()
        self.control_plane = ControlPlane(self.workdir / "control-plane", nodes=self.kwok_nodes, crds=self.crds,
                                          address=GATEWAY, service_range=SERVICE_RANGE)
        self.control_plane.start()
        self.timings["control plane"] = time.monotonic() - began
        began = time.monotonic()
        self.real = RealNodes(self.workdir / "nodes", self.control_plane, self.network,
                              [pause.archive, project.archive], pause.name)
        self.real.start()
        self.timings["real nodes"] = time.monotonic() - began

    def stop(self) -> None:
        problems: list[str] = []
        if self.real is not None:
            problems += self.real.stop()
            self.real = None
        if self.control_plane is not None:
            self.control_plane.stop()
            self.control_plane = None
        if self.network is not None:
            problems += self.network.down()
            self.network = None
        if problems:
            raise RuntimeError("the real cluster left the machine changed: " + "; ".join(problems))

    @property
    def node_names(self) -> list[str]:
        assert self.real is not None
        return [node.name for node in self.real.nodes]


__all__ = ["RealCluster"]
