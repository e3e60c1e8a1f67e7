"""Candidate evaluations per CPU-hour at each fidelity preset, and the training loop's images/s.

Every preset evaluates the same genomes (the baselines within the space's budget, then random samples)
with ``--jobs`` workers of ``cores / jobs`` threads each, no cache. Real FER2013 when --data or $FER2013
is given, else synthetic data.

    python benchmarks/bench_evaluate.py --data $FER2013 [--presets cheap,default] [--genomes 4]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

from nas import data as fer
from nas.build import build, count_flops
from nas.evaluate import EvalTask, Evaluator, get_fidelity
from nas.space import load_baselines, load_space, sample


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("FER2013", "synthetic:4000"))
    ap.add_argument("--presets", default="cheap,default,rich")
    ap.add_argument("--genomes", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    space = load_space("default")
    budget = space.max_mflops * 1e6 if space.max_mflops else float("inf")
    within = [b for b in load_baselines().values() if count_flops(build(b.genome)) <= budget]
    genomes = [str(b.genome) for b in within][:2]  # over-budget ones would fail untrained and skew the timing
    rng = random.Random(args.seed)
    while len(genomes) < args.genomes:
        genomes.append(str(sample(space, rng)))
    n_available = len(fer.load(args.data)["train"])
    cores = os.cpu_count() or 1
    threads = max(1, cores // args.jobs)
    lines = [
        f"{len(genomes)} genomes, {args.jobs} worker(s) x {threads} thread(s) on {cores} cores, data {args.data}",
        "",
        "| preset | images x epochs | wall s | s / candidate (median) | evaluations / CPU-hour "
        "| train images/s per worker |",
        "|---|---|---|---|---|---|",
    ]
    for name in args.presets.split(","):
        fid = get_fidelity(name)
        task = EvalTask(args.data, fid, seed=args.seed, threads=threads)
        ev = Evaluator(task, jobs=args.jobs)
        t0 = time.perf_counter()
        records = ev.evaluate(genomes)
        wall = time.perf_counter() - t0
        ok = [r for r in records if r["status"] == "ok"]
        secs = sorted(r["train_seconds"] for r in ok)
        n_train = min(fid.train_images or n_available, n_available)
        ips = sum(n_train * fid.epochs for _ in ok) / max(sum(secs), 1e-9)
        per_cpu_hour = len(ok) / (wall * min(cores, args.jobs * threads) / 3600)
        lines.append(
            f"| {name} | {n_train} x {fid.epochs} | {wall:.0f} | {secs[len(secs) // 2]:.0f} | "
            f"{per_cpu_hour:.1f} | {ips:.0f} |"
        )
        print(lines[-1], file=sys.stderr, flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
