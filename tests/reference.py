"""The reference that the restructuring of the package is checked against: tiny synthetic searches whose
evaluations, front and champion must stay exactly what the code of 2026-12-05 (commit d7aefd7) gave.

``python tests/reference.py`` writes ``tests/fixtures/reference/`` anew: do that only for a change that is
meant to change what a search finds, and say so in its commit. The searches take their latency from the
fixed table ``tests/fixtures/latency_units.json`` (conftest installs it as the machine's table), so their
results depend on nothing measured.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REFERENCE = FIXTURES / "reference"
# every algorithm with a population on both evaluation strategies, besides random search
SEARCHES = {
    "surrogate-halving": ["--algorithm", "surrogate", "--strategy", "halving"],
    "nsga2-halving": ["--algorithm", "nsga2", "--strategy", "halving"],
    "random-halving": ["--algorithm", "random", "--strategy", "halving"],
    "nsga2-scratch": ["--algorithm", "nsga2", "--strategy", "scratch"],
    "surrogate-scratch": ["--algorithm", "surrogate", "--strategy", "scratch"],
}
# test_evolve's searches (its module fixture ``uninterrupted`` is the first of these)
ARGS = ["--space", "tiny", "--population", "8", "--generations", "2", "--fidelity", "cheap", "--jobs", "2"]
ARGS += ["--seed", "7"]
# what the code of 2026-12-05 did, before the accuracy floor and the seeded first generation (issue #34)
ARGS += ["--accuracy-margin", "-1", "--seed-networks", "none"]
COLUMNS = ["generation", "cached", "genome", "status", "val_acc", "val_f1", "params", "flops", "latency_ms", "epochs"]
# what a resume reads (the tables it writes anew from the checkpoint and the cache)
RUN_FILES = ("config.json", "cache.jsonl", "checkpoint.json", "champion.json", "latency_table.json")


# one image of the 70 in the synthetic validation split (conftest's 700 images, 10% for validation): what
# one network's training may differ by on another CPU (seen: one of random-halving's 24 evaluations on an AMD
# EPYC against the Intel machine the reference was written on, at the reference's own commit too)
ONE_IMAGE = 1 / 70
F1_SLACK = 0.05  # what one changed prediction moves the macro-F1 of 70 images over 7 classes by, at most


def search(name: str, data: Path, run_dir: Path) -> dict:
    """Run one reference search into ``run_dir``; its summary."""
    from nas.cli import main

    assert main(["evolve", "-q", "--data", str(data), "--run-dir", str(run_dir), *ARGS, *SEARCHES[name]]) == 0
    return summary(run_dir)


def summary(run_dir: Path) -> dict:
    """What a restructuring must not change: every evaluation, the front and the champion (timings aside)."""
    evaluations = pd.read_csv(run_dir / "evaluations.csv")[COLUMNS]
    return {
        "evaluations": json.loads(evaluations.to_json(orient="records", double_precision=15)),
        "front": sorted(pd.read_csv(run_dir / "pareto.csv")["genome"]),
        "champion": json.loads((run_dir / "champion.json").read_text())["genome"],
    }


def assert_same(found: dict, expected: dict) -> None:
    """``found`` is what the reference found, up to one network's last bits on another CPU: the same
    genomes, front and champion, every figure the same except one network's validation accuracy and F1 (in
    each row of it, a cached one too), by at most one image."""
    assert (found["front"], found["champion"]) == (expected["front"], expected["champion"])
    assert len(found["evaluations"]) == len(expected["evaluations"])
    differing = []
    for i, (a, b) in enumerate(zip(found["evaluations"], expected["evaluations"])):
        assert {k: v for k, v in a.items() if k not in ("val_acc", "val_f1")} == {
            k: v for k, v in b.items() if k not in ("val_acc", "val_f1")
        }, f"evaluation {i}"
        if (a["val_acc"], a["val_f1"]) != (b["val_acc"], b["val_f1"]):
            differing.append(i)
            assert abs(a["val_acc"] - b["val_acc"]) <= ONE_IMAGE + 1e-9, f"evaluation {i}: {a} against {b}"
            assert abs(a["val_f1"] - b["val_f1"]) <= F1_SLACK, f"evaluation {i}: {a} against {b}"
    networks = {found["evaluations"][i]["genome"] for i in differing}  # a cached row repeats its network's figures
    assert len(networks) <= 1, f"evaluations {differing} of {len(networks)} networks differ from the reference"


def main() -> None:
    import tempfile

    from nas import data

    work = Path(tempfile.mkdtemp(prefix="fer-nas-reference-"))
    csv = data.write_csv(work / "synthetic.csv", data.synthetic_splits(700, seed=0))
    results = {name: search(name, csv, work / name) for name in SEARCHES}
    REFERENCE.mkdir(parents=True, exist_ok=True)
    (REFERENCE / "searches.json").write_text(json.dumps(results, indent=1) + "\n")
    run = REFERENCE / "run"  # a finished run of the old code, which the new code must resume and extend
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir()
    for name in RUN_FILES:
        if (work / "surrogate-halving" / name).exists():  # a run's latency table only if it measured blocks
            shutil.copy(work / "surrogate-halving" / name, run / name)
    _keep_latency_units()
    print(f"wrote {REFERENCE}", file=sys.stderr)


def _keep_latency_units() -> None:
    """The fixed latency table, with whatever blocks these searches met that it lacked (measured now)."""
    from nas.deploy.latency import machine_table_path

    fixed = FIXTURES / "latency_units.json"
    entries = json.loads(fixed.read_text())["entries"] if fixed.exists() else {}
    entries |= json.loads(machine_table_path().read_text())["entries"]
    table = {"format": "fer-nas-latency/1", "entries": dict(sorted(entries.items()))}
    fixed.write_text(json.dumps(table, indent=0) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conftest import install_latency_table  # noqa: E402

    install_latency_table()
    main()
