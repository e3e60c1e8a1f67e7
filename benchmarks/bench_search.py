"""Does the genetic search beat random search and Optuna's NSGA-II at an equal budget?

Runs ``nas.search`` with each algorithm and seed (same space, fidelity, population and number of
generations, so the same number of evaluation requests), then reports the hypervolume of the
(accuracy, parameters, latency) front against the number of networks trained and against the seconds
of training spent: mean and spread over seeds, as a markdown table, a CSV of the curves and one plot. The
hand-made baselines are evaluated at the same fidelity and time limit (without the FLOPs budget) and drawn on
the same axes, and each algorithm's champion is checked for dominating them.

Every run lives in ``<out>/<algorithm>-s<seed>``; an interrupted benchmark resumes its runs and skips
finished ones. ``--quick`` is a smoke run on synthetic data and the tiny space.

    python benchmarks/bench_search.py --data $FER2013 --generations 2 --population 8 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd

import nas
from nas import data as fer
from nas.evolve import objectives as objs
from nas.evolve.evaluate import Evaluator
from nas.evolve.fidelity import get_fidelity
from nas.evolve.worker import EvalTask
from nas.genome.space import load_baselines
from nas.rundir import Cache
from nas.training.report import save_figure

OBJECTIVES = objs.parse_objectives(objs.DEFAULT_OBJECTIVES)
COLORS = {
    "nsga2": "tab:blue",
    "random": "tab:gray",
    "optuna": "tab:orange",
    "surrogate": "tab:green",
    "aging": "tab:purple",
}


def finished(run_dir: Path, generations: int) -> bool:
    progress = run_dir / "progress.csv"
    return progress.exists() and pd.read_csv(progress)["gen"].max() >= generations


def run_search(out: Path, algorithm: str, seed: int, args: argparse.Namespace) -> Path:
    """One search, resumed if an earlier benchmark left it unfinished."""
    run_dir = out / f"{algorithm}-s{seed}"
    if finished(run_dir, args.generations):
        return run_dir
    if (run_dir / "config.json").exists():
        nas.resume(run_dir, args.generations)
    else:
        nas.search(
            args.data, args.space, generations=args.generations, population=args.population, algorithm=algorithm,
            seed=seed, fidelity=args.fidelity, max_mflops=args.max_mflops, jobs=args.jobs,
            time_limit=args.time_limit, run_dir=run_dir,
        )  # fmt: skip
    return run_dir


def trained_networks(run_dir: Path) -> pd.DataFrame:
    """The run's evaluations of new genomes, in the order the search asked (repeats are cache hits)."""
    evals = pd.read_csv(run_dir / "evaluations.csv")
    return evals[~evals["cached"]].drop_duplicates("key")


def curve(trained: pd.DataFrame) -> pd.DataFrame:
    """Hypervolume after each network, against the count and against the training seconds spent so far
    (summed over workers: per network, unlike generations' wall clock, whose steps are too coarse to
    compare runs of a few generations)."""
    records = trained.to_dict("records")
    return pd.DataFrame(
        {
            "evaluations": range(len(records) + 1),
            "train_seconds": [0.0, *trained["train_seconds"].fillna(0.0).cumsum()],
            "hypervolume": [objs.hypervolume(records[:k], OBJECTIVES) for k in range(len(records) + 1)],
        }
    )


def value_at(curve: pd.DataFrame, x: str, at: float) -> float:
    """The step curve's value at ``at`` (the last point not beyond it)."""
    before = curve[curve[x] <= at]
    return float(before["hypervolume"].iloc[-1]) if len(before) else 0.0


def evaluate_baselines(out: Path, args: argparse.Namespace) -> list[dict]:
    """The hand-made networks at the searches' fidelity and time limit; no FLOPs budget, so all four are tried."""
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    task = EvalTask(args.data, get_fidelity(args.fidelity), seed=0, threads=threads, time_limit=args.time_limit)
    evaluator = Evaluator(task, Cache(out / "baselines.jsonl"), jobs=args.jobs)
    try:
        baselines = load_baselines()
        records = evaluator.evaluate([str(b.genome) for b in baselines.values()])
    finally:
        evaluator.close()
    return [{"name": name, **r} for name, r in zip(baselines, records)]


def summarize(runs: dict[tuple[str, int], Path], baselines: list[dict], out: Path) -> str:
    rows, curve_rows = [], []
    for (algorithm, seed), run_dir in runs.items():
        trained = trained_networks(run_dir)
        by_eval = curve(trained)
        champion = json.loads((run_dir / "champion.json").read_text())
        rows.append(
            {
                "algorithm": algorithm,
                "seed": seed,
                "trained": int(by_eval["evaluations"].max()),
                "not_ok": int((trained["status"] != "ok").sum()),
                "wall_seconds": float(pd.read_csv(run_dir / "progress.csv")["seconds"].max()),
                "train_seconds": float(by_eval["train_seconds"].max()),
                "final_hv": float(by_eval["hypervolume"].iloc[-1]),
                "best_acc": float(pd.read_csv(run_dir / "pareto.csv")["val_acc"].max()),
                "by_eval": by_eval,
                "champion": champion,
                "run_dir": run_dir,
            }
        )
        curve_rows += [{"algorithm": algorithm, "seed": seed, **r} for r in by_eval.to_dict("records")]
    pd.DataFrame(curve_rows).to_csv(out / "search_curves.csv", index=False)
    equal_evals = min(r["trained"] for r in rows)
    equal_time = min(r["train_seconds"] for r in rows)
    for r in rows:
        r["hv_at_evals"] = value_at(r["by_eval"], "evaluations", equal_evals)
        r["hv_at_time"] = value_at(r["by_eval"], "train_seconds", equal_time)
    table = pd.DataFrame(rows)

    def spread(values: pd.Series) -> str:
        return f"{values.mean():.4f} ({values.min():.4f}-{values.max():.4f})"

    lines = [
        f"| algorithm | seeds | networks | of which failed | wall min | training min | HV at {equal_evals} networks "
        f"| HV at {equal_time / 60:.1f} training min | final HV | best val acc |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for algorithm, g in table.groupby("algorithm", sort=False):
        lines.append(
            f"| {algorithm} | {len(g)} | {g['trained'].mean():.0f} | {g['not_ok'].mean():.1f} | "
            f"{g['wall_seconds'].mean() / 60:.1f} | "
            f"{g['train_seconds'].mean() / 60:.1f} | "
            f"{spread(g['hv_at_evals'])} | {spread(g['hv_at_time'])} | {spread(g['final_hv'])} | "
            f"{spread(g['best_acc'])} |"
        )
    lines += [
        "",
        "mean (min-max) over seeds; HV: share of the normalised objective box (nas/evolve/objectives.py); training min:"
        " seconds of training summed over the networks (and so over workers), the equal-time axis; networks:"
        " new genomes evaluated, of which failed: over the FLOPs budget (rejected untrained) or over the time limit",
        "",
    ]
    lines += per_seed_table(table) + [""]
    lines += dominance_table(rows, baselines)
    plot(rows, baselines, out)
    return "\n".join(lines)


def per_seed_table(table: pd.DataFrame) -> list[str]:
    """Paired by seed (the same generation 0): each algorithm's HV at the seed's equal training time (the
    least any of its runs spent) and at its equal number of networks, and its ratio to random search's."""
    lines = [
        "| seed | algorithm | training min | HV at the seed's equal training time | vs random | "
        "HV at the seed's equal networks | vs random |",
        "|---|---|---|---|---|---|---|",
    ]
    for seed, g in table.groupby("seed"):
        time, evals = g["train_seconds"].min(), g["trained"].min()
        hv = {
            r["algorithm"]: (
                value_at(r["by_eval"], "train_seconds", time),
                value_at(r["by_eval"], "evaluations", evals),
            )
            for _, r in g.iterrows()
        }
        base = hv.get("random")
        for _, r in g.iterrows():
            mine = hv[r["algorithm"]]
            ratio = [f"{m / b:.2f}x" if base and b else "-" for m, b in zip(mine, base or (0, 0))]
            lines.append(
                f"| {seed} | {r['algorithm']} | {r['train_seconds'] / 60:.1f} | {mine[0]:.4f} (at {time / 60:.1f} min) "
                f"| {ratio[0]} | {mine[1]:.4f} (at {evals}) | {ratio[1]} |"
            )
    return lines


def dominance_table(rows: list[dict], baselines: list[dict]) -> list[str]:
    """Which champions dominate which baselines in (accuracy, parameters, latency), at the same fidelity."""
    lines = [
        "| baseline | val acc | params | latency ms | dominated by the champion of |",
        "|---|---|---|---|---|",
    ]
    for b in baselines:
        if b["status"] != "ok":
            lines.append(f"| {b['name']} | {b['status']}: {b['error']} | | | |")
            continue
        by = [
            f"{r['algorithm']}-s{r['seed']}"
            for r in rows
            if objs.dominates(objs.values(r["champion"], OBJECTIVES), objs.values(b, OBJECTIVES), OBJECTIVES)
        ]
        lines.append(
            f"| {b['name']} | {b['val_acc']:.4f} | {b['params']:,} | {b['latency_ms']:.3f} "
            f"| {', '.join(by) or 'none'} |"
        )
    return lines


def plot(rows: list[dict], baselines: list[dict], out: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    for ax, x, label in (
        (axes[0], "evaluations", "networks evaluated"),
        (axes[1], "train_seconds", "training seconds"),
    ):
        for algorithm in dict.fromkeys(r["algorithm"] for r in rows):
            for i, r in enumerate(x for x in rows if x["algorithm"] == algorithm):
                c = r["by_eval"]
                ax.step(
                    c[x],
                    c["hypervolume"],
                    where="post",
                    color=COLORS.get(algorithm),
                    alpha=0.8,
                    label=algorithm if i == 0 else None,
                )
        ax.set(xlabel=label, ylabel="hypervolume", title=f"hypervolume against {label}")
        ax.legend()
    ax = axes[2]
    for algorithm in dict.fromkeys(r["algorithm"] for r in rows):
        fronts = pd.concat([pd.read_csv(r["run_dir"] / "pareto.csv") for r in rows if r["algorithm"] == algorithm])
        ax.scatter(fronts["params"], fronts["val_acc"], s=18, color=COLORS.get(algorithm), label=f"{algorithm} fronts")
    for b in baselines:
        if b["status"] == "ok":
            ax.scatter(b["params"], b["val_acc"], marker="*", s=160, color="tab:red")
            ax.annotate(b["name"], (b["params"], b["val_acc"]), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.set(
        xscale="log",
        xlabel="parameters",
        ylabel="validation accuracy (brief training)",
        title="fronts of every seed, baselines (stars)",
    )
    ax.legend()
    return save_figure(fig, out / "search.png")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("FER2013"), help="FER2013 (default $FER2013)")
    ap.add_argument("--algorithms", default="nsga2,random,optuna")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--generations", type=int, default=2)
    ap.add_argument("--population", type=int, default=8)
    ap.add_argument("--fidelity", default="default")
    ap.add_argument("--space", default="default")
    ap.add_argument("--max-mflops", type=float, default=None, help="FLOPs budget in place of the space's")
    ap.add_argument("--time-limit", type=float, default=900, help="seconds of training per network, baselines too")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default="runs/bench-search")
    ap.add_argument("--quick", action="store_true", help="smoke run: synthetic data, tiny space, 2 seeds")
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: report the finished runs in --out (and the baselines already evaluated)",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.data = str(fer.write_csv(Path(tempfile.mkdtemp()) / "synthetic.csv", fer.synthetic_splits(700, seed=0)))
        args.space, args.fidelity, args.seeds, args.generations, args.population = "tiny", "cheap", "0,1", 1, 4
    if not args.data:
        ap.error("give --data or set $FER2013 (or use --quick)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = [(a, int(s)) for s in args.seeds.split(",") for a in args.algorithms.split(",")]
    if args.report_only:
        runs = {(a, s): out / f"{a}-s{s}" for a, s in wanted if finished(out / f"{a}-s{s}", args.generations)}
        cached = Cache(out / "baselines.jsonl").records.values()
        names = {str(b.genome): name for name, b in load_baselines().items()}
        # a baseline still training, or trained but not yet timed, is left out
        done = [r for r in cached if r.get("genome") in names and (r["status"] != "ok" or r.get("latency_ms"))]
        baselines = [{"name": names[r["genome"]], **r} for r in done]
    else:
        runs = {(a, s): run_search(out, a, s, args) for a, s in wanted}
        baselines = evaluate_baselines(out, args)
    text = summarize(runs, baselines, out)
    header = (
        f"{len(runs)} runs: algorithms {args.algorithms}, seeds {args.seeds}, population {args.population}, "
        f"{args.generations} generations after the first, fidelity {args.fidelity}, space {args.space}, "
        f"FLOPs budget {args.max_mflops or 'of the space'} MFLOPs, time limit {args.time_limit:g} s, "
        f"{args.jobs} workers; data {args.data}"
    )
    (out / "search.md").write_text(header + "\n\n" + text + "\n")
    print(header + "\n\n" + text)
    print(f"\nwrote {out}/search.md, search.png, search_curves.csv", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
