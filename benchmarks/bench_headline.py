"""The headline: the searched networks against the hand-made ones they compete with, trained the same way.

From a finished search (``--run``; with the default evaluation it trained its champion fully), the networks
to compare: for each latency bound (mini-Xception's and ``cnn4``'s, timed now beside every front member,
round-robin, and the 1 ms budget) the searched network within it: the champion if it is (the search trained
it fully), else the front member the search ranks best there (the highest rung, then its accuracy there).
Each is trained ``--seeds`` times (the champion with the search's own recipe, ``searched``, so that its
seed 0 is the search's training, continued and not repeated; the others with the default recipe), and so
are the two baselines (``--baseline-recipe``), all through ``bench_final.py`` into one table and plot
(``--out``: a folder that holds earlier seeds of the baselines reuses them). ``selection.md`` says what
was chosen and why; the timing is kept (``selection.json``) and a rerun chooses from it, unless
``--choose-again``, so that latencies timed again cannot change the networks of a comparison under way
(the choice still follows the run: run it while the top rung trains, and once the top rung has named the
champion the 1 ms bound takes it).

    python benchmarks/bench_headline.py --data $FER2013 --run runs/<id> --out runs/headline --seeds 0,1,2 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nas.training.students import read_front, search_order, timed

BASELINES = ("mini_xception", "cnn4")
BUDGET_MS = 1.0  # the product's goal


def choose(run: Path, latency: dict[str, float] | None = None) -> tuple[list[dict], dict[str, float]]:
    """Per latency bound, the searched network to train fully, and every network's latency (ms): timed now
    unless given (then the choice follows the run as it is: its champion once the top rung has chosen it)."""
    front = read_front(run)
    champion = json.loads((run / "champion.json").read_text())
    latency = latency or timed(front, BASELINES)
    ranked = search_order(front)
    bounds = {f"{name}'s latency": latency[name] for name in BASELINES} | {f"{BUDGET_MS:g} ms": BUDGET_MS}
    genomes, chosen = {r["key"]: r["genome"] for r in front}, []
    for bound, limit in bounds.items():
        within = [r for r in ranked if latency[r["key"]] <= limit]
        if champion.get("key") in {r["key"] for r in within}:
            pick, why = champion["key"], "the champion (fully trained by the search)"
        elif within:
            pick, why = within[0]["key"], "the front member the search ranks best there (trained fully now)"
        else:
            pick, why = None, "no front member is this fast"
        chosen.append({"bound": bound, "limit_ms": limit, "key": pick, "why": why, "genome": genomes.get(pick, ""),
                       "champion": pick is not None and pick == champion.get("key")})  # fmt: skip
    return chosen, latency


def plan(chosen: list[dict], seeds: list[int], baseline_recipe: str) -> str:
    """``bench_final.py``'s plan: each chosen network and each baseline, every seed."""
    networks = {c["key"]: c["champion"] for c in chosen if c["key"]}
    entries = [
        f"{'champion:searched' if champion else f'{key}:default'}:{seed}"
        for key, champion in networks.items()
        for seed in seeds
    ]
    entries += [f"{name}:{baseline_recipe}:{seed}" for name in BASELINES for seed in seeds]
    return ",".join(entries)


def selection_lines(chosen: list[dict], latency: dict[str, float]) -> list[str]:
    lines = ["| bound | ms (timed now) | searched network | its ms | why | genome |", "|---|---|---|---|---|---|"]
    for c in chosen:
        key = c["key"]
        own = f"{latency[key]:.3f}" if key else "-"
        lines.append(f"| {c['bound']} | {c['limit_ms']:.3f} | {key or '-'} | {own} | {c['why']} | "
                     f"`{c['genome']}` |")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="FER2013 CSV (PrivateTest is reported, never used to choose)")
    p.add_argument("--run", required=True, type=Path, help="a finished search")
    p.add_argument("--out", default="runs/headline", type=Path)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--baseline-recipe", default="default", help="bench_final's RECIPE[+FIELD=VALUE...] for both")
    p.add_argument("--device", default="auto")
    p.add_argument("--jobs", type=int, default=1, help="bench_final's: trainings at a time, one thread each")
    p.add_argument("--plan-only", action="store_true", help="choose, write selection.md and the plan; train nothing")
    p.add_argument("--choose-again", action="store_true", help="time the networks again, not the kept timing")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    kept = args.out / "selection.json"
    timing = json.loads(kept.read_text())["latency"] if kept.exists() and not args.choose_again else None
    chosen, latency = choose(args.run, timing)
    text = plan(chosen, seeds, args.baseline_recipe)
    lines = selection_lines(chosen, latency)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "selection.md").write_text("\n".join([*lines, "", f"plan: {text}", ""]))
    kept.write_text(json.dumps({"chosen": chosen, "latency": latency}, indent=1))
    print("\n".join(lines) + f"\n\nplan: {text}", flush=True)
    if args.plan_only:
        return 0
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_final", Path(__file__).with_name("bench_final.py"))
    bench_final = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_final)
    common = ["--epochs", str(args.epochs), "--device", args.device, "--jobs", str(args.jobs)]
    return bench_final.main(
        ["--data", args.data, "--out", str(args.out), "--run", str(args.run), "--plan", text, *common]
    )


if __name__ == "__main__":
    sys.exit(main())
