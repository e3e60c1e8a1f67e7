"""The ``nas`` command and its subcommands; ``scripts/*.py`` are thin wrappers over these.

Each subcommand parses its flags, resolves a configuration, writes it into the run directory and calls
the package. Bad input of any kind ends as one line on stderr and exit status 2; Ctrl-C saves and
exits with 130.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from nas.errors import NasError, RunDirError

RUNS = Path("runs")


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "deap", "numpy", "onnxruntime", "optuna", "opencv-python", "joblib", "fer-nas"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
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
    p.add_argument(
        "--max-mflops", type=float, default=None, help="FLOPs budget per image, in place of the space's max_mflops"
    )
    p.add_argument("--data", default=None, help="FER2013 CSV(.gz), image folder or .npz; default $FER2013")
    p.add_argument(
        "--algorithm",
        choices=["nsga2", "random", "optuna"],
        default="nsga2",
        help="nsga2: DEAP's genetic search (default); random: uniform sampling; optuna: Optuna's NSGAIISampler",
    )
    p.add_argument("--mode", choices=["pareto", "penalty"], default="pareto")
    p.add_argument("--penalty", choices=["mnas", "linear"], default="mnas", help="the one fitness of --mode penalty")
    p.add_argument("--target-params", type=float, default=100_000, help="penalty mode: size target")
    p.add_argument("--target-latency-ms", type=float, default=1.0, help="penalty mode: latency target")
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
    if args.max_mflops is not None:
        if args.max_mflops <= 0:
            raise NasError(f"--max-mflops must be positive, got {args.max_mflops:g}")
        space = replace(space, max_mflops=args.max_mflops)
    search = SearchConfig(
        generations=args.generations,
        population=args.population,
        algorithm=args.algorithm,
        mode=args.mode,
        objectives=tuple(args.objectives.split(",")),
        seed=args.seed,
        seed_baselines=args.seed_baselines,
        penalty=args.penalty,
        target_params=args.target_params,
        target_latency_ms=args.target_latency_ms,
        champion_rule=args.champion_rule,
        max_params=args.max_params,
        max_latency_ms=args.max_latency_ms,
    )
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
    from nas.evolve import SearchConfig, choose_champion, load_checkpoint, make_search
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
        data=config["data"],
        fidelity=Fidelity(**config["fidelity"]),
        seed=search_cfg.seed,
        device=ev_cfg["device"],
        threads=ev_cfg["threads_per_job"],
        time_limit=ev_cfg["time_limit"],
        input_shape=tuple(space.input_shape),
        num_classes=space.num_classes,
        max_flops=space.max_mflops * 1e6 if space.max_mflops else None,
    )
    print(f"loading data from {config['data']} ...", file=sys.stderr)
    fer.load(task.data, ("train", "val"))
    evaluator = Evaluator(
        task,
        Cache(run_dir / "cache.jsonl"),
        ev_cfg["jobs"],
        ev_cfg["backend"],
        ev_cfg["scheduler"],
        LatencyConfig(backend=ev_cfg["latency_backend"]),
    )
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

    search = make_search(space, search_cfg, evaluator, run_dir, on_generation, progress.start_generation)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # batch schedulers stop jobs with SIGTERM
    try:
        final = search.run(state)
    except KeyboardInterrupt:
        progress.close()
        print(
            f"\ninterrupted: finished evaluations are saved in {run_dir}/cache.jsonl; "
            f"continue with: python scripts/evolve.py --resume {run_dir} --generations {search_cfg.generations}",
            file=sys.stderr,
        )
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        evaluator.close()
    progress.close()
    last = final.logbook[-1]
    print(
        f"done: {run_dir} — {len(final.archive)} networks on the front, best accuracy {last['best_acc']:.4f}, "
        f"hypervolume {last['hypervolume']:.4f}, {final.seconds / 60:.1f} min"
    )
    if (run_dir / "champion.json").exists():
        champ = json.loads((run_dir / "champion.json").read_text())
        print(
            f"champion ({champ['rule']}): {champ['genome']}\n  val acc {champ['val_acc']:.4f}, "
            f"{champ['params']:,} params, {champ.get('latency_ms') or float('nan'):.3f} ms"
        )
    return 0


def _interrupt(signum, frame) -> None:
    """SIGTERM ends a search like Ctrl-C: what is finished is saved, and --resume continues."""
    raise KeyboardInterrupt


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
    return (
        f"estimate: {evals} evaluations x ~{per:.0f} s / {jobs} worker(s) ~ {total / 3600:.1f} h "
        f"(probe {probe.name} trains at {ips:.0f} images/s on {task.threads} thread(s), {resolve_device(task.device)};"
        f" repeats come from the cache, so usually less)"
    )


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
            self.bar.set_postfix(
                hits=self.hits,
                best=f"{self.best:.3f}",
                front=self.last.get("front_size", "-"),
                hv=f"{self.last.get('hypervolume', 0):.3f}",
            )
            self.bar.update(1)

        return on_record

    def end_generation(self, entry: dict) -> None:
        self.last = entry
        if self.bar:
            self.bar.set_postfix(
                hits=self.hits,
                best=f"{entry['best_acc']:.3f}",
                front=entry["front_size"],
                hv=f"{entry['hypervolume']:.3f}",
            )
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


# ---------------------------------------------------------------- tune and train

MODEL_FILE = "model.pt"


def _run_genome_and_data(args) -> tuple[Path, str, str]:
    """The run directory, the genome to work on (champion unless given) and the data path."""
    from nas.data import resolve_data_path
    from nas.genome import parse_genome
    from nas.space import load_baselines

    run_dir = Path(args.run)
    config_path, champion_path = run_dir / "config.json", run_dir / "champion.json"
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: run directory not found")
    if getattr(args, "baseline", None):
        baselines = load_baselines()
        if args.baseline not in baselines:
            raise RunDirError(f"unknown baseline {args.baseline!r}; choose from {', '.join(baselines)}")
        genome = str(baselines[args.baseline].genome)
    elif args.genome:
        genome = str(parse_genome(args.genome))
    elif champion_path.exists():
        genome = json.loads(champion_path.read_text())["genome"]
    else:
        raise RunDirError(f"{champion_path}: no champion yet; pass --genome or let the search finish a generation")
    data = args.data or (json.loads(config_path.read_text())["data"] if config_path.exists() else None)
    return run_dir, genome, resolve_data_path(data)


def _tune_parser(sub) -> None:
    p = sub.add_parser("tune", help="tune the champion's training with Optuna")
    p.add_argument("--run", required=True, help="run directory (its champion.json gives the genome)")
    p.add_argument("--genome", default=None, help="tune this genome instead of the champion")
    p.add_argument("--data", default=None, help="default: the run's data")
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--epochs", type=int, default=6, help="epochs per trial")
    p.add_argument("--train-images", type=int, default=10_000, help="stratified Training subset per trial (0: all)")
    p.add_argument("--pruner", choices=["median", "hyperband", "none"], default="median")
    p.add_argument("--storage", default=None, help="Optuna RDB URL (default sqlite:///<run>/tune.db)")
    p.add_argument("--resume", action="store_true", help="continue an existing study")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_tune)


def cmd_tune(args) -> int:
    from nas.tune import tune

    run_dir, genome, data = _run_genome_and_data(args)
    study = tune(
        genome,
        data,
        run_dir,
        args.trials,
        args.epochs,
        args.train_images or None,
        args.pruner,
        args.storage,
        args.resume,
        args.seed,
        args.device,
    )
    tuned = json.loads((run_dir / "tuned.json").read_text())
    print(
        f"{len(study.trials)} trials {tuned['trials']}; best validation accuracy {tuned['value']:.4f} with "
        f"{tuned['params']}\nwrote {run_dir}/tuned.json, tune_history.png"
    )
    return 0


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train the champion fully and report on the test split")
    p.add_argument("--run", required=True, help="run directory")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--genome", default=None, help="train this genome instead of the champion")
    g.add_argument("--baseline", default=None, help="train a baseline (mini_xception, ...) with the same recipe")
    p.add_argument("--untuned", action="store_true", help="use the default recipe even if tuned.json exists")
    p.add_argument("--data", default=None, help="default: the run's data")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--patience", type=int, default=10, help="early stopping on validation accuracy")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="output folder (default: the run directory)")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    import torch

    from nas import data as fer
    from nas import train as training
    from nas.build import build, count_flops, count_params
    from nas.export import load_checkpoint, save_checkpoint
    from nas.genome import parse_genome
    from nas.latency import measure
    from nas.report import test_report
    from nas.train import TrainConfig

    run_dir, genome, data = _run_genome_and_data(args)
    tuned_path = run_dir / "tuned.json"
    recipe = "default"
    cfg = TrainConfig()
    if tuned_path.exists() and not args.untuned:
        from nas.tune import tuned_config

        cfg, recipe = tuned_config(json.loads(tuned_path.read_text()), args.epochs), "tuned"
    cfg = cfg.replace(epochs=args.epochs, early_stop=args.patience)
    name = args.baseline or ("untuned" if args.untuned else "champion")
    default_out = (
        run_dir / "baselines" / args.baseline if args.baseline else run_dir / "untuned" if args.untuned else run_dir
    )
    out = Path(args.out) if args.out else default_out
    out.mkdir(parents=True, exist_ok=True)
    dataset = fer.load(data, ("train", "val"))
    torch.manual_seed(cfg.seed)
    model = build(parse_genome(genome))
    print(
        f"training {name} ({recipe} recipe, up to {cfg.epochs} epochs) on {len(dataset['train'])} images ...",
        file=sys.stderr,
    )

    def show(epoch: int, row: dict) -> None:
        print(
            f"epoch {epoch + 1}: loss {row['train_loss']:.4f}, val acc {row['val_acc']:.4f}, "
            f"val F1 {row['val_f1']:.4f}, {row['seconds']:.0f} s",
            file=sys.stderr,
        )

    result = training.train(
        model, dataset["train"], dataset["val"], cfg, args.device, on_epoch=show, checkpoint=out / "train_state.pt"
    )
    metrics = {
        "val_acc": result.best_acc,
        "val_f1": result.best_f1,
        "best_epoch": result.best_epoch + 1,
        "epochs_run": result.epochs_run,
        "train_seconds": round(result.seconds, 1),
        "recipe": recipe,
    }
    save_checkpoint(out / MODEL_FILE, model.cpu(), metrics, json.loads(json.dumps(cfg.__dict__)))
    model, _ = load_checkpoint(out / MODEL_FILE)  # report on exactly what was saved
    test = fer.load(data, ("test",))["test"]  # PrivateTest: touched here, for the final report only
    extra = {
        "name": name,
        "genome": genome,
        "params": count_params(model),
        "flops": count_flops(model),
        "latency_ms": measure({"m": model})["m"],
        "device": args.device,
        **metrics,
    }
    baselines = {}
    for path in sorted((run_dir / "baselines").glob("*/report.json")) if out == run_dir else []:
        baselines[path.parent.name] = json.loads(path.read_text())
    if out == run_dir and (run_dir / "untuned" / "report.json").exists():
        baselines["same genome, untuned recipe"] = json.loads((run_dir / "untuned" / "report.json").read_text())
    report = test_report(model, test, out, extra, baselines)
    print(
        f"{name}: PrivateTest accuracy {report['single_crop']['acc']:.4f} (ten-crop {report['ten_crop']['acc']:.4f}), "
        f"macro-F1 {report['ten_crop']['f1']:.4f}; wrote {out}/{MODEL_FILE}, report.md"
    )
    return 0


# ---------------------------------------------------------------- export


def _export_parser(sub) -> None:
    p = sub.add_parser("export", help="export the trained champion to ONNX + TorchScript + model.json")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run directory holding model.pt (from scripts/train.py)")
    src.add_argument("--checkpoint", help="a checkpoint file (.pt) from scripts/train.py")
    p.add_argument("--out", default=None, help="output folder (default <run>/export or beside the checkpoint)")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from nas.export import export, load_checkpoint

    if args.run:
        ckpt = Path(args.run) / MODEL_FILE
        if not ckpt.exists():
            raise RunDirError(f"{ckpt}: no trained champion; run scripts/train.py --run {args.run} first")
    else:
        ckpt = Path(args.checkpoint)
    model, state = load_checkpoint(ckpt)
    out = Path(args.out) if args.out else ckpt.parent / "export"
    info = export(model, out, state.get("metrics"))
    print(
        f"wrote {out}/model.onnx, model.ts, model.json — {info['params']:,} params, "
        f"{info['latency_ms']['onnxruntime_1_thread_batch_1']:.3f} ms (ONNX Runtime, 1 thread, batch 1), "
        f"max abs difference {max(info['max_abs_difference'].values()):.1e}"
    )
    return 0


# ---------------------------------------------------------------- demo


def _demo_parser(sub) -> None:
    from nas.demo import DemoConfig

    d = DemoConfig()
    p = sub.add_parser("demo", help="real-time expression recognition on a webcam, video, image or folder")
    p.add_argument("--model", required=True, help="model.onnx (or its export folder)")
    p.add_argument("--source", default="0", help="webcam index, video file, image file or folder (default 0)")
    p.add_argument("--backend", choices=["onnx", "torchscript"], default="onnx")
    p.add_argument("--headless", action="store_true", help="no window; use with --output")
    p.add_argument("--output", default=None, help="out.mp4, out.png or a folder; a CSV of every face is written too")
    p.add_argument("--scale-factor", type=float, default=d.scale_factor)
    p.add_argument("--min-neighbors", type=int, default=d.min_neighbors)
    p.add_argument("--min-face", type=int, default=d.min_face, help="smallest face in pixels")
    p.add_argument("--detect-width", type=int, default=d.detect_width, help="detector runs at this frame width")
    p.add_argument("--detect-every", type=int, default=d.detect_every, help="detect on every Nth frame, track between")
    p.add_argument("--margin", type=float, default=d.margin)
    p.add_argument("--smoothing", type=float, default=d.smoothing, help="1 = no temporal smoothing")
    p.add_argument("--max-frames", type=int, default=None)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from nas.demo import DemoConfig, run

    if args.headless and not args.output:
        raise RunDirError("--headless needs --output (out.mp4, out.png or a folder)")
    cfg = DemoConfig(
        scale_factor=args.scale_factor,
        min_neighbors=args.min_neighbors,
        min_face=args.min_face,
        detect_width=args.detect_width,
        detect_every=max(1, args.detect_every),
        margin=args.margin,
        smoothing=args.smoothing,
    )
    demo = run(args.source, args.model, args.output, args.headless, cfg, args.backend, args.max_frames)
    per_frame = {k: 1e3 * v / max(demo.count, 1) for k, v in demo.seconds.items()}
    print(
        f"{demo.count} frames, {demo.tracker.next_id} faces tracked; ms per frame: "
        + ", ".join(f"{k} {v:.1f}" for k, v in per_frame.items())
    )
    if args.output:
        print(f"wrote {args.output}")
    return 0


# ---------------------------------------------------------------- baselines


def _baselines_parser(sub) -> None:
    p = sub.add_parser("baselines", help="print the hand-made baselines with their sizes")
    p.set_defaults(func=cmd_baselines)


def cmd_baselines(args) -> int:
    from nas.build import build, count_flops, count_params
    from nas.space import load_baselines

    print(f"{'baseline':<16} {'params':>10} {'MFLOPs':>8} {'literature':>10}  genome")
    for name, b in load_baselines().items():
        model = build(b.genome)
        lit = f"{b.literature_params:,}" if b.literature_params else "-"
        print(f"{name:<16} {count_params(model):>10,} {count_flops(model) / 1e6:>8.1f} {lit:>10}  {b.genome}")
    return 0


# ---------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nas", description="fer-nas: genetic NAS for facial expressions")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _evolve_parser,
        _report_parser,
        _tune_parser,
        _train_parser,
        _export_parser,
        _demo_parser,
        _baselines_parser,
    ):
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
