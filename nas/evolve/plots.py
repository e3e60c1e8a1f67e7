"""Plots of a search: the Pareto front of every pair of objectives, per-generation progress.

Everything here reads or writes files in the run directory, so ``scripts/report.py runs/<id>`` can
redraw the plots from the CSVs at any time, also while the search is still going.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from nas.config import read as read_config
from nas.errors import RunDirError, first_line
from nas.evolve import objectives as objs
from nas.evolve.runner import Callback, State
from nas.genome.space import load_baselines
from nas.rundir import EVALUATIONS, PARETO, PROGRESS
from nas.training.report import save_figure

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
    evals = _table(run_dir / EVALUATIONS, {"status", "key", "generation", "genome", "val_acc"})
    front = _table(run_dir / PARETO, {"val_acc"})
    objectives = _objectives(run_dir)
    for path, table in ((run_dir / EVALUATIONS, evals), (run_dir / PARETO, front)):
        missing = {o.column for o in objectives} - set(table.columns)
        if missing:
            raise RunDirError(f"{path}: no column(s) {sorted(missing)} for the run's objectives")
    out = []
    for o in objectives:
        if o.name in ("acc", "f1"):
            continue
        out.append(_plot_front(run_dir, evals, front, o))
    if (run_dir / PROGRESS).exists():
        out.append(
            _plot_progress(run_dir, _table(run_dir / PROGRESS, {"gen", "hypervolume", "best_acc", "front_size"}))
        )
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
    return save_figure(fig, run_dir / f"pareto_{o.name}.png")


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
    return save_figure(fig, run_dir / "progress.png")
