"""Where the search looks: the same search with the default region (the 1 ms latency budget, the accuracy
floor, the seeded first generation) and with the old one (60 MFLOPs, no floor, random first generation).

Runs each arm with ``scripts/evolve.py`` (same seed, data, population, generations and evaluation
strategy; a finished arm is read, an unfinished one resumed), then prints one table: the trainings spent
on networks that learnt nothing (validation accuracy not above the floor's 0.269 on PublicTest, the
majority-class rate plus 0.02, whichever arm) and on networks under 1,000 parameters, the front's
accuracy and measured latency ranges, whether the front descends from a seed, and the wall time.

    python benchmarks/bench_region.py --data $FER2013 --generations 10 --out runs/bench-region

``--region-from RUN`` takes the region arm from a longer search with the same settings (a search's first
generations do not depend on how many follow): its configuration, cut to ``--generations`` and without
finalists, is resumed over a copy of its cache, so every evaluation is a cache hit and the front and the
champion are those the longer search had at that generation; trainings and wall time are the longer
search's own, up to that generation.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
ARMS = {  # the default region, and the old one (no latency cap to speak of: 1 s)
    "region": [],
    "old": ["--max-mflops", "60", "--max-latency-ms", "1000", "--accuracy-margin", "-1", "--seed-networks", "none"],
}
NO_TOP_RUNG = ["--finalists", "0"]  # the arms compare where the search looks, not the finalists' full training
FLOOR = 895 / 3589 + 0.02  # PublicTest's majority-class rate plus the default margin


def run_arm(run_dir: Path, data: str, generations: int, extra: list[str]) -> None:
    """Start the arm, or resume it to ``generations``; nothing is trained twice."""
    if (run_dir / "config.json").exists():
        cmd = ["--resume", str(run_dir), "--generations", str(generations)]
    else:
        cmd = ["--data", data, "--run-dir", str(run_dir), "--generations", str(generations), *NO_TOP_RUNG, *extra]
    subprocess.run([sys.executable, str(ROOT / "scripts/evolve.py"), "-q", *cmd], check=True)


def replay_arm(source: Path, run_dir: Path, generations: int) -> None:
    """An arm made of the first generations of a longer search: its settings and cache, nothing to train."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config = json.loads((source / "config.json").read_text())
    config["search"] |= {"generations": generations, "finalists": 0}
    (run_dir / "config.json").write_text(json.dumps(config, indent=1))
    for name in ("cache.jsonl", "latency_table.json"):
        if (source / name).exists() and not (run_dir / name).exists():
            shutil.copyfile(source / name, run_dir / name)


def row(name: str, run_dir: Path, source: Path | None = None) -> dict:
    """The arm's figures; with ``source`` (a replayed arm), its trainings and wall time are the source's up to
    the arm's last generation."""
    evals = pd.read_csv((source or run_dir) / "evaluations.csv")
    front = pd.read_csv(run_dir / "pareto.csv")
    progress = pd.read_csv((source or run_dir) / "progress.csv")
    if source is not None:
        last = int(pd.read_csv(run_dir / "progress.csv")["gen"].max())
        evals, progress = evals[evals["generation"] <= last], progress[progress["gen"] <= last]
    trained = evals[(evals["status"] == "ok") & ~evals["cached"]]
    seeded = front["origin"].notna().sum() if "origin" in front else 0
    champion = json.loads((run_dir / "champion.json").read_text())
    return {
        "arm": name,
        "networks trained": len(trained),
        "not above the floor": f"{(trained['val_acc'] <= FLOOR).sum()} ({(trained['val_acc'] <= FLOOR).mean():.0%})",
        "under 1,000 params": f"{(trained['params'] < 1000).sum()} ({(trained['params'] < 1000).mean():.0%})",
        "over budget (untrained)": int(evals["error"].fillna("").str.startswith("over budget").sum()),
        "front": len(front),
        "front acc": f"{front['val_acc'].min():.3f}-{front['val_acc'].max():.3f}",
        "front ms (measured)": f"{front['measured_latency_ms'].min():.3f}-{front['measured_latency_ms'].max():.3f}",
        "front from a seed": int(seeded),
        "champion": f"{champion['val_acc']:.3f}, {champion['params']:,} params, "
        f"{champion.get('measured_latency_ms') or champion['latency_ms']:.3f} ms"
        + (f", {champion['origin']} +{champion['variations']}" if champion.get("origin") else ""),
        "wall min": round(progress["seconds"].iloc[-1] / 60, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--generations", type=int, default=10)
    p.add_argument("--out", type=Path, default=Path("runs/bench-region"))
    p.add_argument("--arms", default=",".join(ARMS), help="which arms to run (comma-separated names)")
    p.add_argument("--extra", default="--finalists 0", help="flags for both arms")
    p.add_argument("--region-from", type=Path, default=None, help="a longer search of the region arm's settings")
    a = p.parse_args(argv)
    rows = []
    for name in a.arms.split(","):
        run_dir = a.out / name
        source = a.region_from if name == "region" else None
        if source is not None:
            replay_arm(source, run_dir, a.generations)
        run_arm(run_dir, a.data, a.generations, ARMS[name] + a.extra.split())
        rows.append(row(name, run_dir, source))
    print("| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]))
    for r in rows:
        print("| " + " | ".join(map(str, r.values())) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
