"""Measured CPU latency of networks as they will be deployed: batch 1, one thread, ONNX Runtime.

Why ONNX Runtime and not torch eager: eager adds a fixed per-layer overhead (measured here: a
mini-Xception takes ~0.2-0.4 ms in ONNX Runtime and ~4 ms eager), which reverses the order of small
nets and would reward fewer layers rather than less compute. Eager stays available as ``backend="torch"``.

Why the figures are stable: latency is measured in its own phase, never while training runs, all
networks of a phase (and a fixed reference network) are timed round-robin over several rounds, and
each figure is the median of the per-round medians; ``ratio`` divides by the reference's figure from
the same phase, which stays comparable across machines and runs.
"""

from __future__ import annotations

import io
import statistics
import time
import warnings
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nas.deploy.classifier import ort_session
from nas.errors import SettingError


def onnx_bytes(model: nn.Module, input_shape: tuple[int, int, int], dynamic_batch: bool = True) -> bytes:
    """Serialise to ONNX in memory (opset 17, TorchScript-based exporter: no extra packages)."""
    model = model.eval().to("cpu", memory_format=torch.contiguous_format)
    buf = io.BytesIO()
    axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, *input_shape),),
            buf,
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=17,
        )
    return buf.getvalue()


class _Runner:
    """One network ready to be timed: ``call()`` runs one batch-1 inference."""

    def __init__(self, model: nn.Module, input_shape: tuple[int, int, int], backend: str):
        self.backend = backend
        if backend == "onnx":
            self.session = ort_session(onnx_bytes(model, input_shape))
            self.feed = {"input": np.zeros((1, *input_shape), np.float32)}
        elif backend == "torch":
            self.model = model.eval().to("cpu")
            self.x = torch.zeros(1, *input_shape)
        else:
            raise SettingError(f"latency backend must be 'onnx' or 'torch', got {backend!r}")

    def call(self) -> None:
        if self.backend == "onnx":
            self.session.run(None, self.feed)
        else:
            with torch.inference_mode():
                self.model(self.x)

    def time_ms(self, runs: int) -> float:
        """Median of ``runs`` single calls, in milliseconds."""
        if self.backend == "torch":
            from torch.utils import benchmark

            timer = benchmark.Timer("run()", globals={"run": self.call}, num_threads=1)
            return timer.timeit(runs).median * 1e3
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            self.call()
            times.append(time.perf_counter() - t0)
        return float(np.median(times)) * 1e3


def measure(
    models: dict[str, nn.Module],
    input_shape: tuple[int, int, int] = (1, 48, 48),
    backend: str = "onnx",
    rounds: int = 5,
    runs: int = 30,
    warmup: int = 10,
) -> dict[str, float]:
    """Batch-1, single-thread latency in ms of each model, timed round-robin; median of round medians."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runners = {k: _Runner(m, input_shape, backend) for k, m in models.items()}
        for r in runners.values():
            for _ in range(warmup):
                r.call()
        per_round: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(rounds):
            for k, r in runners.items():
                per_round[k].append(r.time_ms(runs))
        return {k: statistics.median(v) for k, v in per_round.items()}
    finally:
        torch.set_num_threads(threads)


def spread(values: Iterable[float]) -> float:
    """max / min: how far repeated measurements of the same thing disagree."""
    values = list(values)
    return max(values) / min(values)


# ---------------------------------------------------------------- the latency model of a search


class LatencyTable:
    """Predicted latency: a sum of per-block latencies measured once per machine, as FBNet and
    ProxylessNAS do, so that the latency objective is deterministic and costs nothing per candidate.

    A network is cut into units: each body block at the input shape it meets (``conv_k3_c16_s1_relu_bn
    @1x48x48``), and the head (readout, dense layers, classifier). Each unit is exported on its own and
    timed like a network (ONNX Runtime, batch 1, one thread, median of round medians); the prediction is
    the sum of the units less the per-call overhead each of them carries (an identity graph's time), plus
    one such overhead. Units are measured when first met and kept in two files: the machine's table
    (``machine``, shared by every run on this machine, keyed by CPU and package versions) and the run's
    own copy (``run``), which a resumed run reads first, so a run's predictions never change.
    """

    OVERHEAD = "__call__"

    def __init__(self, machine: Path | None = None, run: Path | None = None, rounds: int = 5, runs: int = 30):
        self.machine, self.run, self.rounds, self.runs = machine, run, rounds, runs
        self.entries: dict[str, float] = {}
        self.in_run: set[str] = set()  # the units the run's copy holds
        for path in (machine, run):  # the run's own entries win
            if path is not None and path.exists():
                entries = _read_entries(path)
                self.entries |= entries
                if path is run:
                    self.in_run = set(entries)

    def units(self, genome, input_shape: tuple[int, int, int], num_classes: int) -> dict[str, Callable[[], tuple]]:
        """Unit key -> a function building (module, input shape), for every unit of ``genome``."""
        from nas.genome.grammar import Readout, format_gene

        out, shape = {}, tuple(input_shape)
        for gene in genome.body:
            out[f"{format_gene(gene)}@{'x'.join(map(str, shape))}"] = partial(_unit, [gene], shape, None)
            shape = gene.output_shape(shape)
        head = [genome.readout or Readout("gap"), *genome.head]
        key = " | ".join(format_gene(g) for g in head) + f"@{'x'.join(map(str, shape))}->{num_classes}"
        out[key] = partial(_unit, head, shape, num_classes)
        return out

    def predict(self, genome, input_shape: tuple[int, int, int] = (1, 48, 48), num_classes: int = 7) -> float:
        """Milliseconds; units not in the table are measured now (a fraction of a second each)."""
        units = self.units(genome, input_shape, num_classes)
        missing = {k: f for k, f in units.items() if k not in self.entries}
        if self.OVERHEAD not in self.entries:
            missing[self.OVERHEAD] = partial(_unit, [], input_shape, None)
        if missing:
            self._measure(missing)
        unkept = [k for k in (*units, self.OVERHEAD) if k not in self.in_run]
        if self.run is not None and unkept:  # measured now or known to the machine: the run keeps each it uses
            _add_entries(self.run, {k: self.entries[k] for k in unkept})
            self.in_run |= set(unkept)
        overhead = self.entries[self.OVERHEAD]
        return max(overhead, sum(self.entries[k] - overhead for k in units) + overhead)

    def _measure(self, missing: dict[str, Callable[[], tuple]]) -> None:
        for key, make in missing.items():
            module, shape = make()
            self.entries[key] = measure({key: module}, shape, "onnx", self.rounds, self.runs)[key]
        if self.machine is not None:
            _add_entries(self.machine, {k: self.entries[k] for k in missing}, shared=True)


def _add_entries(path: Path, new: dict[str, float], shared: bool = False) -> None:
    """A latency table's file with ``new`` entries added (written whole)."""
    from nas.rundir import keep_in_machine_cache, write_json

    def added(now: Path) -> dict:
        return {"format": "fer-nas-latency/1", "entries": (_read_entries(now) if now.exists() else {}) | new}

    if shared:  # the machine's table is a cache: one that cannot be written must not stop a search
        keep_in_machine_cache(path, added)
    else:
        write_json(path, added(path))


def _read_entries(path: Path) -> dict[str, float]:
    """A latency table's entries: unit -> milliseconds, each a finite positive number; anything else is one
    line naming the file and the entry (a damaged table would make every prediction of a run wrong)."""
    from nas.errors import RunDirError
    from nas.rundir import read_json
    from nas.settings import number_in

    table = read_json(path, "latency table")
    entries = table.get("entries") if isinstance(table, dict) else None
    if not isinstance(entries, dict):
        raise RunDirError(f"{path}: not a latency table (no 'entries' table of unit -> milliseconds)")
    for unit, ms in entries.items():
        if not number_in(ms) or not ms > 0:
            raise RunDirError(f"{path}: entry {unit!r} must be a positive number of milliseconds, got {ms!r}")
    return entries


def _unit(genes: list, shape: tuple, num_classes: int | None) -> tuple[nn.Module, tuple]:
    """One unit as a module of its own: body genes, or the head with its classifier (or an identity)."""
    from nas.genome.build import chain

    layers, s = chain(genes, tuple(shape))
    if num_classes is not None:
        layers.append(nn.Linear(s[0], num_classes))
    return (nn.Sequential(*layers) if layers else nn.Identity()).eval(), tuple(shape)


def machine_table_path() -> Path:
    """``$XDG_CACHE_HOME/fer-nas/latency-<hash>.json``: one table per CPU and package versions."""
    import hashlib

    import onnxruntime

    from nas.rundir import cpu_model, machine_cache

    # onnxruntime's own version: the distribution may be onnxruntime-gpu or another build
    key = f"{cpu_model()} | onnxruntime {onnxruntime.__version__} | torch {torch.__version__}"
    return machine_cache() / f"latency-{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"
