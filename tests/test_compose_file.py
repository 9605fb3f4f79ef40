"""docker-compose.yml and the Dockerfile have the shape issue 6 asks for, and Debian's
``docker-compose config`` accepts the file (no engine needed). How compose_spec reads them is
tested here too; tests/integration/test_compose_netns.py runs what it reads."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests import compose_spec
from tests.compose_spec import REPO_ROOT, Image, parse_dockerfile

VOTERS = ["node1", "node2", "node3"]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return compose_spec.load_compose()


@pytest.fixture(scope="module")
def image() -> Image:
    return compose_spec.load_image()


# ---- docker-compose config --------------------------------------------------------------------


def docker_compose(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip(
            "docker-compose is not installed (Debian's docker-compose; .ci/run installs it)"
        )
    return subprocess.run(
        [binary, "--file", str(compose_spec.COMPOSE_FILE), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_docker_compose_config_accepts_the_file() -> None:
    done = docker_compose("config", "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_docker_compose_reads_the_services_as_the_netns_test_does(
    compose: dict[str, Any], image: Image
) -> None:
    """Anchors and merge keys are resolved by PyYAML for the netns test: the result must be what
    docker-compose itself makes of the file."""
    done = docker_compose("config")
    assert done.returncode == 0, done.stderr
    resolved = compose_spec.yaml.safe_load(done.stdout)
    ours = compose_spec.services(compose, image)
    assert sorted(resolved["services"]) == sorted(ours) == [*VOTERS, "node4"]
    for name, theirs in resolved["services"].items():
        assert {**image.env, **theirs["environment"]} == ours[name].env, name
        assert theirs.get("entrypoint", image.entrypoint) == ours[name].argv, name
        assert compose_spec.healthcheck_argv(theirs["healthcheck"]["test"]) == (
            ours[name].healthcheck
        )
        assert theirs.get("profiles", []) == ours[name].profiles, name
    assert sorted(resolved["volumes"]) == [f"{n}-data" for n in [*VOTERS, "node4"]]


# ---- the image --------------------------------------------------------------------------------


def test_image_installs_the_project_and_runs_raftnode_as_a_non_root_user(image: Image) -> None:
    text = compose_spec.DOCKERFILE.read_text()
    assert image.base == "python:3.11-slim"
    assert "RUN pip install ." in text
    assert image.user not in ("", "root", "0")
    assert image.entrypoint == ["raftnode"]
    assert sorted(image.exposed) == ["2379", "2380"]
    assert image.volumes == ["/var/lib/raftnode"]
    assert image.env["ETCD_DATA_DIR"].startswith("/var/lib/raftnode/")


def test_everything_the_image_copies_exists_and_the_context_lets_it_in(image: Image) -> None:
    allowed = (REPO_ROOT / ".dockerignore").read_text().split()
    for source in image.copies.values():
        assert (REPO_ROOT / source).exists(), source
        assert f"!{source}" in allowed or f"!{source}/" in allowed, source
    learner = REPO_ROOT / image.copies["/usr/local/bin/compose-learner"]
    assert learner.stat().st_mode & 0o111, "compose-learner must be executable"


# ---- the services -----------------------------------------------------------------------------


def test_voters_are_configured_with_etcd_variables(compose: dict[str, Any], image: Image) -> None:
    services = compose_spec.services(compose, image)
    cluster = ",".join(f"{n}=http://{n}:2380" for n in VOTERS)
    tokens = set()
    for name in VOTERS:
        env = services[name].env
        assert env["ETCD_NAME"] == name
        assert env["ETCD_LISTEN_CLIENT_URLS"] == "http://0.0.0.0:2379"
        assert env["ETCD_ADVERTISE_CLIENT_URLS"] == f"http://{name}:2379"
        assert env["ETCD_LISTEN_PEER_URLS"] == "http://0.0.0.0:2380"
        assert env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == f"http://{name}:2380"
        assert env["ETCD_INITIAL_CLUSTER"] == cluster
        assert env["ETCD_INITIAL_CLUSTER_STATE"] == "new"
        assert env["ETCD_DATA_DIR"].startswith(services[name].volumes[f"{name}-data"] + "/")
        tokens.add(env["ETCD_INITIAL_CLUSTER_TOKEN"])
        assert services[name].argv == ["raftnode"]
        assert services[name].profiles == []
    assert len(tokens) == 1 and "" not in tokens
    assert services["node4"].env["ETCD_INITIAL_CLUSTER_TOKEN"] in tokens


def test_each_member_has_its_own_named_volume_and_published_client_port(
    compose: dict[str, Any],
) -> None:
    host_ports = []
    for name in [*VOTERS, "node4"]:
        spec = compose["services"][name]
        assert spec["volumes"] == [f"{name}-data:/var/lib/raftnode"]
        assert f"{name}-data" in compose["volumes"]
        (published,) = spec["ports"]
        host, container = published.split(":")
        assert container == "2379"
        host_ports.append(host)
    assert len(set(host_ports)) == 4


def test_healthchecks_ask_the_members_health_endpoint(
    compose: dict[str, Any], image: Image
) -> None:
    for name, service in compose_spec.services(compose, image).items():
        assert service.healthcheck is not None, name
        program, flag, code = service.healthcheck
        assert (program, flag) == ("python3", "-c"), "slim images have no curl"
        assert "http://127.0.0.1:2379/health" in code
        compile(code, f"{name} healthcheck", "exec")


def test_the_learner_service_joins_the_voters(compose: dict[str, Any], image: Image) -> None:
    node4 = compose_spec.services(compose, image)["node4"]
    assert node4.profiles == ["learner"]
    assert node4.argv == ["compose-learner"]
    assert f"/usr/local/bin/{node4.argv[0]}" in image.copies
    assert sorted(node4.depends_on) == VOTERS
    assert node4.env["RAFTNODE_JOIN_ENDPOINTS"] == ",".join(f"{n}:2379" for n in VOTERS)
    assert node4.env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == "http://node4:2380"
    assert "ETCD_INITIAL_CLUSTER" not in node4.env  # member add prints it


# ---- compose_spec: how a service becomes a process --------------------------------------------

DOCKERFILE = """\
FROM base:1
# a comment
ENV A=1 \\
    B="two words"
WORKDIR /build
COPY one.txt two.txt ./
COPY tool /usr/local/bin/tool
CMD ["serve"]
ENTRYPOINT ["prog", "--flag"]
"""


def test_dockerfile_instructions_are_read_as_docker_does() -> None:
    image = parse_dockerfile(DOCKERFILE)
    assert image.base == "base:1"
    assert image.env == {"A": "1", "B": "two words"}
    assert image.copies == {
        "/build/one.txt": "one.txt",
        "/build/two.txt": "two.txt",
        "/usr/local/bin/tool": "tool",
    }
    assert image.entrypoint == ["prog", "--flag"]
    assert image.cmd == []  # ENTRYPOINT resets an earlier CMD


def test_unknown_instructions_are_refused() -> None:
    with pytest.raises(ValueError, match="ADD"):
        parse_dockerfile("FROM x\nADD a b\n")


@pytest.mark.parametrize(
    ("spec", "argv"),
    [
        ({}, ["prog", "--flag", "run"]),
        ({"command": ["other"]}, ["prog", "--flag", "other"]),
        ({"command": "a 'b c'"}, ["prog", "--flag", "a", "b c"]),
        ({"entrypoint": ["tool"]}, ["tool"]),
        ({"entrypoint": "tool", "command": ["x"]}, ["tool", "x"]),
    ],
)
def test_service_argv_layers_entrypoint_and_command(spec: dict[str, Any], argv: list[str]) -> None:
    image = Image(entrypoint=["prog", "--flag"], cmd=["run"])
    service = compose_spec.service({"services": {"s": spec}}, image, "s")
    assert service.argv == argv


def test_healthcheck_forms() -> None:
    assert compose_spec.healthcheck_argv(["CMD", "a", "b"]) == ["a", "b"]
    assert compose_spec.healthcheck_argv(["CMD-SHELL", "a && b"]) == ["/bin/sh", "-c", "a && b"]
    assert compose_spec.healthcheck_argv("a b") == ["/bin/sh", "-c", "a b"]
    with pytest.raises(ValueError, match="CMD"):
        compose_spec.healthcheck_argv(["NONE"])


def test_image_paths_map_to_volumes_and_copied_files(tmp_path: Path) -> None:
    image = Image(copies={"/usr/local/bin/tool": "scripts/tool"})
    mounts = {"/var/lib/app": tmp_path / "vol"}
    assert compose_spec.to_host_path("/var/lib/app/data", image, mounts) == str(
        tmp_path / "vol" / "data"
    )
    assert compose_spec.to_host_path("/var/lib/app", image, mounts) == str(tmp_path / "vol")
    assert compose_spec.to_host_path("/var/lib/application", image, mounts) == (
        "/var/lib/application"
    )
    assert compose_spec.to_host_path("/usr/local/bin/tool", image, mounts) == str(
        REPO_ROOT / "scripts/tool"
    )
    assert compose_spec.resolve_command(["tool", "x"], image, ["/usr/bin", "/usr/local/bin"]) == [
        str(REPO_ROOT / "scripts/tool"),
        "x",
    ]
    assert compose_spec.resolve_command(["raftnode"], image, ["/usr/local/bin"]) == ["raftnode"]
