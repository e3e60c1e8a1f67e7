"""Rank fidelity: does a brief training order candidates the way a much longer training does?

For a fixed set of diverse genomes (the baselines plus random samples of the default space), each
fidelity of a grid trains every genome; so does a long reference training (``--long-epochs`` over the
whole Training split, about 10x the default budget). The table gives, per fidelity, its budget in
image-epochs, seconds per candidate on this device, and Kendall's tau and Spearman's rho between its
validation accuracies and the reference's. We want the cheapest fidelity with tau >= 0.6.

    python benchmarks/bench_fidelity.py --data $FER2013 --device auto
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from scipy import stats

from nas import data as fer
from nas.evaluate import FIDELITIES, EvalTask, Fidelity, train_candidate
from nas.space import load_baselines, load_space, sample


def parse_grid(text: str) -> list[Fidelity]:
    """``3000x3,6000x4b64`` -> fidelities (images x epochs [b batch]); preset names are accepted too."""
    out = []
    for item in filter(None, text.split(",")):
        if item in FIDELITIES:
            out.append(FIDELITIES[item])
            continue
        n, rest = item.lower().split("x")
        e, _, b = rest.partition("b")
        out.append(Fidelity(item, int(n), int(e), batch_size=int(b or 128)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="FER2013 CSV/folder/.npz (default: $FER2013)")
    ap.add_argument("--genomes", type=int, default=16, help="number of genomes (4 baselines + random)")
    ap.add_argument("--grid", default="2000x2,3000x3,6000x3,6000x4,12000x4", help="fidelities to rank")
    ap.add_argument("--long-epochs", type=int, default=10, help="epochs of the reference training")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/fidelity.csv")
    args = ap.parse_args(argv)

    path = fer.resolve_data_path(args.data)
    space = load_space("default")
    rng = random.Random(args.seed)
    genomes = [str(b.genome) for b in load_baselines().values()]
    while len(genomes) < args.genomes:
        g = str(sample(space, rng))
        if g not in genomes:
            genomes.append(g)
    long = Fidelity("long", None, args.long_epochs)
    threads = torch.get_num_threads()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():  # rows are appended as they finish, so an interrupted run picks up where it was
        done = set(pd.read_csv(out)[["fidelity", "genome"]].itertuples(index=False, name=None))
    for fid in [*parse_grid(args.grid), long]:
        task = EvalTask(path, fid, seed=args.seed, device=args.device, threads=threads)
        for i, g in enumerate(genomes):
            if (fid.name, g) in done:
                continue
            t0 = time.perf_counter()
            rec = train_candidate(g, task)
            row = {
                "fidelity": fid.name,
                "images": fid.train_images or "all",
                "epochs": fid.epochs,
                "batch": fid.batch_size,
                "genome": g,
                "val_acc": rec.get("val_acc"),
                "status": rec["status"],
                "seconds": round(time.perf_counter() - t0, 2),
            }
            pd.DataFrame([row]).to_csv(out, mode="a", header=not out.exists(), index=False)
            print(
                f"{fid.name:>10} {i + 1:2d}/{len(genomes)} acc={rec.get('val_acc', 0):.4f} "
                f"{row['seconds']:.1f}s {rec['status']} {rec.get('error', '')}",
                file=sys.stderr,
                flush=True,
            )
    print(table(pd.read_csv(out), args.device))
    return 0


def table(df: pd.DataFrame, device: str) -> str:
    """Markdown table: one row per fidelity, rank correlation with the ``long`` reference."""
    wide = df.pivot(index="genome", columns="fidelity", values="val_acc")
    lines = [
        f"| fidelity | images x epochs | s / candidate ({device}) | mean val acc | Kendall tau | Spearman rho |",
        "|---|---|---|---|---|---|",
    ]
    for name, group in df.groupby("fidelity", sort=False):
        tau = stats.kendalltau(wide[name], wide["long"]).statistic
        rho = stats.spearmanr(wide[name], wide["long"]).statistic
        first = group.iloc[0]
        budget = f"{first['images']} x {first['epochs']} (batch {first['batch']})"
        lines.append(
            f"| {name} | {budget} | {group['seconds'].mean():.1f} | {group['val_acc'].mean():.3f} "
            f"| {tau:.2f} | {rho:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
