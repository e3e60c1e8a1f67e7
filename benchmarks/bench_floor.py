"""The accuracy floor's default: from which rung does validation accuracy tell a network that learns nothing
from a slow learner, and by what margin over the majority-class rate?

Reads the rank-fidelity benchmark's committed results (``benchmarks/results/fidelity_cpu_raw/``: 24
networks, each trained 30 epochs for reference and scored by cheap signals), so it trains nothing. For
each evaluation point (today's ``default`` halving, 6,000 images x 4 epochs one-cycle, at its last rung; the
``full`` schedule after 1, 2 and 3 epochs with its cool-down branch) and each margin, it counts the networks
the floor would declare infeasible, and among them the slow learners it would wrongly cut: networks whose
30-epoch accuracy is useful (above ``--useful``).

    python benchmarks/bench_floor.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

RAW = Path(__file__).resolve().parent / "results" / "fidelity_cpu_raw"
MAJORITY = 895 / 3589  # PublicTest's majority class (happy): nas.evolve.objectives


def points(raw: Path) -> dict[str, dict[str, float]]:
    """Each evaluation point's accuracy per network (genome -> accuracy)."""
    cheap = pd.read_csv(raw / "cheap.csv")
    out: dict[str, dict[str, float]] = {"6000x4 (today's default), epoch 4": {}}
    for row in cheap[cheap.signal == "6000x4"].itertuples():
        out["6000x4 (today's default), epoch 4"][row.genome] = row.value
    for row in cheap[cheap.signal == "full@9+auto"].itertuples():
        for epoch, entry in enumerate(json.loads(row.curve)[:3], 1):
            out.setdefault(f"full, epoch {epoch} + cool-down", {})[row.genome] = entry["branch_acc"]
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", type=Path, default=RAW)
    p.add_argument("--margins", default="0.01,0.02,0.03,0.05")
    p.add_argument("--useful", type=float, default=0.30, help="30-epoch accuracy of a network worth keeping")
    a = p.parse_args(argv)
    reference = {r["genome"]: r["val_acc"] for r in map(json.loads, (a.raw / "reference.jsonl").open())}
    margins = [float(m) for m in a.margins.split(",")]
    print(f"{len(reference)} networks; majority-class rate {MAJORITY:.3f}; useful: > {a.useful:.2f} after 30 epochs")
    columns = " | ".join(f"margin {m:g}: cut (useful)" for m in margins)
    print(f"\n| evaluated at | lowest useful network | {columns} |")
    print("|---|---|" + "---|" * len(margins))
    for name, accuracy in points(a.raw).items():
        useful = [acc for g, acc in accuracy.items() if reference[g] > a.useful]
        cells = []
        for m in margins:
            cut = [g for g, acc in accuracy.items() if acc <= MAJORITY + m]
            cells.append(f"{len(cut)} ({sum(reference[g] > a.useful for g in cut)})")
        print(f"| {name} | {min(useful):.3f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
