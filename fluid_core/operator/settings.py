"""The operator's settings that its handlers read: what a CR may ask for (the policy).
``fluidv operator --policy FILE`` sets them once, before the handlers run."""

from __future__ import annotations

from fluid_core.reconcilers.policy import Policy

_policy = Policy()


def configure_policy(policy: Policy) -> None:
    global _policy
    _policy = policy


def policy() -> Policy:
    """The policy in force (restricted pod security and the default host roots unless set)."""
    return _policy


__all__ = ["configure_policy", "policy"]
