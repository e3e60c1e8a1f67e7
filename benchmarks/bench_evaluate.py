"""What a generation's evaluation costs, side by side on the same networks, per evaluation configuration.

Each configuration evaluates the same networks from scratch (a fresh cache), as a search's generation
would: ``--jobs`` workers of ``cores / jobs`` threads, then the latency work. Configurations:

- ``old``: the default before 2026-11-24: scratch at 6,000 images x 4 epochs (the ``long`` preset),
  validation after every epoch, fp32, every network's latency measured end to end;
- ``scratch``: the ``--fidelity`` (a preset, default ``default``, or a spelled-out budget), validation at
  the end only, this machine's numeric rule (bf16 above its FLOPs threshold), the latency table (its units
  measured in a first pass, as a warm table would have them);
- ``halving``: as ``scratch``, with successive halving (``--rungs``, ``--eta``) over the batch.

Core-seconds: the wall time of the generation's evaluation times the cores it holds (training, idle
workers waiting for the last network, the latency work); training core-seconds: the workers' training
time alone. The speed-up is against ``old``, in core-seconds.

    python benchmarks/bench_evaluate.py --data $FER2013 --networks benchmarks/results/fidelity_cpu_raw/networks.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nas.deploy.latency import LatencyTable
from nas.evolve.evaluate import Evaluator
from nas.evolve.fidelity import Fidelity, get_fidelity
from nas.evolve.problem import Problem
from nas.evolve.strategies import Request, make_strategy
from nas.evolve.worker import EvalTask
from nas.genome.grammar import parse_genome
from nas.genome.space import load_space
from nas.rundir import Cache
from nas.training.numerics import machine_rule

OLD = Fidelity("default", train_images=6000, epochs=4, validate_every_epoch=True)  # before 2026-11-24


def evaluate(name: str, genomes: list[str], args: argparse.Namespace, threads: int) -> dict:
    old = name == "old"
    fidelity = OLD if old else get_fidelity(args.fidelity)
    bf16 = None if old else machine_rule(threads, "cpu")
    task = EvalTask(args.data, fidelity, seed=0, threads=threads, bf16_above_flops=bf16)
    tmp = Path(tempfile.mkdtemp())
    table = None if old else LatencyTable(tmp / "table.json")
    if table is not None:  # a warm table: its units measured beforehand, as after a few generations
        for g in genomes:
            table.predict(parse_genome(g))
    evaluator = Evaluator(task, Cache(tmp / "cache.jsonl"), args.jobs, state_dir=tmp / "states", latency_table=table)
    space = load_space("default")
    problem = Problem.create(space, "acc,params,latency", latency_fn=table.predict if table else None)
    options = {"rungs": args.rungs, "eta": args.eta} if name == "halving" else {}
    options = {k: v for k, v in options.items() if v is not None}
    strategy = make_strategy("halving" if name == "halving" else "scratch", evaluator, problem, **options)
    t0 = time.perf_counter()
    records = strategy.evaluate([Request(parse_genome(g)) for g in genomes])
    wall = time.perf_counter() - t0
    trained = [r for r in evaluator.cache.records.values() if r.get("train_seconds") is not None]
    return {
        "name": name,
        "wall": wall,
        "core": wall * args.jobs * threads,  # the machine, held for the generation
        "train_core": sum(r["train_seconds"] for r in trained) * threads,
        "epochs": float(np.mean([r.get("epochs") or 0 for r in records])),
        "bf16": sum(r.get("numerics") == "bf16" for r in records),
        "n": len(records),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("FER2013"))
    ap.add_argument("--networks", required=True, help="networks.json of bench_fidelity.py")
    ap.add_argument("--configs", default="old,scratch,halving")
    ap.add_argument("--fidelity", default="default", help="of scratch and halving (as evolve.py --fidelity)")
    ap.add_argument("--rungs", default=None, help="halving's (default: three quarters of the schedule, then all of it)")
    ap.add_argument("--eta", type=float, default=3.0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    args.rungs = [int(r) for r in args.rungs.split(",")] if args.rungs else None
    genomes = json.loads(Path(args.networks).read_text())["genomes"]
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    rows = []
    for name in args.configs.split(","):
        rows.append(evaluate(name, genomes, args, threads))
        print(rows[-1], file=sys.stderr, flush=True)
    base = next((r for r in rows if r["name"] == "old"), rows[0])
    lines = [
        f"{len(genomes)} networks ({args.networks}), {args.jobs} workers x {threads} thread(s); fidelity "
        f"{args.fidelity}; halving rungs {args.rungs or 'default'}, eta {args.eta:g}",
        "",
        "| configuration | wall s | core-s | training core-s | core-s / network | mean epochs | trained in bf16 "
        "| cheaper than old |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['wall']:.0f} | {r['core']:.0f} | {r['train_core']:.0f} | {r['core'] / r['n']:.1f} "
            f"| {r['epochs']:.2f} | {r['bf16']} of {r['n']} | {base['core'] / r['core']:.2f}x |"
        )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
