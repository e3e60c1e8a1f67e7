"""The ``nas`` command and its subcommands; ``scripts/*.py`` are thin wrappers over these.

Each subcommand parses its flags and calls one function of the Python API (``nas.api``), then prints
what it returned. Bad input of any kind ends as one line on stderr and exit status 2; Ctrl-C (or SIGTERM)
saves and exits with 130.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import NoReturn

from nas.errors import NasError, first_line


class _Stderr(logging.Handler):
    """Log lines to whatever ``sys.stderr`` is at the time (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)


class _Help(argparse.HelpFormatter):
    """Every flag's help ends with its default (unless it has none, or the help says it already)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag like every other bad input: one line, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


_COMMON = _Parser(add_help=False)  # the flags of every subcommand
_COMMON.add_argument("-v", "--verbose", action="count", default=0, help="more detail on stderr")
_COMMON.add_argument("-q", "--quiet", action="count", default=0, help="warnings and errors only")


# ---------------------------------------------------------------- evolve


def _evolve_parser(sub) -> None:
    """The flags of ``evolve``: the run configuration's sections and every algorithm's and strategy's
    options, as declared (``nas.config``, their ``Options``); only where to find things is declared here."""
    from nas import config
    from nas.settings import add_flags

    p = sub.add_parser(
        "evolve",
        parents=[_COMMON],
        formatter_class=_Help,
        help="run a genetic architecture search",
        description="Run a genetic NAS on FER2013.",
    )
    p.add_argument("--space", default="default", help="search-space file or bundled name (default, tiny)")
    p.add_argument(
        "--data",
        default=None,
        help="FER2013 CSV(.gz), image folder or .npz; default $FER2013 (with --resume or --config: the run's own)",
    )
    p.add_argument("--mode", choices=["pareto", "penalty"], default="pareto", help="penalty: --algorithm ga")
    seen: set[str] = set()
    for name, section in config.SECTIONS.items():
        add_flags(p.add_argument_group(f"{name} settings (nas.config)"), section, seen)
    algorithm_options, strategy_options = config.algorithm_options(), config.strategy_options()
    add_flags(p.add_argument_group("algorithm options (each algorithm's own)"), algorithm_options, seen)
    add_flags(p.add_argument_group("evaluation strategy options (each strategy's own)"), strategy_options, seen)
    p.set_defaults(algorithm_options=algorithm_options, strategy_options=strategy_options)
    p.add_argument("--run-dir", default=None, help="default runs/<time>-<space>-s<seed>")
    p.add_argument(
        "--resume",
        default=None,
        metavar="RUN_DIR",
        help="continue an interrupted run with its own settings (only --generations and --jobs may change)",
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="run again the search a config.json (or a TOML file with its sections) describes, in a new run directory",
    )
    p.set_defaults(func=cmd_evolve)


def _algorithm_options(args) -> tuple[str | None, dict]:
    """The algorithm (``ga`` for ``--mode penalty``) and the options given for it."""
    from nas.settings import given

    algorithm = args.algorithm or ("ga" if args.mode == "penalty" else None)
    if args.mode == "penalty" and algorithm != "ga":
        raise NasError(f"--mode penalty is the penalised GA (--algorithm ga), not --algorithm {algorithm}")
    return algorithm, given(args, args.algorithm_options)


def _note_ignored(args, kept: set[str]) -> None:
    """--resume and --config take the run's own settings: say which given flags they leave unused."""
    if args.resume and args.config:
        raise NasError("--resume and --config exclude each other")
    defaults = vars(build_parser().parse_args(["evolve"]))
    parser_own = {"func", "algorithm_options", "strategy_options"}
    ignored = [k for k, v in vars(args).items() if k not in kept | parser_own and v != defaults.get(k)]
    if ignored:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in ignored)
        logging.getLogger("nas").warning(f"{flags}: ignored; the run keeps its own settings")


def cmd_evolve(args) -> int:
    from nas import api, config
    from nas.evolve.progress import ProgressBar, StopOnSignal
    from nas.settings import given

    progress, stop = ProgressBar(show=not args.quiet), StopOnSignal()
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        if args.resume or args.config:
            kept = set(config.RESUME_SETTINGS) | ({"run_dir"} if args.config else set())
            _note_ignored(args, kept | {"resume", "config", "verbose", "quiet"})
        if args.resume:
            result = api.resume(args.resume, args.generations, jobs=args.jobs, data=args.data,
                                callbacks=[progress, stop])  # fmt: skip
        elif args.config:
            result = api.replay(args.config, args.run_dir, generations=args.generations, jobs=args.jobs,
                                data=args.data, callbacks=[progress, stop])  # fmt: skip
        else:
            algorithm, options = _algorithm_options(args)
            settings = {k: v for section in config.SECTIONS.values() for k, v in given(args, section).items()}
            settings |= {"algorithm": algorithm} if algorithm else {}
            result = api.search(
                args.data, args.space, run_dir=args.run_dir, callbacks=[progress, stop], options=options,
                strategy_options=given(args, args.strategy_options), **settings,
            )  # fmt: skip
    except KeyboardInterrupt:
        progress.close()
        run_dir = args.resume or progress.run_dir
        command = "python scripts/evolve.py" if sys.argv[0].endswith("evolve.py") else "nas evolve"  # as it was run
        said = (
            f"finished evaluations are saved in {run_dir}/cache.jsonl; continue with: {command} --resume {run_dir}"
            if run_dir
            else "before the search began: nothing was saved"
        )
        print(f"\ninterrupted: {said}", file=sys.stderr)
        return 130
    finally:  # before any error is printed: the line it is printed on must be its own
        progress.close()
        signal.signal(signal.SIGTERM, previous)
    print(
        f"done: {result.run_dir} — {len(result.front)} networks on the front, best accuracy "
        f"{max((r['val_acc'] for r in result.front), default=0.0):.4f}, hypervolume {result.hypervolume:.4f}, "
        f"{result.seconds / 60:.1f} min"
    )
    if result.champion:
        c = result.champion
        final = f" ({c['finalist']['val_acc']:.4f} at {c['finalist']['fidelity']})" if "finalist" in c else ""
        print(
            f"champion ({c['rule']}): {c['genome']}\n  val acc {c['val_acc']:.4f}{final}, "
            f"{c['params']:,} params, {c.get('latency_ms') or float('nan'):.3f} ms"
        )
    return 0


# ---------------------------------------------------------------- report


def _report_parser(sub) -> None:
    p = sub.add_parser("report", parents=[_COMMON], formatter_class=_Help, help="redraw a run's plots from its CSVs")
    p.add_argument("run_dir", help="the run directory")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from nas import api

    for path in api.report(args.run_dir):
        print(path)
    return 0


# ---------------------------------------------------------------- tune and train


def _tune_parser(sub) -> None:
    """The flags of ``tune``: the study's and the confirmation's options, as declared (``nas.training.options``)."""
    from nas.settings import add_flags
    from nas.training.options import ConfirmOptions, StudyOptions

    p = sub.add_parser(
        "tune", parents=[_COMMON], formatter_class=_Help, help="tune the champion's training with Optuna"
    )
    p.add_argument("--run", required=True, help="run directory (its champion.json gives the genome)")
    p.add_argument("--genome", default=None, help="tune this genome instead of the champion")
    p.add_argument("--data", default=None, help="default: the run's data")
    seen: set[str] = set()
    add_flags(p, StudyOptions, seen)
    add_flags(p.add_argument_group("confirmation: the default and the best recipes again at full length"),
              ConfirmOptions, seen)  # fmt: skip
    p.set_defaults(func=cmd_tune)


def cmd_tune(args) -> int:
    from nas import api
    from nas.settings import given
    from nas.training.options import ConfirmOptions, StudyOptions

    tuned = api.tune(
        args.run, args.genome, args.data, confirmation=given(args, ConfirmOptions), **given(args, StudyOptions)
    )
    adopted = "adopted" if tuned["confirmation"]["adopted"] else "not adopted"
    print(
        f"{tuned['n_trials']} trials {tuned['trials']}; best validation accuracy {tuned['value']:.4f} with "
        f"{tuned['params']}\n{adopted}: {tuned['confirmation']['verdict']}\n"
        f"wrote {args.run}/tuned.json, tune_history.png"
    )
    return 0


def _train_parser(sub) -> None:
    """The flags of ``train``: what to train, and the full training's options (``nas.training.options``)."""
    from nas.settings import add_flags
    from nas.training.options import FinalOptions

    p = sub.add_parser(
        "train", parents=[_COMMON], formatter_class=_Help, help="train the champion fully and report on the test split"
    )
    p.add_argument("--run", required=True, help="run directory")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--genome", default=None, help="train this genome instead of the champion")
    g.add_argument("--baseline", default=None, help="train a baseline (mini_xception, ...) with the same recipe")
    p.add_argument("--data", default=None, help="default: the run's data")
    add_flags(p, FinalOptions, set())
    p.add_argument("--untuned", action="store_true", help="same as --recipe default")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from nas import api
    from nas.evolve.progress import EpochBar
    from nas.settings import given
    from nas.training.options import FinalOptions

    options = given(args, FinalOptions)
    if args.untuned:
        if options.get("recipe", "default") != "default":
            raise NasError(f"--untuned and --recipe {options['recipe']} exclude each other")
        options["recipe"] = "default"
    bar = EpochBar(options.get("epochs", FinalOptions().epochs), show=not args.quiet)
    try:
        r = api.train(args.run, genome=args.genome, baseline=args.baseline, data=args.data, on_epoch=bar, **options)
    finally:
        bar.close()
    print(
        f"{r['name']}: PrivateTest accuracy {r['single_crop']['acc']:.4f} (ten-crop {r['ten_crop']['acc']:.4f}), "
        f"macro-F1 {r['ten_crop']['f1']:.4f}; wrote {r['out']}/model.pt, report.md"
    )
    return 0


def _distill_parser(sub) -> None:
    """The flags of ``distill``: which students (``StudentOptions``) and the full training's (``FinalOptions``)."""
    from nas.settings import add_flags
    from nas.training.options import FinalOptions, StudentOptions

    p = sub.add_parser(
        "distill", parents=[_COMMON], formatter_class=_Help,
        help="train the search's small networks with and without its best networks as teachers; report both",
    )  # fmt: skip
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--data", default=None, help="default: the run's data")
    seen: set[str] = set()
    add_flags(p, StudentOptions, seen)
    add_flags(p, FinalOptions, seen, without=("out",))  # the stage writes under the run directory
    p.set_defaults(func=cmd_distill)


def cmd_distill(args) -> int:
    from nas import api
    from nas.evolve.progress import EpochBar
    from nas.settings import given
    from nas.training.options import FinalOptions, StudentOptions

    options = given(args, StudentOptions) | given(args, FinalOptions)
    options.setdefault("teacher", ("best",))
    bar = EpochBar(options.get("epochs", FinalOptions().epochs), show=not args.quiet)
    try:
        summary = api.distill(args.run, data=args.data, on_epoch=bar, **options)
    finally:
        bar.close()
    for s in summary["students"]:
        print(f"{s['key']}: PrivateTest ten-crop {s['without']['ten_crop']:.4f} without a teacher, "
              f"{s['with']['ten_crop']:.4f} with; wrote {s['with']['out']}")  # fmt: skip
    print(f"the teachers together: {summary['ensemble']['acc']:.4f} (ten-crop); wrote {args.run}/distilled/")
    return 0


# ---------------------------------------------------------------- export


def _export_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        parents=[_COMMON],
        formatter_class=_Help,
        help="export the trained champion to ONNX + TorchScript + model.json",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run directory holding model.pt (from scripts/train.py)")
    src.add_argument("--checkpoint", help="a checkpoint file (.pt) from scripts/train.py")
    p.add_argument("--out", default=None, help="output folder (default <run>/export or beside the checkpoint)")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from nas import api

    info = api.export(args.run, args.checkpoint, args.out)
    print(
        f"wrote {info['out']}/model.onnx, model.ts, model.json — {info['params']:,} params, "
        f"{info['latency_ms']['onnxruntime_1_thread_batch_1']:.3f} ms (ONNX Runtime, 1 thread, batch 1), "
        f"max abs difference {max(info['max_abs_difference'].values()):.1e}"
    )
    return 0


# ---------------------------------------------------------------- demo


def _demo_parser(sub) -> None:
    from nas.deploy.demo import STILL, DemoConfig
    from nas.settings import finite

    d, still = DemoConfig(), STILL
    p = sub.add_parser(
        "demo",
        parents=[_COMMON],
        formatter_class=_Help,
        help="real-time expression recognition on a webcam, video, image or folder",
    )
    p.add_argument("--model", default=None, help="model.onnx or its export folder (default: the package's own model)")
    p.add_argument("--source", default="0", help="webcam index, video file, image file or folder (default 0)")
    p.add_argument("--backend", choices=["onnx", "torchscript"], default="onnx", help="which exported file runs")
    p.add_argument("--headless", action="store_true", help="no window; use with --output")
    p.add_argument("--output", default=None, help="out.mp4, out.png or a folder; a CSV of every face is written too")
    # None: the demo's setting for the source (a video's or a camera's, else a still's: nas.deploy.demo.STILL)
    p.add_argument("--scale-factor", type=finite, default=None, help=f"Haar step between face sizes ({d.scale_factor})")
    p.add_argument("--min-neighbors", type=int, default=None, help=f"Haar detections a face needs ({d.min_neighbors})")
    p.add_argument("--min-face", type=int, default=None,
                   help=f"smallest face in pixels ({d.min_face}; {still.min_face} for pictures)")  # fmt: skip
    p.add_argument("--detect-width", type=int, default=None,
                   help=f"detector runs at this frame width ({d.detect_width}; pictures: their own)")  # fmt: skip
    p.add_argument(
        "--detect-every", type=int, default=None, help=f"detect on every Nth frame, track between ({d.detect_every})"
    )
    p.add_argument("--margin", type=finite, default=None, help=f"widen each face box by this fraction ({d.margin})")
    p.add_argument("--smoothing", type=finite, default=None, help=f"1 = no temporal smoothing ({d.smoothing})")
    p.add_argument("--hold", type=int, default=None, help=f"frames a face that is not found keeps its box ({d.hold})")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from nas import api

    demo = api.demo(
        args.source, args.model, args.output, args.headless, args.backend, args.max_frames,
        scale_factor=args.scale_factor, min_neighbors=args.min_neighbors, min_face=args.min_face,
        detect_width=args.detect_width, detect_every=args.detect_every, margin=args.margin,
        smoothing=args.smoothing, hold=args.hold,
    )  # fmt: skip
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
    p = sub.add_parser(
        "baselines", parents=[_COMMON], formatter_class=_Help, help="print the hand-made baselines with their sizes"
    )
    p.set_defaults(func=cmd_baselines)


def cmd_baselines(args) -> int:
    from nas import api

    print(f"{'baseline':<16} {'params':>10} {'MFLOPs':>8} {'literature':>10}  genome")
    for b in api.baselines():
        lit = f"{b['literature_params']:,}" if b["literature_params"] else "-"
        print(f"{b['name']:<16} {b['params']:>10,} {b['flops'] / 1e6:>8.1f} {lit:>10}  {b['genome']}")
    return 0


# ---------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    import nas

    parser = _Parser(prog="nas", description="fer-nas: genetic NAS for facial expressions")
    parser.add_argument("--version", action="version", version=f"fer-nas {nas.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _evolve_parser,
        _report_parser,
        _tune_parser,
        _train_parser,
        _distill_parser,
        _export_parser,
        _demo_parser,
        _baselines_parser,
    ):
        add(sub)
    return parser


def _console(verbosity: int) -> None:
    """The ``nas`` logger's lines on stderr: warnings only (-q), progress (default) or details (-v); Optuna's
    lines (its trials) the same way, through the same handler (``nas.training.tuning`` turns Optuna's own
    handler off), so -q quiets them too and a traceback it logs at debug level never reaches the console."""
    handler = next((h for h in logging.getLogger("nas").handlers if isinstance(h, _Stderr)), None) or _Stderr()
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    handler.setLevel(level)
    for name in ("nas", "optuna"):
        logger = logging.getLogger(name)
        if handler not in logger.handlers:
            logger.addHandler(handler)
    logging.getLogger("nas").setLevel(min(level, logging.INFO))


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a bad flag (already reported)
        return exc.code if isinstance(exc.code, int) else 2
    _console(getattr(args, "verbose", 0) - getattr(args, "quiet", 0))
    import threading

    handles = threading.current_thread() is threading.main_thread()  # only there may a handler be set
    previous = signal.signal(signal.SIGTERM, _interrupt) if handles else None  # batch schedulers send SIGTERM
    try:
        return args.func(args)
    except KeyboardInterrupt:  # evolve says more itself; a training keeps its last epoch, a study its trials
        print(
            f"\ninterrupted: what {args.command} finished stays saved; run the same command again to go on",
            file=sys.stderr,
        )
        return 130
    except NasError as exc:
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # permission, read-only or immutable file, disk full: the user's to mend, by file
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or first_line(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory (a smaller network, batch or --jobs needs less)", file=sys.stderr)
        return 2
    finally:
        if handles:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> NoReturn:
    """SIGTERM stops a command as Ctrl-C does."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
