"""The package as users install it: a wheel built from the sources, installed away from the checkout."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A wheel built from a copy of what the sdist holds, installed with ``--target`` (no dependencies:
    this environment has them)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("nas", "search_spaces"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src)], check=True)
    (wheel,) = (tmp / "dist").glob("fer_nas-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp / "site"), str(wheel)], check=True)
    return tmp / "site"


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}  # ahead of the checkout's editable install
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_wheel_holds_the_spaces_and_runs_a_search(installed, tmp_path):
    where = _run(
        installed, tmp_path, "-c", "import nas, nas.genome.space as s; print(nas.__file__); print(s.SPACES_DIR)"
    )
    package, spaces = where.stdout.split()
    assert package.startswith(str(installed)) and spaces.startswith(str(installed)), where.stdout
    assert {p.name for p in Path(spaces).glob("*.toml")} == {"default.toml", "tiny.toml", "baselines.toml"}

    assert _run(installed, tmp_path, "-m", "nas", "--version").stdout.startswith("fer-nas ")
    argv = ["evolve", "--data", "synthetic:300", "--space", "tiny", "--population", "4", "--generations", "0"]
    argv += ["--objectives", "acc,params", "--fidelity", "cheap", "--jobs", "1", "--run-dir", str(tmp_path / "run")]
    search = _run(installed, tmp_path, "-m", "nas", *argv)
    assert search.returncode == 0, search.stderr[-2000:]
    assert (tmp_path / "run" / "evaluations.csv").exists()
    assert _run(installed, tmp_path, "-m", "nas", "baselines").returncode == 0


@pytest.mark.skipif(not (ROOT / "nas" / "models" / "model.onnx").exists(), reason="no model ships yet")
def test_the_installed_package_finds_faces_with_its_own_model_and_without_torch(installed, tmp_path):
    from conftest import FACES  # noqa: PLC0415

    photo = FACES / "facerec_two_people.jpg"
    if not photo.exists():
        pytest.skip("face photos not present")
    code = (
        "import sys\nsys.modules['torch'] = None  # import torch now fails\nimport json, nas\n"
        "from nas.deploy.classifier import DEFAULT_MODEL\nprint(DEFAULT_MODEL)\n"
        "print(json.dumps(nas.analyze(sys.argv[1])))"
    )
    analyzed = _run(installed, tmp_path, "-c", code, str(photo))
    assert analyzed.returncode == 0, analyzed.stderr[-2000:]
    model, faces = analyzed.stdout.splitlines()
    assert model.startswith(str(installed)) and len(json.loads(faces)) == 2  # the wheel's own model
    demo = _run(installed, tmp_path, "-m", "nas", "demo", "--source", str(photo), "--headless", "--output", "out.png")
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert (tmp_path / "out.png").exists() and len((tmp_path / "out.csv").read_text().splitlines()) == 3
