"""Arrow-based object adaptors on top of the ``vineyard`` client."""
