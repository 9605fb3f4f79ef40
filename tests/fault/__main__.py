"""``python -m tests.fault --nodes 3 --duration 60 --seed 7``: one seeded fault-injection run.

Prints a progress line every ~5 s and a report at the end, writes the report as JSON (``--json``,
default ``<dir>/report.json``) and the history next to it; exits 1 on a violation. A failing run's
logs and history are copied to ``/tmp/fault-runs/<seed>/``. See the README's "Fault injection".
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.fault.runner import RunConfig, resolve_mode, run

FAILED_RUNS = Path("/tmp/fault-runs")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fault", description=__doc__)
    parser.add_argument("--nodes", type=int, default=3, help="voters to bootstrap (3-5)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of faults")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="where to write the JSON report")
    parser.add_argument("--mode", choices=("auto", "netns", "proxy"), default="auto")
    parser.add_argument("--dir", type=Path, help="data dirs and logs (default: a temp dir)")
    args = parser.parse_args(argv)
    if not 3 <= args.nodes <= 5:
        parser.error("--nodes must be between 3 and 5")
    root = args.dir or Path(tempfile.mkdtemp(prefix=f"raftnode-fault-{args.seed}-"))
    config = RunConfig(args.nodes, args.duration, args.seed, resolve_mode(args.mode), root)
    report = asyncio.run(run(config))
    print(report.text(), flush=True)
    json_path = args.json or root / "report.json"
    report.write_json(json_path)
    print(f"report: {json_path}")
    if not report.ok:
        keep = FAILED_RUNS / str(args.seed)
        shutil.rmtree(keep, ignore_errors=True)
        shutil.copytree(root, keep, ignore=shutil.ignore_patterns("*.etcd"))
        report.write_json(keep / "report.json")
        print(f"logs and history kept under {keep}", file=sys.stderr)
        return 1
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
