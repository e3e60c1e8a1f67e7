"""When does a training's order become the full training's? Read from full trainings already on record.

Each folder of ``--trainings`` holds one full training (``history.csv``: PublicTest accuracy and training
loss after every epoch of a warmup-stable-decay schedule; ``report.json``: its ten-crop PrivateTest
accuracy at the end). Networks are named by the folder's label up to its first ``-`` (``cnn4-...-0``: cnn4).
For each epoch of ``--epochs`` the table gives every network's mean PublicTest accuracy there, and how well
that epoch's accuracy orders the trainings of different networks as their final test accuracy does:
Kendall's tau, and the share of cross-network pairs ordered the same way. A rung of the search that stops
at epoch ``e`` of the same schedule (before its cool-down) sees what column ``e`` shows. Reads files only.

    python benchmarks/bench_curves.py --out benchmarks/results/curves.md
"""

from __future__ import annotations

import argparse
import glob
import itertools
import json
import sys
from pathlib import Path

import pandas as pd
from scipy.stats import kendalltau

RESULTS = Path(__file__).parent / "results"
# the 100-epoch wsd trainings of the headline, untaught (headline.md)
DEFAULT = ["headline_raw/*-default_schedulerwsd-[0-9]", "schedule_cpu_raw/*-default_schedulerwsd-[0-9]"]


def read(folders: list[Path]) -> pd.DataFrame:
    """One row a training: network, folder, PublicTest accuracy and training loss by epoch, final test."""
    rows = []
    for folder in folders:
        history = pd.read_csv(folder / "history.csv").set_index("epoch")
        test = json.loads((folder / "report.json").read_text())["ten_crop"]["acc"]
        rows.append({"network": folder.name.split("-")[0], "folder": folder.name, "test": test,
                     "val": history["val_acc"], "loss": history["train_loss"]})  # fmt: skip
    return pd.DataFrame(rows)


def agreement(runs: pd.DataFrame, epoch: int) -> tuple[float, float]:
    """Kendall's tau between the accuracy at ``epoch`` and the final test accuracy, over all trainings, and
    the share of pairs of trainings of different networks that the epoch orders as the test does."""
    val = [v.get(epoch, float("nan")) for v in runs["val"]]
    tau = kendalltau(val, runs["test"]).statistic
    pairs = [(i, j) for i, j in itertools.combinations(range(len(runs)), 2)
             if runs["network"][i] != runs["network"][j]]  # fmt: skip
    same = [(val[i] - val[j]) * (runs["test"][i] - runs["test"][j]) > 0 for i, j in pairs]
    return tau, sum(same) / max(len(same), 1)


def table(runs: pd.DataFrame, epochs: list[int]) -> str:
    """Networks as columns (most accurate in the end first), epochs as rows, the agreement at each."""
    names = runs.groupby("network")["test"].mean().sort_values(ascending=False).index
    head = ["epoch", *[f"{n} ({(runs.network == n).sum()})" for n in names], "Kendall tau", "pairs in order"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in epochs:
        means = [runs[runs.network == n]["val"].map(lambda v, e=e: v.get(e)).mean() for n in names]
        tau, share = agreement(runs, e)
        lines.append(f"| {e} | " + " | ".join(f"{m:.3f}" for m in means) + f" | {tau:.2f} | {share:.2f} |")
    tests = [f"{runs[runs.network == n]['test'].mean():.3f}" for n in names]
    lines.append("| final test (10 crops) | " + " | ".join(tests) + " | | |")
    loss = [f"{runs[runs.network == n]['loss'].map(lambda v: v.iloc[-1]).mean():.2f}" for n in names]
    lines.append("| training loss at the end | " + " | ".join(loss) + " | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trainings", nargs="*", default=None,
                   help="folders (globs) of full trainings; default: the headline's untaught ones")  # fmt: skip
    p.add_argument("--epochs", default="1,2,5,10,20,30,40,50,60,70,80,90,100", help="epochs to compare at")
    p.add_argument("--out", default=None, help="also write the table here (markdown)")
    args = p.parse_args(argv)
    patterns = args.trainings or [str(RESULTS / g) for g in DEFAULT]
    folders = sorted({Path(f) for g in patterns for f in glob.glob(g) if Path(f).is_dir()})
    if len({f.name.split("-")[0] for f in folders}) < 2:
        print(f"bench_curves: need full trainings of two networks at least, found {len(folders)} folders")
        return 2
    runs = read(folders)
    epochs = [int(e) for e in args.epochs.split(",")]
    text = f"{len(runs)} trainings: {', '.join(runs['folder'])}\n\n" + table(runs, epochs)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
