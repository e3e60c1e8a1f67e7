"""The deployable artefact: ``model.onnx`` + ``model.ts`` (TorchScript) + ``model.json``, and its loader.

``model.json`` says everything a user of the model needs (class names, input size, normalisation,
the genome, its metrics and latency), so the artefact runs without this package's search code:
``Classifier`` needs only numpy and ONNX Runtime (or torch for the TorchScript file). Export checks
that ONNX Runtime, TorchScript and the original network agree before it writes anything final.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch

from nas import data as fer
from nas.build import build, count_flops, count_params
from nas.errors import NasError
from nas.genome import parse_genome
from nas.latency import measure, onnx_bytes, ort_session
from nas.rundir import atomic_write, write_json

TOLERANCE = 1e-4


class ExportError(NasError):
    """The exported model disagrees with the original, or the input cannot be exported."""


def save_checkpoint(
    path: Path, model: torch.nn.Module, metrics: dict | None = None, train_config: dict | None = None
) -> None:
    """Weights plus the genome that built them: enough to rebuild the network anywhere."""
    state = {
        "genome": model.genome,
        "input_shape": list(model.input_shape),
        "num_classes": model.head[-1].out_features,
        "state_dict": model.state_dict(),
        "metrics": metrics or {},
        "train_config": train_config or {},
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild a network from a checkpoint; ``weights_only=True``: no arbitrary code is unpickled."""
    path = Path(path)
    if not path.exists():
        raise NasError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = build(parse_genome(state["genome"]), tuple(state["input_shape"]), state["num_classes"])
        model.load_state_dict(state["state_dict"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise NasError(f"{path}: not a fer-nas checkpoint ({str(exc).splitlines()[0]})") from None
    return model.eval(), state


def export(model: torch.nn.Module, out_dir: str | Path, metrics: dict | None = None, seed: int = 0) -> dict:
    """Write the three files into ``out_dir`` and return the contents of ``model.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval().to("cpu", memory_format=torch.contiguous_format)
    shape = tuple(model.input_shape)
    onnx_model = onnx_bytes(model, shape)
    scripted = torch.jit.script(model)

    x = torch.randn(8, *shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        want = model(x).numpy()
        got_ts = scripted(x).numpy()
    got_onnx = ort_session(onnx_model).run(None, {"input": x.numpy()})[0]
    diffs = {"onnx": float(np.abs(got_onnx - want).max()), "torchscript": float(np.abs(got_ts - want).max())}
    bad = {k: v for k, v in diffs.items() if not v <= TOLERANCE}
    if bad:
        raise ExportError(f"exported model disagrees with the original: max abs difference {bad} > {TOLERANCE}")

    atomic_write(out_dir / "model.onnx", onnx_model)
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    atomic_write(out_dir / "model.ts", buf.getvalue())
    info = {
        "format": "fer-nas/1",
        "genome": model.genome,
        "class_names": list(fer.CLASS_NAMES[: model.head[-1].out_features]),
        "input": {
            "shape": [1, *shape],
            "dtype": "float32",
            "layout": "NCHW",
            "grey_levels": "0..255",
            "normalize": {"mean": fer.MEAN, "std": fer.STD, "formula": "(x / 255 - mean) / std"},
        },
        "output": "logits; softmax gives class probabilities",
        "params": count_params(model),
        "flops": count_flops(model, shape),
        "latency_ms": {"onnxruntime_1_thread_batch_1": measure({"m": model}, shape)["m"]},
        "max_abs_difference": diffs,
        "metrics": metrics or {},
        "files": {"onnx": "model.onnx", "torchscript": "model.ts"},
    }
    write_json(out_dir / "model.json", info)
    return info


class Classifier:
    """Load an exported model and classify grey face crops; needs no search code.

    ``backend="onnx"`` (default) runs ``model.onnx`` in ONNX Runtime with ``threads`` threads;
    ``backend="torchscript"`` runs ``model.ts``.
    """

    def __init__(self, path: str | Path, backend: str = "onnx", threads: int = 1) -> None:
        path = Path(path)
        folder = path if path.is_dir() else path.parent
        meta = folder / "model.json"
        if not meta.exists():
            raise NasError(f"{meta}: model description not found (export the model with scripts/export.py)")
        self.info = json.loads(meta.read_text())
        self.class_names = self.info["class_names"]
        self.backend = backend
        file = folder / self.info["files"]["onnx" if backend == "onnx" else "torchscript"]
        if not file.exists():
            raise NasError(f"{file}: model file not found")
        if backend == "onnx":
            self.session = ort_session(str(file), threads)
        elif backend == "torchscript":
            torch.set_num_threads(threads)
            self.module = torch.jit.load(str(file)).eval()
        else:
            raise NasError(f"unknown backend {backend!r}; use onnx or torchscript")

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        """(N, 1, 48, 48) uint8 face crops -> (N, classes) probabilities, all faces in one batch."""
        if len(faces) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        x = fer.normalize(np.asarray(faces))
        if self.backend == "onnx":
            logits = self.session.run(None, {"input": x})[0]
        else:
            with torch.inference_mode():
                logits = self.module(torch.from_numpy(x)).numpy()
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)
