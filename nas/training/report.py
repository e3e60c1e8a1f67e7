"""A training's curve and the test report: what ``train.py`` writes beside the model it trained.

``test_report`` is the one place that reads ``PrivateTest``, once, on the final model.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from nas.errors import RunDirError
from nas.rundir import REPORT, REPORT_MD, atomic_write, distilled_sentence, read_json, search_sentence, write_json
from nas.settings import number_in

log = logging.getLogger(__name__)


def save_figure(fig, path: Path, size: tuple[float, float] | None = None) -> Path:
    """Lay out, save as PNG (atomically, never through a link) and close a matplotlib figure (also for
    Optuna's plots)."""
    import io

    import matplotlib.pyplot as plt

    if size:
        fig.set_size_inches(*size)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120 if size else fig.dpi)
    plt.close(fig)
    return atomic_write(path, buf.getvalue())


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
    if (frame["lr"] > 0).any():  # log scale, but not for a curve of zeros (one epoch of wsd ends at 0)
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

    from nas.data import CLASS_NAMES
    from nas.training import metrics
    from nas.training.loop import predict, predict_ten_crop, resolve_device

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
    save_figure(fig, path)


def _report_markdown(r: dict, baselines: dict[str, dict]) -> str:
    rows = [(r.get("name", "champion"), r), *sorted(baselines.items())]
    lines = [
        f"# Test report: {r.get('name', 'champion')}",
        "",
        f"Genome: `{r.get('genome', '?')}`  ",
        f"PrivateTest, {r['images']} images; used for this report only, never for selection.",
        *([f"Searched in {search_sentence(r['search'])}.", ""] if r.get("search") else [""]),
        *([distilled_sentence(r["teacher"]), ""] if isinstance(r.get("teacher"), dict) else []),
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


def read_report(path: Path) -> dict:
    """A ``report.json`` (``test_report``'s), checked for the figures others read from it (the model card,
    the champion's report beside its baselines): one line naming the file and the field, not a traceback."""
    report = read_json(path, "test report")
    problem = _report_problem(report)
    if problem:
        raise RunDirError(f"{path}: unreadable test report ({problem})")
    return report


def _report_problem(report: dict) -> str | None:
    for crop in ("single_crop", "ten_crop"):
        figures = report.get(crop)
        if not isinstance(figures, dict) or not all(_share(figures.get(k)) for k in ("acc", "f1")):
            return f"{crop} needs acc and f1 between 0 and 1"
    if type(report.get("images", 0)) is not int or report.get("images", 0) < 0:
        return "images must be a count"
    per_class = report.get("per_class", {})
    if not isinstance(per_class, dict) or not all(isinstance(c, dict) for c in per_class.values()):
        return "per_class must be a table of tables"
    for name, c in per_class.items():
        if not all(_share(c.get(k)) for k in ("precision", "recall", "f1")) or not _count(c.get("support")):
            return f"per_class.{name} needs precision, recall and f1 between 0 and 1 and a support count"
    return None


def _share(value: object) -> bool:
    return number_in(value, 0.0, 1.0)


def _count(value: object) -> bool:
    return number_in(value, 0.0) and value == int(value)
