"""The exported model at run time: load ``model.onnx`` (or ``model.ts``) with its ``model.json`` and classify
grey face crops.

Needs numpy and ONNX Runtime only (torch only for the TorchScript backend), and none of the search code:
``model.json`` carries the class names, the input size and the normalisation, so this module is all a
deployment needs. Every problem with the files is one line naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nas.errors import NasError, first_line

BACKENDS = ("onnx", "torchscript")


class Classifier:
    """An exported model: ``predict_proba`` turns (N, 1, H, W) uint8 face crops into class probabilities.

    ``path``: the export folder or a file in it; ``backend="onnx"`` (default) runs ``model.onnx`` in ONNX
    Runtime with ``threads`` threads; ``backend="torchscript"`` runs ``model.ts``.
    """

    def __init__(self, path: str | Path, backend: str = "onnx", threads: int = 1) -> None:
        if backend not in BACKENDS:
            raise NasError(f"unknown backend {backend!r}; use onnx or torchscript")
        path = Path(path)
        if not path.exists():
            raise NasError(f"{path}: model not found")
        folder = path if path.is_dir() else path.parent
        self.info = _read_info(folder / "model.json")
        self.class_names = list(self.info["class_names"])
        norm = self.info["input"]["normalize"]
        self.mean, self.std = float(norm["mean"]), float(norm["std"])
        self.input_size = tuple(int(v) for v in self.info["input"]["shape"][-2:])  # (H, W) of a face crop
        self.backend = backend
        file = folder / self.info["files"]["onnx" if backend == "onnx" else "torchscript"]
        if not file.exists():
            raise NasError(f"{file}: model file not found")
        self._run = _onnx_runner(file, threads) if backend == "onnx" else _torchscript_runner(file, threads)

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        """(N, 1, H, W) uint8 face crops -> (N, classes) probabilities, all faces in one batch."""
        if len(faces) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        x = (np.asarray(faces, np.float32) / 255.0 - self.mean) / self.std
        logits = self._run(x.astype(np.float32))
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)


def _read_info(path: Path) -> dict:
    """``model.json``, checked for what the classifier reads from it."""
    if not path.exists():
        raise NasError(f"{path}: model description not found (export the model with scripts/export.py)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        norm = info["input"]["normalize"]
        ok = isinstance(info["class_names"], list) and {"onnx", "torchscript"} <= set(info["files"])
        ok = ok and len(info["input"]["shape"]) == 4
        ok = ok and isinstance(norm["mean"], (int, float)) and isinstance(norm["std"], (int, float))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise NasError(f"{path}: unreadable model description ({type(exc).__name__}: {exc})") from None
    if not ok:
        raise NasError(f"{path}: unreadable model description (class_names, files or input.normalize malformed)")
    return info


def ort_session(model_bytes_or_path: bytes | str, threads: int = 1):
    """An ONNX Runtime CPU session with ``threads`` intra-op threads and one inter-op thread (also what the
    latency objective is timed in)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(model_bytes_or_path, opts, providers=["CPUExecutionProvider"])


def _onnx_runner(file: Path, threads: int):
    try:
        session = ort_session(str(file), threads)
    except Exception as exc:  # ONNX Runtime raises its own types (InvalidProtobuf, Fail, ...) for a bad file
        raise NasError(f"{file}: not a loadable ONNX model ({first_line(exc)[:200]})") from None
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def _torchscript_runner(file: Path, threads: int):
    import torch

    torch.set_num_threads(threads)
    try:
        module = torch.jit.load(str(file), map_location="cpu").eval()
    except (RuntimeError, ValueError, OSError) as exc:
        raise NasError(f"{file}: not a loadable TorchScript model ({first_line(exc)[:200]})") from None

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    return run
