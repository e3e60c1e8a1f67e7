"""Rank fidelity: how well does each cheap evaluation order networks the way a long training does?

A fixed set of networks within the FLOPs budget (the baselines that fit, generation 0's champion of the
README's search, seeded uniform samples of the space) is trained once with a long reference recipe
(``--reference-epochs`` over all of Training, validated on all of PublicTest after every epoch): the truth.
Each cheap signal of ``--grid`` (a fidelity preset such as ``default``, or a budget spelled out as
``evolve.py --fidelity`` takes it, ``IMAGESxEPOCHS[bBATCH][wWIDTH][lrLR]``) is
computed on the same networks. The table gives, per signal, Kendall's tau with a bootstrap 90% interval and
Spearman's rho against the reference's best validation accuracy, and the core-seconds per network;
``--compare SIGNAL`` adds each signal's tau minus that one's, with a paired bootstrap interval (is a
cheaper signal really worse than the default?).

Resumable over several sittings, and over fresh checkouts: the list of networks is frozen in
``<out>/networks.json`` on the first run and every finished result is appended at once
(``<out>/reference.jsonl``, ``<out>/cheap.csv``); these small files are committed (the default ``--out``
lies under ``benchmarks/results/``), so a new checkout continues where the last sitting stopped. Reference
trainings checkpoint every epoch into ``--states`` (git-ignored ``runs/``: a killed worker's network resumes
on this machine; on a new one it starts over). Rerun the same command to continue. Workers train one
network each on ``cores / jobs`` threads.

    python benchmarks/bench_fidelity.py --data $FER2013 --networks 24 \\
        --max-mflops 60 --reference-epochs 30 --jobs 2 --grid default
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import torch
from scipy import stats

from nas import data as fer
from nas.evolve.fidelity import Fidelity, get_fidelity
from nas.evolve.worker import EvalTask, train_candidate
from nas.genome.build import build, count_flops
from nas.genome.grammar import parse_genome
from nas.genome.space import load_baselines, load_space, sample
from nas.training.loop import train
from nas.training.numerics import fastest, machine_rule

# generation 0's champion of the README's search (fer-default-s0), trained fully there
GEN0_CHAMPION = (
    "conv_k5_c64_s1_relu | ir_k3_e1_c24_s1_r3 | conv_k5_c8_s1_relu6 | pool_avg | ir_k3_e4_c24_s2_r1_se | "
    "ir_k3_e4_c48_s2_r1 | ir_k3_e5_c256_s1_r1_se | pool_avg | gap"
)


def parse_grid(text: str) -> list[tuple[str, Fidelity, str, int | None]]:
    """``default,3000x3,6000x4b64+bf16,6000x2w0.5,3000x2lr0.01,full@9+auto`` -> (name, fidelity, numerics,
    until): images x epochs [b batch] [w width of the proxy network] [lr peak learning rate], or a preset
    name; ``@K`` trains only the first K epochs of its schedule (a prefix of the ``full`` training, cut
    where a rung would be); ``+bf16`` trains every network in bf16, ``+auto`` as a search does (bf16 above
    this machine's calibrated FLOPs), otherwise fp32. Every epoch is validated, for the signals read off
    the curve."""
    out = []
    for item in filter(None, text.split(",")):
        if item == "proxies":
            continue  # zero-cost proxies: see proxy_rows
        spec, _, mode = item.partition("+")
        spec, _, until = spec.partition("@")
        fid = get_fidelity(spec)
        out.append((item, replace(fid, validate_every_epoch=True), mode or "fp32", int(until) if until else None))
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
    """One long training, checkpointed after every epoch (a killed worker's network resumes where it was).
    It trains as ``train.py`` trains a champion, in this machine's faster numeric mode (bf16 autocast above
    the calibrated FLOPs); a checkpoint started in another mode (the first references were all fp32) is
    finished in its own."""
    torch.set_num_threads(threads)
    dataset = fer.load(data, ("train", "val"))
    g = parse_genome(genome)
    torch.manual_seed(seed)
    model = build(g)
    cfg = Fidelity("reference", None, epochs, validate_every_epoch=True).train_config(seed)  # the whole curve
    checkpoint = state_dir / f"{g.key}.pt"
    if checkpoint.exists():
        cfg = cfg.replace(cpu_bf16=torch.load(checkpoint, weights_only=True)["config"].get("cpu_bf16", False))
    else:
        cfg = fastest(cfg, model, "cpu")
    state_dir.mkdir(parents=True, exist_ok=True)
    result = train(model, dataset["train"], dataset["val"], cfg, "cpu", checkpoint=checkpoint)
    return {
        "genome": genome,
        "numerics": "bf16" if cfg.cpu_bf16 else "fp32",
        "val_acc": result.best_acc,
        "val_f1": result.best_f1,
        "best_epoch": result.best_epoch + 1,
        "epochs": result.epochs_run,
        "core_seconds": round(result.seconds * threads, 1),
        "threads": threads,
        "history": result.history,
    }


def cheap(genome: str, data: str, name: str, fid: Fidelity, numerics: str, until: int | None, threads: int,
          seed: int) -> dict:  # fmt: skip
    torch.set_num_threads(threads)
    above = {"bf16": 0.0, "fp32": None}.get(numerics) if numerics != "auto" else machine_rule(threads, "cpu")
    task = EvalTask(data, fid, seed=seed, threads=threads, bf16_above_flops=above)
    rec = train_candidate(genome, task, until=until)
    return {
        "signal": name,
        "genome": genome,
        "value": rec.get("val_acc"),
        "status": rec["status"],
        "core_seconds": round(rec["train_seconds"] * threads, 1),
        "curve": json.dumps(rec.get("curve") or []),
    }


def proxy_rows(genome: str, data: str, threads: int, seed: int) -> list[dict]:
    """The zero-cost proxies of one untrained network (``nas.evolve.proxies``) on a batch of 64 training images."""
    from nas.evolve.proxies import PROXIES, synflow

    torch.set_num_threads(threads)
    batch = fer.load(data, ("train",))["train"].subset(64, seed)
    rows = []
    for name, proxy in PROXIES.items():
        torch.manual_seed(seed)
        model = build(parse_genome(genome))
        t0 = time.perf_counter()
        value = proxy(model, tuple(batch.x.shape[1:])) if proxy is synflow else proxy(model, batch)
        seconds = time.perf_counter() - t0
        rows.append({"signal": name, "genome": genome, "value": value, "status": "ok",
                     "core_seconds": round(seconds * threads, 3), "curve": "[]"})  # fmt: skip
    return rows


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
    ap.add_argument("--out", default="benchmarks/results/fidelity_cpu_raw", help="result files (committed)")
    ap.add_argument("--states", default="runs/bench-fidelity/states", help="reference checkpoints (git-ignored)")
    ap.add_argument("--networks", type=int, default=24)
    ap.add_argument("--max-mflops", type=float, default=60)
    ap.add_argument("--reference-epochs", type=int, default=30)
    ap.add_argument("--grid", default="6000x4", help="cheap signals to rank (fidelities), comma-separated")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--threads", type=int, default=None, help="per worker (default: cores / jobs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--against", default=None, help="table: rank against this signal instead of the reference")
    ap.add_argument("--compare", default=None, help="table: each signal's tau minus this one's, paired bootstrap")
    stages = "reference: the long trainings only; cheap: the grid only; table: print, train nothing"
    ap.add_argument("--stage", choices=["all", "reference", "cheap", "table"], default="all", help=stages)
    args = ap.parse_args(argv)

    data = fer.resolve_data_path(args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    genomes = networks(out, args.networks, args.max_mflops, args.seed)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    ref_path, cheap_path = out / "reference.jsonl", out / "cheap.csv"
    if args.stage in ("all", "reference"):
        done = {r["genome"] for r in read_jsonl(ref_path)}
        todo = sorted((g for g in genomes if g not in done), key=lambda g: -count_flops(build(parse_genome(g))))
        calls = [(reference, g, data, args.reference_epochs, threads, Path(args.states), args.seed) for g in todo]

        def got_reference(row: dict) -> None:
            append_jsonl(ref_path, row)
            print(f"reference {row['val_acc']:.4f} in {row['core_seconds'] / 60:.0f} core-min: {row['genome']}",
                  file=sys.stderr, flush=True)  # fmt: skip

        run_all(calls, args.jobs, got_reference)
    if args.stage in ("all", "cheap"):
        finished = set()
        if cheap_path.exists():
            finished = set(map(tuple, pd.read_csv(cheap_path)[["signal", "genome"]].to_numpy()))
        calls = [
            (cheap, g, data, name, f, numerics, until, threads, args.seed)
            for name, f, numerics, until in parse_grid(args.grid)
            for g in genomes
            if (name, g) not in finished
        ]
        if "proxies" in args.grid.split(","):
            calls += [(proxy_rows, g, data, threads, args.seed) for g in genomes if ("synflow", g) not in finished]

        def got_cheap(rows: dict | list[dict]) -> None:
            rows = rows if isinstance(rows, list) else [rows]
            pd.DataFrame(rows).to_csv(cheap_path, mode="a", header=not cheap_path.exists(), index=False)

        run_all(calls, args.jobs, got_cheap)
    print(table(out, genomes, args))
    return 0


def bootstrap(stat, *arrays: np.ndarray, rounds: int = 2000, seed: int = 0) -> tuple[float, float]:
    """90% interval of ``stat(*arrays)`` over networks resampled with replacement (the same networks for
    every array); resamples where an array is constant are skipped, NaN when none is left."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        i = rng.integers(0, len(arrays[0]), len(arrays[0]))
        if all(len(set(a[i])) > 1 for a in arrays):
            values.append(stat(*(a[i] for a in arrays)))
    if not values:
        return math.nan, math.nan
    return float(np.percentile(values, 5)), float(np.percentile(values, 95))


def tau(x: np.ndarray, y: np.ndarray) -> float:
    return float(stats.kendalltau(x, y).statistic)


def bootstrap_tau(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """90% interval of Kendall's tau."""
    return bootstrap(tau, x, y)


def bootstrap_gap(x: np.ndarray, base: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """90% interval of tau(x, y) - tau(base, y) on the same resampled networks: is a signal's agreement
    with the truth really below (or above) another's measured on the same networks?"""
    return bootstrap(lambda a, b, t: tau(a, t) - tau(b, t), x, base, y)


def signals(cheap_rows: pd.DataFrame, halving: list[tuple[tuple[int, ...], float]]) -> dict[str, dict]:
    """Every signal per network: each trained one (best epoch), and what its curve gives for free: the
    accuracy after epoch k (a rung of successive halving on the same schedule), the accuracy at the end
    (what a search validating once records), minus the sum of training losses over the first k epochs
    (Ru et al. 2021), and successive halving simulated on the curve (its records: the last rung each
    network reached). A curve with cool-down branches (a ``full@K`` prefix) adds each epoch's branch score
    and successive halving on those (``branched_halving``). Values: {signal: {"values": {genome: value},
    "epochs": mean epochs trained, "validations": mean validation passes, "core_seconds": median, as
    measured for the whole training, "recorded": whether a search records this value as it is (a complete
    schedule's last epoch, a halving row), "cost": core-seconds per network of that share of the training}}."""
    out: dict[str, dict] = {}
    for name, group in cheap_rows.groupby("signal", sort=False):
        ok = group[group["status"] == "ok"]
        curves = {g: json.loads(c) for g, c in zip(ok["genome"], ok["curve"])}
        epochs = max(len(c) for c in curves.values())
        seconds = float(group["core_seconds"].median())
        branch = parse_grid(name)[0][1].branch if any("branch_acc" in c[0] for c in curves.values() if c) else 0.0

        def add(label: str, values: dict, trained: float, validations: float, recorded: bool = False,
                seconds: float = seconds, epochs: int = epochs, branch: float = branch) -> None:  # fmt: skip
            unit = seconds / max(epochs * (1 + branch), 1)  # a branch per epoch, as this bench trains
            out[label] = {"values": values, "epochs": trained, "validations": validations, "core_seconds": seconds,
                          "recorded": recorded, "cost": unit * trained}  # fmt: skip

        if not epochs:  # a zero-cost proxy: one number per untrained network
            add(f"{name} (zero-cost proxy)", dict(zip(ok["genome"], ok["value"])), 0, 0)
            continue

        add(f"{name} (best of {epochs} epochs)", dict(zip(ok["genome"], ok["value"])), epochs, epochs)
        for k in range(1, epochs + 1):
            add(f"{name}, epoch {k}", {g: c[k - 1]["val_acc"] for g, c in curves.items()}, k, 1,
                k == epochs and not branch)  # fmt: skip
        for k in range(1, epochs + 1):
            loss = {g: -sum(r["train_loss"] for r in c[:k]) for g, c in curves.items()}
            add(f"{name}, training loss sum to epoch {k}", loss, k, 0)
        if branch:
            for k in range(1, epochs + 1):
                values = {g: c[k - 1]["branch_acc"] for g, c in curves.items()}
                add(f"{name}, epoch {k} + {branch:g}-epoch cool-down", values, k + branch, 1, True)
        for rungs, eta in BRANCHED_HALVING if branch else halving:
            if rungs[-1] > epochs or (not branch and rungs[-1] != epochs):
                continue
            score = "branch_acc" if branch else "val_acc"
            scores = {g: [r[score] for r in c] for g, c in curves.items()}
            values, trained = simulate_halving(scores, rungs, eta)
            reached = [sum(1 for r in rungs if r <= t) for t in trained.values()]
            cost = sum(t + branch * n for t, n in zip(trained.values(), reached)) / len(trained)
            label = f"{name}, halving rungs {','.join(map(str, rungs))} eta {eta:g}"
            add(label, values, cost, sum(reached) / len(reached), recorded=True)
            if branch:  # the same promotions, each score less the mean gain of its rung over the first
                add(label + ", rung-adjusted", rung_adjusted(scores, values, trained, rungs), cost,
                    sum(reached) / len(reached), recorded=True)  # fmt: skip
    return out


# successive halving on cool-down scores: rungs (epochs) and eta; the first rungs' costs are what a search pays
BRANCHED_HALVING = [((1, 2), 3.0), ((1, 3), 3.0), ((1, 4), 3.0), ((2, 4), 3.0), ((2, 6), 3.0), ((1, 3, 9), 3.0),
                    ((1, 2, 4), 2.0), ((1, 2, 4, 8), 2.0), ((2, 5), 4.0), ((1, 5), 4.0), ((3, 9), 3.0)]  # fmt: skip


def simulate_halving(curves: dict[str, list[float]], rungs: tuple[int, ...], eta: float) -> tuple[dict, dict]:
    """Successive halving replayed on whole curves: each rung's score, the best ``1 / eta`` (by Pareto rank on
    accuracy and parameters, then crowding, as the search promotes) go on. Returns each network's score at
    the last rung it reached, and that rung's epochs."""
    from nas.evolve.objectives import parse_objectives, preference

    two = parse_objectives("acc,params")
    values, trained, alive = {}, {}, list(curves)
    for depth, until in enumerate(rungs):
        for g in alive:
            values[g], trained[g] = curves[g][until - 1], until
        if depth < len(rungs) - 1:
            points = [(values[g], count_params_of(g)) for g in alive]
            alive = [alive[i] for i in preference(points, two)[: math.ceil(len(alive) / eta)]]
    return values, trained


def rung_adjusted(curves: dict[str, list[float]], values: dict, trained: dict, rungs: tuple[int, ...]) -> dict:
    """Scores comparable across rungs: a network's score at the last rung it reached, less the mean gain from
    the first rung to that one over the networks that reached it (the extra training, not the network)."""
    gain = {r: float(np.mean([c[r - 1] - c[rungs[0] - 1] for g, c in curves.items() if trained[g] >= r]))
            for r in rungs}  # fmt: skip
    return {g: v - gain[trained[g]] for g, v in values.items()}


def regret(x: np.ndarray, y: np.ndarray) -> float:
    """What picking the signal's best network loses against the truth's best (accuracy points of the truth)."""
    return float(y.max() - y[int(np.argmax(x))])


def decide(every: dict[str, dict], scores: dict[str, tuple[float, float]], base: str) -> str:
    """The rule written down before the reference was in (results/fidelity_cpu.md): the cheapest signal a
    search records as it is whose tau against the reference is no lower than ``base``'s and whose paired
    90% interval does not lie wholly below zero."""
    floor = scores[base][0]
    fit = sorted((every[n]["cost"], n) for n, (t, hi) in scores.items() if every[n].get("recorded") and t >= floor
                 and hi >= 0)  # fmt: skip
    if not fit:
        return f"decision: no recorded signal agrees with the reference as well as {base} (tau {floor:.2f})"
    cost, name = fit[0]
    return (
        f"decision: **{name}**, the cheapest recorded signal at least as faithful as {base} (tau "
        f"{scores[name][0]:.2f} against {floor:.2f}; {cost:.3g} core-s a network as this bench trains it)"
    )


def count_params_of(genome: str) -> int:
    from nas.genome.build import count_params

    return count_params(build(parse_genome(genome)))


def table(out: Path, genomes: list[str], args: argparse.Namespace) -> str:
    ref_path, cheap_path = out / "reference.jsonl", out / "cheap.csv"
    refs = pd.DataFrame(read_jsonl(ref_path)) if ref_path.exists() else None
    lines = [
        f"{len(genomes)} networks within {args.max_mflops:g} MFLOPs; reference: {args.reference_epochs} epochs on all "
        f"of Training, best validation accuracy on all of PublicTest; "
        f"{0 if refs is None else len(refs)} references done",
        "",
    ]
    if not cheap_path.exists() or (refs is None and not args.against):
        return "\n".join(lines)
    halving = [((2, 4), 3.0), ((1, 2, 4), 3.0), ((2, 4), 2.0), ((1, 4), 3.0), ((3, 4), 3.0)]
    every = signals(pd.read_csv(cheap_path), halving)
    if args.against:  # agreement with one cheap signal (e.g. the old default) while references are few
        if args.against not in every:
            raise SystemExit(f"--against: no signal {args.against!r}; choose from {', '.join(every)}")
        truth = pd.Series(every[args.against]["values"], dtype=float)
        lines += [f"ranked against **{args.against}**, not the reference", ""]
    else:
        truth = refs.set_index("genome")["val_acc"]
        bf16 = int((refs.get("numerics", pd.Series(dtype=str)) == "bf16").sum())  # the first rows predate the field
        lines += [
            f"reference: mean val acc {truth.mean():.3f}, {refs['core_seconds'].mean() / 60:.0f} core-min per network, "
            f"{bf16} of {len(refs)} trained in bf16 (this machine's numeric rule, as train.py trains), the rest fp32",
            "",
        ]
    base = None
    if args.compare:
        if args.compare not in every:
            raise SystemExit(f"--compare: no signal {args.compare!r}; choose from {', '.join(every)}")
        base = pd.Series(every[args.compare]["values"], dtype=float).dropna().rename("base")
    gap = f" | tau minus {args.compare}'s (90% interval, paired)" if base is not None else ""
    lines += [
        "| signal | networks | epochs trained | validations | core-s of the whole training "
        f"| Kendall tau (90% interval) | Spearman rho | regret of the top pick{gap} |",
        "|---|---|---|---|---|---|---|---|" + ("---|" if gap else ""),
    ]
    size = {"values": {g: count_params_of(g) for g in genomes}, "epochs": 0, "validations": 0, "core_seconds": 0}
    scores: dict[str, tuple[float, float]] = {}  # signal: (tau, upper end of the paired gap's interval)
    every["parameters (bigger is better)"] = size
    for name, s in every.items():
        both = pd.Series(s["values"], dtype=float).dropna().to_frame("x").join(truth.rename("y"), how="inner")
        if len(both) >= 3:
            row, score = signal_row(name, s, both, base, args.compare)
            lines.append(row)
            if score is not None:
                scores[name] = score
    if args.compare in scores and not args.against:
        lines += ["", decide(every, scores, args.compare)]
    return "\n".join(lines + bf16_lines(every))


def signal_row(name: str, s: dict, both: pd.DataFrame, base: pd.Series | None,
               compare: str | None) -> tuple[str, tuple[float, float] | None]:  # fmt: skip
    """One signal's agreement with the truth (``both``: its values ``x`` beside the truth ``y``), and where a
    signal is compared against, the paired gap to it; with its score for the decision (tau, upper end of the
    gap's interval), None where nothing is compared."""
    x, y = both["x"].to_numpy(), both["y"].to_numpy()
    lo, hi = bootstrap_tau(x, y)
    row = (
        f"| {name} | {len(both)} | {s['epochs']:.2f} | {s['validations']:.2f} | {s['core_seconds']:.3g} "
        f"| {tau(x, y):.2f} ({lo:.2f} to {hi:.2f}) | {stats.spearmanr(x, y).statistic:.2f} | {regret(x, y):.3f} |"
    )
    if base is not None:
        x3, b3, y3 = (both.join(base, how="inner")[c].to_numpy() for c in ("x", "base", "y"))
        diff = tau(x3, y3) - tau(b3, y3) if len(x3) >= 3 else math.nan
        glo, ghi = bootstrap_gap(x3, b3, y3) if name != compare and len(x3) >= 3 else (diff, diff)
        row += f" {diff:+.2f} ({glo:+.2f} to {ghi:+.2f}) |"
        return row, (tau(x, y), ghi)
    return row, None


def bf16_lines(every: dict) -> list[str]:
    """Does bf16 change the ranking? Each signal trained both ways, against itself."""
    lines = []
    for name in every:
        base = name.split(" ")[0].rstrip(",")
        twin = base + "+bf16" + name[len(base) :]
        if twin in every:
            a, b = pd.Series(every[name]["values"]), pd.Series(every[twin]["values"])
            both = pd.concat([a, b], axis=1, join="inner").dropna().to_numpy()
            agreement = tau(both[:, 0], both[:, 1])
            lines.append(f"\nfp32 against bf16, {name}: Kendall tau {agreement:.2f} over {len(both)} networks")
    return lines


if __name__ == "__main__":
    sys.exit(main())
