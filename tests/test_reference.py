"""The package finds what the code of 2026-12-05 found (``tests/reference.py``): same seed, same evaluations,
front and champion for every algorithm with a population and random search, on both evaluation
strategies; and a run directory that code left behind resumes and extends.

The default search is compared in ``test_evolve`` (its module's search is the first reference); the others
take a minute each and run with ``pytest -m sweep``.
"""

from __future__ import annotations

import json
import shutil

import pytest
from reference import REFERENCE, SEARCHES, assert_same, search, summary

from nas.cli import main

EXPECTED = json.loads((REFERENCE / "searches.json").read_text())


@pytest.mark.sweep
@pytest.mark.parametrize("name", [n for n in SEARCHES if n != "surrogate-halving"])
def test_every_algorithm_and_strategy_finds_what_the_old_code_found(name, synthetic_csv, tmp_path):
    assert_same(search(name, synthetic_csv, tmp_path / name), EXPECTED[name])


def test_a_run_directory_of_the_old_code_resumes_and_extends(synthetic_csv, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(REFERENCE / "run", run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(config | {"data": str(synthetic_csv)}))  # the same data, here
    assert main(["evolve", "-q", "--resume", str(run), "--generations", "3"]) == 0
    extended = summary(run)["evaluations"]
    old = EXPECTED["surrogate-halving"]["evaluations"]
    assert extended[: len(old)] == old  # the old generations, read back as they were
    assert [e["generation"] for e in extended[len(old) :]] == [3] * 8  # one more generation of 8


def test_the_comparison_allows_one_network_one_image_apart_and_nothing_more():
    import copy

    expected = EXPECTED["random-halving"]
    one = copy.deepcopy(expected)
    first = next(e for e in one["evaluations"] if e["val_acc"] is not None)
    first["val_acc"] += 1 / 70
    assert_same(one, expected)
    for change in ("two networks", "two images", "a genome"):
        bad = copy.deepcopy(one)
        if change == "two networks":
            other = next(e for e in bad["evaluations"][::-1] if e["genome"] != first["genome"] and e["val_acc"])
            other["val_acc"] += 1 / 70
        elif change == "two images":
            next(e for e in bad["evaluations"] if e["val_acc"] is not None)["val_acc"] += 1 / 70
        else:
            bad["evaluations"][-1]["genome"] += " | gap"
        with pytest.raises(AssertionError):
            assert_same(bad, expected)
