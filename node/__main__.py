"""`python -m node`: the same as the `raftnode` command."""

from node.cli import main

raise SystemExit(main())
