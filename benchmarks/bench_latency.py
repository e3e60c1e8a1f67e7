"""Latency noise and backends: the same network measured repeatedly, ONNX Runtime against torch eager.

For each network: ``--repeats`` separate latency phases (each the median of round medians, as in a
search), their spread (max / min), and the same in torch eager. A spread near 1 means the latency
objective ranks networks by their cost, not by chance.

    python benchmarks/bench_latency.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import sys

import torch

from nas.build import build
from nas.latency import measure, spread
from nas.space import load_baselines

EXTRA = {
    "tiny_conv": "conv_k3_c16_s2_relu_bn | pool_max | conv_k3_c32_s1_relu_bn | gap",
    "deep_narrow_ir": "conv_k3_c8_s1_relu_bn | ir_k3_e2_c16_s2_r3 | ir_k3_e2_c24_s2_r3 | ir_k3_e2_c32_s2_r3 | gap",
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args(argv)
    from nas.genome import parse_genome

    nets = {name: b.genome for name, b in load_baselines().items()} | {k: parse_genome(v) for k, v in EXTRA.items()}
    models = {name: build(g).eval() for name, g in nets.items()}
    lines = [
        f"Batch 1, one thread, {args.repeats} phases per backend; each phase: 5 rounds x 30 runs, median of medians.",
        "",
        "| network | ONNX Runtime ms | spread max/min | torch eager ms | spread max/min | eager / ORT |",
        "|---|---|---|---|---|---|",
    ]
    torch.set_num_threads(1)
    for name, model in models.items():
        ort = [measure({name: model}, backend="onnx")[name] for _ in range(args.repeats)]
        eager = [measure({name: model}, backend="torch")[name] for _ in range(args.repeats)]
        o, e = sorted(ort)[len(ort) // 2], sorted(eager)[len(eager) // 2]
        lines.append(f"| {name} | {o:.3f} | {spread(ort):.3f} | {e:.3f} | {spread(eager):.3f} | {e / o:.1f} |")
        print(lines[-1], file=sys.stderr, flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
