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
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn


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


def ort_session(model_bytes_or_path: bytes | str, threads: int = 1):
    """An ONNX Runtime CPU session with ``threads`` intra-op threads and one inter-op thread."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(model_bytes_or_path, opts, providers=["CPUExecutionProvider"])


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
            raise ValueError(f"latency backend must be 'onnx' or 'torch', got {backend!r}")

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
