"""One fault run, start to verdict: bootstrap, workload + nemesis, heal, converge, check, report.

Convergence at the end: heal the network, SIGCONT everything, restart killed members that are
still in the cluster, then wait (bounded) until every running voter's serializable member list is
the same and every running member's Status names the same single leader. A final linearizable
list is appended to the history before it is checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tests import netns
from tests.fault.checker import Verdict, check_changes, check_linearizable
from tests.fault.cluster import Cluster
from tests.fault.history import History, Op, Outcome
from tests.fault.nemesis import Nemesis
from tests.fault.network import NetnsNetwork, Network, ProxyNetwork
from tests.fault.report import Report, recovery_times
from tests.fault.workload import Workload

NETNS_PREFIX = "rnf"
NETNS_SUBNET = "10.78.0.0/24"
CONVERGE_TIMEOUT_S = 60.0
PROGRESS_EVERY_S = 5.0


@dataclass(frozen=True)
class RunConfig:
    nodes: int
    duration: float
    seed: int
    mode: str  # "netns" or "proxy" (resolved from "auto" by the caller)
    root: Path


def resolve_mode(mode: str) -> str:
    if mode != "auto":
        return mode
    return "proxy" if netns.namespaces_unavailable() else "netns"


async def run(config: RunConfig) -> Report:
    config.root.mkdir(parents=True, exist_ok=True)
    names = [f"n{i + 1}" for i in range(config.nodes)]
    with contextlib.ExitStack() as stack:
        network: Network
        if config.mode == "netns":
            lan = stack.enter_context(netns.Lan(NETNS_PREFIX, names, NETNS_SUBNET))
            network = NetnsNetwork(lan)
        else:
            network = ProxyNetwork()
        cluster = Cluster(config.root, network)
        try:
            return await _run(config, cluster, names)
        finally:
            cluster.close()
            await network.close()
    raise AssertionError("unreachable")


async def _run(config: RunConfig, cluster: Cluster, names: list[str]) -> Report:
    rng = random.Random(config.seed)
    history = History()
    workload = Workload(cluster, history, random.Random(rng.random()), config.nodes)
    nemesis = Nemesis(cluster, workload, random.Random(rng.random()))
    try:
        initial = [await cluster.new_member(name) for name in names]
        cluster.bootstrap(initial)
        for member in initial:
            if not await cluster.wait_serving(member):
                raise RuntimeError(f"{member.name} did not start:\n{member.log_tail()}")
        first = await _list_until_ok(workload, linearizable=True, bound=30)
        for proc in initial:
            for m in first.members or ():
                if proc.placement.advertised_peer_url in m.peer_urls:
                    cluster.bind(proc, m.id)
        print(f"cluster of {config.nodes} up ({config.mode} mode) under {config.root}", flush=True)
        started = time.monotonic()
        progress = asyncio.create_task(_progress(workload, nemesis, started))
        workload.start()
        await nemesis.run(started + config.duration)
        await workload.stop()
        healed_at = time.monotonic()
        converged, leader, disagreement = await _converge(cluster, workload)
        progress.cancel()
        final = await _list_until_ok(workload, linearizable=True, bound=30, endpoint=leader)
        return _verdict(
            config,
            cluster,
            workload,
            nemesis,
            history,
            first,
            final,
            started,
            converged - healed_at if converged else None,
            leader,
            disagreement,
        )
    finally:
        await workload.close()


async def _list_until_ok(
    workload: Workload, linearizable: bool, bound: float, endpoint: str = ""
) -> Op:
    deadline = time.monotonic() + bound
    while True:
        op = await workload.member_list("runner", linearizable, endpoint=endpoint or None)
        if op.outcome is Outcome.OK or time.monotonic() > deadline:
            return op
        endpoint = ""
        await asyncio.sleep(0.5)


async def _progress(workload: Workload, nemesis: Nemesis, started: float) -> None:
    while True:
        await asyncio.sleep(PROGRESS_EVERY_S)
        by_outcome: Counter[str] = Counter()
        for (_, outcome), n in workload.stats.ops.items():
            by_outcome[outcome] += n
        current = nemesis.current.kind if nemesis.current else "-"
        print(
            f"[{time.monotonic() - started:6.1f}s] ops ok {by_outcome['ok']} "
            f"fail {by_outcome['fail']} ambiguous {by_outcome['ambiguous']} | "
            f"faults {len(nemesis.faults)} (now {current}) | leader {nemesis.last_leader or '?'}",
            flush=True,
        )


async def _converge(cluster: Cluster, workload: Workload) -> tuple[float | None, str, str]:
    """Heal, resume, restart; then poll until one leader and one member list (bounded).
    Returns (when it converged or None, the leader's endpoint, the last disagreement seen)."""
    await cluster.network.heal()
    for proc in cluster.members.values():
        cluster.resume(proc)
    await _list_until_ok(workload, linearizable=True, bound=15)
    present = {m.id for m in workload.view}
    for proc in cluster.members.values():
        if proc.member_id in present and not proc.running and proc.argv and not proc.join_failed:
            proc.removed = False
            cluster.restart(proc)
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    why = ""
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        present = {m.id for m in workload.view}
        running = [p for p in cluster.live() if p.member_id in present]
        statuses = await workload.statuses()
        leaders = {s.leader for e, s in statuses.items() if e in {p.endpoint for p in running}}
        voters = [
            p for p in running if p.member_id not in {m.id for m in workload.view if m.is_learner}
        ]
        lists = []
        for proc in voters:
            op = await workload.member_list("converge", False, endpoint=proc.endpoint)
            lists.append(op.members)
        if len(statuses) < len(running):
            why = f"{len(running) - len(statuses)} running member(s) did not answer Status"
        elif len(leaders) != 1 or 0 in leaders:
            why = f"leaders named: {sorted(f'{x:x}' for x in leaders)}"
        elif len(set(lists)) != 1 or None in lists:
            why = f"{len(set(lists))} different member lists among {len(voters)} voters"
        else:
            leader = cluster.by_id(leaders.pop())
            return time.monotonic(), leader.endpoint if leader else "", ""
    return None, "", why


def _verdict(
    config: RunConfig,
    cluster: Cluster,
    workload: Workload,
    nemesis: Nemesis,
    history: History,
    first: Op,
    final: Op,
    started: float,
    converged_s: float | None,
    leader: str,
    disagreement: str,
) -> Report:
    problems: list[str] = []
    if first.members is None:
        raise RuntimeError(f"no initial member list: {first.describe()}")
    ops = history.ops[first.index + 1 :]
    result = check_linearizable(ops, first.members)
    if result.verdict is Verdict.VIOLATION:
        problems.append("not linearizable: " + result.explanation)
        problems += ["  " + history.ops[i].describe() for i in result.excerpt]
    if final.outcome is Outcome.OK and final.members is not None:
        problems += check_changes(ops, final.members)
    else:
        problems.append(f"no final linearizable list: {final.describe()}")
    if converged_s is None:
        problems.append(f"no convergence within {CONVERGE_TIMEOUT_S:.0f} s: {disagreement}")
    crashes = []
    for proc in cluster.members.values():
        log = proc.log_path.read_text(errors="replace") if proc.log_path.exists() else ""
        if "Traceback" in log:
            at = log.index("Traceback")
            problems.append(f"{proc.name} logged a traceback:\n{log[max(at - 400, 0) : at + 1500]}")
        for process in proc.history:
            code = process.poll()
            if code not in (None, -9) and not proc.removed and not proc.join_failed:
                crashes.append(f"{proc.name} exited with {code}")
    history_path = config.root / "history.json"
    history.write(history_path)
    leader_proc = next((p for p in cluster.members.values() if p.endpoint == leader), None)
    return Report(
        seed=config.seed,
        mode=config.mode,
        nodes=config.nodes,
        duration=config.duration,
        ops=workload.stats.ops,
        errors=workload.stats.errors,
        faults=nemesis.faults,
        recovery_s=recovery_times(nemesis.faults, workload.stats.mutation_oks),
        linearizability=str(result.verdict),
        checker_states=result.explored,
        problems=problems,
        crashes=crashes,
        converged_s=converged_s,
        leader=leader_proc.name if leader_proc else "",
        history_path=str(history_path),
        run_dir=str(config.root),
    )
