"""Numeric modes of training: fp32 or bfloat16 autocast, channels-last or not, and which one a network gets.

Which mode trains a network fastest depends on the network (measured here: bf16 trains dense
convolutions ~1.6x faster on this CPU and depthwise ones ~1.6x slower), so it is chosen per network by a
rule calibrated once per machine, never by timing each candidate (that would make runs irreproducible).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from nas.training.loop import TrainConfig


@dataclass(frozen=True)
class Mode:
    bf16: bool
    channels_last: bool

    @property
    def name(self) -> str:
        return ("bf16" if self.bf16 else "fp32") + ("-cl" if self.channels_last else "-nchw")


MODES = tuple(Mode(bf16, cl) for bf16 in (False, True) for cl in (True, False))


def layer_flops(model: nn.Module, input_shape: tuple[int, int, int] = (1, 48, 48)) -> dict[str, float]:
    """Forward FLOPs per layer class: dense, pointwise (1x1) and depthwise convolutions, linear layers."""
    out = {"dense": 0.0, "pointwise": 0.0, "depthwise": 0.0, "linear": 0.0}

    def hook(module: nn.Module, inputs, output) -> None:
        if isinstance(module, nn.Linear):
            out["linear"] += 2.0 * module.in_features * module.out_features
            return
        macs = output.numel() * (module.in_channels // module.groups) * module.kernel_size[0] * module.kernel_size[1]
        depthwise = module.groups > 1 and module.groups == module.in_channels
        out["depthwise" if depthwise else "pointwise" if module.kernel_size == (1, 1) else "dense"] += 2.0 * macs

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return out | {"total": max(sum(out.values()), 1.0)}


# ---------------------------------------------------------------- the rule, calibrated once per machine

# A fixed calibration set: seeded samples of the default space within its budget, so every machine is
# calibrated on the same networks.
CALIBRATION = {"space": "default", "seed": 0, "networks": 16, "max_mflops": 60, "batch": 128, "steps": 3}


def machine_key(threads: int) -> str:
    """Where a calibration holds: this CPU, this torch, this many threads."""
    from nas.rundir import cpu_model

    return f"{cpu_model()} | torch {torch.__version__} | {threads} thread(s)"


def _train_step_seconds(model: nn.Module, bf16: bool, batch: int, steps: int) -> float:
    import statistics
    import time

    model = model.train().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.randn(batch, *model.input_shape).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (batch,))
    times = []
    for i in range(steps + 2):  # two warm-up steps: oneDNN chooses its kernels on the first calls
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def calibrate(threads: int) -> dict:
    """Time fp32 and bf16 training steps of the calibration networks; the FLOPs threshold above which
    bf16 is used is the one that minimises their total training time (None: bf16 never pays here)."""
    import random

    from nas.genome.build import build, count_flops
    from nas.genome.space import load_space, sample

    c = CALIBRATION
    space, rng, nets = load_space(c["space"]), random.Random(c["seed"]), []
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        while len(nets) < c["networks"]:
            torch.manual_seed(0)
            model = build(sample(space, rng))
            flops = count_flops(model)
            if flops <= c["max_mflops"] * 1e6:
                fp32, bf16 = (_train_step_seconds(model, b, c["batch"], c["steps"]) for b in (False, True))
                nets.append((flops, fp32, bf16))
    finally:
        torch.set_num_threads(previous)
    candidates = [None, *sorted(f for f, _, _ in nets)]

    def total(threshold: float | None) -> float:
        return sum(b if threshold is not None and f > threshold else a for f, a, b in nets)

    best = min(candidates, key=lambda t: (total(t), t is not None))
    fp32_total = total(None)
    return {
        "bf16_above_mflops": None if best is None else round(best / 1e6, 3),
        "speedup": round(fp32_total / total(best), 3),
        "networks": [{"mflops": round(f / 1e6, 3), "fp32_s": round(a, 5), "bf16_s": round(b, 5)} for f, a, b in nets],
    }


def machine_rule(threads: int, device: str) -> float | None:
    """The FLOPs above which this machine trains in bf16 (None: never), calibrated on first use and kept
    in ``$XDG_CACHE_HOME/fer-nas/numerics.json`` (about two minutes, once per machine and thread count).
    On a GPU, training uses bf16 autocast anyway (``TrainConfig.amp``)."""
    import logging
    import math

    from nas.errors import RunDirError
    from nas.rundir import keep_in_machine_cache, machine_cache, read_json
    from nas.settings import number_in
    from nas.training.loop import resolve_device

    if resolve_device(device).type != "cpu":
        return None
    path = machine_cache() / "numerics.json"
    known = read_json(path, "numerics calibration") if path.exists() else {}
    key = machine_key(threads)
    if key not in known:
        logging.getLogger("nas").info(f"calibrating the numeric modes for {key} (once, about two minutes) ...")
        known[key] = calibrate(threads)
        keep_in_machine_cache(
            path, lambda now: (read_json(now, "numerics calibration") if now.exists() else {}) | {key: known[key]}
        )
    mflops = known[key].get("bf16_above_mflops", "missing") if isinstance(known[key], dict) else "missing"
    if mflops is not None and not number_in(mflops, 0, math.inf):
        raise RunDirError(f"{path}: {key}: bf16_above_mflops is {mflops!r}, no number of MFLOPs; delete the file")
    return None if mflops is None else mflops * 1e6


def bf16_pays(model: nn.Module, device: str) -> bool:
    """Whether this machine runs ``model`` faster under bf16 autocast on the CPU: above the calibrated FLOPs
    (never off the CPU: the rule is the CPU's)."""
    from nas.genome.build import count_flops

    above = machine_rule(torch.get_num_threads(), device)
    return above is not None and count_flops(model) > above


def fastest(cfg: TrainConfig, model: nn.Module, device: str) -> TrainConfig:
    """``cfg`` (a TrainConfig) in this machine's faster numeric mode for ``model``: bf16 autocast on the
    CPU above the calibrated FLOPs, fp32 below."""
    return cfg.replace(cpu_bf16=bf16_pays(model, device))
