"""The end of a run: the verdict's inputs gathered in one `Report`, printed as text and as JSON."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.fault.nemesis import Fault


@dataclass
class Report:
    seed: int
    mode: str
    nodes: int
    duration: float
    ops: Counter[tuple[str, str]]
    errors: Counter[tuple[str, str]]
    faults: list[Fault]
    recovery_s: list[float]
    linearizability: str
    checker_states: int
    problems: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    converged_s: float | None = None
    leader: str = ""
    history_path: str = ""
    run_dir: str = ""

    @property
    def ok(self) -> bool:
        return self.linearizability == "linearizable" and not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "mode": self.mode,
            "nodes": self.nodes,
            "duration_s": self.duration,
            "verdict": "ok" if self.ok else "violation",
            "linearizability": self.linearizability,
            "checker_states": self.checker_states,
            "problems": self.problems,
            "crashes": self.crashes,
            "ops": {f"{k} {o}": n for (k, o), n in sorted(self.ops.items())},
            "errors": [
                {"kind": k, "error": e, "count": n} for (k, e), n in self.errors.most_common()
            ],
            "faults": [asdict(f) for f in self.faults],
            "faults_by_kind": dict(Counter(f.kind for f in self.faults)),
            "recovery_s": self.recovery_s,
            "converged_s": self.converged_s,
            "final_leader": self.leader,
            "history": self.history_path,
            "run_dir": self.run_dir,
        }

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    def text(self) -> str:
        lines = [
            f"== fault run: seed {self.seed}, {self.mode} mode, {self.nodes} nodes, "
            f"{self.duration:.0f} s",
            "operations (kind outcome: count):",
        ]
        lines += [f"  {k:8} {o:9} {n}" for (k, o), n in sorted(self.ops.items())]
        lines.append("errors (kind: count  message):")
        lines += [f"  {k:8} {n:4}  {e}" for (k, e), n in self.errors.most_common(25)]
        kinds = Counter(f.kind for f in self.faults)
        lines.append("faults: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
        if self.recovery_s:
            lines.append(
                f"recovery (healed -> next acknowledged change): n={len(self.recovery_s)} "
                f"median {statistics.median(self.recovery_s):.2f} s, "
                f"max {max(self.recovery_s):.2f} s"
            )
        if self.converged_s is not None:
            lines.append(f"converged {self.converged_s:.1f} s after healing; leader {self.leader}")
        lines.append(f"linearizability: {self.linearizability} ({self.checker_states} states)")
        for problem in self.problems:
            lines.append(f"PROBLEM: {problem}")
        for crash in self.crashes:
            lines.append(f"member exit: {crash}")
        lines.append(f"history: {self.history_path}")
        lines.append("VERDICT: " + ("OK" if self.ok else "VIOLATION"))
        return "\n".join(lines)


def recovery_times(faults: list[Fault], oks: list[float]) -> list[float]:
    """For each healed fault: seconds until the next acknowledged mutation (none: left out)."""
    ordered = sorted(oks)
    times = []
    for fault in faults:
        if fault.healed is None:
            continue
        after = next((t for t in ordered if t >= fault.healed), None)
        if after is not None:
            times.append(round(after - fault.healed, 3))
    return times
