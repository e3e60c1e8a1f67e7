"""The final training: which recipe reaches the field on this CPU, and what each network reaches with it.

Each entry of ``--plan`` is ``NETWORK:RECIPE[+FIELD=VALUE...]:SEED`` (NETWORK a baseline name, ``champion``
of ``--run``, or the key of a member of ``--run``'s front in its ``pareto.csv``; RECIPE a name of
``nas.training.loop.RECIPES``; ``+epochs=N`` sets that entry's length), trained with ``nas.training.final.train_final``
(``scripts/train.py``: early stopping on PublicTest, this machine's faster numerics, a checkpoint per epoch)
into ``<out>/<entry>/``, then reported on PrivateTest. Resumable over several sittings: a finished entry
(its ``report.json``) is read back, an interrupted one continues from its checkpoint; rerun the same command.
Entries run one after the other, each on all the cores torch is given, or with ``--jobs N`` N at a time in
worker processes of one thread each (on a CPU two 1-thread trainings beat one 2-thread training), each
entry after the entries it continues or learns from. An entry of a wsd schedule without a
state of its own starts from the state before the decay of a shorter entry of the same network, recipe and
seed, planned before it (a 50-epoch training's epoch 40 is a 100-epoch training's epoch 40): the longer one
trains no epoch twice. ``+teacher=LABEL;LABEL`` distils the entry from other entries of the same ``--out``
(their ``model.pt``; ``train.py --teacher``), e.g. mini-Xception taught by two seeds of ``cnn4``, beside its
untaught seeds. Besides a row per training, ``final.md`` summarises each network and
recipe over its seeds (mean and range; ``--same`` counts entries planned under one name as seeds of another,
e.g. the search's own training of its champion beside seeds trained here), and ``final.png`` plots those
against latency and parameters.
A training times its network's latency beside whatever else runs (two trainings at a time read 0.091 and
0.123 ms for one network here); ``--report-only`` times every network again, round-robin in one
measurement, for latencies that compare: run it on idle cores.

    python benchmarks/bench_final.py --data $FER2013 --out runs/bench-final --epochs 100 \\
        --plan mini_xception:default:0,mini_xception:default:1,mini_xception:default+class_balance=softmax:0
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import pandas as pd
import torch

from nas import api
from nas.deploy.latency import measure
from nas.genome.build import build
from nas.genome.grammar import parse_genome
from nas.genome.space import load_baselines
from nas.rundir import MODEL, PARETO, atomic_write, make_dir, write_json
from nas.training.loop import stable_copy
from nas.training.report import save_figure

COLUMNS = [
    "network", "recipe", "seed", "params", "MFLOPs", "latency ms", "epochs", "train min", "val acc",
    "test acc (1 crop)", "test acc (10 crops)", "macro-F1 (10 crops)", "disgust recall", "lineage",
]  # fmt: skip
# settings a seed or a machine decides (its numerics), not the recipe: seeds of one recipe may differ in them
PER_SEED = ("seed", "cpu_bf16", "validate_bf16", "validate_every_epoch")
SUMMARISED = ["test acc (1 crop)", "test acc (10 crops)", "macro-F1 (10 crops)", "disgust recall"]
# how each figure is printed: rows keep the reports' own values, so that a mean is of them, not of roundings
SHOWN = {"MFLOPs": ".1f", "latency ms": ".3f", "train min": ".1f", "val acc": ".4f", "test acc (1 crop)": ".4f",
         "test acc (10 crops)": ".4f", "macro-F1 (10 crops)": ".4f", "disgust recall": ".3f",
         "params": ","}  # fmt: skip


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
            if "epochs" in changes and (not isinstance(changes["epochs"], int) or changes["epochs"] < 1):
                raise ValueError(f"epochs={pairs['epochs']}")
            spec = "+".join([recipe, *(c for c in recipe_spec.split("+")[1:] if not c.startswith("epochs="))])
            entries.append({"network": network, "recipe": recipe, "changes": changes, "seed": int(seed),
                            "label": label, "spec": spec})  # fmt: skip
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


def target(network: str, run: str | None, out: Path) -> dict:
    """``api.train``'s run and network for a plan's NETWORK: a baseline, the run's champion, or a front member."""
    if network in load_baselines():
        return {"run_dir": out, "baseline": network}
    if not run:
        raise SystemExit(f"error: --plan: {network!r} is no baseline; the champion and front members need --run")
    if network == "champion":
        return {"run_dir": run}
    front = pd.read_csv(Path(run) / PARETO, dtype={"key": str})
    genomes = dict(zip(front["key"], front["genome"]))
    if network not in genomes:
        raise SystemExit(f"error: --plan: {network!r} is no baseline, nor 'champion', nor a key of {run}/{PARETO}")
    return {"run_dir": run, "genome": genomes[network]}


def lineage(network: str, run: str | None) -> dict:
    """Where a searched network comes from: the seed network it descends from (``origin``; none for a random
    start) and after how many breedings, from the run's front or champion; empty for a baseline."""
    if network in load_baselines() or not run:
        return {}
    if network == "champion":
        record = json.loads((Path(run) / "champion.json").read_text())
    else:
        front = pd.read_csv(Path(run) / PARETO, dtype={"key": str, "origin": str}, keep_default_na=False)
        record = front.set_index("key").loc[network].to_dict()
    origin, steps = record.get("origin") or "", record.get("variations")
    return {"genome": record.get("genome", ""), "origin": origin,
            "text": f"{origin} +{int(steps)}" if origin else "random start"}  # fmt: skip


def lineage_lines(entries: list[dict], run: str | None) -> list[str]:
    """Each searched network beside the baseline it descends from, genome by genome."""
    baselines, lines, seen = load_baselines(), [], set()
    for entry in entries:
        known = lineage(entry["network"], run)
        if entry["network"] in seen or not known:
            continue
        seen.add(entry["network"])
        beside = f"`{baselines[known['origin']].genome}`" if known["origin"] in baselines else "-"
        lines.append(f"| {entry['network']} | {known['text']} | `{known['genome']}` | {beside} |")
    return ["| network | lineage | genome | the seed's genome |", "|---|---|---|---|", *lines] if lines else []


def shorter(entry: dict, entries: list[dict]) -> list[dict]:
    """The entries a wsd entry may continue: the same network, recipe, seed and changes, fewer epochs."""
    if entry["changes"].get("scheduler") != "wsd":
        return []
    same = {k: v for k, v in entry["changes"].items() if k != "epochs"}
    return [
        e for e in entries
        if (e["network"], e["recipe"], e["seed"]) == (entry["network"], entry["recipe"], entry["seed"])
        and {k: v for k, v in e["changes"].items() if k != "epochs"} == same and e["epochs"] < entry["epochs"]
    ]  # fmt: skip


def continue_shorter(entry: dict, entries: list[dict], out: Path) -> None:
    """Give a wsd entry the stable state of the longest shorter entry of its network, recipe and seed."""
    state = out / entry["label"] / "train_state.pt"
    if state.exists():
        return
    shorter_ones = [e for e in shorter(entry, entries) if stable_copy(out / e["label"] / "train_state.pt").exists()]
    if shorter_ones:
        source = stable_copy(out / max(shorter_ones, key=lambda e: e["epochs"])["label"] / "train_state.pt")
        make_dir(state.parent)
        atomic_write(state, source.read_bytes())
        print(f"{entry['label']}: continues {source}", file=sys.stderr, flush=True)


def _with_teachers(changes: dict, out: Path) -> dict:
    """An entry's ``+teacher=LABEL;LABEL``: the ``model.pt`` of those entries of ``out``."""
    if "teacher" not in changes:
        return changes
    return changes | {"teacher": tuple(str(out / label / MODEL) for label in str(changes["teacher"]).split(";"))}


def waits_for(entry: dict, entries: list[dict]) -> set[str]:
    """The labels an entry needs finished first: shorter wsd entries it may continue, and its teachers."""
    teachers = set(filter(None, str(entry["changes"].get("teacher", "")).split(";")))
    return teachers | {e["label"] for e in shorter(entry, entries)}


def train_plan(entries: list[dict], todo: dict[str, dict], out: Path, jobs: int, **common) -> None:
    """Train the entries of ``todo``, ``jobs`` at a time, each once the entries it waits for are finished (they
    cannot wait in a circle: a teacher's label is part of its student's, and a wsd entry waits for shorter ones)."""
    waiting = [e for e in entries if e["label"] in todo]
    if jobs <= 1:
        for entry in waiting:
            continue_shorter(entry, entries, out)
            api.train(**_training(entry, todo, out, common))
        return
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=spawn, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        running: dict = {}
        while waiting or running:
            unfinished = {e["label"] for e in waiting} | set(running.values())
            for entry in [e for e in waiting if not waits_for(e, entries) & unfinished][: jobs - len(running)]:
                continue_shorter(entry, entries, out)
                running[pool.submit(api.train, **_training(entry, todo, out, common))] = entry["label"]
                waiting.remove(entry)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                running.pop(future)
                future.result()  # a failed training stops the plan (the running ones finish first)


def _training(entry: dict, todo: dict[str, dict], out: Path, common: dict) -> dict:
    return {**todo[entry["label"]], "recipe": entry["recipe"], "epochs": entry["epochs"], "seed": entry["seed"],
            "out": out / entry["label"], **common, **_with_teachers(entry["changes"], out)}  # fmt: skip


def idle_latency(entries: list[dict], out: Path) -> dict[str, float]:
    """Each reported network's ONNX Runtime latency (ms), all timed round-robin in one measurement; built from
    its report's genome, as the time does not depend on the weights (a report kept without its model.pt,
    e.g. committed from another machine, is timed too); a genome under two names (``--same``) is timed once."""
    genomes = {}
    for entry in entries:
        path = out / entry["label"] / "report.json"
        if entry["network"] not in genomes and path.exists():
            genomes[entry["network"]] = json.loads(path.read_text())["genome"]
    named = {genome: name for name, genome in reversed(genomes.items())}  # each genome by its first name
    models = {name: build(parse_genome(genome)).eval() for genome, name in named.items()}
    timed = measure(models) if models else {}
    return {name: timed[named[genome]] for name, genome in genomes.items()}


def row(entry: dict, report: dict, run: str | None = None) -> dict:
    return {
        "network": entry["network"],
        "recipe": report["recipe"],
        "seed": entry["seed"],
        "params": report["params"],
        "MFLOPs": report["flops"] / 1e6,
        "latency ms": report["latency_ms"],
        "epochs": f"{report['epochs_run']} (best {report['best_epoch']})",
        "train min": report["train_seconds"] / 60,
        "val acc": report["val_acc"],
        "test acc (1 crop)": report["single_crop"]["acc"],
        "test acc (10 crops)": report["ten_crop"]["acc"],
        "macro-F1 (10 crops)": report["ten_crop"]["f1"],
        "disgust recall": report["per_class"]["disgust"]["recall"],
        **{f"recall {c}": m["recall"] for c, m in report["per_class"].items()},
        "lineage": lineage(entry["network"], run).get("text", ""),
        "settings": {k: v for k, v in report.get("train_config", {}).items() if k not in PER_SEED},
    }


def mixed_settings(rows: list[dict]) -> list[str]:
    """The groups of seeds whose reports say they trained with different settings (a plan's label is only a
    label: two recipes under one name would be averaged as one); reports older than the settings say nothing."""
    out = []
    for (network, plan), group in pd.DataFrame(rows).groupby(["network", "plan"], sort=False):
        said = [s for s in group["settings"] if s]
        differ = sorted({k for s in said for k in s if any(o.get(k) != s.get(k) for o in said)})
        if differ:
            out.append(f"- {network} ({plan}): its seeds trained with different {', '.join(differ)}")
    return out


def parse_same(same: list[list[str]]) -> dict[tuple[str, str], tuple[str, str]]:
    """``--same PLANNED COUNTED_AS`` pairs of ``NETWORK:RECIPE``, checked before anything trains."""
    pairs = {}
    for planned, counted in same:
        left, right = tuple(planned.split(":")), tuple(counted.split(":"))
        if len(left) != 2 or len(right) != 2:
            raise SystemExit(f"error: --same: {planned!r} {counted!r} is not NETWORK:RECIPE NETWORK:RECIPE")
        pairs[left] = right
    return pairs


def count_as(rows: list[dict], pairs: dict[tuple[str, str], tuple[str, str]]) -> None:
    """Each row planned as a pair's first ``NETWORK:RECIPE`` summarised as a seed of its second: one network
    and recipe under two names, e.g. the search's own training of its champion (its ``full`` fidelity is the
    default recipe with wsd) beside seeds trained here, ``champion:searched`` and ``KEY:default+scheduler=wsd``."""
    for r in rows:
        r["network"], r["plan"] = pairs.get((r["network"], r["plan"]), (r["network"], r["plan"]))


def summary(rows: list[dict]) -> pd.DataFrame:
    """One row per network and recipe as the plan names it: the test figures' mean and range over seeds (seeds
    decide a gap under 2 points, not one training)."""
    table = pd.DataFrame(rows)
    groups = table.groupby(["network", "plan"], sort=False)
    out = groups.agg(
        seeds=("seed", "count"), params=("params", "first"), mflops=("MFLOPs", "first"),
        latency_ms=("latency ms", "median"), train_min=("train min", "mean"),
    ).reset_index()  # fmt: skip
    for column in SUMMARISED:
        stats = groups[column].agg(["mean", "min", "max"]).reset_index(drop=True)
        out[column], out[f"{column} min"], out[f"{column} max"] = stats["mean"], stats["min"], stats["max"]
        f = SHOWN[column]
        out[f"{column} text"] = [
            f"{m:{f}}" if n == 1 else f"{m:{f}} ({lo:{f}}-{hi:{f}})"
            for n, (m, lo, hi) in zip(out["seeds"], stats.itertuples(index=False))
        ]
    return out


def summary_lines(table: pd.DataFrame) -> list[str]:
    head = ["network", "recipe", "seeds", "params", "MFLOPs", "latency ms", "wall min (mean; no speed figure)"]
    head += [f"{f} mean (range)" for f in SUMMARISED]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in table.to_dict("records"):
        cells = [
            r["network"],
            r["plan"],
            r["seeds"],
            f"{r['params']:,}",
            f"{r['mflops']:.1f}",
            f"{r['latency_ms']:.3f}",
        ]
        cells += [f"{r['train_min']:.1f}", *(r[f"{f} text"] for f in SUMMARISED)]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return lines


def recall_lines(rows: list[dict]) -> list[str]:
    """Ten-crop recall of every class, mean over seeds: where each network fails, not only on disgust."""
    table = pd.DataFrame(rows)
    classes = [c for c in table.columns if c.startswith("recall ")]
    means = table.groupby(["network", "plan"], sort=False)[classes].mean().reset_index()
    head = ["network", "recipe", *(c.removeprefix("recall ") for c in classes)]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in means.to_dict("records"):
        lines.append("| " + " | ".join([r["network"], r["plan"], *(f"{r[c]:.3f}" for c in classes)]) + " |")
    return lines


def plot(table: pd.DataFrame, out: Path) -> Path:
    """Ten-crop accuracy against latency and parameters, a bar over the seeds' range; baselines as stars."""
    import matplotlib.pyplot as plt

    baselines = load_baselines()

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    acc = "test acc (10 crops)"
    for ax, x, label in ((axes[0], "latency_ms", "ONNX Runtime latency, ms (batch 1, 1 thread)"),
                         (axes[1], "params", "parameters")):  # fmt: skip
        for r in table.to_dict("records"):
            yerr = [[r[acc] - r[f"{acc} min"]], [r[f"{acc} max"] - r[acc]]]
            ax.errorbar(r[x], r[acc], yerr=yerr, fmt="*" if r["network"] in baselines else "o", ms=9, capsize=3)
            ax.annotate(f"{r['network']} ({r['plan']})", (r[x], r[acc]), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")  # fmt: skip
        spread = table[x].max() / max(table[x].min(), 1e-9)
        ax.set(
            xscale="log" if spread > 3 else "linear",
            xlabel=label,
            title=f"final training: PrivateTest ten-crop vs {label.split(',')[0]}",
        )
    axes[0].set_ylabel("PrivateTest accuracy, ten-crop (mean, seeds' range)")
    return save_figure(fig, out / "final.png")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="FER2013 CSV (PrivateTest is reported, never used to choose)")
    p.add_argument("--out", default="runs/bench-final")
    p.add_argument(
        "--run",
        default=None,
        help="search run whose champion ('champion') and front members (keys of pareto.csv) the plan may name",
    )
    p.add_argument("--plan", default="mini_xception:default:0,mini_xception:vgg:0")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--patience", type=int, default=0, help="as train.py's (0: the whole schedule)")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--jobs", type=int, default=1, help="trainings at a time, one thread each (default: one, all threads)"
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="table of the finished entries, their latency timed again; train nothing",
    )
    p.add_argument(
        "--same",
        nargs=2,
        action="append",
        default=[],
        metavar=("PLANNED", "COUNTED_AS"),
        help="summarise the seeds planned as NETWORK:RECIPE PLANNED as seeds of COUNTED_AS (one training under "
        "two names, e.g. champion:searched KEY:default+scheduler=wsd); repeatable",
    )
    return p


def finished_rows(entries: list[dict], out: Path, latency: dict, args: argparse.Namespace) -> list[dict]:
    """A table row for every entry with a report (one not trained yet is left out), its latency retimed."""
    rows = []
    for entry in entries:
        folder = out / entry["label"]
        if not (folder / "report.json").exists():  # --report-only: not trained yet
            continue
        report = json.loads((folder / "report.json").read_text())
        retimed = {"latency_ms": latency[entry["network"]]} if entry["network"] in latency else {}
        rows.append(row(entry, report | retimed, args.run))
        rows[-1]["plan"] = entry["spec"]  # seeds are grouped by what the plan asked, whatever a report calls it
        if entry["epochs"] != args.epochs:  # a length of its own is another recipe, not another seed
            rows[-1]["recipe"] += f", {entry['epochs']} epochs"
            rows[-1]["plan"] += f", {entry['epochs']} epochs"
        print(f"{entry['label']}: {rows[-1]['test acc (10 crops)']:.4f} ten-crop", file=sys.stderr, flush=True)
    return rows


def report_text(rows: list[dict], entries: list[dict], args: argparse.Namespace, retimed: bool,
                same: dict) -> tuple[str, pd.DataFrame | None]:  # fmt: skip
    """``final.md``: every training's row, then the seeds summarised; and that summary (None without rows)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---" * len(COLUMNS) + "|"]
    lines += [
        "| " + " | ".join(f"{r[c]:{SHOWN[c]}}" if c in SHOWN else str(r[c]) for c in COLUMNS) + " |" for r in rows
    ]
    text = (
        f"{len(rows)} trainings; up to {args.epochs} epochs, early stopping after {args.patience} without a better "
        f"PublicTest accuracy; data {args.data}"
        + ("; latency: every network timed again, round-robin\n\n" if retimed else "\n\n")
        + "\n".join(lines)
        + "\n"
    )
    count_as(rows, same)
    if not rows:
        return text, None
    table = summary(rows)
    text += "\nOver seeds:\n\n" + "\n".join(summary_lines(table)) + "\n"
    mixed = mixed_settings(rows)
    if mixed:
        text += "\nNot one recipe, though named as one:\n\n" + "\n".join(mixed) + "\n"
        print("\n".join(["warning: seeds grouped under one recipe trained differently:", *mixed]), file=sys.stderr)
    text += "\nRecall per class (ten-crop), mean over seeds:\n\n" + "\n".join(recall_lines(rows)) + "\n"
    lineages = lineage_lines(entries, args.run)
    if lineages:
        text += "\nWhere the searched networks come from:\n\n" + "\n".join(lineages) + "\n"
    return text, table


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out, entries, same = Path(args.out), parse_plan(args.plan), parse_same(args.same)
    for entry in entries:
        entry["epochs"] = int(entry["changes"].pop("epochs", args.epochs))
    todo = {  # every network to train is resolved before the first training, so a bad NETWORK costs nothing
        e["label"]: target(e["network"], args.run, out)
        for e in entries
        if not args.report_only and not (out / e["label"] / "report.json").exists()
    }
    make_dir(out)
    latency = idle_latency(entries, out) if args.report_only else {}
    train_plan(entries, todo, out, args.jobs, data=args.data, patience=args.patience, device=args.device)
    rows = finished_rows(entries, out, latency, args)
    text, table = report_text(rows, entries, args, bool(latency), same)
    if table is not None:
        plot(table, out)
    (out / "final.md").write_text(text)
    write_json(out / "final.json", {"plan": args.plan, "epochs": args.epochs, "patience": args.patience, "rows": rows})
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
