"""Errors of the durable storage, apart from the read-side errors the Raft core already defines.

Three different situations, three types, because the operator's response differs:

* ``DataDirError``: the data dir is not one this node may run on (another cluster or member, an
  unknown format, a removed member, leftovers without metadata). Nothing is damaged; starting is
  refused so that a node never runs on, or bootstraps over, state that is not its own (spec D5).
* ``CorruptDataError``: bytes on disk that were once acknowledged no longer check out. It names the
  file and offset, because the fix is a human looking at that spot, never a silent skip.
* ``StorageFailedError``: a write or fsync failed while running. After a failed fsync the kernel may
  have dropped the dirty pages, so retrying could report success for data that is gone; the only
  safe move is to stop and recover from what the disk really holds.
"""

from __future__ import annotations


class DataDirError(Exception):
    """This data dir cannot be used by this node; ``path`` says which one and the message why."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class CorruptDataError(DataDirError):
    """Stored bytes fail their checks at ``offset`` of the file ``path``."""

    def __init__(self, path: str, offset: int, problem: str) -> None:
        super().__init__(path, f"corrupt at offset {offset}: {problem}")
        self.offset = offset


class StorageFailedError(Exception):
    """An earlier write or fsync failed; the storage refuses further writes until reopened."""
