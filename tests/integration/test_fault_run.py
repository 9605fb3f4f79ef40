"""Short fixed-seed runs of the fault-injection runner (`tests.fault`): real member processes,
real faults, and the verdict of the linearizability checker.

The netns run is the one CI relies on (CI runs as root); it skips, with the reason, only where
network namespaces cannot be created. The proxy run needs nothing special.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import netns
from tests.procs import REPO_ROOT

#: Bound on one run beyond its fault phase: startup, draining the workload, convergence (60 s).
OVERHEAD_S = 180.0


def run_fault(tmp_path: Path, mode: str, seed: int, duration: int) -> dict[str, object]:
    report = tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fault",
            "--mode",
            mode,
            "--seed",
            str(seed),
            "--duration",
            str(duration),
            "--dir",
            str(tmp_path / "run"),
            "--json",
            str(report),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=duration + OVERHEAD_S,
        check=False,
    )
    assert report.exists(), f"no report\n{done.stdout}\n{done.stderr}"
    result: dict[str, object] = json.loads(report.read_text())
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return result


@pytest.mark.slow
def test_netns_fault_run_with_a_fixed_seed_is_linearizable(tmp_path: Path) -> None:
    reason = netns.namespaces_unavailable()
    if reason is not None:
        pytest.skip(reason)
    result = run_fault(tmp_path, "netns", seed=7, duration=60)
    assert result["verdict"] == "ok"
    assert result["linearizability"] == "linearizable"
    assert result["faults"], "the nemesis injected nothing"


@pytest.mark.slow
def test_proxy_fault_run_with_a_fixed_seed_is_linearizable(tmp_path: Path) -> None:
    result = run_fault(tmp_path, "proxy", seed=3, duration=25)
    assert result["verdict"] == "ok"
    assert result["linearizability"] == "linearizable"
