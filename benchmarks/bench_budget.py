"""Which FLOPs budget does the product's latency goal imply, and how much of the space does it keep?

The champion should run in at most ``--goal-ms`` (1 ms) in ONNX Runtime, batch 1, one thread. For uniform
samples of the search space (and the hand-made baselines), this measures FLOPs and latency (one latency
phase, all networks round-robin, as in a search) and prints, per candidate budget: the share of samples
within it, and among those the share, median and 90th percentile of latency against the goal. The
budget is the largest whose networks meet the goal (90th percentile within it): a search spends nothing
on networks a user would not deploy, and a brief training of a network within it is cheap.

Then the same per latency budget, predicted by the machine's latency table as a search applies it (the
default since 2026-12-05: 1 ms): the share of samples it keeps and the FLOPs they span.

    python benchmarks/bench_budget.py --samples 200
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from nas.deploy.latency import LatencyTable, machine_table_path, measure
from nas.genome.build import build, count_flops, count_params
from nas.genome.space import load_baselines, load_space, sample

BUDGETS = (5, 10, 20, 30, 40, 60, 100, 250)
LATENCY_BUDGETS = (0.25, 0.5, 1.0, 2.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="default")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--goal-ms", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/budget.csv", help="raw rows (git-ignored)")
    args = ap.parse_args(argv)

    space, rng = load_space(args.space), random.Random(args.seed)
    genomes = {f"sample{i}": sample(space, rng) for i in range(args.samples)}
    genomes |= {name: b.genome for name, b in load_baselines().items()}
    models = {name: build(g).eval() for name, g in genomes.items()}
    table = LatencyTable(machine_table_path())  # what a search predicts (units not in it are measured now)
    predicted = {name: table.predict(g) for name, g in genomes.items()}
    ms = measure(models)
    rows = pd.DataFrame(
        [
            {"name": n, "genome": str(genomes[n]), "mflops": count_flops(m) / 1e6, "params": count_params(m),
             "latency_ms": ms[n], "predicted_ms": predicted[n]}
            for n, m in models.items()
        ]
    )  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    rows.to_csv(args.out, index=False)
    samples = rows[rows["name"].str.startswith("sample")]
    lines = [
        f"{args.samples} uniform samples of the `{args.space}` space (seed {args.seed}); ONNX Runtime, batch 1, one "
        f"thread, one latency phase; goal {args.goal_ms:g} ms",
        "",
        f"| budget MFLOPs | samples within | of those <= {args.goal_ms:g} ms | median ms | p90 ms | max ms |",
        "|---|---|---|---|---|---|",
    ]
    for b in BUDGETS:
        within = samples[samples["mflops"] <= b]["latency_ms"]
        share = f"{(within <= args.goal_ms).mean():.0%}" if len(within) else "-"
        q = within.quantile([0.5, 0.9]).to_numpy() if len(within) else np.full(2, np.nan)
        lines.append(
            f"| {b} | {len(within) / len(samples):.0%} | {share} | {q[0]:.3f} | {q[1]:.3f} | {within.max():.3f} |"
        )
    lines += ["", *latency_budgets(samples)]
    rho = samples[["mflops", "latency_ms"]].corr(method="spearman").iloc[0, 1]
    lines += ["", f"Spearman rho between MFLOPs and latency over the samples: {rho:.2f}", ""]
    lines += ["| baseline | MFLOPs | params | latency ms | predicted ms |", "|---|---|---|---|---|"]
    for r in rows[~rows["name"].str.startswith("sample")].itertuples():
        lines.append(f"| {r.name} | {r.mflops:.1f} | {r.params:,} | {r.latency_ms:.3f} | {r.predicted_ms:.3f} |")
    print("\n".join(lines))
    return 0


def latency_budgets(samples: pd.DataFrame) -> list[str]:
    """Per latency budget (on the table's prediction, as a search applies it): the share of samples kept, the
    FLOPs they span, and how many of them the measurement puts over the budget."""
    lines = [
        "| budget ms (predicted) | samples within | MFLOPs min-median-max | measured max ms | measured over it |",
        "|---|---|---|---|---|",
    ]
    for budget in LATENCY_BUDGETS:
        kept = samples[samples["predicted_ms"] <= budget]
        if kept.empty:
            continue
        flops = kept["mflops"].quantile([0, 0.5, 1]).to_numpy()
        lines.append(
            f"| {budget:g} | {len(kept) / len(samples):.0%} | {flops[0]:.1f}-{flops[1]:.1f}-{flops[2]:.1f} "
            f"| {kept['latency_ms'].max():.3f} | {(kept['latency_ms'] > budget).sum()} |"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
