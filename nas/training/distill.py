"""Knowledge distillation: a small network learns from the averaged probabilities of trained ones.

The teachers are fully trained networks: the run's best checkpoints (``model.pt``) by PublicTest accuracy,
or files a user names, checkpoints or exports (``model.onnx``, e.g. the package's own model). An ensemble
averages its members' probabilities. The loss (``nas.training.loop``'s ``distillation_loss``) mixes the
labels' cross-entropy with the teachers' tempered probabilities (Hinton et al. 2015); the training loop
only sees a function from a batch to the teachers' probabilities, made here in one of two ways
(``distill_targets``):

- ``online``: the teachers see the student's own augmented batch, so the target is their answer for exactly
  the view the student sees, at the cost of the teachers' forward passes every step;
- ``offline``: each training image's ten-crop average, computed once before the first epoch (the classic
  soft targets: cheap per step, but blind to the augmentation the student sees), and kept in the run
  directory (``distilled/soft-targets-*.npy``), so that every student, seed and resumed training of the same
  teachers, in the same numerics, on the same images reuses them (five teachers' targets take minutes of a
  core).

Either way each teacher answers in this machine's faster numerics for its size (``answers_in_bf16``),
whatever the student's: its probabilities only steer the student, and the teachers are most of the cost.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from nas import data as fer
from nas import rundir
from nas.deploy.artifact import load_checkpoint
from nas.errors import NasError, RunDirError, first_line
from nas.settings import number_in
from nas.training import numerics
from nas.training.loop import Targets, TrainConfig, predict_ten_crop, resolve_device
from nas.training.options import NO_TEACHER
from nas.training.report import read_report

if TYPE_CHECKING:
    from nas.genome.grammar import Genome

# the teachers ``--teacher best`` takes: the run's most accurate fully trained networks (PublicTest)
BEST = "best"
BEST_COUNT = 3

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Teacher:
    """Trained networks, their files' fingerprint and what the reports say of each."""

    models: tuple[torch.nn.Module, ...]
    members: tuple[dict, ...]  # path, genome, PublicTest accuracy and, where a report is beside it, test accuracy
    fingerprint: str

    def targets(self, cfg: TrainConfig, x_train: torch.Tensor, device: str | torch.device,
                keep: Path | None = None) -> Targets:  # fmt: skip
        """The teachers' probabilities for a batch of the training split (``x_train``, uint8 images); offline
        targets are read from, or else written to, the folder ``keep`` where one is given."""
        dev = resolve_device(str(device))
        models = [m.to(dev).eval().requires_grad_(False) for m in self.models]
        low = [answers_in_bf16(m, dev) for m in models]
        if cfg.distill_targets == "offline":
            soft = self.soft_targets(models, low, x_train, dev, keep).to(dev)
            return lambda xb, idx: soft[idx]

        @torch.no_grad()
        def online(xb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            total = 0
            for m, bf16 in zip(models, low):  # each in its own numerics, whatever the student's autocast
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                    total = total + m(xb).float().softmax(1)
            return total / len(models)

        return online

    def soft_targets(self, models: list, low: list[bool], x_train: torch.Tensor, dev: torch.device,
                     keep: Path | None) -> torch.Tensor:  # fmt: skip
        """Each image's ten-crop average over the teachers: the kept copy when it is whole (same teachers,
        same images, each teacher in the same numerics), else computed now and kept (written at once: a killed
        process leaves none half)."""
        path = None
        if keep is not None:
            digest = hashlib.sha256(x_train.numpy().tobytes()).hexdigest()[:12]
            mode = "".join("b" if b else "f" for b in low)  # bf16 or fp32, teacher by teacher
            path = Path(keep) / f"soft-targets-{self.fingerprint}-{digest}-{mode}.npy"
        if path is not None and path.exists():
            kept = _read_soft(path, len(x_train))
            if kept is not None:
                return kept
        soft = (sum(predict_ten_crop(m, x_train, dev, bf16=b) for m, b in zip(models, low)) / len(models)).cpu()
        if path is not None:
            buf = io.BytesIO()
            np.save(buf, soft.numpy().astype(np.float32), allow_pickle=False)
            try:
                rundir.atomic_write(rundir.make_dir(path.parent) / path.name, buf.getvalue())
            except RunDirError as exc:  # a copy for later trainings: this one goes on without it
                log.warning(f"{first_line(exc)}; the teachers' targets are not kept")
        return soft

    def summary(self, cfg: TrainConfig) -> dict:
        """What a report and a model card say of the distillation."""
        return {
            "members": list(self.members),
            "weight": cfg.distill_weight,
            "temperature": cfg.distill_temperature,
            "targets": cfg.distill_targets,
            "fingerprint": self.fingerprint,
        }


def answers_in_bf16(model: torch.nn.Module, dev: torch.device) -> bool:
    """Whether a teacher runs under bf16 autocast: on a GPU always (as training does), on the CPU where this
    machine's calibrated rule trains a network of its FLOPs in bf16 (a forward pass gains alike: ten-crop
    answers 1.6x faster for ``cnn4``, 1.7x for ``4e7abb38`` on two AMD threads, accuracy within 0.3 points,
    ``bench_teachers.py --numerics``); its probabilities only steer a student. An ONNX teacher
    counts no FLOPs here and runs as ONNX Runtime does."""
    if dev.type != "cpu":
        return dev.type == "cuda"
    return numerics.bf16_pays(model, "cpu")


def load_teacher(paths: list[str | Path], input_shape: tuple, num_classes: int) -> Teacher:
    """The teachers at ``paths`` (``model.pt`` or ``model.onnx`` files, or folders holding one), each checked
    against the student's input shape and classes: a mismatch is one line naming the file."""
    models, members, digests = [], [], []
    for given in paths:
        path = _model_file(given)
        model, shape, classes, member = _read_teacher(path)
        if shape != tuple(input_shape) or classes != num_classes:
            raise NasError(
                f"{path}: a teacher must take the student's input {_shape(input_shape)} and {num_classes} classes; "
                f"this one takes {_shape(shape)} and {classes} classes"
            )
        models.append(model)
        members.append(member)
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest()[:12])
    if not models:
        raise NasError("--teacher: no teacher given")
    return Teacher(tuple(models), tuple(members), "+".join(sorted(digests)))


def teacher_for(run_dir: Path, names: tuple[str, ...], genome: Genome) -> Teacher | None:
    """The teachers ``--teacher`` names (``best``: the run's best) for a student of ``genome`` (parsed), read
    and checked against its input and classes before any training; None where none is named (or ``none``)."""
    if not names or names == (NO_TEACHER,):
        return None
    from nas.genome.build import build

    student = build(genome)
    return load_teacher(resolve(run_dir, names), tuple(student.input_shape), student.head[-1].out_features)


def best_teachers(run_dir: Path, count: int = BEST_COUNT) -> list[Path]:
    """The run's ``count`` most accurate fully trained networks by PublicTest accuracy (never by the test
    split): every ``model.pt`` under the run directory but the distilled ones, which learnt from these, and
    the distillation stage's students (so that the teachers of a stage stay the same when it resumes)."""
    ranked = []
    for path in sorted(Path(run_dir).rglob(rundir.MODEL)):
        if {rundir.DISTILLED, rundir.STUDENTS} & set(path.relative_to(run_dir).parts):
            continue
        _, state = load_checkpoint(path)
        if state["train_config"].get("distill_weight"):
            continue
        acc = state["metrics"].get("val_acc")
        ranked.append((-acc if number_in(acc, 0, 1) else 0.0, str(path), path))
    if not ranked:
        raise NasError(f"{run_dir}: no fully trained network to teach (train.py writes model.pt); name --teacher files")
    return [path for *_, path in sorted(ranked)[:count]]


def resolve(run_dir: Path, names: tuple[str, ...]) -> list[Path]:
    """``--teacher``'s files, with ``best`` standing for the run's best networks; a file named twice (by
    its folder, by ``best``) teaches once."""
    files: dict[Path, Path] = {}
    for name in names:
        for path in best_teachers(run_dir) if name == BEST else [Path(name)]:
            files.setdefault(_model_file(path).resolve(), path)
    return list(files.values())


def _read_teacher(path: Path) -> tuple[torch.nn.Module, tuple, int, dict]:
    """A teacher's network, input shape, classes and what is known of it (path, genome, PublicTest and test
    accuracy): a checkpoint (``model.pt``, its report beside it) or an export (``model.onnx`` with its
    ``model.json``, e.g. the package's own model, run by ONNX Runtime)."""
    if path.suffix == ".onnx":
        return _exported_teacher(path)
    model, state = load_checkpoint(path)
    report = path.parent / "report.json"
    test = read_report(report)["ten_crop"]["acc"] if report.exists() else None
    member = {"path": str(path), "genome": state["genome"], "val_acc": state["metrics"].get("val_acc"),
              "test_acc_ten_crop": test}  # fmt: skip
    return model, tuple(state["input_shape"]), state["num_classes"], member


def _exported_teacher(path: Path) -> tuple[torch.nn.Module, tuple, int, dict]:
    from nas.deploy.artifact import OnnxNet
    from nas.deploy.classifier import Classifier

    exported = Classifier(path)  # model.json and the file checked against each other, each problem one line
    if tuple(exported.class_names) != fer.CLASS_NAMES:
        raise NasError(
            f"{path}: its classes are {', '.join(exported.class_names)}; a teacher must answer in the student's "
            f"order ({', '.join(fer.CLASS_NAMES)})"
        )
    if (exported.mean, exported.std) != (fer.MEAN, fer.STD):
        raise NasError(
            f"{path}: normalises its input with mean {exported.mean:g} and std {exported.std:g}; a teacher must "
            f"take the student's ({fer.MEAN:g}, {fer.STD:g})"
        )
    info = exported.info
    test = (info.get("test") or {}).get("ten_crop", {}).get("acc")
    member = {"path": str(path), "genome": info.get("genome"), "val_acc": (info.get("metrics") or {}).get("val_acc"),
              "test_acc_ten_crop": test}  # fmt: skip
    return OnnxNet(path.read_bytes()), tuple(info["input"]["shape"][1:]), len(exported.class_names), member


def _read_soft(path: Path, images: int) -> torch.Tensor | None:
    """Kept soft targets, or None (said in one line) where the file is not one row of probabilities an image."""
    try:
        soft = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        soft = None
    soft = soft if isinstance(soft, np.ndarray) else np.empty(0)  # not an array at all (e.g. an .npz)
    whole = soft.ndim == 2 and soft.dtype.kind == "f" and len(soft) == images and bool(np.isfinite(soft).all())
    if not (whole and np.allclose(soft.sum(1), 1, atol=1e-3) and (soft >= 0).all()):
        log.warning(f"{path}: not the teachers' soft targets for these {images} images; computing them again")
        return None
    return torch.from_numpy(soft)


def _shape(shape) -> str:
    c, h, w = shape
    return f"{h}x{w}x{c}"


def ensemble_accuracy(paths: list[str | Path], split: fer.Split, device: str = "auto") -> dict:
    """Trained networks' probabilities averaged over ten crops each, scored on ``split``: a teacher
    ensemble's own accuracy and macro-F1 (with ``per_member``: each network's alone, ten-crop)."""
    from nas.training import metrics

    dev = resolve_device(device)
    teacher = load_teacher(paths, tuple(split.x.shape[1:]), len(fer.CLASS_NAMES))  # checked as for a student
    members = [predict_ten_crop(m.to(dev), split.x, dev) for m in teacher.models]
    y = split.y.numpy()
    scores = metrics.summary(y, (sum(members) / len(members)).argmax(1).numpy(), members[0].shape[1])
    return scores | {"per_member": [metrics.summary(y, m.argmax(1).numpy(), m.shape[1])["acc"] for m in members]}


def _model_file(path: str | Path) -> Path:
    """A teacher's file: the one named, or in a folder its ``model.pt``, else its export's ``model.onnx``."""
    path = Path(path)
    if path.is_dir() and not (path / rundir.MODEL).exists() and (path / "model.onnx").exists():
        return path / "model.onnx"
    return path / rundir.MODEL if path.is_dir() else path
