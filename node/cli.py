"""Command-line entry point (`raftnode`, `python -m node`).

It will turn flags and ETCD_* variables into a NodeConfig and hand it to the server; it holds no
logic of its own. Until the node exists it says so and fails, rather than pretending to run.
"""

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the node with `argv` (default: the process arguments) and return the exit status."""
    del argv  # no flags yet
    print("raftnode: the node is not implemented yet", file=sys.stderr)
    return 1
