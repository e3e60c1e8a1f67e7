import time

import pytest
import torch

from nas import data
from nas.errors import NasError
from nas.genome.build import build
from nas.genome.grammar import parse_genome
from nas.training.loop import Diverged, TimeLimitExceeded, TrainConfig, augment, stable_copy, train, wsd_factor

GENOME = parse_genome("conv_k3_c16_s1_relu_bn | pool_max | conv_k3_c32_s1_relu_bn | pool_max | gap")


@pytest.fixture(scope="module")
def splits(synthetic_csv):
    d = data.load(synthetic_csv)
    return d["train"], d["val"]


def _fit(splits, cfg, **kw):
    torch.manual_seed(cfg.seed)
    model = build(GENOME)
    return model, train(model, *splits, cfg, device="cpu", **kw)


def test_learns_the_synthetic_task_and_is_deterministic(splits):
    cfg = TrainConfig(optimizer="adam", epochs=10, lr=1e-2, batch_size=32, augment=0.0)
    m1, r1 = _fit(splits, cfg)
    m2, r2 = _fit(splits, cfg)
    assert r1.best_acc > 0.6  # chance is 1/7
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in r1.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in r2.history]
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))


# the learning rate each schedule leaves after epochs 1 and 2 of 2 (lr 1e-3): what the schedule is for
SCHEDULES = {
    "plateau": [1e-3, 1e-3],  # patience 2: no cut within two epochs
    "cosine": [5e-4, 0.0],
    "cosine_restarts": [5e-4, 1e-3],  # a period of two epochs, then a restart
    "onecycle": None,  # from lr / 25 up to lr and down again: off both the start and the peak at epoch ends
    "wsd": [1e-3, 0.0],  # constant until the last fifth, then to zero
    "step": [1e-4, 1e-5],  # x0.1 after every epoch
    "none": [1e-3, 1e-3],
}


@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "adam", "adamw"])
@pytest.mark.parametrize("scheduler", list(SCHEDULES))
def test_every_optimizer_and_scheduler_trains_and_follows_its_schedule(splits, optimizer, scheduler):
    small = (splits[0].subset(64, 0), splits[1].subset(32, 0))
    cfg = TrainConfig(
        optimizer=optimizer,
        scheduler=scheduler,
        epochs=2,
        batch_size=32,
        lr=1e-3,
        label_smoothing=0.1,
        class_balance="weighted",
        restart_period=2,
        step_size=1,
    )
    torch.manual_seed(0)
    model = build(GENOME)
    before = [p.detach().clone() for p in model.parameters()]
    result = train(model, *small, cfg, device="cpu")
    assert result.epochs_run == 2 and len(result.history) == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the optimizer stepped
    lrs = [h["lr"] for h in result.history]
    if SCHEDULES[scheduler] is None:
        assert all(1e-3 / 25 < lr < 1e-3 for lr in lrs)
    else:
        assert lrs == pytest.approx(SCHEDULES[scheduler], abs=1e-9)


def test_callback_sees_every_epoch_and_can_stop(splits):
    seen = []
    _, result = _fit(splits, TrainConfig(epochs=5, batch_size=64), on_epoch=lambda e, m: seen.append(e) or e == 1)
    assert seen == [0, 1] and result.epochs_run == 2


def test_nan_loss_raises_diverged(splits):
    with pytest.raises(Diverged, match="loss became nan"):
        _fit(splits, TrainConfig(epochs=3, lr=1e30, optimizer="sgd", scheduler="none", augment=0))


def test_deadline_raises(splits):
    with pytest.raises(TimeLimitExceeded):
        _fit(splits, TrainConfig(epochs=3), deadline=time.monotonic())


def test_checkpoint_resume_equals_uninterrupted(splits, tmp_path):
    cfg = TrainConfig(epochs=4, batch_size=64, scheduler="cosine")
    full_model, full = _fit(splits, cfg)
    ckpt = tmp_path / "ckpt.pt"
    _fit(splits, cfg, checkpoint=ckpt, on_epoch=lambda e, m: e == 1)  # "crash" after epoch 2
    resumed_model, resumed = _fit(splits, cfg, checkpoint=ckpt)
    assert resumed.epochs_run == 4
    assert [h["val_acc"] for h in resumed.history] == [h["val_acc"] for h in full.history]
    assert all(torch.equal(a, b) for a, b in zip(full_model.state_dict().values(), resumed_model.state_dict().values()))


def test_wsd_warms_up_holds_and_decays_to_zero():
    cfg = TrainConfig(scheduler="wsd", epochs=10, warmup_epochs=0.5, cooldown=0.2)
    lr = [wsd_factor(cfg, 10, step) for step in range(100)]
    assert lr[0] == pytest.approx(0.2) and lr[4:80] == [1.0] * 76  # 5 warm-up steps, then constant
    assert all(a > b for a, b in zip(lr[80:], lr[81:])) and lr[99] < 0.12  # 1 - sqrt(19/20)
    assert wsd_factor(cfg, 10, 100) == 0.0


@pytest.mark.parametrize("decay, halfway", [("sqrt", 1 - 0.5**0.5), ("cosine", 0.5), ("linear", 0.5)])
def test_a_wsd_decay_takes_its_shape_from_the_stable_rate_to_zero(decay, halfway):
    cfg = TrainConfig(scheduler="wsd", epochs=10, warmup_epochs=0.1, cooldown=0.5, decay=decay)
    assert wsd_factor(cfg, 10, 49) == 1.0 and wsd_factor(cfg, 10, 75) == pytest.approx(halfway)
    assert wsd_factor(cfg, 10, 100) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="decay 'step' not in"):
        TrainConfig(scheduler="wsd", decay="step")


def test_a_wsd_training_continues_from_its_stable_state_to_a_longer_one(splits, tmp_path):
    """The state before a 5-epoch wsd training's decay is the 4th epoch of a 10-epoch one: continued to 10
    epochs, it trains exactly what a straight 10-epoch training does, repeating no epoch."""
    cfg = TrainConfig(scheduler="wsd", epochs=10, batch_size=64, cooldown=0.2)
    straight_model, straight = _fit(splits, cfg)
    short = tmp_path / "short.pt"
    _, first = _fit(splits, cfg.replace(epochs=5), checkpoint=short)
    assert first.epochs_run == 5 and first.history[-1]["lr"] == 0.0
    longer = tmp_path / "long.pt"
    longer.write_bytes(stable_copy(short).read_bytes())  # the state after epoch 4, before the decay
    seen = []
    continued_model, continued = _fit(splits, cfg, checkpoint=longer, on_epoch=lambda e, m: seen.append(e))
    assert seen == list(range(4, 10))
    assert [h["val_acc"] for h in continued.history] == [h["val_acc"] for h in straight.history]
    assert all(torch.equal(a, b) for a, b in zip(straight_model.state_dict().values(),
                                                 continued_model.state_dict().values()))  # fmt: skip
    with pytest.raises(NasError, match="other training settings"):  # a decayed state is no prefix
        _fit(splits, cfg, checkpoint=short)


DROPOUT = parse_genome("conv_k3_c16_s1_relu_bn | pool_max | conv_k3_c32_s1_relu_bn | gap | dense_u32_d0.1")


def _fit_dropout(splits, cfg, **kw):
    torch.manual_seed(cfg.seed)
    model = build(DROPOUT)  # dropout draws from the global RNG: a branch must not move it
    return model, train(model, *splits, cfg, device="cpu", **kw)


def test_cooldown_branches_leave_the_main_training_bit_for_bit_the_same(splits):
    cfg = TrainConfig(optimizer="adam", scheduler="wsd", epochs=20, batch_size=32, ema=0.9, augment=0.0)
    plain_model, plain = _fit_dropout(splits, cfg, until=4)
    branched_model, branched = _fit_dropout(splits, cfg, until=4, branch=0.5)
    assert [h["val_acc"] for h in plain.history] == [h["val_acc"] for h in branched.history]
    assert [h["train_loss"] for h in plain.history] == [h["train_loss"] for h in branched.history]
    assert all(torch.equal(a, b) for a, b in zip(plain_model.state_dict().values(),
                                                 branched_model.state_dict().values()))  # fmt: skip
    scores = [h["branch_acc"] for h in branched.history]
    assert all(s is not None for s in scores) and scores != [h["val_acc"] for h in branched.history]
    assert branched.best_acc == max(scores)  # a branched training is scored by its branches


def test_a_rung_continued_from_its_checkpoint_scores_what_a_straight_training_scores(splits, tmp_path):
    cfg = TrainConfig(scheduler="wsd", epochs=20, batch_size=32, validate_every_epoch=False)
    _, straight = _fit_dropout(splits, cfg, until=3, branch=0.25)
    ckpt, rungs = tmp_path / "rung.pt", []
    for until in (1, 3):
        rungs.append(_fit_dropout(splits, cfg, checkpoint=ckpt, until=until, branch=0.25)[1])
    assert [h["epoch"] for h in rungs[-1].history] == [0, 1, 2]  # epochs 1 and 2 continued, none repeated
    assert rungs[-1].best_acc == straight.best_acc == straight.history[-1]["branch_acc"]
    assert straight.history[-1]["val_acc"] is None  # the main weights are not validated: the branch is the score
    assert rungs[0].history[0]["branch_acc"] is not None


def test_no_branch_once_the_schedule_decays(splits):
    cfg = TrainConfig(scheduler="wsd", epochs=5, batch_size=64, cooldown=0.4)
    _, result = _fit(splits, cfg, branch=0.25)
    assert [h.get("branch_acc") is not None for h in result.history] == [True, True, True, False, False]


def test_a_checkpoint_that_stopped_early_stays_stopped(splits, tmp_path, monkeypatch):
    import nas.training.loop

    monkeypatch.setattr(nas.training.loop, "evaluate", lambda *a, **k: {"acc": 0.5, "f1": 0.5})  # never better
    cfg, ckpt = TrainConfig(epochs=5, batch_size=64, early_stop=1), tmp_path / "ckpt.pt"
    _, first = _fit(splits, cfg, checkpoint=ckpt)
    assert first.epochs_run == 2
    _, again = _fit(splits, cfg, checkpoint=ckpt)  # e.g. train.py continuing a confirmation that stopped early
    assert again.epochs_run == 2 and again.history == first.history


@pytest.mark.parametrize("changes", [{"class_balance": "softmax"}, {"class_balance": "weighted"}, {"ema": 0.9}])
def test_recipe_options_train_and_resume_exactly(splits, tmp_path, changes):
    cfg = TrainConfig(epochs=3, batch_size=64, **changes)
    plain_model, _ = _fit(splits, TrainConfig(epochs=3, batch_size=64))
    full_model, full = _fit(splits, cfg)
    assert not all(
        torch.equal(a, b) for a, b in zip(full_model.state_dict().values(), plain_model.state_dict().values())
    )
    ckpt = tmp_path / "ckpt.pt"
    _fit(splits, cfg, checkpoint=ckpt, on_epoch=lambda e, m: e == 0)  # "crash" after epoch 1
    resumed_model, resumed = _fit(splits, cfg, checkpoint=ckpt)
    assert [h["val_acc"] for h in resumed.history] == [h["val_acc"] for h in full.history]
    assert all(torch.equal(a, b) for a, b in zip(full_model.state_dict().values(), resumed_model.state_dict().values()))


@pytest.mark.parametrize("changes", [{"class_balance": "softmax"}, {"class_balance": "weighted"}, {"ema": 0.9}])
def test_recipe_options_still_learn(splits, changes):
    _, result = _fit(splits, TrainConfig(optimizer="adam", epochs=10, lr=1e-2, batch_size=32, augment=0.0, **changes))
    assert result.best_acc > 0.6  # chance is 1/7


def test_the_moving_average_is_what_validates_and_is_kept(splits):
    model, result = _fit(splits, TrainConfig(epochs=2, batch_size=64, ema=0.5))
    plain, _ = _fit(splits, TrainConfig(epochs=2, batch_size=64))
    # the same steps; the kept weights are the average, not the last step's
    assert not all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), plain.state_dict().values()))
    from nas.training.loop import evaluate

    assert evaluate(model, splits[1], torch.device("cpu"))["acc"] == result.best_acc


def test_configs_of_earlier_versions_load_and_bad_settings_are_refused():
    from nas.errors import SettingError

    assert TrainConfig.from_dict({"class_weighted": True, "epochs": 3}) == TrainConfig(
        class_balance="weighted", epochs=3
    )
    assert TrainConfig.from_dict({"class_weighted": False, "gone": 1}) == TrainConfig()
    for bad in ({"class_balance": "focal"}, {"ema": 1.0}, {"label_smoothing": -0.1}):
        with pytest.raises(SettingError):
            TrainConfig(**bad)


def test_augment_keeps_shape_and_changes_pixels():
    x = torch.randn(16, 1, 48, 48)
    gen = torch.Generator().manual_seed(0)
    y = augment(x, 1.0, gen)
    assert y.shape == x.shape and not torch.equal(x, y)
    assert torch.equal(augment(x, 0.0, gen), x)


def test_numeric_modes_are_calibrated_once_per_machine_and_kept(tmp_path, monkeypatch):
    from nas.training import numerics

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setitem(numerics.CALIBRATION, "networks", 2)
    monkeypatch.setitem(numerics.CALIBRATION, "steps", 1)
    monkeypatch.setitem(numerics.CALIBRATION, "batch", 8)
    first = numerics.machine_rule(1, "cpu")
    stored = (tmp_path / "fer-nas" / "numerics.json").read_text()
    monkeypatch.setattr(numerics, "calibrate", lambda threads: pytest.fail("calibrated twice"))
    assert numerics.machine_rule(1, "cpu") == first and (tmp_path / "fer-nas" / "numerics.json").read_text() == stored
    assert numerics.machine_key(1) in stored and numerics.machine_key(2) not in stored


@pytest.mark.parametrize("content", ["{oops", "[1]", '{"KEY": {"bf16_above_mflops": "x"}}', '{"KEY": [1]}',
                                     '{"KEY": {"bf16_above_mflops": -1}}', "[" * 100_000])  # fmt: skip
def test_a_damaged_numerics_calibration_is_one_error_naming_the_file(tmp_path, monkeypatch, content):
    from nas.errors import RunDirError
    from nas.training import numerics

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = tmp_path / "fer-nas" / "numerics.json"
    path.parent.mkdir()
    path.write_text(content.replace("KEY", numerics.machine_key(1)))
    monkeypatch.setattr(numerics, "calibrate", lambda threads: pytest.fail("a damaged file was not noticed"))
    with pytest.raises(RunDirError, match=str(path)):
        numerics.machine_rule(1, "cpu")


def test_bf16_on_the_cpu_trains_and_is_recorded(synthetic_csv):
    from nas.evolve.evaluate import Evaluator
    from nas.evolve.fidelity import Fidelity
    from nas.evolve.worker import EvalTask

    genome = "conv_k3_c16_s1_relu_bn | pool_max | gap"
    fid = Fidelity("one", train_images=140, epochs=1, batch_size=32)
    fp32, bf16 = (
        Evaluator(EvalTask(str(synthetic_csv), fid, bf16_above_flops=above)).evaluate([genome])[0]
        for above in (None, 0.0)
    )
    assert (fp32["numerics"], bf16["numerics"]) == ("fp32", "bf16") and bf16["status"] == "ok"
    assert fp32["cache_key"] != bf16["cache_key"]  # the mode is part of what is cached


def test_a_network_validates_in_the_mode_it_trains_in_and_batching_changes_nothing(splits, monkeypatch):
    from nas.training import loop as training

    seen = []
    real = training.evaluate
    monkeypatch.setattr(training, "evaluate", lambda *a, **k: seen.append(k.get("bf16")) or real(*a, **k))
    cfg = TrainConfig(epochs=1, batch_size=32, augment=0.0)
    _fit(splits, cfg)
    _fit(splits, cfg.replace(cpu_bf16=True))
    assert seen == [False, True]
    model, _ = _fit(splits, cfg)
    x, cpu = splits[1].x, torch.device("cpu")
    logits = training.predict(model, x, cpu)
    assert torch.allclose(logits, training.predict(model, x, cpu, batch_size=7), atol=1e-5)
    low = training.predict(model, x, cpu, bf16=True)
    assert low.dtype == torch.float32 and not torch.equal(low, logits) and torch.allclose(low, logits, atol=0.2)


def test_a_curve_whose_rate_ends_at_zero_is_drawn_without_a_warning(tmp_path):
    import warnings

    from nas.training.report import write_history

    history = [{"epoch": 0, "train_loss": 1.9, "val_acc": 0.3, "val_f1": 0.2, "lr": 0.0, "seconds": 1.0}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        csv, png = write_history(history, tmp_path, "one epoch of wsd")
    assert png.stat().st_size > 0 and "0.0" in csv.read_text()


def test_a_checkpoint_is_never_continued_on_other_training_images(splits, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=64)
    ckpt = tmp_path / "ckpt.pt"
    torch.manual_seed(0)
    train(build(GENOME), *splits, cfg, device="cpu", checkpoint=ckpt, until=1)
    others = splits[0].subset(len(splits[0]) // 2, seed=0)
    with pytest.raises(NasError, match="ckpt.pt: written while training on other images"):
        train(build(GENOME), others, splits[1], cfg, device="cpu", checkpoint=ckpt)
    result = train(build(GENOME), *splits, cfg, device="cpu", checkpoint=ckpt)  # its own: continued
    assert result.epochs_run == 2


def test_the_stable_copy_is_written_before_the_checkpoint_it_copies(splits, tmp_path, monkeypatch):
    """A kill between the two writes then repeats the epoch, rather than leaving no stable copy."""
    import nas.training.loop as loop

    written, real = [], loop.atomic_write
    monkeypatch.setattr(loop, "atomic_write", lambda path, data: written.append((path.name, data)) or real(path, data))
    ckpt = tmp_path / "c.pt"
    train(build(GENOME), *splits, TrainConfig(epochs=4, batch_size=64, scheduler="wsd"), device="cpu", checkpoint=ckpt)
    at = [name for name, _ in written].index(stable_copy(ckpt).name)
    assert written[at + 1] == ("c.pt", written[at][1])  # the same epoch's state, written after its copy
