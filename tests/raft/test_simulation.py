"""Layer (d): thousands of seeded schedules through the deterministic simulator.

Each seed is one whole run (hundreds of steps of faults, proposals and conf changes, with
invariants checked after every step and liveness at the end). A failure names the seed and the
command that replays it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.raft.sim import InvariantViolation, Params, Simulation

#: CI runs at least 2,000 seeds; RAFT_SIM_SEEDS raises it locally.
SEEDS = int(os.environ.get("RAFT_SIM_SEEDS", "2000"))


@pytest.mark.sim
def test_seeded_schedules_keep_every_invariant() -> None:
    """The sweep runs in worker processes (all cores, and outside coverage tracing, which
    would triple its time); its output names every failing seed with a replay command."""
    jobs = str(max(1, os.cpu_count() or 1))
    command = [sys.executable, "-m", "tests.raft.sim", "--seeds", str(SEEDS), "--jobs", jobs]
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{SEEDS} seeds from 0: 0 failures" in result.stdout


def test_the_simulator_exercises_what_it_claims() -> None:
    """Guard against a simulator that silently stopped injecting faults or changing members."""
    totals = {"leaders": 0, "crashes": 0, "snapshots": 0, "conf_changes": 0, "refused": 0}
    for seed in range(30):
        sim = Simulation(seed)
        stats = sim.run()
        totals["leaders"] += stats.leaders
        totals["crashes"] += stats.crashes
        totals["snapshots"] += stats.snapshots_sent
        totals["refused"] += stats.refused
        totals["conf_changes"] += sum(1 for _ in sim.conf_at)
    assert all(count > 30 for count in totals.values()), totals


def test_a_violation_names_the_seed_and_the_replay_command() -> None:
    sim = Simulation(3, Params(steps=50))

    def broken_check() -> None:
        raise InvariantViolation("planted")

    sim.check_safety = broken_check  # type: ignore[method-assign]
    with pytest.raises(InvariantViolation) as caught:
        sim.run()
    assert "seed 3 failed" in str(caught.value)
    assert "python -m tests.raft.sim --seed 3 --verbose" in str(caught.value)
