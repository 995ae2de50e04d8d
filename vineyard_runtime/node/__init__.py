"""The node side of the object protocol: the client bridge and the configuration it
publishes, readers' holds, the sweeper, the blob server, page residency and the checks
of a node's vineyardd."""
