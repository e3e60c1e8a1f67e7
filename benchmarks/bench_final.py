"""The final training: which recipe reaches the field on this CPU, and what each baseline reaches with it.

Each entry of ``--plan`` is ``NETWORK:RECIPE[+FIELD=VALUE...]:SEED`` (NETWORK a baseline name or
``champion`` of ``--run``; RECIPE a name of ``nas.training.RECIPES``), trained with ``nas.final.train_final``
(``scripts/train.py``: early stopping on PublicTest, this machine's faster numerics, a checkpoint per
epoch) into ``<out>/<entry>/``, then reported on PrivateTest. Resumable over several sittings: a finished
entry (its ``report.json``) is read back, an interrupted one continues from its checkpoint; rerun the same
command. Entries run one after the other, each on all the cores torch is given.

    python benchmarks/bench_final.py --data $FER2013 --out runs/bench-final --epochs 100 --patience 15 \\
        --plan mini_xception:default:0,mini_xception:vgg:0,mini_xception:vgg+class_balance=softmax:0
"""

from __future__ import annotations

import argparse
import json
import sys

from nas import api
from nas.rundir import make_dir, write_json

COLUMNS = [
    "network", "recipe", "seed", "params", "MFLOPs", "latency ms", "epochs", "train min", "val acc",
    "test acc (1 crop)", "test acc (10 crops)", "macro-F1 (10 crops)", "disgust recall",
]  # fmt: skip


def parse_plan(text: str) -> list[dict]:
    """``mini_xception:vgg+ema=0.999:0`` -> {"network", "recipe", "changes", "seed", "label"}."""
    entries = []
    for item in filter(None, text.split(",")):
        try:
            network, recipe_spec, seed = item.split(":")
            recipe, *changes = recipe_spec.split("+")
            pairs = dict(c.split("=", 1) for c in changes)
            label = item.replace(":", "-").replace("+", "_").replace("=", "")
            changes = {k: _value(v) for k, v in pairs.items()}
            entries.append(
                {"network": network, "recipe": recipe, "changes": changes, "seed": int(seed), "label": label}
            )
        except ValueError:
            raise SystemExit(f"error: --plan: {item!r} is not NETWORK:RECIPE[+FIELD=VALUE...]:SEED") from None
    return entries


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def row(entry: dict, report: dict) -> dict:
    return {
        "network": entry["network"],
        "recipe": report["recipe"],
        "seed": entry["seed"],
        "params": report["params"],
        "MFLOPs": round(report["flops"] / 1e6, 1),
        "latency ms": round(report["latency_ms"], 3),
        "epochs": f"{report['epochs_run']} (best {report['best_epoch']})",
        "train min": round(report["train_seconds"] / 60, 1),
        "val acc": round(report["val_acc"], 4),
        "test acc (1 crop)": round(report["single_crop"]["acc"], 4),
        "test acc (10 crops)": round(report["ten_crop"]["acc"], 4),
        "macro-F1 (10 crops)": round(report["ten_crop"]["f1"], 4),
        "disgust recall": round(report["per_class"]["disgust"]["recall"], 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="FER2013 CSV (PrivateTest is reported, never used to choose)")
    p.add_argument("--out", default="runs/bench-final")
    p.add_argument("--run", default=None, help="run directory whose champion 'champion' names")
    p.add_argument("--plan", default="mini_xception:default:0,mini_xception:vgg:0")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--patience", type=int, default=15)
    p.add_argument("--device", default="auto")
    p.add_argument("--report-only", action="store_true", help="table of the finished entries; train nothing")
    args = p.parse_args(argv)
    out = make_dir(args.out)
    rows = []
    for entry in parse_plan(args.plan):
        folder = out / entry["label"]
        if not (folder / "report.json").exists():
            if args.report_only:
                continue
            run = args.run if entry["network"] == "champion" else out
            report = api.train(
                run, baseline=None if entry["network"] == "champion" else entry["network"], recipe=entry["recipe"],
                data=args.data, epochs=args.epochs, patience=args.patience, seed=entry["seed"], device=args.device,
                out=folder, **entry["changes"],
            )  # fmt: skip
        report = json.loads((folder / "report.json").read_text())
        rows.append(row(entry, report))
        print(f"{entry['label']}: {rows[-1]['test acc (10 crops)']} ten-crop", file=sys.stderr, flush=True)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---" * len(COLUMNS) + "|"]
    lines += ["| " + " | ".join(f"{r[c]:,}" if c == "params" else str(r[c]) for c in COLUMNS) + " |" for r in rows]
    text = (
        f"{len(rows)} trainings; up to {args.epochs} epochs, early stopping after {args.patience} without a better "
        f"PublicTest accuracy; data {args.data}\n\n" + "\n".join(lines) + "\n"
    )
    (out / "final.md").write_text(text)
    write_json(out / "final.json", {"plan": args.plan, "epochs": args.epochs, "patience": args.patience, "rows": rows})
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
