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


@pytest.fixture(scope="session")
def synthetic_csv(tmp_path_factory) -> Path:
    """A learnable 7-class dataset of 700 images in the Kaggle CSV form (560/70/70)."""
    path = tmp_path_factory.mktemp("data") / "synthetic.csv"
    return data.write_csv(path, data.synthetic_splits(700, seed=0))


def requires_real_data():
    return pytest.mark.skipif(not REAL_DATA.exists(), reason=f"FER2013 not found at {REAL_DATA}")
