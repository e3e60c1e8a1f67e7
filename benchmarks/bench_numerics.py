"""Training speed per numeric mode: fp32 or bfloat16 autocast, channels-last or not, network by network.

For each network, times training steps (batch 128, forward, backward, AdamW step, after warm-up) on one
thread in every mode, round-robin over several rounds (median), and prints images/s per mode with the
network's FLOPs and the share of them in depthwise convolutions: what the numeric-mode rule
(``nas.training.numerics``) must predict.

    python benchmarks/bench_numerics.py --networks benchmarks/results/fidelity_cpu_raw/networks.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from nas.genome.build import build, count_flops
from nas.genome.grammar import parse_genome
from nas.genome.space import load_baselines
from nas.training.numerics import MODES, Mode, layer_flops


def step_time(genome: str, mode: Mode, steps: int, batch: int = 128) -> float:
    torch.manual_seed(0)
    model = build(parse_genome(genome)).train()
    fmt = torch.channels_last if mode.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.randn(batch, 1, 48, 48).contiguous(memory_format=fmt)
    y = torch.randint(0, 7, (batch,))
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode.bf16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:  # warm-up: oneDNN picks its kernels on the first calls
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", default=None, help="networks.json of bench_fidelity (default: the baselines)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/numerics.csv")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    genomes = (
        json.loads(Path(args.networks).read_text())["genomes"]
        if args.networks
        else [str(b.genome) for b in load_baselines().values()]
    )
    rows = []
    for g in genomes:
        model = build(parse_genome(g))
        flops = layer_flops(model)
        times = {m.name: [] for m in MODES}
        for _ in range(args.rounds):
            for m in MODES:
                times[m.name].append(step_time(g, m, args.steps))
        row = {"genome": g, "mflops": count_flops(model) / 1e6, "depthwise_share": flops["depthwise"] / flops["total"]}
        row |= {m: 128 / statistics.median(t) for m, t in times.items()}
        rows.append(row)
        print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else "" for k, v in row.items()), g, file=sys.stderr)
    df = pd.DataFrame(rows)
    df.to_csv(args.out, index=False)
    names = [m.name for m in MODES]
    lines = [
        "| MFLOPs | depthwise share | " + " | ".join(f"{n} img/s" for n in names) + " | fastest |",
        "|---" * (3 + len(names)) + "|",
    ]
    for _, r in df.iterrows():
        speeds = [r[n] for n in names]
        lines.append(f"| {r['mflops']:.1f} | {r['depthwise_share']:.2f} | " + " | ".join(f"{s:.0f}" for s in speeds)
                     + f" | {names[speeds.index(max(speeds))]} |")  # fmt: skip
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
