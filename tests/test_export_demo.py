import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import FACES

from nas.cli import main
from nas.deploy.artifact import ExportError, export, load_checkpoint, save_checkpoint
from nas.deploy.classifier import DEFAULT_MODEL, Classifier
from nas.deploy.demo import DemoConfig, Tracker, run
from nas.errors import NasError
from nas.genome.build import build
from nas.genome.grammar import parse_genome

GENOME = "conv_k3_c8_s1_relu_bn | ir_k3_e2_c16_s2_r2_se | res_c16_s1_r1 | res_c24_s2_r1 | flat | dense_u16_d0.5"
SEARCH = {"run": "r7", "generations": 30, "networks_trained": 496, "minutes": 30.8}
needs_faces = pytest.mark.skipif(not (FACES / "skimage_astronaut.png").exists(), reason="face photos not present")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, synthetic_csv):
    from nas import data
    from nas.training.report import test_report

    out = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    model = build(parse_genome(GENOME)).eval()
    save_checkpoint(out / "model.pt", model, {"val_acc": 0.5})
    test_report(
        model,
        data.load(str(synthetic_csv), ("test",))["test"],
        out,
        {"name": "champion", "device": "cpu", "search": SEARCH},
    )
    assert main(["export", "--checkpoint", str(out / "model.pt")]) == 0
    return out / "export"


def test_export_round_trip(exported):
    model, state = load_checkpoint(exported.parent / "model.pt")
    x = np.random.default_rng(0).integers(0, 256, (5, 1, 48, 48), dtype=np.uint8)
    from nas.data import normalize

    with torch.no_grad():
        want = model(torch.from_numpy(normalize(x))).softmax(1).numpy()
    for backend in ("onnx", "torchscript"):
        got = Classifier(exported / "model.onnx", backend).predict_proba(x)
        assert np.abs(got - want).max() < 1e-4
    info = Classifier(exported).info
    assert info["genome"] == GENOME and info["metrics"]["val_acc"] == 0.5 and len(info["class_names"]) == 7


def test_model_card_and_onnx_metadata_carry_the_test_report(exported):
    import onnxruntime

    card = (exported / "MODEL_CARD.md").read_text()
    report = json.loads((exported.parent / "report.json").read_text())
    assert f"{report['ten_crop']['acc']:.4f} ten-crop" in card and GENOME in card
    assert f"| disgust | {report['per_class']['disgust']['precision']:.3f} |" in card
    assert "searched with fer-nas in run r7: 30 generations, 496 networks trained, 30.8 minutes" in card
    assert "PublicTest accuracy 0.5000" in card  # the checkpoint's metrics in words
    meta = onnxruntime.InferenceSession(str(exported / "model.onnx")).get_modelmeta().custom_metadata_map
    assert json.loads(meta["test"])["ten_crop"] == report["ten_crop"] and meta["model_card"] == card
    assert json.loads(meta["genome"]) == GENOME


def test_the_model_cards_snippet_runs_where_torch_cannot_be_imported(exported):
    from nas.data import CLASS_NAMES

    snippet = (exported / "MODEL_CARD.md").read_text().split("```python\n")[1].split("```")[0]
    no_torch = "import sys\nsys.modules['torch'] = None  # import torch now fails\n"
    run = subprocess.run([sys.executable, "-c", no_torch + snippet], cwd=exported, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[0] in CLASS_NAMES


def test_export_fails_loudly_when_outputs_disagree(tmp_path, monkeypatch):
    import nas.deploy.artifact as ex

    monkeypatch.setattr(ex, "TOLERANCE", -1.0)
    with pytest.raises(ExportError, match="disagrees with the original"):
        export(build(parse_genome(GENOME)), tmp_path)
    assert not (tmp_path / "model.onnx").exists()


@needs_faces
def test_demo_on_a_real_photo_finds_the_face(exported, tmp_path):
    out = tmp_path / "astronaut.png"
    assert (
        main(
            [
                "demo",
                "--model",
                str(exported / "model.onnx"),
                "--source",
                str(FACES / "skimage_astronaut.png"),
                "--headless",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert len(rows) == 1
    probs = [float(rows[0][c]) for c in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")]
    assert abs(sum(probs) - 1) < 1e-3
    annotated, original = cv2.imread(str(out)), cv2.imread(str(FACES / "skimage_astronaut.png"))
    assert annotated.shape == original.shape and not np.array_equal(annotated, original)


@needs_faces
def test_demo_on_a_synthetic_video_writes_an_annotated_video(exported, tmp_path):
    face = cv2.imread(str(FACES / "facerec_obama_small.jpg"))
    video = tmp_path / "moving.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for i in range(12):  # the photo pasted at moving positions on a grey background
        frame = np.full((480, 640, 3), 90, np.uint8)
        x, y = 40 + 20 * i, 60 + 10 * i
        frame[y : y + face.shape[0], x : x + face.shape[1]] = face
        writer.write(frame)
    writer.release()
    out = tmp_path / "annotated.mp4"
    demo = run(str(video), str(exported / "model.onnx"), str(out), headless=True, cfg=DemoConfig(detect_every=2))
    assert demo.count == 12
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert len({r["frame"] for r in rows}) >= 10  # the face is followed through the video
    assert len({r["face"] for r in rows}) <= 2  # ... as one track (box overlap), not a new face per frame


@needs_faces
def test_a_folder_is_annotated_image_by_image_and_named_after_its_inputs(exported, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    face = cv2.imread(str(FACES / "facerec_obama_small.jpg"))
    cv2.imwrite(str(photos / "a_face.png"), face)
    cv2.imwrite(str(photos / "b_blank.png"), np.full_like(face, 90))  # no face: nothing may carry over into it
    out = tmp_path / "annotated"
    assert main(["demo", "--model", str(exported), "--source", str(photos), "--headless", "--output", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["a_face.png", "b_blank.png"]
    rows = list(csv.DictReader((out / "frames.csv").open()))
    assert {r["name"] for r in rows} == {"a_face"} and all(r["time_s"] == "0.000" for r in rows)


@needs_faces
def test_without_a_display_the_demo_runs_headless_and_can_write_the_csv_alone(exported, tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    out = tmp_path / "faces.csv"
    assert (
        main(["demo", "--model", str(exported), "--source", str(FACES / "skimage_astronaut.png"), "--output", str(out)])
        == 0
    )
    assert "running headless" in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == ["faces.csv"] and len(list(csv.DictReader(out.open()))) == 1


@needs_faces
def test_analyze_gives_every_face_its_expression_largest_first_without_torch(exported):
    code = "import sys\nsys.modules['torch'] = None\nimport json, nas\nprint(json.dumps(nas.analyze(*sys.argv[1:])))"
    photo = FACES / "facerec_two_people.jpg"
    run = subprocess.run([sys.executable, "-c", code, str(photo), str(exported)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    faces = json.loads(run.stdout)
    areas = [f["box"][2] * f["box"][3] for f in faces]
    assert len(faces) == 2 and areas == sorted(areas, reverse=True)
    for f in faces:
        assert abs(sum(f["probabilities"].values()) - 1) < 1e-4
        assert f["expression"] == max(f["probabilities"], key=f["probabilities"].get)


@needs_faces
@pytest.mark.parametrize("hold", [0, 3])
def test_a_face_missed_for_a_frame_is_held_as_the_same_track(exported, hold):
    from nas.deploy.demo import Demo

    face = cv2.imread(str(FACES / "facerec_obama_small.jpg"))
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[100 : 100 + face.shape[0], 200 : 200 + face.shape[1]] = face
    blank = np.full_like(frame, 90)  # the face is hidden for one frame (a blink of the detector)
    demo = Demo(Classifier(exported), DemoConfig(detect_every=2, hold=hold))
    frames = (frame, frame, frame, blank, frame, frame)
    seen = [[(t.id, t.probs.copy()) for t in demo.process(f.copy())] for f in frames]
    shown = [[i for i, _ in tracks] for tracks in seen]
    assert shown[3] == ([] if hold == 0 else [0])
    if hold:  # held, the face keeps what it showed: the blank crop is no expression
        assert np.array_equal(seen[3][0][1], seen[2][0][1])
    assert {i for ids in shown for i in ids} == ({0, 1} if hold == 0 else {0})


def test_tracker_smooths_probabilities():
    tracker = Tracker(DemoConfig(smoothing=0.5))
    box = np.array([10, 10, 50, 50])
    tracker.update(box[None], np.array([[1.0, 0, 0, 0, 0, 0, 0]]))
    (t,) = tracker.update(box[None] + 2, np.array([[0, 1.0, 0, 0, 0, 0, 0]]))
    assert t.id == 0 and np.allclose(t.probs[:2], [0.5, 0.5])


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--model", "/nonexistent/model.onnx", "--source", "x.png", "--headless", "--output", "o.png"],
            "/nonexistent/model.onnx: model not found",
        ),
        (
            ["--source", "/nonexistent.mp4", "--headless", "--output", "o.png"],
            "/nonexistent.mp4: video or image not found",
        ),
        (["--source", "7", "--headless", "--output", "o.png"], "7: cannot open camera"),
    ],
)
def test_bad_paths_are_clean_errors(exported, tmp_path, capsys, argv, message):
    if "--model" not in argv:
        argv = ["--model", str(exported / "model.onnx"), *argv]
    argv = [a if a not in ("o.png",) else str(tmp_path / a) for a in argv]
    assert main(["demo", *argv]) == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_export_without_trained_champion_is_a_clean_error(tmp_path, capsys):
    assert main(["export", "--run", str(tmp_path)]) == 2
    assert "no trained champion" in capsys.readouterr().err


@needs_faces
def test_the_demo_benchmark_names_the_model_and_times_its_inference(exported):
    from conftest import load_benchmark

    bench = load_benchmark("bench_demo")
    face, empty = (
        bench.letterbox(cv2.imread(str(FACES / n))) for n in ("skimage_astronaut.png", "skimage_coffee_noface.png")
    )
    lines = bench.video_table([face] * 4 + [empty] * 2, Classifier(exported / "model.onnx", threads=1))
    assert GENOME in lines[0] and "4 with a face" in lines[0]
    rows = [line.split("|")[1:-1] for line in lines[4:]]
    assert len(rows) == len(bench.VIDEO_GRID) and all(float(r[8]) >= 0 for r in rows)  # infer ms of every setting
    assert float(rows[-1][4]) == 1.0 and float(rows[-1][8]) > 0  # the default shows the face in all 4 frames


@needs_faces
def test_the_packages_own_model_is_used_where_none_is_named_once_one_ships(
    exported, synthetic_csv, tmp_path, monkeypatch, capsys
):
    import nas
    from nas import data
    from nas.deploy import classifier
    from nas.training.ship import SHIPPED, ship

    monkeypatch.setattr(classifier, "DEFAULT_MODEL", tmp_path / "model")
    photo, out = str(FACES / "facerec_two_people.jpg"), tmp_path / "out.png"
    assert main(["demo", "--source", photo, "--headless", "--output", str(out)]) == 2  # none ships yet
    assert "no model ships with this install; name one with --model" in capsys.readouterr().err
    card = (exported / "MODEL_CARD.md").read_text()
    (exported / "MODEL_CARD.md").write_text(card.replace("ten-crop", "ten crops"))  # a card that says otherwise
    report = json.loads((exported.parent / "report.json").read_text())
    test = data.load(str(synthetic_csv), ("test",))["test"]
    with pytest.raises(NasError, match="the card is not what"):
        ship(exported, report, test)
    (exported / "MODEL_CARD.md").write_text(card)
    with pytest.raises(NasError, match="its test figures are not those of"):  # another training's report
        ship(exported, report | {"ten_crop": {"acc": 0.9, "f1": 0.9}}, test)
    assert not (tmp_path / "model").exists()  # nothing shipped from a bad export
    shipped = ship(exported, report, test)
    assert sorted(p.name for p in shipped.iterdir()) == sorted(SHIPPED)
    weights = json.loads((shipped / "model.json").read_text())["weights"]
    assert weights["float32_test"]["ten_crop"] == report["ten_crop"] and 0 < weights["max_abs_difference"] < 0.05
    assert main(["demo", "--source", photo, "--headless", "--output", str(out)]) == 0 and out.exists()
    faces, faces32 = nas.analyze(photo), nas.analyze(photo, exported)
    assert [f["box"] for f in faces] == [f["box"] for f in faces32] and len(faces) == 2
    for face, face32 in zip(faces, faces32, strict=True):  # the same classifier, its weights rounded
        p, p32 = face["probabilities"], face32["probabilities"]
        assert max(abs(p[k] - p32[k]) for k in p) < 0.01
    check_shipped(shipped)


def test_weights_stored_as_float16_halve_the_file_and_round_the_weights_only(exported):
    import onnx
    from onnx import TensorProto, numpy_helper

    from nas.training.ship import OnnxNet, half_weights

    original = (exported / "model.onnx").read_bytes()
    compact = half_weights(original)
    assert len(compact) < 0.6 * len(original)
    graph = onnx.load_from_string(compact).graph
    halved = {i.name: numpy_helper.to_array(i) for i in graph.initializer if i.data_type == TensorProto.FLOAT16}
    halved |= {
        n.output[0]: numpy_helper.to_array(n.attribute[0].t)
        for n in graph.node
        if n.op_type == "Constant" and n.attribute[0].t.data_type == TensorProto.FLOAT16
    }
    kept = [i.name for i in graph.initializer if i.data_type == TensorProto.FLOAT and np.prod(i.dims) > 1]
    assert halved and not kept
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(8, 1, 48, 48)).astype(np.float32))
    with torch.no_grad():
        a, b = OnnxNet(original)(x), OnnxNet(compact)(x)
    assert 0 < (a - b).abs().max() < 1e-2 * a.abs().max()  # rounded, not changed


def check_shipped(folder: Path) -> None:
    """What the package's own model must be: its card what its model.json says, its test figures those of the
    report it came from, and ``nas.analyze`` with no model naming it working where torch cannot be imported."""
    from nas.deploy import artifact
    from nas.training.report import read_report

    info = json.loads((folder / "model.json").read_text())
    assert (folder / "MODEL_CARD.md").read_text() == artifact.model_card(info)
    assert (folder / "model.onnx").stat().st_size <= 2 * 2**20  # the project keeps every tracked file under 2 MiB
    assert info["test"] == artifact.report_summary(read_report(folder / "report.json"))
    assert "FER2013" in (folder / "MODEL_CARD.md").read_text()
    code = (
        "import sys\nsys.modules['torch'] = None  # import torch now fails\nimport json\nfrom pathlib import Path\n"
        "import nas\nfrom nas.deploy import classifier\nclassifier.DEFAULT_MODEL = Path(sys.argv[2])\n"
        "print(json.dumps(nas.analyze(sys.argv[1])))"
    )
    photo = FACES / "facerec_two_people.jpg"
    run = subprocess.run([sys.executable, "-c", code, str(photo), str(folder)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert len(json.loads(run.stdout)) == 2


@needs_faces
@pytest.mark.skipif(not (DEFAULT_MODEL / "model.json").exists(), reason="no model ships yet: the headline ships one")
def test_the_model_that_ships_with_the_package_agrees_with_its_card_and_report_and_runs_without_torch():
    check_shipped(DEFAULT_MODEL)


def _demo(exported, source, output, *extra) -> list[str]:
    return ["demo", "--model", str(exported), "--source", str(source), "--headless", "--output", str(output), *extra]


def test_the_demo_never_writes_over_what_it_reads(exported, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), np.full((64, 64, 3), 90, np.uint8))
    before = (photos / "a.png").read_bytes()
    for source, output in ((photos / "a.png", photos / "a.png"), (photos, photos)):
        assert main(_demo(exported, source, output)) == 2
        assert f"{photos / 'a.png'}: is what the demo reads" in capsys.readouterr().err
    assert sorted(p.name for p in photos.iterdir()) == ["a.png"] and (photos / "a.png").read_bytes() == before
    cv2.imwrite(str(photos / "a.jpg"), np.full((64, 64, 3), 90, np.uint8))  # two outputs a.png: refused
    assert main(_demo(exported, photos, tmp_path / "out")) == 2
    assert "a.jpg and a.png share the name 'a'" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_an_unreadable_image_of_a_folder_is_skipped_named_and_the_others_written(exported, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), np.full((64, 64, 3), 90, np.uint8))
    (photos / "b.png").write_bytes(b"not a png")
    cv2.imwrite(str(photos / "c.png"), np.full((80, 40, 3), 90, np.uint8))  # another size: letterboxed
    assert main(_demo(exported, photos, tmp_path / "out")) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and f"{photos / 'b.png'}: not a readable image; skipped" in err[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png", "frames.csv"]
    assert main(_demo(exported, photos, tmp_path / "all.avi")) == 2  # a video of every readable image
    assert int(cv2.VideoCapture(str(tmp_path / "all.avi")).get(cv2.CAP_PROP_FRAME_COUNT)) == 2
    assert sorted(p.name for p in tmp_path.glob("all*")) == ["all.avi", "all.csv"]  # no .part left


def test_a_run_that_fails_leaves_the_earlier_image_and_csv_as_they_were(exported, tmp_path, monkeypatch):
    from nas.deploy.demo import Demo

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a", "b"):
        cv2.imwrite(str(photos / f"{name}.png"), np.full((64, 64, 3), 90, np.uint8))
    out = tmp_path / "last.png"
    cv2.imwrite(str(tmp_path / "earlier.png"), np.full((64, 64, 3), 200, np.uint8))
    assert main(_demo(exported, tmp_path / "earlier.png", out)) == 0
    earlier = out.read_bytes(), out.with_suffix(".csv").read_bytes()
    calls = []

    def failing(self, frame):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("the disk went away")
        return []

    monkeypatch.setattr(Demo, "process", failing)
    with pytest.raises(OSError):
        run(str(photos), str(exported), str(out), headless=True)
    assert (out.read_bytes(), out.with_suffix(".csv").read_bytes()) == earlier
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier.png", "last.csv", "last.png", "photos"]


def test_analyze_takes_grey_bgr_bgra_and_16_bit_arrays_and_refuses_others_in_one_line(exported):
    from nas.deploy.demo import analyze

    grey = np.full((96, 96), 90, np.uint8)
    for image in (grey, grey[..., None], cv2.cvtColor(grey, cv2.COLOR_GRAY2BGRA), grey.astype(np.uint16) << 8):
        assert analyze(image, exported) == []  # no face, no error
    for image, says in ((grey.astype(np.float32), "float32 96x96"), (np.zeros((0, 0, 3), np.uint8), "uint8 0x0x3")):
        with pytest.raises(NasError, match=f"the image array: not a picture: .* got {says}"):
            analyze(image, exported)


def test_torchscript_without_torch_is_one_line_saying_what_is_missing(exported, tmp_path):
    code = "import sys\nsys.modules['torch'] = None\nfrom nas.cli import main\nsys.exit(main(sys.argv[1:]))"
    argv = _demo(exported, FACES / "skimage_astronaut.png", tmp_path / "o.png", "--backend", "torchscript")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "model.ts: --backend torchscript needs torch" in done.stderr.strip().splitlines()[-1]


def test_an_export_refuses_the_test_report_of_another_network(exported, tmp_path, capsys):
    report = json.loads((exported.parent / "report.json").read_text())
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "model.pt", build(parse_genome(GENOME)).eval(), {"val_acc": 0.5})
    (tmp_path / "report.json").write_text(json.dumps(report | {"genome": "conv_k3_c8_s1_relu_bn | gap"}))
    assert main(["export", "--checkpoint", str(tmp_path / "model.pt")]) == 2
    assert "report.json: its genome is not model.pt's (the test report of another network" in capsys.readouterr().err
    assert not (tmp_path / "export").exists()


@needs_faces
def test_the_demo_finds_in_a_picture_the_faces_analyze_finds(exported, tmp_path):
    from nas.deploy.demo import analyze

    face = cv2.imread(str(FACES / "facerec_obama_small.jpg"))
    big = np.full((1800, 2400, 3), 90, np.uint8)  # a small face in a large picture: a video's 640 px would lose it
    big[900 : 900 + face.shape[0], 1200 : 1200 + face.shape[1]] = face
    cv2.imwrite(str(tmp_path / "big.png"), big)
    found = analyze(tmp_path / "big.png", exported)
    assert main(_demo(exported, tmp_path / "big.png", tmp_path / "out.csv")) == 0
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert len(found) == 1 and [(int(r["x"]), int(r["y"])) for r in rows] == [found[0]["box"][:2]]


def test_a_model_file_its_model_json_does_not_describe_is_refused_not_swapped(exported, tmp_path):
    import shutil

    folder = tmp_path / "export"
    shutil.copytree(exported, folder)
    (folder / "other.onnx").write_bytes((folder / "model.onnx").read_bytes())
    with pytest.raises(NasError, match=r"other.onnx: its model.json describes model.onnx and model.ts, not this file"):
        Classifier(folder / "other.onnx")
    assert Classifier(folder / "model.onnx").class_names == Classifier(folder).class_names


def test_a_face_at_the_frames_edge_is_cropped_with_its_edge_repeated_not_stretched():
    from nas.deploy.demo import crop_faces

    frame = np.tile(np.arange(100, dtype=np.uint8), (100, 1))  # grey rising from left to right
    inside, edge = np.array([[30, 30, 40, 40]]), np.array([[0, 30, 40, 40]])  # the second leaves the frame left
    (crop,) = crop_faces(frame, edge, 0.25, (60, 60))
    (whole,) = crop_faces(np.pad(frame, ((0, 0), (10, 0)), mode="edge"), edge + [10, 0, 0, 0], 0.25, (60, 60))
    assert np.array_equal(crop, whole)  # as if the frame went on as its edge
    assert crop_faces(frame, inside, 0.25, (60, 60)).shape == (1, 1, 60, 60)


def test_an_export_that_fails_midway_leaves_the_earlier_export_whole(exported, tmp_path, monkeypatch):
    """A full disk on the third of the four files: the folder keeps the earlier export, all four, and no
    stray temporary file (before, the new model sat beside the old card and description)."""
    import os
    import shutil

    folder = shutil.copytree(exported, tmp_path / "export")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    model, _ = load_checkpoint(exported.parent / "model.pt")
    synced, fsync = [], os.fsync

    def full_disk(fd: int) -> None:
        synced.append(fd)
        if len(synced) == 3:
            raise OSError(28, "No space left on device")
        fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(NasError, match=r"MODEL_CARD.md: cannot write \(No space left on device\)$"):
        export(model, folder, {"val_acc": 0.25})
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    monkeypatch.setattr(os, "fsync", fsync)
    export(model, folder, {"val_acc": 0.25})
    assert json.loads((folder / "model.json").read_text())["metrics"] == {"val_acc": 0.25}
    assert Classifier(folder).info["metrics"] == {"val_acc": 0.25}  # the model's own metadata says the same
