"""Which teachers: fully trained networks alone and averaged (the ensemble a student is distilled from).

Each ``model.pt`` of ``--models`` (files or folders holding one, comma-separated) is scored ten-crop on
PrivateTest alone, then their probabilities averaged (``nas.training.distill.ensemble_accuracy``, what
``train.py --teacher`` teaches from, and what ``nas distill`` reports). Reported only: PrivateTest chooses
nothing. ``--numerics``: each teacher also answers in the numerics it teaches in (bf16 where this machine
trains a network of its FLOPs in bf16, ``answers_in_bf16``), timed and scored beside fp32: what the faster
targets cost in accuracy.

    python benchmarks/bench_teachers.py --data $FER2013 \\
        --models runs/bench-wsd/cnn4-default-0,runs/bench-wsd/cnn4-default-1 --out benchmarks/results/teachers.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nas import data as fer
from nas.training.distill import answers_in_bf16, ensemble_accuracy, load_teacher
from nas.training.loop import predict_ten_crop, resolve_device


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="FER2013 CSV (PrivateTest is reported, never used to choose)")
    p.add_argument("--models", required=True, help="model.pt files or folders, comma-separated")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--numerics",
        action="store_true",
        help="also time and score each teacher in the numerics it teaches in against fp32",
    )
    p.add_argument("--out", default=None, help="also write the table here (markdown)")
    args = p.parse_args(argv)
    paths = [m for m in args.models.split(",") if m]
    test = fer.load(fer.resolve_data_path(args.data), ("test",))["test"]
    scores = ensemble_accuracy(paths, test, args.device)
    lines = ["| network | PrivateTest acc (10 crops) |", "|---|---|"]
    lines += [f"| `{path}` | {acc:.4f} |" for path, acc in zip(paths, scores["per_member"])]
    lines += [f"| the {len(paths)} averaged | **{scores['acc']:.4f}** (macro-F1 {scores['f1']:.4f}) |"]
    if args.numerics:
        lines += ["", *numerics_table(paths, test, args.device)]
    text = f"{len(test)} PrivateTest images; data {args.data}\n\n" + "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


def numerics_table(paths: list[str], test, device: str) -> list[str]:
    """Each teacher's ten-crop answers in fp32 and in the numerics it teaches in: seconds, accuracy, and the
    largest difference between the two answers' probabilities."""
    dev = resolve_device(device)
    y = test.y.numpy()
    head = (
        "| network | teaches in | s fp32 | s teaching | acc fp32 | acc teaching | largest difference of a probability |"
    )
    lines = [head, "|---|---|---|---|---|---|---|"]
    for path, model in zip(paths, load_teacher(paths, tuple(test.x.shape[1:]), len(fer.CLASS_NAMES)).models):
        model = model.to(dev).eval()
        bf16 = answers_in_bf16(model, dev)
        answers = {}
        for low in dict.fromkeys((False, bf16)):  # fp32, and bf16 where it teaches in it
            start = time.perf_counter()
            answers[low] = predict_ten_crop(model, test.x, dev, bf16=low), time.perf_counter() - start
        (fp32, s32), (mine, s) = answers[False], answers[bf16]
        acc = [(p.argmax(1).numpy() == y).mean() for p in (fp32, mine)]
        lines.append(f"| `{path}` | {'bf16' if bf16 else 'fp32'} | {s32:.1f} | {s:.1f} | {acc[0]:.4f} | {acc[1]:.4f} | "
                     f"{(fp32 - mine).abs().max().item():.4f} |")  # fmt: skip
    return lines


if __name__ == "__main__":
    sys.exit(main())
