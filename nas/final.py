"""The champion's full training and its test report: the one step that touches ``PrivateTest``.

Trains with the tuned recipe when the run has one (``tuned.json``), else the default, for up to ``epochs``
with early stopping on ``PublicTest``; checkpoints every epoch (an interrupted training resumes), saves
``model.pt`` and reports single-crop and ten-crop accuracy, macro-F1 and per-class figures on the test
split, beside any baselines trained the same way in the same run directory.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from nas import data as fer
from nas import rundir, training
from nas.artifact import load_checkpoint, save_checkpoint
from nas.build import build, count_flops, count_params
from nas.errors import RunDirError, SettingError
from nas.genome import parse_genome
from nas.latency import measure
from nas.numerics import machine_rule
from nas.report import test_report
from nas.training import TrainConfig, resolve_device

log = logging.getLogger(__name__)
MODEL_FILE = "model.pt"


def target(run_dir: Path, genome: str | None = None, baseline: str | None = None, data: str | None = None):
    """The run directory, the genome to work on (champion unless given) and the data path."""
    from nas.space import checked_genome, load_baselines

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: run directory not found")
    if baseline:
        baselines = load_baselines()
        if baseline not in baselines:
            raise RunDirError(f"unknown baseline {baseline!r}; choose from {', '.join(baselines)}")
        genome = str(baselines[baseline].genome)
    elif genome is not None:
        genome = str(checked_genome(genome, "--genome"))
    else:
        genome = str(checked_genome(rundir.champion_genome(run_dir), str(run_dir / rundir.CHAMPION)))
    return run_dir, genome, fer.resolve_data_path(data or rundir.run_data(run_dir))


def train_final(
    run_dir: str | Path,
    genome: str | None = None,
    baseline: str | None = None,
    untuned: bool = False,
    data: str | None = None,
    epochs: int = 60,
    patience: int = 10,
    device: str = "auto",
    out: str | Path | None = None,
) -> dict:
    """Train the champion (or ``genome``, or a ``baseline``) fully; returns the test report."""
    if epochs < 1 or patience < 0:
        raise SettingError(f"--epochs must be >= 1 (got {epochs}) and --patience >= 0 (got {patience})")
    resolve_device(device)
    run_dir, genome, data = target(run_dir, genome, baseline, data)
    tuned_path = run_dir / "tuned.json"
    recipe, cfg = "default", TrainConfig()
    if tuned_path.exists() and not untuned:
        from nas.tuning import tuned_config

        cfg, recipe = tuned_config(rundir.read_json(tuned_path, "tuned recipe"), epochs), "tuned"
    bf16_above = machine_rule(torch.get_num_threads(), device)  # this machine's faster numeric mode
    flops = count_flops(build(parse_genome(genome)))
    cfg = cfg.replace(epochs=epochs, early_stop=patience, cpu_bf16=bf16_above is not None and flops > bf16_above)
    name = baseline or ("untuned" if untuned else "champion")
    default_out = run_dir / "baselines" / baseline if baseline else run_dir / "untuned" if untuned else run_dir
    dataset = fer.load(data, ("train", "val"))
    test = fer.load(data, ("test",))["test"]  # PrivateTest: touched for the final report only
    out = rundir.make_dir(out if out else default_out)  # after every input was checked
    torch.manual_seed(cfg.seed)
    model = build(parse_genome(genome))
    mode = "bf16" if cfg.cpu_bf16 else "fp32"
    log.info(f"training {name} ({recipe} recipe, {mode}, up to {cfg.epochs} epochs) on {len(dataset['train'])} images")

    def show(epoch: int, row: dict) -> None:
        log.info(
            f"epoch {epoch + 1}: loss {row['train_loss']:.4f}, val acc {row['val_acc']:.4f}, "
            f"val F1 {row['val_f1']:.4f}, {row['seconds']:.0f} s"
        )

    result = training.train(
        model, dataset["train"], dataset["val"], cfg, device, on_epoch=show, checkpoint=out / "train_state.pt"
    )
    metrics = {
        "val_acc": result.best_acc,
        "val_f1": result.best_f1,
        "best_epoch": result.best_epoch + 1,
        "epochs_run": result.epochs_run,
        "train_seconds": round(result.seconds, 1),
        "recipe": recipe,
        "numerics": mode,
    }
    save_checkpoint(out / MODEL_FILE, model.cpu(), metrics, json.loads(json.dumps(cfg.__dict__)))
    model, _ = load_checkpoint(out / MODEL_FILE)  # report on exactly what was saved
    extra = {
        "name": name,
        "genome": genome,
        "params": count_params(model),
        "flops": count_flops(model),
        "latency_ms": measure({"m": model})["m"],
        "device": device,
        **metrics,
    }
    baselines = {}
    for path in sorted((run_dir / "baselines").glob("*/report.json")) if out == run_dir else []:
        baselines[path.parent.name] = json.loads(path.read_text())
    if out == run_dir and (run_dir / "untuned" / "report.json").exists():
        baselines["same genome, untuned recipe"] = json.loads((run_dir / "untuned" / "report.json").read_text())
    return test_report(model, test, out, extra, baselines) | {"out": str(out)}
