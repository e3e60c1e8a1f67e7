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
from nas.evaluate import LatencyConfig
from nas.genome import parse_genome
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
