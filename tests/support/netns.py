"""The real nodes' network: a network namespace per node, joined to the test's side by a
bridge, with addresses from 198.18.0.0/15 (the range set aside for network tests).

- the test's side: a bridge in the root namespace, ``198.18.0.1/24`` (the API server and
  the cluster's DNS listen there);
- node ``i``: namespace ``<prefix>n<i>``, its end of a veth pair named ``eth0`` with
  ``198.18.0.<10+i>/24``, pods in ``198.19.<1+i>.0/24`` (its CNI bridge is the gateway),
  routes to the other nodes' pod subnets and to the Service range;
- the root namespace routes each pod subnet to its node, so the API server reaches
  webhooks served from pods. There is no default route anywhere: nothing leaves.

Forwarding is turned on inside the namespaces only; deleting a namespace takes its
links, routes, rules and sysctls with it.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass, field

from support.host import run

GATEWAY = "198.18.0.1"
SERVICE_RANGE = "198.19.200.0/24"
CLUSTER_CIDR = "198.19.0.0/16"


@dataclass(frozen=True)
class NodeNet:
    """One node's place in the network."""

    index: int
    netns: str
    veth: str  # the root namespace's end

    @property
    def address(self) -> str:
        return f"198.18.0.{10 + self.index}"

    @property
    def pod_subnet(self) -> str:
        return f"198.19.{1 + self.index}.0/24"

    @property
    def pod_gateway(self) -> str:
        return f"198.19.{1 + self.index}.1"


@dataclass
class Network:
    """The bridge and the namespaces of ``count`` nodes; ``down()`` removes them all."""

    count: int
    prefix: str = field(default_factory=lambda: f"fv{secrets.token_hex(2)}")
    nodes: list[NodeNet] = field(default_factory=list)
    bridge: str = ""

    def up(self) -> "Network":
        if _address_in_use(GATEWAY):
            raise RuntimeError(f"{GATEWAY} is already on an interface of this machine: another test cluster "
                               "runs, or one was not cleaned up (see `ip -br addr`)")
        self.bridge = f"{self.prefix}br"
        run(["ip", "link", "add", self.bridge, "type", "bridge"])
        run(["ip", "addr", "add", f"{GATEWAY}/24", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])
        self.nodes = [NodeNet(i, f"{self.prefix}n{i}", f"{self.prefix}v{i}") for i in range(self.count)]
        for node in self.nodes:
            run(["ip", "netns", "add", node.netns])
            run(["ip", "link", "add", node.veth, "type", "veth", "peer", "name", "eth0", "netns", node.netns])
            run(["ip", "link", "set", node.veth, "master", self.bridge, "up"])
            inside = node.netns
            run(["ip", "link", "set", "lo", "up"], netns=inside)
            run(["ip", "addr", "add", f"{node.address}/24", "dev", "eth0"], netns=inside)
            run(["ip", "link", "set", "eth0", "up"], netns=inside)
            run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], netns=inside)  # this namespace's own
            run(["ip", "route", "add", SERVICE_RANGE, "via", GATEWAY], netns=inside)
            for other in self.nodes:
                if other is not node:
                    run(["ip", "route", "add", other.pod_subnet, "via", other.address], netns=inside)
            run(["ip", "route", "add", node.pod_subnet, "via", node.address])
        return self

    def down(self) -> list[str]:
        """Remove every namespace and link made; what could not be removed."""
        problems = []
        for node in self.nodes:
            if os.path.exists(f"/var/run/netns/{node.netns}"):
                done = run(["ip", "netns", "delete", node.netns], check=False)
                if done.returncode != 0:
                    problems.append(f"netns {node.netns}: {done.stderr.strip()}")
            if run(["ip", "link", "show", node.veth], check=False).returncode == 0:
                run(["ip", "link", "delete", node.veth], check=False)
        if self.bridge and run(["ip", "link", "show", self.bridge], check=False).returncode == 0:
            done = run(["ip", "link", "delete", self.bridge], check=False)
            if done.returncode != 0:
                problems.append(f"bridge {self.bridge}: {done.stderr.strip()}")
        return problems


def _address_in_use(address: str) -> bool:
    listed = run(["ip", "-o", "addr", "show"], check=False).stdout
    return any(ipaddress.ip_interface(word).ip == ipaddress.ip_address(address)
               for line in listed.splitlines() for word in line.split() if "/" in word and "." in word
               and _is_interface(word))


def _is_interface(word: str) -> bool:
    try:
        ipaddress.ip_interface(word)
    except ValueError:
        return False
    return True


__all__ = ["CLUSTER_CIDR", "GATEWAY", "Network", "NodeNet", "SERVICE_RANGE"]
