"""The committed proto code is exactly what `scripts/gen-proto` generates (CI's no-diff check).

The generator runs into a temporary directory and every file is compared byte for byte with
proto/etcdserverpb/, proto/mvccpb/ and proto/authpb/. The test skips, saying why, only when the
generator itself is missing; `pip install -e '.[dev]'` (what CI runs) installs it.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
GENERATED_PACKAGES = ("etcdserverpb", "mvccpb", "authpb")
GENERATOR_MODULES = ("grpc_tools", "betterproto.plugin", "black", "isort", "jinja2")


def _missing_generator_modules() -> list[str]:
    missing = []
    for module in GENERATOR_MODULES:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # the parent package (betterproto) is missing
            found = False
        if not found:
            missing.append(module)
    return missing


def _files_under(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for package in GENERATED_PACKAGES
        for path in sorted((root / package).rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_committed_proto_code_matches_the_generator(tmp_path: Path) -> None:
    missing = _missing_generator_modules()
    if missing:
        pytest.skip(
            f"proto generator not installed ({', '.join(missing)} missing); "
            "run `python3 -m pip install -e '.[dev]'`"
        )
    result = subprocess.run(
        [str(REPO_ROOT / "scripts" / "gen-proto"), str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"scripts/gen-proto failed:\n{result.stdout}{result.stderr}"

    generated = _files_under(tmp_path)
    committed = _files_under(REPO_ROOT / "proto")
    assert set(generated) == set(committed), "file lists differ: run scripts/gen-proto"
    stale = sorted(name for name in generated if generated[name] != committed[name])
    assert not stale, f"committed proto code is stale, run scripts/gen-proto: {stale}"


def test_wire_numbers_of_the_cluster_contract() -> None:
    """Spot-check spec section 2 on the wire, so a wrong field number in the .proto shows up."""
    from proto.etcdserverpb import (
        Member,
        MemberListRequest,
        MoveLeaderRequest,
        ResponseHeader,
        StatusResponse,
    )

    assert bytes(MemberListRequest(linearizable=True)) == b"\x08\x01"
    assert bytes(MoveLeaderRequest(target_id=1)) == b"\x08\x01"
    assert bytes(ResponseHeader(raft_term=1)) == b"\x20\x01"
    member = Member(id=1, name="a", peer_ur_ls=["p"], client_ur_ls=["c"], is_learner=True)
    assert bytes(member) == b"\x08\x01\x12\x01a\x1a\x01p\x22\x01c\x28\x01"
    status = StatusResponse(raft_applied_index=1, errors=["e"], db_size_in_use=1, is_learner=True)
    assert bytes(status) == b"\x38\x01\x42\x01e\x48\x01\x50\x01"
