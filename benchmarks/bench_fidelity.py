"""Rank fidelity: how well does each cheap evaluation order networks the way a long training does?

A fixed set of networks within the FLOPs budget (the baselines that fit, generation 0's champion of the
README's search, seeded uniform samples of the space) is trained once with a long reference recipe
(``--reference-epochs`` over all of Training, validated on all of PublicTest after every epoch): the truth.
Each cheap signal of ``--grid`` (a fidelity preset such as ``default``, or ``IMAGESxEPOCHS[bBATCH]``) is
computed on the same networks. The table gives, per signal, Kendall's tau with a bootstrap 90% interval and
Spearman's rho against the reference's best validation accuracy, and the core-seconds per network.

Resumable over several sittings: the list of networks is frozen in ``<out>/networks.json`` on the first
run, reference trainings checkpoint every epoch (``<out>/states/``), and every finished result is appended
at once (``reference.jsonl``, ``cheap.csv``); rerun the same command to continue. Workers train one network
each on ``cores / jobs`` threads.

    python benchmarks/bench_fidelity.py --data $FER2013 --out runs/bench-fidelity --networks 24 \\
        --max-mflops 60 --reference-epochs 30 --jobs 2 --grid default
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import torch
from scipy import stats

from nas import data as fer
from nas.build import build, count_flops
from nas.evaluate import FIDELITIES, EvalTask, Fidelity, train_candidate
from nas.genome import parse_genome
from nas.space import load_baselines, load_space, sample
from nas.training import train

# generation 0's champion of the README's search (fer-default-s0), trained fully there
GEN0_CHAMPION = (
    "conv_k5_c64_s1_relu | ir_k3_e1_c24_s1_r3 | conv_k5_c8_s1_relu6 | pool_avg | ir_k3_e4_c24_s2_r1_se | "
    "ir_k3_e4_c48_s2_r1 | ir_k3_e5_c256_s1_r1_se | pool_avg | gap"
)


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


def networks(out: Path, n: int, max_mflops: float, seed: int) -> list[str]:
    """The benchmark's networks, chosen once and frozen in ``networks.json``."""
    path = out / "networks.json"
    if path.exists():
        return json.loads(path.read_text())["genomes"]
    budget = max_mflops * 1e6

    def fits(genome) -> bool:
        return count_flops(build(genome)) <= budget

    chosen = [str(b.genome) for b in load_baselines().values() if fits(b.genome)]
    chosen += [GEN0_CHAMPION] if fits(parse_genome(GEN0_CHAMPION)) else []
    space, rng, keys = load_space("default"), random.Random(seed), {parse_genome(g).key for g in chosen}
    while len(chosen) < n:
        g = sample(space, rng)
        if g.key not in keys and fits(g):
            chosen.append(str(g))
            keys.add(g.key)
    path.write_text(json.dumps({"max_mflops": max_mflops, "seed": seed, "genomes": chosen}, indent=2) + "\n")
    return chosen


def reference(genome: str, data: str, epochs: int, threads: int, state_dir: Path, seed: int) -> dict:
    """One long training, checkpointed after every epoch (a killed worker's network resumes where it was)."""
    torch.set_num_threads(threads)
    dataset = fer.load(data, ("train", "val"))
    g = parse_genome(genome)
    torch.manual_seed(seed)
    model = build(g)
    cfg = Fidelity("reference", None, epochs, validate_every_epoch=True).train_config(seed)  # the whole curve
    state_dir.mkdir(parents=True, exist_ok=True)
    result = train(model, dataset["train"], dataset["val"], cfg, "cpu", checkpoint=state_dir / f"{g.key}.pt")
    return {
        "genome": genome,
        "val_acc": result.best_acc,
        "val_f1": result.best_f1,
        "best_epoch": result.best_epoch + 1,
        "epochs": result.epochs_run,
        "core_seconds": round(result.seconds * threads, 1),
        "threads": threads,
        "history": result.history,
    }


def cheap(genome: str, data: str, fid: Fidelity, threads: int, seed: int) -> dict:
    rec = train_candidate(genome, EvalTask(data, fid, seed=seed, threads=threads))
    curve = rec.get("curve") or []
    return {
        "signal": fid.name,
        "genome": genome,
        "value": rec.get("val_acc"),
        "status": rec["status"],
        "core_seconds": round(rec["train_seconds"] * threads, 1),
        "train_loss_sum": sum(r["train_loss"] for r in curve) if curve else None,
    }


def run_all(calls: list, jobs: int, on_result) -> None:
    """Each call in a worker of its own; results handed over as they finish."""
    if not calls:
        return
    parallel = joblib.Parallel(n_jobs=jobs, return_as="generator_unordered")
    for result in parallel(joblib.delayed(f)(*a) for f, *a in calls):
        on_result(result)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def append_jsonl(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="FER2013 CSV/folder/.npz (default: $FER2013)")
    ap.add_argument("--out", default="runs/bench-fidelity")
    ap.add_argument("--networks", type=int, default=24)
    ap.add_argument("--max-mflops", type=float, default=60)
    ap.add_argument("--reference-epochs", type=int, default=30)
    ap.add_argument("--grid", default="default", help="cheap signals to rank (fidelities), comma-separated")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--table-only", action="store_true", help="print the table of what is done, train nothing")
    args = ap.parse_args(argv)

    data = fer.resolve_data_path(args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    genomes = networks(out, args.networks, args.max_mflops, args.seed)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    ref_path, cheap_path = out / "reference.jsonl", out / "cheap.csv"
    if not args.table_only:
        done = {r["genome"] for r in read_jsonl(ref_path)}
        todo = sorted((g for g in genomes if g not in done), key=lambda g: -count_flops(build(parse_genome(g))))
        calls = [(reference, g, data, args.reference_epochs, threads, out / "states", args.seed) for g in todo]

        def got_reference(row: dict) -> None:
            append_jsonl(ref_path, row)
            print(f"reference {row['val_acc']:.4f} in {row['core_seconds'] / 60:.0f} core-min: {row['genome']}",
                  file=sys.stderr, flush=True)  # fmt: skip

        run_all(calls, args.jobs, got_reference)
        finished = set()
        if cheap_path.exists():
            finished = set(map(tuple, pd.read_csv(cheap_path)[["signal", "genome"]].to_numpy()))
        calls = [(cheap, g, data, f, threads, args.seed) for f in parse_grid(args.grid) for g in genomes
                 if (f.name, g) not in finished]  # fmt: skip

        def got_cheap(row: dict) -> None:
            pd.DataFrame([row]).to_csv(cheap_path, mode="a", header=not cheap_path.exists(), index=False)

        run_all(calls, args.jobs, got_cheap)
    print(table(out, genomes, args))
    return 0


def bootstrap_tau(x: np.ndarray, y: np.ndarray, rounds: int = 2000, seed: int = 0) -> tuple[float, float]:
    """90% interval of Kendall's tau over networks resampled with replacement."""
    rng = np.random.default_rng(seed)
    taus = []
    for _ in range(rounds):
        i = rng.integers(0, len(x), len(x))
        if len(set(x[i])) > 1 and len(set(y[i])) > 1:
            taus.append(stats.kendalltau(x[i], y[i]).statistic)
    return float(np.percentile(taus, 5)), float(np.percentile(taus, 95))


def table(out: Path, genomes: list[str], args: argparse.Namespace) -> str:
    ref_path, cheap_path = out / "reference.jsonl", out / "cheap.csv"
    refs = pd.DataFrame(read_jsonl(ref_path)) if ref_path.exists() else None
    lines = [
        f"{len(genomes)} networks within {args.max_mflops:g} MFLOPs; reference: {args.reference_epochs} epochs on all "
        f"of Training, best validation accuracy on all of PublicTest; "
        f"{0 if refs is None else len(refs)} references done",
        "",
    ]
    if refs is None or not cheap_path.exists():
        return "\n".join(lines)
    truth = refs.set_index("genome")["val_acc"]
    lines += [
        f"reference: mean val acc {truth.mean():.3f}, {refs['core_seconds'].mean() / 60:.0f} core-min per network",
        "",
        "| signal | networks | core-s / network | mean value | Kendall tau (90% interval) | Spearman rho |",
        "|---|---|---|---|---|---|",
    ]
    signals = pd.read_csv(cheap_path)
    for name, group in signals.groupby("signal", sort=False):
        both = group.set_index("genome")["value"].dropna().to_frame("x").join(truth.rename("y"), how="inner")
        if len(both) < 3:
            continue
        x, y = both["x"].to_numpy(), both["y"].to_numpy()
        tau, rho = stats.kendalltau(x, y).statistic, stats.spearmanr(x, y).statistic
        lo, hi = bootstrap_tau(x, y)
        lines.append(
            f"| {name} | {len(both)} | {group['core_seconds'].median():.0f} | {group['value'].mean():.3f} "
            f"| {tau:.2f} ({lo:.2f} to {hi:.2f}) | {rho:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
