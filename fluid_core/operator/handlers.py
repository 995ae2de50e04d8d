"""The operator's kopf handlers: importing this module registers every one of them with
kopf's default registry (that is what a kopf handler module is for); ``fluidv operator``
imports it. One module per concern: start-up (``startup``), VineyardRuntimes
(``runtimes``), Datasets (``datasets``), data operations (``operations``) and the
placement webhook's view of the cluster (``placement_feed``); what they share is in
``cycle``.
"""

from fluid_core.operator import datasets, operations, placement_feed, runtimes, startup

__all__ = ["datasets", "operations", "placement_feed", "runtimes", "startup"]
