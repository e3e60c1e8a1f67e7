"""Shared fixtures: small synthetic FER2013-format data, so no test needs the real file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from nas import data

REAL_DATA = Path(os.environ.get("FER2013", Path(__file__).resolve().parents[2] / "shared/data/fer2013.csv.gz"))
FACES = REAL_DATA.parent / "faces"

torch.set_num_threads(1)


def _seed_numerics_calibration() -> None:
    """Searches calibrate their numeric modes once per machine (minutes); the tests get a fixed rule
    (bf16 above 20 MFLOPs) in a cache of their own, which subprocesses inherit."""
    import json
    import tempfile

    from nas.training.numerics import machine_key

    cache = Path(tempfile.mkdtemp(prefix="fer-nas-test-cache-"))
    os.environ["XDG_CACHE_HOME"] = str(cache)
    rule = {"bf16_above_mflops": 20.0, "speedup": 1.0, "networks": []}
    known = {machine_key(t): rule for t in range(1, (os.cpu_count() or 1) + 1)}
    (cache / "fer-nas").mkdir()
    (cache / "fer-nas" / "numerics.json").write_text(json.dumps(known))


_seed_numerics_calibration()


def install_latency_table() -> None:
    """Searches predict latency from a per-block table measured once per machine; the tests get a fixed
    one (``fixtures/latency_units.json``, every block the suite's searches meet), so what a search finds
    depends on nothing measured, and no test session spends time measuring blocks."""
    from nas.deploy.latency import machine_table_path

    fixed = Path(__file__).resolve().parent / "fixtures" / "latency_units.json"
    if fixed.exists():
        machine_table_path().write_bytes(fixed.read_bytes())


install_latency_table()


@pytest.fixture(scope="session")
def synthetic_csv(tmp_path_factory) -> Path:
    """A learnable 7-class dataset of 700 images in the Kaggle CSV form (560/70/70)."""
    path = tmp_path_factory.mktemp("data") / "synthetic.csv"
    return data.write_csv(path, data.synthetic_splits(700, seed=0))


# the champion of the run directories the training tests make (``run_dir``): small enough to train in seconds
CHAMPION = "conv_k3_c8_s1_relu_bn | pool_max | conv_k3_c16_s1_relu_bn | gap"


@pytest.fixture
def run_dir(tmp_path, synthetic_csv) -> Path:
    """A run directory as a search leaves it for tune and train: its data and its champion."""
    import json

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data": str(synthetic_csv)}))
    (run / "champion.json").write_text(json.dumps({"genome": CHAMPION, "rule": "test"}))
    return run


def load_benchmark(name: str):
    """A script of ``benchmarks/`` as a module, for the smoke tests of ``-m bench``."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def requires_real_data():
    return pytest.mark.skipif(not REAL_DATA.exists(), reason=f"FER2013 not found at {REAL_DATA}")
