"""The one training loop: used by candidate evaluation, tuning and the final training alike.

Read it top to bottom: resolve the device, set up optimizer and scheduler from a small config, then
per epoch shuffle, augment on whole batches (no per-image Python), step, and evaluate on validation.
Whoever calls it learns about progress only through ``on_epoch(epoch, metrics)``; returning True
stops early (a pruner raises its own exception from there instead).
"""

from __future__ import annotations

import copy
import hashlib
import io
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.optim import swa_utils

from nas.data import Split, normalize
from nas.errors import NasError, RunDirError, SettingError, first_line
from nas.rundir import atomic_write, read_json
from nas.settings import typed
from nas.training import metrics
from nas.training.options import CLASS_BALANCE, DISTILL_TARGETS

OPTIMIZERS = ("sgd", "nesterov", "adam", "adamw")
SCHEDULERS = ("plateau", "cosine", "cosine_restarts", "onecycle", "wsd", "step", "none")
# the shapes of a wsd decay: the learning rate's share left when a share t of the decay is done
DECAYS = {
    "sqrt": lambda t: 1 - math.sqrt(t),
    "cosine": lambda t: 0.5 * (1 + math.cos(math.pi * t)),
    "linear": lambda t: 1 - t,
}
STEPWISE = ("onecycle", "wsd")  # schedulers stepped after every batch, the others after every epoch
# what a distilled training is given: the teachers' probabilities for a batch (normalised, augmented images
# and their indices in the training split)
Targets = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Diverged(RuntimeError):
    """The loss became NaN or infinite."""


class TimeLimitExceeded(RuntimeError):
    """Training ran past its time limit."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how a network is trained; tuning searches over these fields."""

    optimizer: str = "adamw"
    lr: float = 3e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    # the default recipe's: a warmup-stable-decay training can be cut into a search's rungs and continued, and
    # at 100 epochs it matches one-cycle (cnn4 68.5% ten-crop against 68.8%, mini-Xception 65.7% against
    # 64.3%, two seeds each; benchmarks/results/schedule_cpu.md)
    scheduler: str = "wsd"
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    restart_period: int = 5
    step_size: int = 10
    step_gamma: float = 0.1
    # wsd (warmup-stable-decay): a linear warm-up over ``warmup_epochs``, then the constant ``lr``, then a
    # decay to zero shaped ``decay`` over the last ``cooldown`` share of the epochs. Up to the decay, a
    # training is a valid prefix of any longer one: it can be continued to more epochs (Hägele et al. 2024)
    warmup_epochs: float = 0.3
    cooldown: float = 0.2
    decay: str = "sqrt"  # 1 - sqrt(t) (Hägele et al.), cosine or linear, t the share of the decay done
    batch_size: int = 128
    epochs: int = 10
    label_smoothing: float = 0.0
    class_balance: str = "none"
    ema: float = 0.0  # decay of an exponential moving average of the weights, per step (0: off; e.g. 0.999)
    augment: float = 0.5  # 0 switches augmentation off; 1 is strong
    channels_last: bool = True
    amp: bool = True  # bfloat16 autocast on GPU
    cpu_bf16: bool = False  # bfloat16 autocast on the CPU: faster for large dense networks (see nas.training.numerics)
    early_stop: int = 0  # stop after this many epochs without a better val accuracy (0: never)
    # False: validate only after the last epoch of the call, and report that accuracy (a search's brief
    # training needs no curve); early stopping and the plateau scheduler validate every epoch regardless
    validate_every_epoch: bool = True
    # validate under the same bf16 autocast as the training (about 2x faster on this CPU; accuracy within
    # 0.1 points on three trained networks); the test report (nas.training.report) is fp32 whatever this says
    validate_bf16: bool = True
    seed: int = 0
    # knowledge distillation (nas.training.distill): the share of the loss taken by the teachers' tempered
    # probabilities (0: off), their temperature, how their targets are made, and which teachers they are (a
    # fingerprint of their files: a checkpoint is never continued under another teacher)
    distill_weight: float = 0.0
    distill_temperature: float = 4.0
    distill_targets: str = "online"
    teacher: str = ""

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise SettingError(f"optimizer {self.optimizer!r} not in {OPTIMIZERS}")
        if self.scheduler not in SCHEDULERS:
            raise SettingError(f"scheduler {self.scheduler!r} not in {SCHEDULERS}")
        if self.class_balance not in CLASS_BALANCE:
            raise SettingError(f"class_balance {self.class_balance!r} not in {CLASS_BALANCE}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise SettingError("need epochs >= 1, batch_size >= 1 and lr > 0")
        if self.decay not in DECAYS:
            raise SettingError(f"decay {self.decay!r} not in {tuple(DECAYS)}")
        if not 0 <= self.cooldown <= 1 or self.warmup_epochs < 0:
            raise SettingError(f"need 0 <= cooldown <= 1 (got {self.cooldown}) and warmup_epochs >= 0")
        if not 0 <= self.ema < 1 or not 0 <= self.label_smoothing < 1:
            raise SettingError(f"need 0 <= ema < 1 (got {self.ema}) and 0 <= label_smoothing < 1")
        if not 0 <= self.distill_weight <= 1 or not self.distill_temperature > 0:
            raise SettingError(f"need 0 <= distill_weight <= 1 (got {self.distill_weight}) and distill_temperature > 0")
        if self.distill_targets not in DISTILL_TARGETS:
            raise SettingError(f"distill_targets {self.distill_targets!r} not in {DISTILL_TARGETS}")

    def replace(self, **changes: Any) -> TrainConfig:
        known = {f.name for f in fields(self)}
        return TrainConfig(**(asdict(self) | {k: v for k, v in changes.items() if k in known}))

    @classmethod
    def from_dict(cls, d: dict, where: str = "training settings") -> TrainConfig:
        """A config written by this or an earlier version (``class_weighted`` became ``class_balance``; a
        setting since removed is dropped), each field checked by its type: a damaged file is one line naming
        ``where`` and the field."""
        d = dict(d)
        if "class_weighted" in d:
            d.setdefault("class_balance", "weighted" if d.pop("class_weighted") else "none")
        known = {f.name for f in fields(cls)}
        return typed(cls, {k: v for k, v in d.items() if k in known}, where)


# Final-training recipes, by name. "vgg" is Khaireddin & Chen's (2021) FER2013 recipe as far as this loop
# expresses it: SGD-Nesterov 0.01, momentum 0.9, weight decay 1e-4, plateau x0.75 after 5 epochs, batch 64,
# strong augmentation (flip, shift, rotation, scale, erasing).
RECIPES: dict[str, TrainConfig] = {
    "default": TrainConfig(),
    "vgg": TrainConfig(
        optimizer="nesterov",
        lr=0.01,
        momentum=0.9,
        weight_decay=1e-4,
        scheduler="plateau",
        plateau_factor=0.75,
        plateau_patience=5,
        batch_size=64,
        augment=1.0,
    ),
}


@dataclass
class TrainResult:
    best_acc: float = 0.0
    best_f1: float = 0.0
    best_epoch: int = -1
    epochs_run: int = 0
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` is the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SettingError(f"--device: unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SettingError(f"--device {name}: no CUDA GPU on this machine; use auto or cpu")
    return device


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = model.parameters()
    if cfg.optimizer in ("sgd", "nesterov"):
        return torch.optim.SGD(
            params, cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.optimizer == "nesterov"
        )
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, cfg.lr, weight_decay=cfg.weight_decay)


def _scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    s = torch.optim.lr_scheduler
    if cfg.scheduler == "plateau":
        return s.ReduceLROnPlateau(opt, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience)
    if cfg.scheduler == "cosine":
        return s.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.scheduler == "cosine_restarts":
        return s.CosineAnnealingWarmRestarts(opt, T_0=cfg.restart_period)
    if cfg.scheduler == "onecycle":
        return s.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    if cfg.scheduler == "step":
        return s.StepLR(opt, step_size=cfg.step_size, gamma=cfg.step_gamma)
    if cfg.scheduler == "wsd":
        return s.LambdaLR(opt, lambda step: wsd_factor(cfg, steps_per_epoch, step))
    return None


def decay_start(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """The optimizer step at which a wsd schedule leaves its constant learning rate."""
    total = cfg.epochs * steps_per_epoch
    return total - round(cfg.cooldown * total)


def wsd_factor(cfg: TrainConfig, steps_per_epoch: int, step: int) -> float:
    """The learning rate of optimizer step ``step`` (from 0) as a share of ``cfg.lr``."""
    warm = max(1, round(cfg.warmup_epochs * steps_per_epoch))
    start, total = decay_start(cfg, steps_per_epoch), cfg.epochs * steps_per_epoch
    if step >= start:
        return max(0.0, DECAYS[cfg.decay](min(1.0, (step - start) / max(1, total - start))))
    return min(1.0, (step + 1) / warm)


def in_stable_phase(cfg: TrainConfig, steps_per_epoch: int, epoch: int) -> bool:
    """Whether a wsd schedule is still at its constant learning rate after epoch ``epoch`` (from 0)."""
    return cfg.scheduler == "wsd" and (epoch + 1) * steps_per_epoch <= decay_start(cfg, steps_per_epoch)


def stable_prefix(cfg: TrainConfig, saved: dict, epochs_run: int, steps_per_epoch: int) -> bool:
    """Whether a checkpoint of ``epochs_run`` epochs, written under ``saved`` settings, is also the state of a
    training under ``cfg`` that differs only in its length: both wsd, neither decaying yet."""
    if cfg.scheduler != "wsd" or changed_settings(saved, cfg) != ["epochs"]:
        return False
    before = cfg.replace(epochs=saved["epochs"])
    done = epochs_run * steps_per_epoch
    return done <= decay_start(cfg, steps_per_epoch) and done <= decay_start(before, steps_per_epoch)


def augment(x: torch.Tensor, strength: float, gen: torch.Generator) -> torch.Tensor:
    """Random flip, shift, rotation, scale and erasing for a whole normalised batch at once."""
    if strength <= 0:
        return x
    n, dev = x.shape[0], x.device

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen).to(dev)

    flip = uniform(n) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    angle = (uniform(n) * 2 - 1) * math.radians(15) * strength
    scale = 1 + (uniform(n) * 2 - 1) * 0.1 * strength
    shift = (uniform(n, 2) * 2 - 1) * 0.15 * strength
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    # Random erasing: one rectangle per image, on a fraction of the batch.
    h, w = x.shape[2:]
    erase = uniform(n) < 0.5 * strength
    size = (uniform(n, 2) * 0.3 + 0.1) * torch.tensor([h, w], device=dev)
    corner = uniform(n, 2) * (torch.tensor([h, w], device=dev) - size)
    rows = torch.arange(h, device=dev)[None, :, None]
    cols = torch.arange(w, device=dev)[None, None, :]
    inside = (
        (rows >= corner[:, 0, None, None])
        & (rows < (corner[:, 0] + size[:, 0])[:, None, None])
        & (cols >= corner[:, 1, None, None])
        & (cols < (corner[:, 1] + size[:, 1])[:, None, None])
    )
    return x.masked_fill((inside & erase[:, None, None])[:, None], 0.0)


@torch.no_grad()
def predict(
    model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int | None = None, bf16: bool = False
) -> torch.Tensor:
    """Logits for uint8 images (N, 1, H, W), in eval mode, batch by batch; ``bf16``: under bfloat16 autocast,
    as a network trained that way validates about twice as fast on this CPU (accuracy within 0.1 points
    on three fully trained networks). Batches of 128 on the CPU: 1.5-1.8x faster per image than 512 there
    (cache-sized), 512 on a GPU."""
    model.eval()
    batch_size = batch_size or (128 if device.type == "cpu" else 512)
    out = []
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, len(x), batch_size):
            xb = normalize(x[i : i + batch_size].to(device))
            out.append(model(xb).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


@torch.no_grad()
def predict_ten_crop(model: nn.Module, x: torch.Tensor, device: torch.device, shift: int = 3,
                     bf16: bool = False) -> torch.Tensor:  # fmt: skip
    """Class probabilities averaged over ten views: five shifted crops of an edge-padded image, each flipped
    (``bf16``: as ``predict``'s).

    The classic FER2013 test-time augmentation, done at the network's own input size so that networks
    with a flattening readout can take it too.
    """
    n, c, h, w = x.shape
    padded = F.pad(x.float(), (shift, shift, shift, shift), mode="replicate").to(torch.uint8)
    offsets = [(0, 0), (0, 2 * shift), (2 * shift, 0), (2 * shift, 2 * shift), (shift, shift)]
    total = 0  # + the first view's probabilities: exactly those, as a sum from zeros would give
    for dy, dx in offsets:
        view = padded[:, :, dy : dy + h, dx : dx + w]
        for v in (view, view.flip(3)):
            total = total + predict(model, v, device, bf16=bf16).softmax(1)
    return total / (2 * len(offsets))


def evaluate(model: nn.Module, split: Split, device: torch.device, bf16: bool = False) -> dict[str, float]:
    pred = predict(model, split.x, device, bf16=bf16).argmax(1).numpy()
    return metrics.summary(split.y.numpy(), pred, model.head[-1].out_features)


@dataclass
class _Loop:
    """What a training holds while it runs: built once by ``_setup``, saved whole by the checkpoint."""

    model: nn.Module
    kept: nn.Module  # the network that validates and is kept: the moving average when there is one
    opt: torch.optim.Optimizer
    sched: Any
    ema: Any
    gen: torch.Generator
    loss_fn: nn.Module
    log_prior: torch.Tensor
    dev: torch.device
    fmt: torch.memory_format
    steps: int  # optimizer steps an epoch
    use_amp: bool
    validate_low: bool
    targets: Targets | None = None  # a teacher's probabilities, when distilling
    data: str = ""  # the training images' fingerprint, kept with a checkpoint (never continued on others)


def train(
    model: nn.Module,
    train_split: Split,
    val_split: Split,
    cfg: TrainConfig,
    device: str = "auto",
    on_epoch: Callable[[int, dict[str, float]], bool | None] | None = None,
    deadline: float | None = None,
    checkpoint: Path | None = None,
    until: int | None = None,
    branch: float = 0.0,
    targets: Targets | None = None,
) -> TrainResult:
    """Train ``model`` in place; at the end it holds the weights of its best validation epoch.

    ``deadline`` is a ``time.monotonic()`` value; past it, TimeLimitExceeded is raised. With
    ``checkpoint``, state is saved after every epoch and an existing file is resumed from. ``until``
    stops after that many epochs of the ``cfg.epochs``-long schedule; a later call with the same
    checkpoint continues it exactly as if it had never stopped. ``branch``: a validation in the constant
    phase of a wsd schedule scores a cool-down branch of that many epochs instead (``cooldown_branch``);
    the history keeps both, and the model the main training's weights. ``targets``: the teachers of a
    distilled training (``nas.training.distill``), required exactly when ``cfg.distill_weight`` is set.
    """
    loop = _setup(model, train_split, cfg, device, targets, kept=checkpoint is not None)
    x_train, y_train = train_split.x.to(loop.dev), train_split.y.to(loop.dev)
    result, best_state, start_epoch = TrainResult(), None, 0
    if checkpoint is not None and Path(checkpoint).exists():
        result, best_state, start_epoch = _restore(loop, Path(checkpoint), cfg)
    t0 = time.monotonic() - result.seconds
    stop_at = min(cfg.epochs, until or cfg.epochs)
    every = cfg.validate_every_epoch or cfg.early_stop or cfg.scheduler == "plateau"
    for epoch in range(start_epoch, stop_at):
        loss = _train_epoch(loop, x_train, y_train, cfg, epoch, deadline)
        validate = every or epoch == stop_at - 1
        branched = validate and branch > 0 and in_stable_phase(cfg, loop.steps, epoch)
        main = validate and (cfg.validate_every_epoch or not branched)  # the main weights' own accuracy
        scores = evaluate(loop.kept, val_split, loop.dev, bf16=loop.validate_low) if main else None
        if loop.sched is not None and cfg.scheduler not in STEPWISE:
            loop.sched.step(scores["acc"]) if cfg.scheduler == "plateau" else loop.sched.step()
        row = {"epoch": epoch, "train_loss": loss, "val_acc": None, "val_f1": None}
        row |= {k: scores[k[4:]] for k in ("val_acc", "val_f1")} if scores else {}
        if branched:
            scores = cooldown_branch(loop, x_train, y_train, val_split, cfg, epoch, branch, deadline)
            row |= {"branch_acc": scores["acc"], "branch_f1": scores["f1"]}
        row |= {"lr": loop.opt.param_groups[0]["lr"], "seconds": time.monotonic() - t0}
        result.history.append(row)
        result.epochs_run, result.seconds = epoch + 1, row["seconds"]
        # validating only at the end, the result is the accuracy there, whatever an earlier call saw: a
        # training continued to epoch X must score what one straight to epoch X scores
        if scores and (scores["acc"] > result.best_acc or result.best_epoch < 0 or not every):
            result.best_acc, result.best_f1, result.best_epoch = scores["acc"], scores["f1"], epoch
            best_state = {k: v.detach().clone() for k, v in loop.kept.state_dict().items()}
        if checkpoint is not None:
            _save(loop, Path(checkpoint), best_state, result, cfg, epoch)
        stop = on_epoch(epoch, row) if on_epoch is not None else None
        if stop or _out_of_patience(cfg, result, epoch):
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return result


def _setup(model: nn.Module, train_split: Split, cfg: TrainConfig, device: str, targets: Targets | None,
           kept: bool = False) -> _Loop:  # fmt: skip
    """Device, seeds, optimizer, schedule, loss, moving average and teachers of a new training (``kept``: one
    with a checkpoint, which records the images' fingerprint)."""
    if (targets is None) != (cfg.distill_weight == 0) or (targets is not None and not cfg.teacher):
        raise SettingError("a distilled training needs a teacher, its fingerprint and distill_weight > 0, together")
    dev = resolve_device(device)
    torch.manual_seed(cfg.seed)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(dev, memory_format=fmt)
    steps = max(1, math.ceil(len(train_split.y) / cfg.batch_size))
    opt = _optimizer(model, cfg)
    counts = np.maximum(train_split.class_counts(model.head[-1].out_features), 1)
    weight = torch.tensor(counts.sum() / (len(counts) * counts), dtype=torch.float32, device=dev)
    loss_fn = nn.CrossEntropyLoss(weight=weight if cfg.class_balance == "weighted" else None,
                                  label_smoothing=cfg.label_smoothing)  # fmt: skip
    ema = None
    if cfg.ema:
        ema = swa_utils.AveragedModel(model, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
    use_amp = (cfg.amp and dev.type == "cuda") or (cfg.cpu_bf16 and dev.type == "cpu")
    return _Loop(
        model=model, kept=ema.module if ema is not None else model, opt=opt, sched=_scheduler(opt, cfg, steps),
        ema=ema, gen=torch.Generator().manual_seed(cfg.seed), loss_fn=loss_fn,
        log_prior=torch.tensor(np.log(counts / counts.sum()), dtype=torch.float32, device=dev), dev=dev, fmt=fmt,
        steps=steps, use_amp=use_amp, validate_low=use_amp and cfg.validate_bf16, targets=targets,
        data=images_fingerprint(train_split) if kept else "",
    )  # fmt: skip


def _train_epoch(loop: _Loop, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, epoch: int,
                 deadline: float | None) -> float:  # fmt: skip
    """One pass over the shuffled training images, augmented a batch at a time; the mean loss."""
    loop.model.train()
    order = torch.randperm(len(y), generator=loop.gen).to(loop.dev)
    total, seen = 0.0, 0
    for b in range(loop.steps):
        idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
        xb = augment(normalize(x[idx]), cfg.augment, loop.gen).contiguous(memory_format=loop.fmt)
        with torch.autocast(loop.dev.type, dtype=torch.bfloat16, enabled=loop.use_amp):
            logits = raw = loop.model(xb)
            if cfg.class_balance == "softmax":
                logits = logits.float() + loop.log_prior
            loss = loop.loss_fn(logits, y[idx])
            if loop.targets is not None:  # the teacher's term sees the network's own logits
                w = cfg.distill_weight
                loss = (1 - w) * loss + w * distillation_loss(raw, loop.targets(xb, idx), cfg.distill_temperature)
        if not torch.isfinite(loss):
            raise Diverged(f"loss became {loss.item()} at epoch {epoch} batch {b}")
        loop.opt.zero_grad(set_to_none=True)
        loss.backward()
        loop.opt.step()
        if loop.ema is not None:
            loop.ema.update_parameters(loop.model)
        if cfg.scheduler in STEPWISE:
            loop.sched.step()
        total, seen = total + loss.item() * len(idx), seen + len(idx)
        if deadline is not None and time.monotonic() > deadline:
            raise TimeLimitExceeded(f"time limit reached at epoch {epoch} batch {b}")
    return total / max(seen, 1)


def distillation_loss(logits: torch.Tensor, probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s (2015) term: T^2 x KL(teacher || student), both tempered by T (the T^2 keeps its
    gradients on the scale of the cross-entropy's). A teacher's averaged probabilities p are tempered as
    softmax(log p / T), which for one teacher is its own softmax(z / T)."""
    target = F.softmax(probs.float().clamp_min(1e-12).log() / temperature, dim=1)
    student = F.log_softmax(logits.float() / temperature, dim=1)
    return F.kl_div(student, target, reduction="batchmean") * temperature**2


def cooldown_branch(loop: _Loop, x: torch.Tensor, y: torch.Tensor, val_split: Split, cfg: TrainConfig, epoch: int,
                    epochs: float, deadline: float | None = None) -> dict[str, float]:  # fmt: skip
    """What the training would score if its schedule ended here: a copy trained ``epochs`` more with the
    learning rate decayed linearly to zero, validated, then discarded (the constant phase alone
    understates a network: the decay adds several points). The copy draws its batches from a generator of
    its own (seeded by the seed and the epoch) under a forked global RNG, so the main training is bit for
    bit the same with or without branches, and a branch scores the same however the training got here."""
    steps = max(1, round(epochs * loop.steps))
    model = copy.deepcopy(loop.model)
    opt = _optimizer(model, cfg)
    opt.load_state_dict(copy.deepcopy(loop.opt.state_dict()))
    for group in opt.param_groups:
        group["initial_lr"] = group["lr"]  # the decay starts from the learning rate the main training is at
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: max(0.0, 1 - step / steps))
    ema = copy.deepcopy(loop.ema) if loop.ema is not None else None
    seed = int(np.random.SeedSequence([cfg.seed, epoch, 1]).generate_state(1)[0])
    branch = replace(loop, model=model, kept=ema.module if ema is not None else model, opt=opt, sched=sched,
                     ema=ema, gen=torch.Generator().manual_seed(seed), steps=steps)  # fmt: skip
    with torch.random.fork_rng(devices=[loop.dev] if loop.dev.type == "cuda" else []):
        _train_epoch(branch, x, y, cfg.replace(scheduler="wsd"), epoch, deadline)  # stepped every batch
    return evaluate(branch.kept, val_split, loop.dev, bf16=loop.validate_low)


def images_fingerprint(split: Split) -> str:
    """The training images and labels, hashed: what a checkpoint was trained on."""
    digest = hashlib.sha256(split.x.numpy().tobytes())
    digest.update(split.y.numpy().tobytes())
    return digest.hexdigest()[:16]


def _restore(loop: _Loop, checkpoint: Path, cfg: TrainConfig) -> tuple[TrainResult, dict | None, int]:
    """A saved training, continued where it stopped: its result so far, best weights and next epoch."""
    state = read_state(checkpoint, "cpu")  # random states stay on the CPU; load_state_dict moves the rest
    result = state["result"]
    changed = changed_settings(state["config"], cfg)
    if changed and not stable_prefix(cfg, state["config"], result.epochs_run, loop.steps):
        raise NasError(
            f"{checkpoint}: written with other training settings ({', '.join(changed)}); "
            "resume with the same settings, or delete it to start over"
        )
    gpu = loop.dev.type == "cuda"
    parts = {"model": loop.model.load_state_dict, "optimizer": loop.opt.load_state_dict,
             "scheduler": None if loop.sched is None else loop.sched.load_state_dict,
             "ema": None if loop.ema is None else loop.ema.load_state_dict,
             "generator": loop.gen.set_state, "torch_rng": torch.set_rng_state,
             "cuda_rng": torch.cuda.set_rng_state_all if gpu and state.get("cuda_rng") else None}  # fmt: skip
    for part, load in parts.items():
        try:
            if load is not None:
                load(state.get(part))
        except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as exc:
            raise NasError(
                f"{checkpoint}: its {part} does not fit this training ({first_line(exc)}); delete it to start over"
            ) from None
    start_epoch = result.epochs_run
    if _out_of_patience(cfg, result, result.epochs_run - 1):
        start_epoch = cfg.epochs  # it stopped early: resuming it must not train on
    # a finished training is only read; one to continue must go on with its own images (states of before
    # 2026-12-07 say nothing of their data)
    if start_epoch < cfg.epochs and state.get("data") not in (None, loop.data):
        raise NasError(f"{checkpoint}: written while training on other images; train on those, or delete it to "
                       "start over")  # fmt: skip
    return result, state["best_model"], start_epoch


# the parts of a saved training state and their types: anything else is a damaged file, named as such
_STATE = {"model": dict, "optimizer": dict, "generator": torch.Tensor, "torch_rng": torch.Tensor, "result": dict,
          "config": dict, "best_model": (dict, type(None))}  # fmt: skip


def read_state(checkpoint: Path, device: torch.device | str = "cpu") -> dict:
    """A saved training state (``weights_only``: no code is unpickled), each part checked by its type; its
    ``result`` a TrainResult."""
    try:
        state = torch.load(checkpoint, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - damaged bytes fail in many ways (struct, zip, pickle, KeyError)
        raise NasError(
            f"{checkpoint}: not a readable training state ({first_line(exc)}); delete it to start over"
        ) from None
    wrong = [k for k, kind in _STATE.items() if not isinstance(state, dict) or not isinstance(state.get(k, ...), kind)]
    if wrong:
        raise NasError(f"{checkpoint}: not a training state ({wrong[0]} missing or damaged); delete it to start over")
    return state | {"result": typed(TrainResult, state["result"], f"{checkpoint}: result")}


def stable_copy(checkpoint: Path) -> Path:
    """Where a wsd training keeps its last state before the decay, from which a longer training continues."""
    return Path(checkpoint).with_suffix(".stable.pt")


def _out_of_patience(cfg: TrainConfig, result: TrainResult, epoch: int) -> bool:
    """Early stopping: ``cfg.early_stop`` epochs up to ``epoch`` without a better validation accuracy."""
    return bool(cfg.early_stop) and epoch - result.best_epoch >= cfg.early_stop


# settings that change what a training records, not what it trains: a checkpoint continues under either
RECORDING = ("validate_every_epoch",)


def changed_settings(saved: dict, cfg: TrainConfig) -> list[str]:
    """The settings in which a checkpoint's ``config`` differs from ``cfg``; one the checkpoint predates
    counts as its default (what the training did before the setting existed: a checkpoint older than
    distillation was not distilled), and one of ``RECORDING`` never counts."""
    before = asdict(TrainConfig())
    return sorted(k for k, v in asdict(cfg).items() if saved.get(k, before[k]) != v and k not in RECORDING)


def _save(loop: _Loop, path: Path, best_state, result: TrainResult, cfg: TrainConfig, epoch: int) -> None:
    """Everything needed to continue bit for bit; written to a temp file, then renamed. A wsd training also
    keeps its last state before the decay (``stable_copy``), from which a longer one continues."""
    state = {
        "model": loop.model.state_dict(),
        "optimizer": loop.opt.state_dict(),
        "scheduler": loop.sched.state_dict() if loop.sched is not None else {},
        "generator": loop.gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if loop.dev.type == "cuda" else None,  # dropout's on a GPU
        "data": loop.data,
        "best_model": best_state,
        "result": asdict(result),
        "config": asdict(cfg),
        "ema": loop.ema.state_dict() if loop.ema is not None else None,
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    if in_stable_phase(cfg, loop.steps, epoch) and not in_stable_phase(cfg, loop.steps, epoch + 1):
        atomic_write(stable_copy(path), buf.getvalue())  # first: a kill between the two repeats this epoch
    atomic_write(path, buf.getvalue())


def _teachers_ok(teacher: object) -> bool:
    paths = teacher.get("paths") if isinstance(teacher, dict) else None
    ok_paths = isinstance(paths, list) and bool(paths) and all(isinstance(p, str) for p in paths)
    return ok_paths and isinstance(teacher.get("fingerprint"), str)


def read_tuned(path: Path) -> dict:
    """``tuned.json`` (written by ``nas.training.tuning``), checked field by field: a damaged file is one
    line naming it and the field, not a traceback in the middle of a training."""
    tuned = read_json(path, "tuned recipe")
    budget, confirmation = tuned.get("budget"), tuned.get("confirmation") or {}
    runs = confirmation.get("runs", {}) if isinstance(confirmation, dict) else None
    if not isinstance(budget, dict) or type(budget.get("epochs")) is not int or budget["epochs"] < 1:
        problem = "budget.epochs must be a positive integer"
    elif not isinstance(tuned.get("train_config"), dict):
        problem = "train_config must be a table"
    elif not isinstance(runs, dict) or not all(isinstance(r, dict) for r in runs.values()):
        problem = "confirmation must be a table whose runs are tables"
    elif not isinstance(confirmation.get("adopted", False), bool):
        problem = "confirmation.adopted must be true or false"
    elif not _teachers_ok(tuned.get("teacher", {"paths": ["-"], "fingerprint": "-"})):
        problem = "teacher must be a table of paths (texts) and a fingerprint (a text)"
    else:
        try:
            TrainConfig.from_dict(tuned["train_config"], "train_config")
            return tuned
        except SettingError as exc:
            problem = str(exc)
    raise RunDirError(f"{path}: unreadable tuned recipe ({problem})")
