"""Tables and plots of a run: evaluations, the Pareto front, per-generation progress.

Everything here reads or writes files in the run directory, so ``scripts/report.py runs/<id>`` can
redraw the plots from the CSVs at any time, also while the search is still going.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from nas import objectives as objs
from nas.config import read as read_config
from nas.errors import RunDirError, first_line
from nas.rundir import EVALUATIONS, PARETO, PROGRESS, REPORT, REPORT_MD, atomic_write, search_sentence, write_json
from nas.runner import Callback, State
from nas.space import load_baselines

log = logging.getLogger(__name__)


class Plots(Callback):
    """Redraws a run's plots after every generation; a plot that fails is logged, and the search goes on."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.failed = Path(run_dir), False

    def end_generation(self, state: State) -> None:
        try:
            plot_run(self.run_dir)
        except Exception as exc:  # noqa: BLE001 - a plot is never worth a search
            if not self.failed:
                log.warning(f"{self.run_dir}: plots not drawn ({type(exc).__name__}: {exc})")
            self.failed = True


def save_figure(fig, path: Path, size: tuple[float, float] | None = None) -> Path:
    """Lay out, save as PNG and close a matplotlib figure (also for Optuna's plots)."""
    import matplotlib.pyplot as plt

    if size:
        fig.set_size_inches(*size)
    fig.tight_layout()
    fig.savefig(path, dpi=120 if size else fig.dpi)
    plt.close(fig)
    return Path(path)


def _objectives(run_dir: Path) -> tuple[objs.Objective, ...]:
    return objs.parse_objectives(read_config(run_dir).problem.objectives)


def redraw(run_dir: str | Path) -> list[Path]:
    """``scripts/report.py``: the plots of a run directory, also while its search is running."""
    if not (Path(run_dir) / EVALUATIONS).exists():
        raise RunDirError(f"{run_dir}: no {EVALUATIONS} yet (is this a run directory?)")
    return plot_run(run_dir)


def plot_run(run_dir: str | Path) -> list[Path]:
    """Redraw every plot of a run from its CSVs; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    run_dir = Path(run_dir)
    evals = _table(run_dir / EVALUATIONS, {"status", "key"})
    front = _table(run_dir / PARETO, set())
    objectives = _objectives(run_dir)
    missing = {o.column for o in objectives} - set(evals.columns)
    if missing:
        raise RunDirError(f"{run_dir / EVALUATIONS}: no column(s) {sorted(missing)} for the run's objectives")
    out = []
    for o in objectives:
        if o.name in ("acc", "f1"):
            continue
        out.append(_plot_front(run_dir, evals, front, o))
    if (run_dir / PROGRESS).exists():
        out.append(_plot_progress(run_dir, _table(run_dir / PROGRESS, {"gen"})))
    return out


def _table(path: Path, columns: set[str]) -> pd.DataFrame:
    """A run's CSV table with ``columns``, or one line naming the file."""
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise RunDirError(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise RunDirError(f"{path}: unreadable table ({first_line(exc)})") from None
    if not columns <= set(table.columns):
        raise RunDirError(f"{path}: no column(s) {sorted(columns - set(table.columns))}")
    return table


def _plot_front(run_dir: Path, evals: pd.DataFrame, front: pd.DataFrame, o: objs.Objective) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ok = evals[evals["status"] == "ok"].drop_duplicates("key")
    fig, ax = plt.subplots(figsize=(7.5, 5.2), dpi=130)
    points = ax.scatter(
        ok[o.column],
        ok["val_acc"],
        c=ok["generation"],
        vmin=0,
        vmax=max(1, int(evals["generation"].max())),
        cmap="viridis",
        s=22,
        alpha=0.75,
        edgecolors="none",
        label="evaluated",
    )
    fig.colorbar(points, ax=ax, label="generation", ticks=MaxNLocator(integer=True))
    # the 2-D trade-off of the (possibly higher-dimensional) front, as a staircase
    f = front.sort_values(o.column)
    ax.scatter(
        f[o.column],
        f["val_acc"],
        s=70,
        facecolors="none",
        edgecolors="crimson",
        linewidths=1.5,
        label="Pareto front (all objectives)",
    )
    staircase = _front_2d(ok, o)
    ax.step(
        staircase[o.column],
        staircase["val_acc"],
        where="post",
        color="crimson",
        lw=1.2,
        label=f"front in accuracy vs {o.name}",
    )
    _mark_baselines(ax, ok, o)
    if o.log:
        ax.set_xscale("log")
    ax.set_xlabel(o.label)
    ax.set_ylabel("validation accuracy (PublicTest)")
    ax.set_title(f"{run_dir.name}: accuracy vs {o.name}  ({len(ok)} networks)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    path = run_dir / f"pareto_{o.name}.png"
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _mark_baselines(ax, ok: pd.DataFrame, o: objs.Objective) -> None:
    """A star and a name for every hand-made network the run evaluated."""
    baselines = {str(b.genome): name for name, b in load_baselines().items()}
    for _, row in ok[ok["genome"].isin(baselines)].iterrows():
        ax.scatter(row[o.column], row["val_acc"], marker="*", s=200, color="orange", edgecolors="black", zorder=5)
        ax.annotate(
            baselines[row["genome"]],
            (row[o.column], row["val_acc"]),
            textcoords="offset points",
            xytext=(6, -10),
            fontsize=8,
        )


def _front_2d(ok: pd.DataFrame, o: objs.Objective) -> pd.DataFrame:
    """The non-dominated points in (accuracy, ``o``), one of equal points, sorted by ``o``."""
    two = (objs.OBJECTIVES["acc"], o)
    ranked = ok.sort_values([o.column, "val_acc"], ascending=[True, False])
    points = list(zip(ranked["val_acc"], ranked[o.column]))
    return ranked[objs.nondominated(points, two, keep_ties=False)]


def _plot_progress(run_dir: Path, progress: pd.DataFrame) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = [
        ("hypervolume", "hypervolume (normalised)"),
        ("best_acc", "best validation accuracy"),
        ("front_size", "front size"),
    ]
    if "predictor_tau" in progress and progress["predictor_tau"].notna().any():
        panels.append(("predictor_tau", "predictor's Kendall tau on the trained"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), dpi=130)
    for ax, (col, label) in zip(axes, panels):
        ax.plot(progress["gen"], progress[col], marker="o", ms=3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("generation")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    if "pop_mean_acc" in progress:
        axes[1].plot(progress["gen"], progress["pop_mean_acc"], ls="--", label="population mean")
        axes[1].legend(fontsize=8)
    fig.suptitle(f"{run_dir.name}: progress per generation")
    fig.tight_layout()
    path = run_dir / "progress.png"
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- a long training's curve


def write_history(history: list[dict], out_dir: Path, title: str) -> list[Path]:
    """``history.csv`` and ``history.png`` (loss; validation accuracy and macro-F1; learning rate) per epoch:
    rewritten after every epoch, so a long training can be watched."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = pd.DataFrame(history)
    frame["epoch"] += 1
    csv = Path(out_dir) / "history.csv"
    atomic_write(csv, frame.to_csv(index=False))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), dpi=110)
    axes[0].plot(frame["epoch"], frame["train_loss"])
    axes[0].set_ylabel("training loss")
    for column, label in (("val_acc", "accuracy"), ("val_f1", "macro-F1")):
        axes[1].plot(frame["epoch"], frame[column], label=label)
    axes[1].set_ylabel("PublicTest")
    axes[1].legend()
    axes[2].plot(frame["epoch"], frame["lr"])
    axes[2].set_yscale("log")
    axes[2].set_ylabel("learning rate")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return [csv, save_figure(fig, Path(out_dir) / "history.png")]


# ---------------------------------------------------------------- the test report (PrivateTest only)


def test_report(model, test_split, out_dir: Path, extra: dict, baselines: dict[str, dict] | None = None) -> dict:
    """Accuracy (single crop and ten-crop), macro-F1, per-class figures and a confusion matrix plot.

    Called once, on the final model: ``PrivateTest`` is never used to choose anything.
    """

    from nas import metrics
    from nas.data import CLASS_NAMES
    from nas.training import predict, predict_ten_crop, resolve_device

    out_dir = Path(out_dir)
    device = resolve_device(extra.get("device", "auto"))
    model = model.to(device)
    y = test_split.y.numpy()
    single = predict(model, test_split.x, device).argmax(1).numpy()
    ten = predict_ten_crop(model, test_split.x, device).argmax(1).numpy()
    k = len(CLASS_NAMES)
    cm = metrics.confusion(y, ten, k)
    per = metrics.per_class(cm)
    result = {
        "split": "PrivateTest",
        "images": int(len(y)),
        "single_crop": metrics.summary(y, single, k),
        "ten_crop": metrics.summary(y, ten, k),
        "per_class": {
            name: {m: float(per[m][i]) for m in ("precision", "recall", "f1", "support")}
            for i, name in enumerate(CLASS_NAMES)
        },
        "confusion": cm.tolist(),
        **{k_: v for k_, v in extra.items() if k_ != "device"},
    }
    write_json(out_dir / REPORT, result)
    _plot_confusion(cm, out_dir / "confusion.png", f"{extra.get('name', 'champion')}: PrivateTest, ten-crop")
    atomic_write(out_dir / REPORT_MD, _report_markdown(result, baselines or {}))
    return result


def _plot_confusion(cm, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nas.data import CLASS_NAMES

    norm = cm / cm.sum(axis=1, keepdims=True).clip(min=1)
    fig, ax = plt.subplots(figsize=(6.2, 5.4), dpi=130)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(cm)):
        for j in range(len(cm)):
            ax.text(
                j,
                i,
                f"{norm[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(cm)), CLASS_NAMES, rotation=45, ha="right")
    ax.set_yticks(range(len(cm)), CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _report_markdown(r: dict, baselines: dict[str, dict]) -> str:
    rows = [(r.get("name", "champion"), r), *sorted(baselines.items())]
    lines = [
        f"# Test report: {r.get('name', 'champion')}",
        "",
        f"Genome: `{r.get('genome', '?')}`  ",
        f"PrivateTest, {r['images']} images; used for this report only, never for selection.",
        *([f"Searched in {search_sentence(r['search'])}.", ""] if r.get("search") else [""]),
        "| network | recipe | epochs | train min | val acc | acc (1 crop) | acc (10 crops) | macro-F1 (10 crops) "
        "| params | MFLOPs | latency ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, x in rows:
        lines.append(
            f"| {name} | {x.get('recipe', '?')} | {x.get('epochs_run', '?')} | {x.get('train_seconds', 0) / 60:.1f} "
            f"| {x.get('val_acc', float('nan')):.4f} | {x['single_crop']['acc']:.4f} | {x['ten_crop']['acc']:.4f} "
            f"| {x['ten_crop']['f1']:.4f} "
            f"| {x.get('params', 0):,} | {x.get('flops', 0) / 1e6:.1f} | {x.get('latency_ms', float('nan')):.3f} |"
        )
    lines += ["", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for name, m in r["per_class"].items():
        lines.append(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {int(m['support'])} |")
    lines += ["", "![confusion matrix](confusion.png)", ""]
    return "\n".join(lines)
