"""Which teachers: fully trained networks alone and averaged (the ensemble a student is distilled from).

Each ``model.pt`` of ``--models`` (files or folders holding one, comma-separated) is scored ten-crop on
PrivateTest alone, then their probabilities averaged (``nas.training.distill.ensemble_accuracy``, what
``train.py --teacher`` teaches from, and what ``nas distill`` reports). Reported only: PrivateTest chooses
nothing.

    python benchmarks/bench_teachers.py --data $FER2013 \\
        --models runs/bench-wsd/cnn4-default-0,runs/bench-wsd/cnn4-default-1 --out benchmarks/results/teachers.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nas import data as fer
from nas.training.distill import ensemble_accuracy


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="FER2013 CSV (PrivateTest is reported, never used to choose)")
    p.add_argument("--models", required=True, help="model.pt files or folders, comma-separated")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="also write the table here (markdown)")
    args = p.parse_args(argv)
    paths = [m for m in args.models.split(",") if m]
    test = fer.load(fer.resolve_data_path(args.data), ("test",))["test"]
    scores = ensemble_accuracy(paths, test, args.device)
    lines = ["| network | PrivateTest acc (10 crops) |", "|---|---|"]
    lines += [f"| `{path}` | {acc:.4f} |" for path, acc in zip(paths, scores["per_member"])]
    lines += [f"| the {len(paths)} averaged | **{scores['acc']:.4f}** (macro-F1 {scores['f1']:.4f}) |"]
    text = f"{len(test)} PrivateTest images; data {args.data}\n\n" + "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
