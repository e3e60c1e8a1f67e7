"""The ``nas`` command and its subcommands; ``scripts/*.py`` are thin wrappers over these.

Each subcommand parses its flags, resolves a configuration, writes it into the run directory and calls
the package. Bad input of any kind ends as one line on stderr and exit status 2; Ctrl-C saves and
exits with 130.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

from nas.errors import NasError, RunDirError

RUNS = Path("runs")


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "deap", "numpy", "onnxruntime", "optuna", "opencv-python", "joblib", "fer-nas"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------- evolve


def _evolve_parser(sub) -> None:
    p = sub.add_parser("evolve", help="run a genetic architecture search", description="Run a genetic NAS on FER2013.")
    p.add_argument("--generations", type=int, default=30)
    p.add_argument("--population", type=int, default=16, help="multiple of 4 in pareto mode")
    p.add_argument("--space", default="default", help="search-space file or bundled name (default, tiny)")
    p.add_argument("--data", default=None, help="FER2013 CSV(.gz), image folder or .npz; default $FER2013")
    p.add_argument("--mode", choices=["pareto", "penalty"], default="pareto")
    p.add_argument("--objectives", default="acc,params,latency", help="from acc, f1, params, flops, latency")
    p.add_argument("--fidelity", default="default", help="cheap, default or rich")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel training workers")
    p.add_argument("--backend", choices=["loky", "dask"], default="loky")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address (with --backend dask)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seed-baselines", action="store_true", help="start from the hand-made baselines")
    p.add_argument("--time-limit", type=float, default=900, help="seconds of training per candidate")
    p.add_argument("--latency-backend", choices=["onnx", "torch"], default="onnx")
    p.add_argument("--champion-rule", choices=["max-acc", "knee"], default="max-acc")
    p.add_argument("--max-params", type=float, default=None, help="champion budget")
    p.add_argument("--max-latency-ms", type=float, default=None, help="champion budget")
    p.add_argument("--run-dir", default=None, help="default runs/<time>-<space>-s<seed>")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue an interrupted run")
    p.set_defaults(func=cmd_evolve)


def _new_run_config(args) -> dict:
    from nas.data import resolve_data_path
    from nas.evaluate import get_fidelity
    from nas.evolve import SearchConfig
    from nas.space import load_space, resolve_space_path

    space = load_space(args.space)
    search = SearchConfig(
        generations=args.generations, population=args.population, mode=args.mode,
        objectives=tuple(args.objectives.split(",")), seed=args.seed, seed_baselines=args.seed_baselines,
        champion_rule=args.champion_rule, max_params=args.max_params, max_latency_ms=args.max_latency_ms,
    )  # fmt: skip
    jobs = max(1, args.jobs)
    return {
        "search": asdict(search),
        "space_file": str(resolve_space_path(args.space)),
        "space": space.to_dict(),
        "data": resolve_data_path(args.data),
        "fidelity": asdict(get_fidelity(args.fidelity)),
        "evaluation": {
            "jobs": jobs,
            "threads_per_job": max(1, (os.cpu_count() or 1) // jobs),
            "backend": args.backend,
            "scheduler": args.scheduler,
            "device": args.device,
            "time_limit": args.time_limit,
            "latency_backend": args.latency_backend,
        },
        "versions": _versions(),
        "cpu": _cpu_model(),
        "command": " ".join(sys.argv),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def cmd_evolve(args) -> int:
    from nas import data as fer
    from nas import report
    from nas.evaluate import Cache, EvalTask, Evaluator, Fidelity, LatencyConfig
    from nas.evolve import Search, SearchConfig, choose_champion, load_checkpoint
    from nas.space import space_from_dict

    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.json").exists():
            raise RunDirError(f"{run_dir}: not a run directory (no config.json)")
        config = json.loads((run_dir / "config.json").read_text())
        config["search"]["generations"] = args.generations
        state = load_checkpoint(run_dir)
    else:
        config = _new_run_config(args)
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{config['space']['name']}-s{args.seed}"
        run_dir = Path(args.run_dir) if args.run_dir else RUNS / name
        if (run_dir / "checkpoint.pkl").exists() or (run_dir / "cache.jsonl").exists():
            raise RunDirError(f"{run_dir}: already holds a run; continue it with --resume {run_dir}")
        run_dir.mkdir(parents=True, exist_ok=True)
        state = None
    report.write_json(run_dir / "config.json", config)

    search_cfg = SearchConfig(**{**config["search"], "objectives": tuple(config["search"]["objectives"])})
    space = space_from_dict({k: v for k, v in config["space"].items()}, source=config["space_file"])
    ev_cfg = config["evaluation"]
    task = EvalTask(
        data=config["data"], fidelity=Fidelity(**config["fidelity"]), seed=search_cfg.seed,
        device=ev_cfg["device"], threads=ev_cfg["threads_per_job"], time_limit=ev_cfg["time_limit"],
        input_shape=tuple(space.input_shape), num_classes=space.num_classes,
    )  # fmt: skip
    print(f"loading data from {config['data']} ...", file=sys.stderr)
    fer.load(task.data, ("train", "val"))
    evaluator = Evaluator(task, Cache(run_dir / "cache.jsonl"), ev_cfg["jobs"], ev_cfg["backend"], ev_cfg["scheduler"],
                          LatencyConfig(backend=ev_cfg["latency_backend"]))  # fmt: skip
    done_gens = state.generation + 1 if state else 0
    print(_estimate(task, search_cfg, ev_cfg["jobs"], done_gens), file=sys.stderr)
    progress = _Progress(search_cfg.generations)

    def on_generation(st, front) -> None:
        report.write_tables(run_dir, st.rows, evaluator.cache.records, front, st.logbook)
        champion = choose_champion(front, search_cfg, search_cfg.objective_list)
        if champion:
            report.write_json(run_dir / "champion.json", champion)
        report.plot_run(run_dir)
        progress.end_generation(st.logbook[-1])

    search = Search(space, search_cfg, evaluator, run_dir, on_generation, progress.start_generation)
    try:
        final = search.run(state)
    except KeyboardInterrupt:
        progress.close()
        print(f"\ninterrupted: finished evaluations are saved in {run_dir}/cache.jsonl; "
              f"continue with: python scripts/evolve.py --resume {run_dir} --generations {search_cfg.generations}",
              file=sys.stderr)  # fmt: skip
        return 130
    finally:
        evaluator.close()
    progress.close()
    last = final.logbook[-1]
    print(f"done: {run_dir} — {len(final.archive)} networks on the front, best accuracy {last['best_acc']:.4f}, "
          f"hypervolume {last['hypervolume']:.4f}, {final.seconds / 60:.1f} min")  # fmt: skip
    if (run_dir / "champion.json").exists():
        champ = json.loads((run_dir / "champion.json").read_text())
        print(f"champion ({champ['rule']}): {champ['genome']}\n  val acc {champ['val_acc']:.4f}, "
              f"{champ['params']:,} params, {champ.get('latency_ms') or float('nan'):.3f} ms")  # fmt: skip
    return 0


def _estimate(task, cfg, jobs: int, done_generations: int) -> str:
    """Up-front cost: a probe network's measured training speed times the number of evaluations."""
    import torch

    from nas.build import build
    from nas.data import load
    from nas.space import load_baselines
    from nas.train import TrainConfig, resolve_device, train

    probe = load_baselines()["mini_xception"]
    dataset = load(task.data, ("train", "val"))
    split = dataset["train"].subset(512, 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(task.threads)
    try:
        t0 = time.perf_counter()
        train(build(probe.genome), split, split.subset(64, 0), TrainConfig(epochs=1, batch_size=128), task.device)
        ips = 576 / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    n_train = min(task.fidelity.train_images or len(dataset["train"]), len(dataset["train"]))
    n_val = min(task.fidelity.val_images or len(dataset["val"]), len(dataset["val"]))
    per = (n_train * task.fidelity.epochs) / ips + n_val / (3 * ips)  # inference ~3x faster than training
    evals = cfg.population * (cfg.generations + 1 - done_generations)
    total = evals * per / jobs
    return (f"estimate: {evals} evaluations x ~{per:.0f} s / {jobs} worker(s) ~ {total / 3600:.1f} h "
            f"(probe {probe.name} trains at {ips:.0f} images/s on {task.threads} thread(s), {resolve_device(task.device)};"
            f" repeats come from the cache, so usually less)")  # fmt: skip


class _Progress:
    """A tqdm bar per generation: evaluations done, cache hits, best accuracy, front, hypervolume."""

    def __init__(self, generations: int) -> None:
        self.generations, self.bar, self.best, self.last = generations, None, 0.0, {}

    def start_generation(self, generation: int, n: int):
        from tqdm import tqdm

        self.close()
        self.bar = tqdm(total=n, desc=f"gen {generation}/{self.generations}", unit="net", file=sys.stderr)
        self.hits = 0

        def on_record(record: dict, cached: bool) -> None:
            self.hits += cached
            if record.get("status") == "ok":
                self.best = max(self.best, record.get("val_acc") or 0.0)
            self.bar.set_postfix(hits=self.hits, best=f"{self.best:.3f}", front=self.last.get("front_size", "-"),
                                 hv=f"{self.last.get('hypervolume', 0):.3f}")  # fmt: skip
            self.bar.update(1)

        return on_record

    def end_generation(self, entry: dict) -> None:
        self.last = entry
        if self.bar:
            self.bar.set_postfix(hits=self.hits, best=f"{entry['best_acc']:.3f}", front=entry["front_size"],
                                 hv=f"{entry['hypervolume']:.3f}")  # fmt: skip
            self.bar.refresh()

    def close(self) -> None:
        if self.bar:
            self.bar.close()
            self.bar = None


# ---------------------------------------------------------------- report


def _report_parser(sub) -> None:
    p = sub.add_parser("report", help="redraw a run's plots from its CSVs")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from nas.report import plot_run

    run_dir = Path(args.run_dir)
    if not (run_dir / "evaluations.csv").exists():
        raise RunDirError(f"{run_dir}: no evaluations.csv yet (is this a run directory?)")
    for path in plot_run(run_dir):
        print(path)
    return 0


# ---------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nas", description="fer-nas: genetic NAS for facial expressions")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_evolve_parser, _report_parser):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except NasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # invalid settings, e.g. a population that is not a multiple of 4
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
