"""The asyncio shell around the pure `raft` core: storage, transport, driver and etcd services.

The public surface is what this module re-exports in `__all__` (CONVENTIONS P12).
"""

__all__: list[str] = []
