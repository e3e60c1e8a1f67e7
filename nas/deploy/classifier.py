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
from nas.settings import number_in

BACKENDS = ("onnx", "torchscript")
# the model that ships inside the package (the headline's champion, ``scripts/ship_model.py``): the one the
# demo and ``nas.analyze`` use where no model is named
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models"


def default_model() -> Path:
    """The package's own model (an export folder), or one line saying this install has none."""
    if not (DEFAULT_MODEL / "model.json").exists():
        raise NasError(f"{DEFAULT_MODEL}: no model ships with this install; name one with --model (an export "
                       "folder or its model.onnx)")  # fmt: skip
    return DEFAULT_MODEL


class Classifier:
    """An exported model: ``predict_proba`` turns (N, 1, H, W) uint8 face crops into class probabilities.

    ``path``: the export folder or a file in it (default: the model that ships with the package);
    ``backend="onnx"`` (default) runs ``model.onnx`` in ONNX Runtime with ``threads`` threads;
    ``backend="torchscript"`` runs ``model.ts``.
    """

    def __init__(self, path: str | Path | None = None, backend: str = "onnx", threads: int = 1) -> None:
        if backend not in BACKENDS:
            raise NasError(f"unknown backend {backend!r}; use onnx or torchscript")
        path = default_model() if path is None else Path(path)
        if not path.exists():
            raise NasError(f"{path}: model not found")
        folder = path if path.is_dir() else path.parent
        self.info = _read_info(folder / "model.json")
        self.class_names = list(self.info["class_names"])
        norm = self.info["input"]["normalize"]
        self.mean, self.std = float(norm["mean"]), float(norm["std"])
        self.input_size = tuple(int(v) for v in self.info["input"]["shape"][-2:])  # (H, W) of a face crop
        self.backend = backend
        described = [str(self.info["files"][k]) for k in ("onnx", "torchscript")]
        if path.is_file() and path.suffix in (".onnx", ".ts") and path.name not in described:
            raise NasError(f"{path}: its model.json describes {' and '.join(described)}, not this file; name one of "
                           "those or the folder")  # fmt: skip
        file = folder / self.info["files"]["onnx" if backend == "onnx" else "torchscript"]
        if not file.exists():
            raise NasError(f"{file}: model file not found")
        self._run = _onnx_runner(file, threads) if backend == "onnx" else _torchscript_runner(file, threads)
        _check_model(file, self._run, self.info)

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        """(N, 1, H, W) uint8 face crops -> (N, classes) probabilities, all faces in one batch."""
        if len(faces) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        x = (np.asarray(faces, np.float32) / 255.0 - self.mean) / self.std
        logits = self._run(x.astype(np.float32))
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)


def _read_info(path: Path) -> dict:
    """``model.json``, each field the classifier reads checked by its type and range: a damaged description
    is one line naming the file and the field, never a wrong answer later."""
    if not path.exists():
        raise NasError(f"{path}: model description not found (export the model with scripts/export.py)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise NasError(f"{path}: unreadable model description ({type(exc).__name__}: {first_line(exc)})") from None
    problem = _info_problem(info)
    if problem:
        raise NasError(f"{path}: unreadable model description ({problem})")
    return info


def _info_problem(info: object) -> str | None:
    """What is wrong with a ``model.json``'s contents, named by field; None when nothing is."""
    if not isinstance(info, dict):
        return "not a table"
    names, files = info.get("class_names"), info.get("files")
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) and n for n in names):
        return "class_names must be a list of at least two names"
    if len(set(names)) != len(names):
        return "class_names repeats a name"
    if not isinstance(files, dict) or not all(isinstance(files.get(k), str) for k in ("onnx", "torchscript")):
        return "files must name the onnx and torchscript files"
    if any(Path(files[k]).name != files[k] or files[k] in ("", ".", "..") for k in ("onnx", "torchscript")):
        return "files must be plain file names inside the model's folder"
    model_input = info.get("input")
    shape = model_input.get("shape") if isinstance(model_input, dict) else None
    if not isinstance(shape, list) or len(shape) != 4 or not all(type(v) is int and 0 < v <= 4096 for v in shape):
        return "input.shape must be 4 positive integers (N, C, H, W)"
    if shape[1] != 1:
        return f"input.shape must have 1 channel (grey faces), got {shape[1]}"
    norm = model_input.get("normalize")
    mean, std = (norm.get("mean"), norm.get("std")) if isinstance(norm, dict) else (None, None)
    if not (number_in(mean) and number_in(std) and std > 0):
        return "input.normalize needs a finite mean and a positive std"
    return None


def _check_model(file: Path, run, info: dict) -> None:
    """The model file must answer the description: a face of ``input.shape`` in, one logit a class out."""
    shape = info["input"]["shape"]
    try:
        out = run(np.zeros([1, *shape[1:]], np.float32))
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime and TorchScript raise types of their own
        raise NasError(
            f"{file}: does not take the input model.json describes {shape} ({first_line(exc)[:160]})"
        ) from None
    if np.ndim(out) != 2 or np.shape(out)[1] != len(info["class_names"]):
        raise NasError(
            f"{file}: gives {np.shape(out)[-1] if np.ndim(out) else 0} outputs, model.json names "
            f"{len(info['class_names'])} classes"
        )


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
    try:
        import torch
    except ImportError:
        raise NasError(f"{file}: --backend torchscript needs torch (pip install torch); onnx does not") from None

    torch.set_num_threads(threads)
    try:
        module = torch.jit.load(str(file), map_location="cpu").eval()
    except (RuntimeError, ValueError, OSError) as exc:
        raise NasError(f"{file}: not a loadable TorchScript model ({first_line(exc)[:200]})") from None

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    return run
