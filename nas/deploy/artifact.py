"""The deployable artefact: ``model.onnx`` + ``model.ts`` (TorchScript) + ``model.json`` + ``MODEL_CARD.md``,
and its loader.

``model.json`` says everything a user of the model needs (class names, input size, normalisation,
the genome, its metrics and latency), so the artefact runs without this package's search code;
``MODEL_CARD.md`` says it for people (with the test report's figures, the limitations and a snippet that
needs only numpy and ONNX Runtime), and the ONNX file carries the same facts in its metadata. Export checks
that ONNX Runtime, TorchScript and the original network agree before it writes anything final.
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import torch

from nas import data as fer
from nas.deploy.latency import measure, onnx_bytes, ort_session
from nas.errors import GenomeError, NasError, first_line
from nas.genome.build import build, count_flops, count_params
from nas.genome.grammar import parse_genome
from nas.rundir import (
    SEARCH_COST,
    atomic_write,
    atomic_write_all,
    cpu_model,
    distilled_sentence,
    json_text,
    make_dir,
    search_sentence,
)

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
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise NasError(f"{path}: not a readable checkpoint ({first_line(exc)})") from None
    problem = _checkpoint_problem(state)
    if problem:
        raise NasError(f"{path}: not a fer-nas checkpoint ({problem})")
    try:
        genome = parse_genome(state["genome"])
    except GenomeError as exc:
        raise NasError(f"{path}: not a fer-nas checkpoint (genome: {first_line(exc)})") from None
    try:
        model = build(genome, tuple(state["input_shape"]), state["num_classes"])
        model.load_state_dict(state["state_dict"])
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise NasError(f"{path}: not a fer-nas checkpoint (state_dict: {first_line(exc)})") from None
    return model.eval(), state


def _checkpoint_problem(state: object) -> str | None:
    """What a checkpoint lacks, by field: the genome, the input shape, the classes and weights that rebuild it."""
    if not isinstance(state, dict):
        return "not a table of genome, shapes and weights"
    shape = state.get("input_shape")
    fields = {
        "genome": isinstance(state.get("genome"), str),
        "input_shape": isinstance(shape, list | tuple)
        and len(shape) == 3
        and all(type(n) is int and n > 0 for n in shape),
        "num_classes": type(state.get("num_classes")) is int and state["num_classes"] >= 2,
        "state_dict": isinstance(state.get("state_dict"), dict),
        "metrics": isinstance(state.get("metrics", {}), dict),
        "train_config": isinstance(state.get("train_config", {}), dict),
    }
    wrong = [name for name, ok in fields.items() if not ok]
    return f"{wrong[0]} missing or damaged" if wrong else None


def export(
    model: torch.nn.Module,
    out_dir: str | Path,
    metrics: dict | None = None,
    seed: int = 0,
    test_report: dict | None = None,
) -> dict:
    """Write the four files into ``out_dir`` and return the contents of ``model.json``; ``test_report``: the
    final report on PrivateTest (``report.json`` of ``scripts/train.py``), for the model card."""
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
        "machine": _machine(),
        "max_abs_difference": diffs,
        "metrics": metrics or {},
        "test": report_summary(test_report),
        "search": _search_summary(test_report),
        "files": {"onnx": "model.onnx", "torchscript": "model.ts", "card": "MODEL_CARD.md"},
    }
    card = model_card(info)
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    files = {"model.onnx": with_metadata(onnx_model, info, card), "model.ts": buf.getvalue(), "MODEL_CARD.md": card}
    atomic_write_all(make_dir(out_dir), files | {"model.json": json_text(info)})  # once the export is known right
    return info


def _machine() -> dict:
    import onnxruntime

    return {"cpu": cpu_model(), "onnxruntime": onnxruntime.__version__}


def _search_summary(report: dict | None) -> dict:
    """The search behind the model, where the test report names it completely."""
    search = (report or {}).get("search")
    return search if isinstance(search, dict) and set(SEARCH_COST) <= set(search) else {}


class OnnxNet(torch.nn.Module):
    """An ONNX model as a module taking normalised batches (run by ONNX Runtime on the CPU): the test report
    measures the shipped file itself with it, and an export can teach a distilled training. It runs on as
    many threads as torch does here (a teacher's soft targets are minutes of work, not a latency measure)."""

    def __init__(self, onnx_model: bytes) -> None:
        super().__init__()
        self.session = ort_session(onnx_model, threads=torch.get_num_threads())
        self.input = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input: x.detach().float().cpu().numpy()})[0]
        return torch.from_numpy(out).to(x.device)


def report_summary(report: dict | None) -> dict:
    """The test report's figures a model card shows (the confusion matrix stays in report.json)."""
    if not report:
        return {}
    keys = ("split", "images", "single_crop", "ten_crop", "per_class")
    return {k: report[k] for k in keys if k in report}


def with_metadata(onnx_model: bytes, info: dict, card: str) -> bytes:
    """The ONNX file carries what model.json says (``metadata_props``), for users who only have that file."""
    import onnx

    proto = onnx.load_from_string(onnx_model)
    props = {k: json.dumps(v) for k, v in info.items() if k not in ("files", "max_abs_difference")}
    onnx.helper.set_model_props(proto, props | {"model_card": card})
    proto.producer_name = "fer-nas"
    return proto.SerializeToString()


LIMITATIONS = """\
- FER2013's images were found by web image search for emotion keywords and cropped automatically; human
  accuracy on it is about 65% (Goodfellow et al., 2013), so some labels are wrong or debatable.
- Its demographics were never recorded: accuracy on particular groups of people, on profiles, on children
  and under other lighting is unmeasured and may be lower.
- The classes are imbalanced (disgust is 1.5% of Training): read each class's recall in the test results
  above before relying on it, and do not use the model to decide anything about a person.
- It classifies the expression of a face already found and cropped; it does not detect faces, and an
  expression is not a feeling."""


_TRAINING_WORDS = {  # the final training's checkpoint metrics in words
    "val_acc": lambda v: f"PublicTest accuracy {v:.4f}",
    "val_f1": lambda v: f"PublicTest macro-F1 {v:.4f}",
    "best_epoch": lambda v: f"best epoch {v}",
    "epochs_run": lambda v: f"{v} epochs",
    "train_seconds": lambda v: f"{v / 60:.1f} minutes",
    "recipe": lambda v: f"recipe {v}",
    "seed": lambda v: f"seed {v}",
}


def _training_sentence(metrics: dict) -> str:
    def words(key, value) -> str:
        try:
            return _TRAINING_WORDS[key](value)
        except (KeyError, TypeError, ValueError):  # another figure, or not a number: as it is
            return f"{key} {value}"

    return ", ".join(words(k, v) for k, v in metrics.items() if not isinstance(v, dict))


USAGE = """```python
import json

import numpy as np
import onnxruntime as ort

session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
meta = session.get_modelmeta().custom_metadata_map
classes = json.loads(meta["class_names"])
norm = json.loads(meta["input"])["normalize"]
face = np.full((48, 48), 128, np.uint8)  # a grey 48x48 face crop, cropped as said above
x = ((face / 255.0 - norm["mean"]) / norm["std"]).astype(np.float32)[None, None]
logits = session.run(None, {"input": x})[0][0]
p = np.exp(logits - logits.max())
p /= p.sum()
print(classes[int(p.argmax())], round(float(p.max()), 3))
```"""


def model_card(info: dict) -> str:
    """MODEL_CARD.md: what the model is for, how to feed it, how well it does, where it fails."""
    lines = [*_card_model(info), *_card_data(info), "## Test results", "", *_card_test(info.get("test") or {})]
    lines += _card_weights(info.get("weights") or {})
    lines += ["## Limitations", "", LIMITATIONS, "", "## Use it with numpy and ONNX Runtime only", "", USAGE, ""]
    return "\n".join(lines)


def _card_model(info: dict) -> list[str]:
    """The classes, the input convention and the network."""
    norm = info["input"]["normalize"]
    return [
        "# Facial expression classifier (fer-nas)",
        "",
        f"Classes ({len(info['class_names'])}): {', '.join(info['class_names'])}.",
        "",
        "## Input",
        "",
        f"One grey face crop of {info['input']['shape'][2]}x{info['input']['shape'][3]} pixels, NCHW float32, "
        f"grey levels 0-255 normalised as {norm['formula']} with mean {norm['mean']} and std {norm['std']}. "
        "FER2013's faces fill the image roughly from brow to chin; the demo crops live faces the same way: "
        "the box of OpenCV's frontal-face Haar cascade, widened by 10% on every side, resized to 48x48. "
        "Output: logits; softmax gives the probabilities.",
        "",
        "## Network",
        "",
        f"Genome: `{info['genome']}`",
        "",
        f"{info['params']:,} parameters, {info['flops'] / 1e6:.1f} MFLOPs per image, "
        f"{info['latency_ms']['onnxruntime_1_thread_batch_1']:.3f} ms per face in ONNX Runtime "
        f"{info['machine']['onnxruntime']} (one thread, batch 1) on {info['machine']['cpu']}.",
        "",
    ]


def _card_data(info: dict) -> list[str]:
    """The data it was searched and trained on, the search and the training."""
    lines = [
        "## Training data",
        "",
        "FER2013 (Goodfellow et al., 2013): the architecture was searched (and any tuning of the training recipe "
        "done) on `Training` (28,709 images) and `PublicTest` (3,589, validation and early stopping); `PrivateTest` "
        "(3,589) was used once, for the figures below. FER2013's licence allows research use only and the "
        "data is not redistributed with this model; check that your use of the model is allowed.",
        "",
    ]
    if info.get("search"):
        lines += [f"Architecture searched with fer-nas in {search_sentence(info['search'])} (the search's clock).", ""]
    if info.get("metrics"):
        lines += [f"Training: {_training_sentence(info['metrics'])}.", ""]
    if isinstance((info.get("metrics") or {}).get("teacher"), dict):
        lines += [distilled_sentence(info["metrics"]["teacher"]), ""]
    return lines


def _card_weights(weights: dict) -> list[str]:
    """How the weights are stored, where the shipped file rounded them (``nas.training.ship``)."""
    if not weights:
        return []
    before = weights["float32_test"]
    return [
        f"The weights are stored as {weights['storage']} and cast to float32 when the model loads (half the "
        f"file); its logits differ from the float32 model's by at most {weights['max_abs_difference']:.2g} on "
        f"the test images. The figures above are this file's own; the float32 model's: "
        f"{before['single_crop']['acc']:.4f} single crop, {before['ten_crop']['acc']:.4f} ten-crop.",
        "",
    ]


def _single_f1(test: dict) -> str:
    """The single crop's macro-F1 where the report has it (reports before 2026-11 kept the ten-crop one only)."""
    f1 = test["single_crop"].get("f1")
    return "" if f1 is None else f"{f1:.4f} single crop, "


def _card_test(test: dict) -> list[str]:
    """The test figures, overall and per class, or why there are none."""
    if not test:
        return ["Not measured: this model was exported without a test report (scripts/train.py writes one).", ""]
    return [
        f"On {test.get('split', 'PrivateTest')} ({test.get('images', '?')} images): accuracy "
        f"{test['single_crop']['acc']:.4f} single crop, {test['ten_crop']['acc']:.4f} ten-crop; macro-F1 "
        f"{_single_f1(test)}{test['ten_crop']['f1']:.4f} ten-crop. One crop is what the demo and "
        "`nas.analyze` run; ten crops (the corners, the centre and their mirror images, averaged) are the "
        "field's usual figure.",
        "",
        "| class (ten-crop) | precision | recall | F1 | test images |",
        "|---|---|---|---|---|",
        *(
            f"| {name} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {int(c['support'])} |"
            for name, c in test.get("per_class", {}).items()
        ),
        "",
    ]
