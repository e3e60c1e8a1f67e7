import json

import numpy as np
import pytest
import torch
from conftest import CHAMPION

from nas import data
from nas.cli import main
from nas.deploy.artifact import save_checkpoint
from nas.errors import NasError
from nas.genome.build import build
from nas.genome.grammar import parse_genome
from nas.training.distill import load_teacher
from nas.training.loop import TrainConfig, changed_settings, evaluate, predict, predict_ten_crop, train

GENOME = CHAMPION
FAVOURED = 3  # the class a one-sided teacher always predicts


@pytest.fixture(scope="module")
def splits(synthetic_csv):
    d = data.load(synthetic_csv)
    return d["train"], d["val"]


def _teacher_file(path, input_shape=(1, 48, 48), classes=7, favoured: int | None = FAVOURED, val_acc=0.5):
    """A checkpoint of a network that always predicts ``favoured`` (its head: no weights, one large bias)."""
    torch.manual_seed(0)
    model = build(parse_genome(GENOME), input_shape, classes)
    if favoured is not None:
        with torch.no_grad():
            model.head[-1].weight.zero_()
            model.head[-1].bias.fill_(-10.0)
            model.head[-1].bias[favoured] = 10.0
    save_checkpoint(path, model, {"val_acc": val_acc})
    return path


def _distil(splits, teacher, cfg, **kw):
    torch.manual_seed(cfg.seed)
    model = build(parse_genome(GENOME))
    cfg = cfg.replace(teacher=teacher.fingerprint)
    targets = teacher.targets(cfg, splits[0].x, "cpu")
    return model, train(model, *splits, cfg, device="cpu", targets=targets, **kw)


@pytest.mark.parametrize("targets", ["online", "offline"])
def test_a_student_of_a_one_class_teacher_learns_that_class(splits, tmp_path, targets):
    teacher = load_teacher([_teacher_file(tmp_path / "t.pt")], (1, 48, 48), 7)
    cfg = TrainConfig(optimizer="adam", lr=1e-2, epochs=3, batch_size=32, augment=0.0, distill_weight=1.0,
                      distill_temperature=1.0, distill_targets=targets)  # fmt: skip
    student, _ = _distil(splits, teacher, cfg)
    torch.manual_seed(0)
    plain = build(parse_genome(GENOME))  # the same student on the labels alone learns the task instead
    result = train(plain, *splits, cfg.replace(distill_weight=0.0), device="cpu")
    assert _share_of_favoured(student, splits[1]) > 0.95 and _share_of_favoured(plain, splits[1]) < 0.5
    assert evaluate(student, splits[1], torch.device("cpu"))["acc"] < result.best_acc - 0.1


def _share_of_favoured(model, split) -> float:
    return float((predict(model, split.x, torch.device("cpu")).argmax(1) == FAVOURED).float().mean())


@pytest.mark.parametrize("targets", ["online", "offline"])
def test_a_distilled_training_resumes_exactly(splits, tmp_path, targets):
    teacher = load_teacher([_teacher_file(tmp_path / "a.pt", favoured=None), _teacher_file(tmp_path / "b.pt")],
                           (1, 48, 48), 7)  # fmt: skip
    cfg = TrainConfig(epochs=3, batch_size=64, distill_weight=0.5, distill_targets=targets)
    full_model, full = _distil(splits, teacher, cfg)
    ckpt = tmp_path / "ckpt.pt"
    _distil(splits, teacher, cfg, checkpoint=ckpt, on_epoch=lambda e, m: e == 0)  # "crash" after epoch 1
    trained = []
    resumed_model, resumed = _distil(splits, teacher, cfg, checkpoint=ckpt, on_epoch=lambda e, m: trained.append(e))
    assert trained == [1, 2]  # continued, not started again
    assert [h["val_acc"] for h in resumed.history] == [h["val_acc"] for h in full.history]
    assert all(torch.equal(a, b) for a, b in zip(full_model.state_dict().values(), resumed_model.state_dict().values()))


def test_a_training_from_before_distillation_is_never_continued_under_a_teacher():
    distilled = TrainConfig(epochs=3, distill_weight=0.5, teacher="abc")
    assert changed_settings({"epochs": 3}, distilled) == ["distill_weight", "teacher"]
    assert changed_settings({"epochs": 3}, TrainConfig(epochs=3)) == []


def test_train_distils_from_the_runs_best_networks_and_reports_them(run_dir, tmp_path, capsys):
    assert main(["train", "--run", str(run_dir), "--baseline", "mini_xception", "--epochs", "1"]) == 0
    assert main(["train", "--run", str(run_dir), "--epochs", "1"]) == 0  # the champion without a teacher
    args = ["train", "--run", str(run_dir), "--epochs", "1", "--teacher", "best"]
    assert main([*args[:-1], f"best,{run_dir}", "--distill-targets", "offline"]) == 0  # the champion named twice
    out = run_dir / "distilled" / "champion"
    report = json.loads((out / "report.json").read_text())
    members = [m["path"] for m in report["teacher"]["members"]]
    assert sorted(members) == sorted(
        str(p) for p in (run_dir / "model.pt", run_dir / "baselines/mini_xception/model.pt")
    )
    assert report["teacher"]["weight"] == 0.5 and report["teacher"]["targets"] == "offline"
    (kept,) = (run_dir / "distilled").glob("soft-targets-*.npy")  # the teachers' targets, for the next student
    again = ["--out", str(tmp_path / "again"), "--distill-targets", "offline"]
    assert main([*args, *again]) == 0 and kept.exists()
    reused = json.loads((tmp_path / "again" / "report.json").read_text())["teacher"]["targets_seconds"]
    assert 0 <= reused < report["teacher"]["targets_seconds"]
    shown = (out / "report.md").read_text()
    assert "Distilled (Hinton et al. 2015) from 2 fully trained networks" in shown
    assert "| teacher 1: " in shown and "| without teacher: run |" in shown
    # another teacher: the checkpoint of this one is refused, not continued
    (out / "report.json").unlink()
    capsys.readouterr()
    other = _teacher_file(tmp_path / "other.pt")
    assert main(["train", "--run", str(run_dir), "--epochs", "1", "--teacher", str(other)]) == 2
    assert "written with other training settings (distill_targets, teacher)" in capsys.readouterr().err
    assert main(["export", "--run", str(out), "--out", str(tmp_path / "export")]) == 0
    assert "Distilled (Hinton et al. 2015) from 2" in (tmp_path / "export" / "MODEL_CARD.md").read_text()


@pytest.mark.parametrize(
    ("shape", "classes", "says"),
    [((1, 32, 32), 7, "takes 32x32x1 and 7 classes"), ((1, 48, 48), 5, "takes 48x48x1 and 5 classes")],
)
def test_a_teacher_of_another_input_or_classes_is_one_error_naming_it(run_dir, tmp_path, capsys, shape, classes, says):
    bad = _teacher_file(tmp_path / "bad.pt", shape, classes)
    assert main(["train", "--run", str(run_dir), "--epochs", "1", "--teacher", str(bad)]) == 2
    shown = capsys.readouterr().err
    err = [line for line in shown.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and str(bad) in err[0] and says in err[0] and "48x48x1 and 7 classes" in err[0]
    assert "Traceback" not in shown
    assert not (run_dir / "distilled").exists()


def test_a_teacher_ensemble_of_another_shape_is_one_error_naming_it(splits, tmp_path):
    from nas.training.distill import ensemble_accuracy

    bad = _teacher_file(tmp_path / "bad.pt", classes=5)
    with pytest.raises(NasError, match=r"bad.pt: a teacher must take the student's input 48x48x1 and 7 classes"):
        ensemble_accuracy([_teacher_file(tmp_path / "good.pt"), bad], splits[1])


@pytest.mark.parametrize(
    "flags",
    [["--distill-weight", "0.5"], ["--teacher", "best", "--distill-weight", "0"], ["--teacher", "none,best"]],
)
def test_distillation_settings_are_checked_before_anything_runs(run_dir, capsys, flags):
    assert main(["train", "--run", str(run_dir), "--epochs", "1", *flags]) == 2
    said = capsys.readouterr().err
    assert "--distill-weight" in said or "--teacher none stands alone" in said
    assert not (run_dir / "distilled").exists()


def test_the_distillation_stage_offers_no_out_flag_it_would_refuse(run_dir, capsys):
    assert main(["distill", "--help"]) == 0
    shown = capsys.readouterr().out
    assert "--teacher" in shown and "--out" not in shown  # the training's flags, but not the one refused
    assert main(["distill", "--run", str(run_dir), "--out", str(run_dir / "x")]) == 2
    assert "unrecognized arguments: --out" in capsys.readouterr().err and not (run_dir / "x").exists()


def _front(run_dir, rows):
    header = "key,genome,val_acc,params,epochs\n"
    (run_dir / "pareto.csv").write_text(header + "".join(",".join(map(str, r)) + "\n" for r in rows))


SMALL = "conv_k3_c4_s2_relu_bn | gap"


def test_the_distillation_stage_teaches_the_best_ranked_small_network_beside_itself_untaught(run_dir, capsys):
    assert main(["train", "--run", str(run_dir), "--epochs", "1"]) == 0  # the teacher: the champion
    _front(run_dir, [("a" * 16, GENOME, 0.45, 1000, 2), ("b" * 16, SMALL, 0.30, 50, 100)])  # b reached the top rung
    args = ["distill", "--run", str(run_dir), "--epochs", "1", "--max-params", "100", "--distill-targets", "offline"]
    capsys.readouterr()
    assert main(args) == 0
    summary = json.loads((run_dir / "distilled" / "summary-s0.json").read_text())
    assert summary["distillation"]["targets"] == "offline"  # the taught one's; the untaught one has none
    (student,) = summary["students"]
    assert student["key"] == "b" * 16 and len(student["groups"]) == 2  # fast and small: both groups agree
    assert [m["path"] for m in summary["teachers"]] == [str(run_dir / "model.pt")]
    assert 0 <= summary["ensemble"]["acc"] <= 1 and student["with"]["out"].endswith("distilled/" + "b" * 16 + "-s0")
    assert (run_dir / "students" / ("b" * 16 + "-s0") / "report.json").exists()
    plan = json.loads((run_dir / "distilled" / "plan-s0.json").read_text())  # kept for a stage that resumes
    assert list(plan["chosen"]) == ["b" * 16] and plan["teachers"] == [str(run_dir / "model.pt")]
    table = (run_dir / "distilled" / "summary-s0.md").read_text()
    assert "| the ensemble |" in table and f"| `{'b' * 16}` |" in table
    first = capsys.readouterr().out
    assert main(args) == 0  # again: both trainings are finished, nothing is trained twice, the same figures
    again = json.loads((run_dir / "distilled" / "summary-s0.json").read_text())["students"]
    figures = [(s["key"], s["without"]["ten_crop"], s["with"]["ten_crop"]) for s in summary["students"]]
    assert [(s["key"], s["without"]["ten_crop"], s["with"]["ten_crop"]) for s in again] == figures
    assert capsys.readouterr().out == first
    plan["chosen"] = {}  # a damaged plan: its students are chosen again (the same), nothing trained twice
    (run_dir / "distilled" / "plan-s0.json").write_text(json.dumps(plan))
    untaught = run_dir / "students" / ("b" * 16 + "-s0") / "history.csv"  # rewritten by every epoch trained
    stamp = untaught.stat().st_mtime_ns
    assert main(args) == 0 and untaught.stat().st_mtime_ns == stamp
    third = json.loads((run_dir / "distilled" / "summary-s0.json").read_text())["students"]
    assert [(s["key"], s["without"]["ten_crop"], s["with"]["ten_crop"]) for s in third] == figures
    assert "| bbbbbbbbbbbbbbbb-s0 |" in (run_dir / "students" / ("b" * 16 + "-s0") / "report.md").read_text()


@pytest.mark.parametrize(
    ("row", "says"),
    [(("a" * 16, GENOME, "high", 1000, 2), "pareto.csv:2: val_acc missing or damaged"),
     (("a" * 16, "conv_k9", 0.4, 1000, 2), "pareto.csv:2: genome")],
)  # fmt: skip
def test_a_damaged_front_stops_the_stage_with_one_line_naming_it(run_dir, capsys, row, says):
    assert main(["train", "--run", str(run_dir), "--epochs", "1"]) == 0
    _front(run_dir, [row])
    assert main(["distill", "--run", str(run_dir), "--epochs", "1"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and says in err[0] and not (run_dir / "students").exists()


def test_the_final_benchmark_distils_an_entry_from_others_of_its_plan(tmp_path):
    from conftest import load_benchmark  # noqa: PLC0415

    bench = load_benchmark("bench_final")
    out = tmp_path / "final"
    plan = "mini_xception:default:0,mini_xception:default:1,mini_xception:default+teacher=mini_xception-default-0:1"
    args = ["--data", "synthetic:70", "--out", str(out), "--epochs", "1", "--device", "cpu"]
    assert bench.main([*args, "--plan", plan]) == 0
    taught = json.loads((out / "mini_xception-default_teachermini_xception-default-0-1" / "report.json").read_text())
    assert [m["path"] for m in taught["teacher"]["members"]] == [str(out / "mini_xception-default-0" / "model.pt")]
    assert "teacher=" in taught["recipe"]  # its own row, beside the untaught seeds


def test_a_study_with_teachers_tunes_the_distillation_and_its_recipe_trains_with_them(run_dir, tmp_path, capsys):
    teacher = _teacher_file(tmp_path / "t.pt")
    args = ["tune", "--run", str(run_dir), "--trials", "3", "--epochs", "1", "--confirm", "0"]
    assert main([*args, "--teacher", str(teacher)]) == 0
    tuned = json.loads((run_dir / "tuned.json").read_text())
    assert {"distill_weight", "distill_temperature", "distill_targets"} <= set(tuned["params"])
    assert tuned["teacher"]["paths"] == [str(teacher)]
    assert tuned["train_config"]["teacher"] == tuned["teacher"]["fingerprint"] != ""
    assert main(["train", "--run", str(run_dir), "--epochs", "1", "--recipe", "tuned"]) == 0
    report = json.loads((run_dir / "report.json").read_text())
    assert report["teacher"]["members"][0]["path"] == str(teacher) and report["recipe"] == "tuned"
    plain = ["train", "--run", str(run_dir), "--epochs", "1", "--recipe", "tuned", "--out", str(tmp_path / "plain")]
    assert main([*plain, "--teacher", "none"]) == 0  # the same recipe without its teachers
    untaught = json.loads((tmp_path / "plain" / "report.json").read_text())
    assert "teacher" not in untaught and "distill_weight=0.0" in untaught["recipe"]
    taught = ["train", "--run", str(run_dir), "--epochs", "1", "--teacher", str(teacher)]
    assert main(taught) == 0  # the run's champion was distilled too: not shown as this one "without teacher"
    assert "without teacher" not in (run_dir / "distilled" / "champion" / "report.md").read_text()
    _teacher_file(teacher, favoured=0)  # another teacher in its place: the tuned recipe no longer holds
    capsys.readouterr()
    again = ["train", "--run", str(run_dir), "--epochs", "1", "--recipe", "tuned", "--out", str(tmp_path / "o")]
    assert main(again) == 2
    assert "its teachers changed since the study" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_an_export_teaches_as_its_checkpoint_does_and_one_of_another_normalisation_is_one_error(splits, tmp_path):
    from nas.deploy.artifact import export, load_checkpoint

    checkpoint = _teacher_file(tmp_path / "t.pt", favoured=None)
    export(load_checkpoint(checkpoint)[0], tmp_path / "export", {"val_acc": 0.5})
    cfg = TrainConfig(distill_weight=0.5, distill_targets="offline")
    x = splits[0].x[:64]
    exported = load_teacher([tmp_path / "export"], (1, 48, 48), 7)  # the folder: its model.onnx
    assert exported.members[0]["path"] == str(tmp_path / "export" / "model.onnx")
    threads = exported.models[0].session.get_session_options().intra_op_num_threads
    assert threads == torch.get_num_threads()  # a teacher's targets take every thread the training has
    checkpointed = load_teacher([checkpoint], (1, 48, 48), 7)
    soft, soft_pt = (t.targets(cfg, x, "cpu")(x, torch.arange(64)) for t in (exported, checkpointed))
    assert torch.allclose(soft, soft_pt, atol=1e-4) and not torch.equal(soft[0], soft[1])
    with pytest.raises(NasError, match="a teacher must take the student's input 32x32x1"):
        load_teacher([tmp_path / "export" / "model.onnx"], (1, 32, 32), 7)
    (tmp_path / "export" / "other.onnx").write_bytes((tmp_path / "export" / "model.onnx").read_bytes())
    with pytest.raises(NasError, match=r"other.onnx: its model.json describes model.onnx and model.ts, not this"):
        load_teacher([tmp_path / "export" / "other.onnx"], (1, 48, 48), 7)
    info = json.loads((tmp_path / "export" / "model.json").read_text())
    reordered = info | {"class_names": info["class_names"][::-1]}
    (tmp_path / "export" / "model.json").write_text(json.dumps(reordered))
    with pytest.raises(NasError, match=r"model.onnx: its classes are neutral, surprise.*a teacher must answer in"):
        load_teacher([tmp_path / "export"], (1, 48, 48), 7)
    info["input"]["normalize"]["mean"] = 0.5
    (tmp_path / "export" / "model.json").write_text(json.dumps(info))
    with pytest.raises(NasError, match=r"model.onnx: normalises its input with mean 0.5 and std 0.255; a teacher"):
        load_teacher([tmp_path / "export"], (1, 48, 48), 7)


def test_offline_targets_are_kept_for_the_next_training_and_a_damaged_copy_is_made_again(splits, tmp_path, caplog):
    teacher = load_teacher([_teacher_file(tmp_path / "t.pt", favoured=None)], (1, 48, 48), 7)
    cfg = TrainConfig(distill_weight=0.5, distill_targets="offline")
    x, idx, keep = splits[0].x[:64], torch.arange(64), tmp_path / "distilled"
    first = teacher.targets(cfg, x, "cpu", keep)(x, idx)
    (kept,) = keep.glob("soft-targets-*.npy")
    assert teacher.fingerprint in kept.name and not list(keep.glob(".*"))  # nothing half-written beside it
    assert kept.name.endswith("-f.npy")  # the teacher answered in fp32 (a small network on this CPU)
    np.save(kept, np.full((64, 7), 1 / 7, dtype=np.float32))  # a kept copy is read, not computed again
    assert torch.allclose(teacher.targets(cfg, x, "cpu", keep)(x, idx), torch.full((64, 7), 1 / 7))
    assert len(list(keep.glob("soft-targets-*.npy"))) == 1
    other = teacher.targets(cfg, x[:32], "cpu", keep)(x[:32], idx[:32])  # other images: their own copy
    assert torch.allclose(other, first[:32], atol=1e-6) and len(list(keep.glob("soft-targets-*.npy"))) == 2
    for damaged in (b"not an array", b""):
        kept.write_bytes(damaged)
        assert torch.allclose(teacher.targets(cfg, x, "cpu", keep)(x, idx), first, atol=1e-6)
    np.save(kept, np.array([["a"] * 7] * 64))  # an array, but of text
    assert torch.allclose(teacher.targets(cfg, x, "cpu", keep)(x, idx), first, atol=1e-6)
    assert "not the teachers' soft targets for these 64 images; computing them again" in caplog.text
    assert torch.allclose(torch.from_numpy(np.load(kept)), first, atol=1e-6)
    (tmp_path / "a-file").write_text("")  # where no copy can be kept, the training has its targets all the same
    assert torch.allclose(teacher.targets(cfg, x, "cpu", tmp_path / "a-file")(x, idx), first, atol=1e-6)
    assert "a-file: exists and is not a folder; the teachers' targets are not kept" in caplog.text


@pytest.mark.parametrize("targets", ["online", "offline"])
def test_a_teacher_runs_in_bf16_where_the_machine_trains_its_flops_in_bf16(splits, tmp_path, monkeypatch, targets):
    """Teachers answer in this machine's faster numerics (1.8x for cnn4 here), whatever the student's: in
    bf16 above the calibrated FLOPs (close to fp32's answers, not equal), in fp32 below (exactly fp32's)."""
    from nas.training import numerics

    teacher = load_teacher([_teacher_file(tmp_path / "t.pt", favoured=None)], (1, 48, 48), 7)
    cfg = TrainConfig(distill_weight=0.5, distill_targets=targets)
    x, idx = splits[0].x[:64], torch.arange(64)
    view = data.normalize(x) if targets == "online" else x  # online: the student's (normalised) batch

    def soft(rule):
        monkeypatch.setattr(numerics, "machine_rule", lambda threads, device: rule)
        return teacher.targets(cfg, x, "cpu", tmp_path / "kept")(view, idx)  # offline ones kept, by numerics

    model = teacher.models[0]
    with torch.no_grad():
        fp32 = model(view).softmax(1) if targets == "online" else predict_ten_crop(model, x, torch.device("cpu"))
    low, high = soft(0.0), soft(1e12)
    assert torch.equal(high, fp32) and not torch.equal(low, fp32) and torch.allclose(low, fp32, atol=3e-2)
    assert len(list((tmp_path / "kept").glob("*.npy"))) == (2 if targets == "offline" else 0)
