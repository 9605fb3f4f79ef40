"""What docker-compose would run for each service, from ``docker-compose.yml`` and ``Dockerfile``.

There is no Docker engine on our machines, so the compose test runs each service as a plain
process instead of a container. This module works out that process the way compose and the
engine would: the argv is the service's ``entrypoint``/``command`` over the image's
``ENTRYPOINT``/``CMD`` (a service entrypoint drops the image's CMD), the environment is the
image's ``ENV`` under the service's ``environment``, the working directory is the image's
``WORKDIR``, and the healthcheck is the service's ``test`` argv. Paths inside the image are mapped
back to the repository: a file the Dockerfile ``COPY``s comes from its source, and a named
volume's mount point becomes a folder chosen by the caller.

Only the Dockerfile instructions the project's image uses are understood (``FROM``, ``ENV``,
``COPY``, ``RUN``, ``USER``, ``WORKDIR``, ``VOLUME``, ``EXPOSE``, ``ENTRYPOINT``, ``CMD``); any
other instruction is an error, so a change to the Dockerfile cannot be silently misread.
"""

from __future__ import annotations

import importlib
import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

#: PyYAML ships no type hints (types-PyYAML is not a dependency); it is only called in one place.
yaml: Any = importlib.import_module("yaml")

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"

_KNOWN = {"FROM", "ENV", "COPY", "RUN", "USER", "WORKDIR", "VOLUME", "EXPOSE", "ENTRYPOINT", "CMD"}


@dataclass
class Image:
    """The parts of a built image that decide what a container runs."""

    base: str = ""
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    workdir: str = "/"
    user: str = "root"
    volumes: list[str] = field(default_factory=list)
    exposed: list[str] = field(default_factory=list)
    #: Destination path in the image -> source path in the build context.
    copies: dict[str, str] = field(default_factory=dict)


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, with comments dropped and continuations joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    if pending:
        raise ValueError("Dockerfile ends inside a line continuation")
    return result


def _exec_form(args: str) -> list[str]:
    """``["a", "b"]`` as a list; the shell form is ``/bin/sh -c`` as Docker runs it."""
    if args.startswith("["):
        value = json.loads(args)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"not an exec-form list of strings: {args}")
        return value
    return ["/bin/sh", "-c", args]


def _env_pairs(args: str) -> dict[str, str]:
    words = shlex.split(args)
    if len(words) >= 2 and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}  # the legacy ``ENV key value`` form
    return dict(word.split("=", 1) for word in words)


def parse_dockerfile(text: str) -> Image:
    image = Image()
    for keyword, args in instructions(text):
        if keyword not in _KNOWN:
            raise ValueError(f"Dockerfile instruction {keyword} is not understood here")
        if keyword == "FROM":
            image.base = args
        elif keyword == "ENV":
            image.env.update(_env_pairs(args))
        elif keyword == "WORKDIR":
            image.workdir = str(PurePosixPath(image.workdir) / args)
        elif keyword == "USER":
            image.user = args
        elif keyword == "VOLUME":
            image.volumes += _exec_form(args) if args.startswith("[") else args.split()
        elif keyword == "EXPOSE":
            image.exposed += args.split()
        elif keyword == "ENTRYPOINT":
            image.entrypoint = _exec_form(args)
            image.cmd = []  # Docker resets CMD when ENTRYPOINT is set
        elif keyword == "CMD":
            image.cmd = _exec_form(args)
        elif keyword == "COPY":
            *sources, dest = shlex.split(args)
            if any(s.startswith("--") for s in sources):
                raise ValueError(f"COPY flags are not understood here: {args}")
            target = PurePosixPath(image.workdir) / dest
            for source in sources:
                path = target / PurePosixPath(source).name if len(sources) > 1 else target
                image.copies[str(path)] = source
    return image


def load_image(path: Path = DOCKERFILE) -> Image:
    return parse_dockerfile(path.read_text())


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The compose file as data (YAML anchors and ``<<`` merge keys resolved by PyYAML)."""
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a YAML mapping")
    return data


def _argv(value: Any, shell: bool) -> list[str]:
    if isinstance(value, str):
        return ["/bin/sh", "-c", value] if shell else shlex.split(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f"expected a string or a list of strings, got {value!r}")


def _environment(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, list):
        return dict(item.split("=", 1) for item in value)
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def healthcheck_argv(test: Any) -> list[str]:
    """A compose healthcheck ``test`` as the argv the engine runs in the container."""
    if isinstance(test, str):
        return ["/bin/sh", "-c", test]
    kind, *rest = test
    if kind == "CMD":
        return list(rest)
    if kind == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(rest)]
    raise ValueError(f"healthcheck test must start with CMD or CMD-SHELL, got {kind!r}")


@dataclass(frozen=True)
class Service:
    """One compose service as the process it stands for."""

    name: str
    argv: list[str]
    env: dict[str, str]
    workdir: str
    healthcheck: list[str] | None
    #: Named volume -> mount point in the container.
    volumes: dict[str, str]
    depends_on: list[str]
    profiles: list[str]


def service(compose: Mapping[str, Any], image: Image, name: str) -> Service:
    spec = compose["services"][name]
    if "entrypoint" in spec:
        argv = _argv(spec["entrypoint"], shell=False)
        argv += _argv(spec["command"], shell=False) if "command" in spec else []
    else:
        argv = list(image.entrypoint)
        argv += _argv(spec["command"], shell=False) if "command" in spec else image.cmd
    if not argv:
        raise ValueError(f"service {name} has nothing to run")
    volumes: dict[str, str] = {}
    for entry in spec.get("volumes", []):
        source, _, target = str(entry).partition(":")
        if source.startswith((".", "/")) or not target:
            raise ValueError(f"service {name}: only named volumes are expected, got {entry!r}")
        volumes[source] = target.split(":")[0]
    health = spec.get("healthcheck", {})
    depends = spec.get("depends_on", [])
    return Service(
        name=name,
        argv=argv,
        env={**image.env, **_environment(spec.get("environment"))},
        workdir=spec.get("working_dir", image.workdir),
        healthcheck=None
        if health.get("disable")
        else healthcheck_argv(health["test"])
        if "test" in health
        else None,
        volumes=volumes,
        depends_on=list(depends) if isinstance(depends, (list, dict)) else [],
        profiles=list(spec.get("profiles", [])),
    )


def services(compose: Mapping[str, Any], image: Image) -> dict[str, Service]:
    return {name: service(compose, image, name) for name in compose["services"]}


def to_host_path(path: str, image: Image, mounts: Mapping[str, Path]) -> str:
    """An image path as the host path standing for it: under a volume's folder, or the repository
    file the Dockerfile copied there; anything else is unchanged."""
    pure = PurePosixPath(path)
    for target, folder in sorted(mounts.items(), key=lambda item: -len(item[0])):
        if pure == PurePosixPath(target) or PurePosixPath(target) in pure.parents:
            return str(folder / pure.relative_to(target))
    if path in image.copies:
        return str(REPO_ROOT / image.copies[path])
    return path


def resolve_command(argv: Sequence[str], image: Image, path_dirs: Sequence[str]) -> list[str]:
    """argv with its program found the way the container's PATH would find it: a bare name that
    the Dockerfile copied into a PATH directory is that repository file; others stay for the
    host's PATH (``raftnode`` is installed on both)."""
    program = argv[0]
    if "/" not in program:
        for directory in path_dirs:
            candidate = str(PurePosixPath(directory) / program)
            if candidate in image.copies:
                return [str(REPO_ROOT / image.copies[candidate]), *argv[1:]]
    return list(argv)
