"""The package's own model: an export made small enough to ship inside the package, measured as shipped.

The headline's champion ships in ``nas/models/`` (``nas.deploy.classifier.DEFAULT_MODEL``) so that the
demo and ``nas.analyze`` work right after ``pip install``. Its weights are stored as float16 and cast back
to float32 where the graph uses them (ONNX Runtime folds the casts when it loads the file): half the file
of the float32 export, the same float32 arithmetic on weights rounded once. Rounding may move a
prediction, so the shipped file is measured again on the test split, and its card and ``report.json``
give that measurement, beside the export's own.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from nas.data import Split
from nas.deploy import classifier
from nas.deploy.artifact import OnnxNet, model_card, report_summary, with_metadata
from nas.errors import NasError
from nas.rundir import REPORT, atomic_write_all, json_text, make_dir, read_json

SHIPPED = ("model.onnx", "model.json", "MODEL_CARD.md", "report.json")  # what the package's own model keeps
MEASURED = ("split", "images", "single_crop", "ten_crop", "per_class", "confusion")  # a test report's figures


def half_weights(onnx_model: bytes) -> bytes:
    """The model with every float32 weight tensor (initializer or Constant) stored as float16, followed by a
    Cast back to float32 under the weight's own name, so that no node changes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    proto = onnx.load_from_string(onnx_model)
    graph, inputs = proto.graph, {i.name for i in proto.graph.input}

    def halved(tensor, name: str):
        values = numpy_helper.to_array(tensor)
        return numpy_helper.from_array(values.astype(np.float16), name)

    def cast(name: str):
        return helper.make_node("Cast", [f"{name}.f16"], [name], to=TensorProto.FLOAT, name=f"{name}.cast")

    casts = []
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT and init.name not in inputs:
            name = init.name
            init.CopyFrom(halved(init, f"{name}.f16"))
            casts.append(cast(name))
    nodes = []
    for node in graph.node:
        nodes.append(node)
        value = next((a for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        if value is not None and value.t.data_type == TensorProto.FLOAT and np.prod(value.t.dims) > 1:
            name = node.output[0]
            value.t.CopyFrom(halved(value.t, f"{name}.f16"))
            node.output[0] = f"{name}.f16"
            nodes.append(cast(name))
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def _largest_difference(a: torch.nn.Module, b: torch.nn.Module, test: Split) -> float:
    """The largest difference between two models' logits on the test images (single crop)."""
    from nas.training.loop import predict

    cpu = torch.device("cpu")
    return float((predict(a, test.x, cpu) - predict(b, test.x, cpu)).abs().max())


def ship(export_dir: str | Path, report: dict, test: Split, dest: str | Path | None = None) -> Path:
    """Make an export the package's own model: once its card is what its ``model.json`` says and its test
    figures are ``report``'s (the export's ``report.json``, beside its ``model.pt``, as
    ``nas.training.report.read_report`` checked it), store its weights as float16, measure that file on
    ``test`` (PrivateTest) and write it with a card, ``model.json`` and ``report.json`` that give its own
    figures; returns the folder (``DEFAULT_MODEL`` unless ``dest``)."""
    from nas.training.report import test_report

    export_dir = Path(export_dir)
    files = {name: export_dir / name for name in SHIPPED[:3]} | {"report.json": export_dir.parent / "report.json"}
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        raise NasError(f"{missing[0]}: not found; export a trained model with its test report first")
    info = read_json(files["model.json"], "model description")
    if model_card(info) != files["MODEL_CARD.md"].read_text(encoding="utf-8"):
        raise NasError(f"{files['MODEL_CARD.md']}: the card is not what {files['model.json']} says; export again")
    if not info.get("test") or info["test"] != report_summary(report):
        raise NasError(f"{files['model.json']}: its test figures are not those of {files['report.json']}")
    original = files["model.onnx"].read_bytes()
    compact = half_weights(original)
    shipped = OnnxNet(compact)
    weights = {
        "storage": "float16",
        "max_abs_difference": _largest_difference(OnnxNet(original), shipped, test),
        "float32_test": {k: report[k] for k in ("single_crop", "ten_crop")},
    }
    extra = {k: v for k, v in report.items() if k not in MEASURED} | {"weights": weights}
    with tempfile.TemporaryDirectory() as tmp:
        measured = test_report(shipped, test, Path(tmp), extra | {"device": "cpu"})
    info = info | {"test": report_summary(measured), "weights": weights}
    card = model_card(info)
    files = {"model.onnx": with_metadata(compact, info, card), "model.json": json_text(info), "MODEL_CARD.md": card}
    return atomic_write_all(make_dir(classifier.DEFAULT_MODEL if dest is None else dest),
                            files | {REPORT: json_text(measured)})  # fmt: skip
