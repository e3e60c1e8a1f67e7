"""Latency noise and backends; and how well the latency table predicts measured latency.

Default: for each baseline, ``--repeats`` separate latency phases (each the median of round medians, as in
a search), their spread (max / min), and the same in torch eager. A spread near 1 means measured latency
ranks networks by their cost, not by chance.

``--table N``: N uniform samples of the default space within its latency budget (or, with ``--band LO,HI``,
measured within LO-HI ms: where the budget bites), predicted by a fresh
latency table (``nas.deploy.latency.LatencyTable``, its units measured now) and measured end to end in
``--repeats`` phases (median); Spearman's rho and Kendall's tau between prediction and measurement, the
spread of their ratio, and FLOPs as a predictor for comparison.

    python benchmarks/bench_latency.py [--repeats 10]
    python benchmarks/bench_latency.py --table 40 --repeats 5
    python benchmarks/bench_latency.py --table 40 --repeats 5 --band 0.5,1.5
"""

from __future__ import annotations

import argparse
import sys

import torch

from nas.deploy.latency import measure, spread
from nas.evolve.evaluate import LatencyConfig
from nas.genome.build import build
from nas.genome.grammar import parse_genome
from nas.genome.space import load_baselines

EXTRA = {
    "tiny_conv": "conv_k3_c16_s2_relu_bn | pool_max | conv_k3_c32_s1_relu_bn | gap",
    "deep_narrow_ir": "conv_k3_c8_s1_relu_bn | ir_k3_e2_c16_s2_r3 | ir_k3_e2_c24_s2_r3 | ir_k3_e2_c32_s2_r3 | gap",
}


def table_fidelity(n: int, repeats: int, seed: int = 0, band: tuple[float, float] | None = None) -> str:
    """Predicted against measured latency on ``n`` networks within the default space's latency budget, or,
    with ``band``, on ``n`` networks measured within that range of milliseconds (where the budget bites)."""
    import random
    import tempfile
    from pathlib import Path

    import numpy as np
    from scipy import stats

    from nas.deploy.latency import LatencyTable
    from nas.genome.build import count_flops
    from nas.genome.space import load_space, sample

    space, rng, genomes = load_space("default"), random.Random(seed), []
    torch.set_num_threads(1)
    table = LatencyTable(Path(tempfile.mkdtemp()) / "table.json")
    lo_ms, hi_ms = band or (0.0, space.max_latency_ms)
    while len(genomes) < n:  # by the prediction first, with a margin; the band is applied to measurements
        g = sample(space, rng)
        if not lo_ms / 1.5 <= table.predict(g) <= hi_ms * (1.5 if band else 1.0):
            continue
        if not band or lo_ms <= measure({"new": build(g).eval()})["new"] <= hi_ms:
            genomes.append(g)
    predicted = np.array([table.predict(g) for g in genomes])
    models = {str(i): build(g).eval() for i, g in enumerate(genomes)}
    phases = [measure(models) for _ in range(repeats)]
    measured = np.array([np.median([p[str(i)] for p in phases]) for i in range(n)])
    flops = np.array([count_flops(m) for m in models.values()])
    ratio = predicted / measured
    lo, mid, hi = np.percentile(ratio, [10, 50, 90])
    rows = [
        (name, stats.spearmanr(x, measured).statistic, stats.kendalltau(x, measured).statistic)
        for name, x in (("latency table", predicted), ("FLOPs", flops))
    ]
    lines = [
        f"{n} uniform samples of the default space measured within {lo_ms:g}-{hi_ms:g} ms (seed {seed}); measured: "
        f"median of {repeats} latency phases; table: {len(table.entries)} units measured once",
        "",
        "| predictor | Spearman rho | Kendall tau |",
        "|---|---|---|",
        *(f"| {name} | {rho:.3f} | {tau:.3f} |" for name, rho, tau in rows),
        "",
        f"predicted / measured: median {mid:.2f}, 10th-90th percentile {lo:.2f}-{hi:.2f}; "
        f"measured {measured.min():.3f}-{measured.max():.3f} ms",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--table", type=int, default=0, help="validate the latency table on this many networks")
    ap.add_argument("--band", help="with --table: networks measured within LO,HI ms (e.g. 0.5,1.5)")
    args = ap.parse_args(argv)
    if args.table:
        band = tuple(float(x) for x in args.band.split(",")) if args.band else None
        print(table_fidelity(args.table, args.repeats, band=band))
        return 0
    nets = {name: b.genome for name, b in load_baselines().items()} | {k: parse_genome(v) for k, v in EXTRA.items()}
    models = {name: build(g).eval() for name, g in nets.items()}
    reference = build(parse_genome(LatencyConfig().reference)).eval()
    lines = [
        f"Batch 1, one thread, {args.repeats} phases per backend; each phase times the network and the reference "
        "network round-robin, 5 rounds x 30 runs, median of medians. Spread = max / min over the phases.",
        "",
        "| network | ORT ms | ORT spread | ratio to reference | ratio spread | torch eager ms | eager spread "
        "| eager / ORT |",
        "|---|---|---|---|---|---|---|---|",
    ]
    torch.set_num_threads(1)
    for name, model in models.items():
        phases = [measure({name: model, "ref": reference}, backend="onnx") for _ in range(args.repeats)]
        ort = [p[name] for p in phases]
        ratio = [p[name] / p["ref"] for p in phases]
        eager = [measure({name: model}, backend="torch")[name] for _ in range(args.repeats)]
        o, r, e = (sorted(v)[len(v) // 2] for v in (ort, ratio, eager))
        lines.append(
            f"| {name} | {o:.3f} | {spread(ort):.2f} | {r:.2f} | {spread(ratio):.2f} | {e:.3f} | {spread(eager):.2f} "
            f"| {e / o:.1f} |"
        )
        print(lines[-1], file=sys.stderr, flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
