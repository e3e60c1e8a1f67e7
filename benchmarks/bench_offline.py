"""Search algorithms compared offline: on every evaluation real searches cached, many seeds in minutes.

The table is every successful evaluation in the given run directories (same data, fidelity and evaluation
strategy; the record of the deepest rung where a network has several). A genome no run evaluated gets the
accuracy a predictor fitted on the table gives it (``nas.evolve.predictor``, the oracle), so an algorithm can go
where the runs did not. Each algorithm then searches this table with the runner, as it would search for
real (same problem, caps, population, generations), for every seed, and the table of hypervolume at equal
numbers of evaluations (mean and 90% interval over seeds) says which one finds better fronts. Objectives
are accuracy, parameters and FLOPs (FLOPs rank latency with Spearman rho 0.996 on this machine; predicted
latency would have to time the blocks of every genome the oracle answers for).

    python benchmarks/bench_offline.py runs/fer-30gen --algorithms nsga2,surrogate,aging,random --seeds 10
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from nas.config import read as read_config
from nas.evolve import objectives as objs
from nas.evolve.predictor import Predictor, features
from nas.evolve.problem import Problem
from nas.evolve.runner import Runner, SearchConfig
from nas.evolve.strategies import Request, Strategy
from nas.genome.grammar import parse_genome
from nas.genome.space import space_from_dict
from nas.rundir import Cache

OBJECTIVES = "acc,params,flops"


def load_table(run_dirs: list[Path]) -> tuple[dict[str, dict], dict]:
    """Genome key -> the deepest successful record over the runs; and the first run's configuration."""
    table: dict[str, dict] = {}
    for run in run_dirs:
        for r in Cache(run / "cache.jsonl").records.values():
            longer = r["key"] not in table or (r.get("epochs") or 0) > (table[r["key"]].get("epochs") or 0)
            if r.get("status") == "ok" and r.get("val_acc") is not None and longer:
                table[r["key"]] = r
    return table, read_config(run_dirs[0])


class Oracle(Strategy):
    """Records from the table, or the predictor's accuracy for genomes no run trained."""

    name = "oracle"

    def __init__(self, table: dict[str, dict], problem: Problem, predictor: Predictor, epochs: int) -> None:
        self.table, self.problem, self.predictor, self.epochs = table, problem, predictor, epochs
        self.cache, self.answered = Cache(), 0

    def evaluate(self, requests: list[Request], on_record=None) -> list[dict]:
        out = []
        for r in requests:
            key = f"{r.genome.key}|offline"
            if key not in self.cache:
                known = self.table.get(r.genome.key)
                if known is None:
                    self.answered += 1
                    acc = float(self.predictor.predict([features(r.genome, r.costs, self.epochs)])[0][0])
                    known = {"status": "ok", "val_acc": acc, "epochs": self.epochs, **r.costs}
                self.cache.put({**known, "key": r.genome.key, "genome": str(r.genome), "cache_key": key})
            out.append(self.cache.get(key))
        return out

    def reject(self, genome, reason, costs):
        key = f"{genome.key}|offline"
        self.cache.put({"key": genome.key, "genome": str(genome), "cache_key": key, "status": "failed",
                        "error": reason, **(costs or {})})  # fmt: skip
        return self.cache.get(key)

    def measure(self, records: list[dict]) -> list[dict]:
        return records


def search(
    algorithm: str, seed: int, table: dict, problem: Problem, predictor: Predictor, args
) -> tuple[list[float], float]:
    """Hypervolume after each evaluation request of one offline search, and the share of the networks it
    trained that no run had trained (answered by the predictor, the oracle's weak part)."""
    oracle = Oracle(table, problem, predictor, args.epochs)
    config = SearchConfig(args.generations, args.population, algorithm, seed, finalists=0)
    workdir = Path(tempfile.mkdtemp()) if algorithm == "optuna" else None  # Optuna keeps its study in a file
    state = Runner(problem, oracle, oracle.cache, config, workdir).run()
    records = [oracle.cache.get(r["cache_key"]) for r in state.rows]
    hv = [objs.hypervolume(records[: k + 1], problem.objectives) for k in range(len(records))]
    return hv, oracle.answered / max(1, len(oracle.cache.records))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run directories whose evaluations make the table")
    ap.add_argument("--algorithms", default="nsga2,surrogate,aging,random")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--generations", type=int, default=30)
    ap.add_argument("--population", type=int, default=16)
    ap.add_argument("--out", default="benchmarks/results/offline.csv", help="HV curves (git-ignored)")
    args = ap.parse_args(argv)
    table, config = load_table([Path(r) for r in args.runs])
    space = space_from_dict(dict(config.space), source=config.space_file)
    problem = Problem.create(space, OBJECTIVES, config.problem.max_mflops, config.problem.max_params)
    args.epochs = max(r.get("epochs") or 0 for r in table.values())
    rows = list(table.values())
    predictor = Predictor(0).fit(
        [features(parse_genome(r["genome"]), r, r.get("epochs") or args.epochs) for r in rows],
        [r["val_acc"] for r in rows],
    )
    curves, predicted = [], {}
    for algorithm in args.algorithms.split(","):
        for seed in range(args.seeds):
            hv, predicted[algorithm, seed] = search(algorithm, seed, table, problem, predictor, args)
            curves += [{"algorithm": algorithm, "seed": seed, "evaluations": k + 1, "hv": v} for k, v in enumerate(hv)]
            print(f"{algorithm} seed {seed}: HV {hv[-1]:.4f}", file=sys.stderr, flush=True)
    df = pd.DataFrame(curves)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    marks = sorted({args.population * g for g in (1, 4, 11, args.generations + 1) if g <= args.generations + 1})
    lines = [
        f"{len(table)} evaluated networks from {len(args.runs)} run(s); {args.seeds} seeds, population "
        f"{args.population}, {args.generations} generations; objectives {OBJECTIVES}; hypervolume in the "
        "`useful` box: mean (5th-95th percentile over seeds)",
        "",
        "| algorithm | " + " | ".join(f"HV at {m} evaluations" for m in marks) + " | predicted, not looked up |",
        "|---|" + "---|" * (len(marks) + 1),
    ]
    for algorithm, g in df.groupby("algorithm", sort=False):
        cells = []
        for m in marks:
            v = g[g["evaluations"] == m]["hv"]
            cells.append(f"{v.mean():.4f} ({np.percentile(v, 5):.4f}-{np.percentile(v, 95):.4f})")
        share = np.mean([v for (a, _), v in predicted.items() if a == algorithm])
        lines.append(f"| {algorithm} | " + " | ".join(cells) + f" | {share:.0%} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
