import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from nas.errors import NasError
from nas.evolve import fidelity, worker
from nas.evolve.evaluate import Evaluator
from nas.evolve.fidelity import Fidelity
from nas.evolve.worker import EvalTask, Job
from nas.rundir import RECORD_FIELDS, Cache

FID = Fidelity("test", train_images=140, epochs=1, batch_size=32)
GOOD = ["conv_k3_c8_s1_relu_bn | pool_max | gap", "conv_k3_c8_s2_relu_bn | gap | dense_u16_d0"]


@pytest.fixture
def task(synthetic_csv):
    return EvalTask(str(synthetic_csv), FID, seed=0)


def test_records_are_complete(task, tmp_path):
    ev = Evaluator(task, Cache(tmp_path / "cache.jsonl"))
    records = ev.evaluate(GOOD)
    for rec in records:
        assert rec["status"] == "ok", rec["error"]
        assert set(RECORD_FIELDS) <= set(rec)
        assert 0 <= rec["val_acc"] <= 1 and rec["params"] > 0 and rec["flops"] > 0
        assert rec["latency_ms"] > 0 and rec["latency_ratio"] > 0
        assert rec["data"] == ev.fingerprint and rec["fidelity"] == "test"


def test_failures_are_recorded_and_the_batch_goes_on(task, tmp_path, monkeypatch):
    real_train = worker.train

    def flaky(model, *args, **kwargs):
        if model.genome == GOOD[1]:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real_train(model, *args, **kwargs)

    monkeypatch.setattr(worker, "train", flaky)
    records = Evaluator(task, Cache(tmp_path / "c.jsonl")).evaluate([*GOOD, "conv_k3_c8_s1_relu | bogus"])
    assert [r["status"] for r in records] == ["ok", "failed", "failed"]
    assert "out of memory" in records[1]["error"] and "unknown block type" in records[2]["error"]


def test_nan_and_time_limit_are_recorded(synthetic_csv, tmp_path):
    nan_task = EvalTask(str(synthetic_csv), Fidelity("nan", 140, 2, lr=1e30), seed=0)
    (rec,) = Evaluator(nan_task).evaluate(GOOD[:1])
    assert rec["status"] == "failed" and rec["error"].startswith("diverged")
    slow_task = EvalTask(str(synthetic_csv), FID, seed=0, time_limit=1e-6)
    (rec,) = Evaluator(slow_task).evaluate(GOOD[:1])
    assert rec["status"] == "timeout"
    assert rec.get("val_acc") is None and rec["error"].startswith("time limit reached")
    (rec,) = Evaluator(slow_task).evaluate([Job(GOOD[0], resumable=True)])  # the top rung: a full training
    assert rec["status"] == "ok" and rec["epochs"] == FID.epochs


def test_cache_prevents_retraining_and_survives_restart(task, tmp_path, monkeypatch):
    path = tmp_path / "cache.jsonl"
    first = Evaluator(task, Cache(path)).evaluate(GOOD + GOOD[:1])
    assert first[0] == first[2]
    monkeypatch.setattr(worker, "train_candidate", lambda *a: pytest.fail("retrained a cached genome"))
    again = Evaluator(task, Cache(path)).evaluate(GOOD)
    assert again == first[:2]


def test_same_seed_same_result_in_parallel_workers(task, tmp_path):
    serial = Evaluator(task).evaluate(GOOD)
    parallel = Evaluator(task, jobs=2).evaluate(GOOD)
    for a, b in zip(serial, parallel):
        assert (a["val_acc"], a["val_f1"], a["params"]) == (b["val_acc"], b["val_f1"], b["params"])


@pytest.mark.slow
def test_dask_local_cluster_end_to_end(task):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None, processes=True
    ) as cluster:
        ev = Evaluator(task, backend="dask", scheduler=cluster.scheduler_address)
        try:
            records = ev.evaluate(GOOD)
        finally:
            ev.close()
    reference = Evaluator(task).evaluate(GOOD)
    assert [r["val_acc"] for r in records] == [r["val_acc"] for r in reference]


@pytest.fixture
def vanishing(synthetic_csv, tmp_path):
    """A task whose data file is gone once the evaluator (the client) has loaded it: as on workers that do
    not share the client's disk."""
    path = tmp_path / "data.csv"
    path.write_bytes(synthetic_csv.read_bytes())
    task = EvalTask(str(path), FID, seed=0)
    reference = Evaluator(task).evaluate(GOOD)
    evaluator = Evaluator(task, Cache(tmp_path / "cache.jsonl"), jobs=2, backend="dask")
    path.unlink()
    return evaluator, reference


@pytest.mark.slow
def test_dask_workers_get_the_data_from_the_client(vanishing):
    distributed = pytest.importorskip("distributed")
    ev, reference = vanishing
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None, processes=True
    ) as cluster:
        ev.scheduler = cluster.scheduler_address
        try:
            records = ev.evaluate(GOOD)
        finally:
            ev.close()
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert [r["val_acc"] for r in records] == [r["val_acc"] for r in reference]


def test_a_worker_that_cannot_read_the_data_stops_the_run_and_caches_nothing(vanishing):
    ev, _ = vanishing
    ev.backend, ev.jobs = "loky", 1
    with pytest.raises(NasError, match="a training worker cannot read the data: .*data.csv: data file or folder"):
        ev.evaluate(GOOD)
    assert not ev.cache.records and not ev.cache.path.exists()


@pytest.mark.slow
def test_the_local_dask_cluster_and_its_dashboard_listen_on_loopback_only(task):
    pytest.importorskip("distributed")
    ev = Evaluator(task, backend="dask")
    try:
        ev._connect_dask()
        assert ev._client.scheduler.address.startswith("tcp://127.0.0.1:")
        assert ev._client.dashboard_link.startswith("http://127.0.0.1:")
    finally:
        ev.close()


def test_continuing_a_kept_state_equals_training_straight_through(synthetic_csv, tmp_path, monkeypatch):
    task = EvalTask(str(synthetic_csv), Fidelity("two", train_images=140, epochs=2, batch_size=32), seed=0)
    straight = Evaluator(task).evaluate([GOOD[0]])[0]
    ev = Evaluator(task, Cache(tmp_path / "cache.jsonl"), state_dir=tmp_path / "states")
    (first,) = ev.evaluate([Job(GOOD[0], until=1, keep_state=True)])
    assert first["epochs"] == 1 and len(list((tmp_path / "states").glob("*-e1.pt"))) == 1
    import nas.training.loop

    validated, real_validate = [], nas.training.loop.evaluate  # called once at the end of every epoch trained
    monkeypatch.setattr(nas.training.loop, "evaluate", lambda *a, **k: validated.append(1) or real_validate(*a, **k))
    (second,) = ev.evaluate([Job(GOOD[0], until=2, keep_state=True)])
    assert len(validated) == 1, "the second job trained the first epoch again"
    assert (second["epochs"], second["val_acc"], second["val_f1"]) == (2, straight["val_acc"], straight["val_f1"])
    assert first["cache_key"] != second["cache_key"] == straight["cache_key"]
    states = list((tmp_path / "states").glob("*.pt"))
    assert [p.name.rsplit("-", 1)[1] for p in states] == ["e2.pt"]  # the older state is replaced, not kept
    assert set(torch.load(states[0], weights_only=True)) >= {"model", "optimizer", "result"}
    ev.drop_state(GOOD[0])
    assert not list((tmp_path / "states").glob("*.pt"))


def test_kept_states_travel_through_workers(synthetic_csv):
    task = EvalTask(str(synthetic_csv), Fidelity("two", train_images=140, epochs=2, batch_size=32), seed=0)
    ev = Evaluator(task, jobs=2)  # loky workers: states come back as bytes and stay in this process
    ev.evaluate([Job(g, until=1, keep_state=True) for g in GOOD])
    continued = ev.evaluate([Job(g, until=2) for g in GOOD])
    assert [r["val_acc"] for r in continued] == [r["val_acc"] for r in Evaluator(task).evaluate(GOOD)]


def test_the_brief_trainings_class_balance_is_part_of_the_key_and_leaves_older_keys_alone(task, tmp_path):
    from dataclasses import replace

    # the key a fidelity hashed to before the setting existed (fields as they were, every epoch validated)
    old = Fidelity("test", train_images=140, epochs=1, batch_size=32, validate_every_epoch=True)
    assert '"class_balance"' not in old.key and "validate_every_epoch" not in old.key
    balanced = replace(FID, class_balance="softmax")
    assert balanced.key != FID.key and balanced.train_config(0).class_balance == "softmax"
    ev = Evaluator(replace(task, fidelity=balanced), Cache(tmp_path / "cache.jsonl"))
    plain = Evaluator(task, Cache(tmp_path / "cache.jsonl"))
    assert ev.evaluate(GOOD[:1])[0]["cache_key"] != plain.evaluate(GOOD[:1])[0]["cache_key"]


def test_a_narrow_proxy_trains_fewer_channels_and_records_the_real_networks_size(task, monkeypatch):
    from dataclasses import replace

    from nas.genome.build import build, count_flops, count_params
    from nas.genome.grammar import parse_genome

    text = "conv_k3_c32_s1_relu_bn | ir_k3_e2_c16_s2_r1_se | res_c8_s1_r1 | pool_max | gap | dense_u16_d0"
    genome = parse_genome(text)
    narrow = replace(FID, width=0.5)
    assert str(narrow.trained_genome(genome)) == (
        "conv_k3_c16_s1_relu_bn | ir_k3_e2_c8_s2_r1_se | res_c4_s1_r1 | pool_max | gap | dense_u16_d0"
    )
    assert FID.trained_genome(genome) is genome and "width" not in FID.key and narrow.key != FID.key
    trained = []
    real_train = worker.train
    monkeypatch.setattr(worker, "train", lambda model, *a, **k: trained.append(model) or real_train(model, *a, **k))
    rec = worker.train_candidate(str(genome), replace(task, fidelity=narrow))
    assert rec["status"] == "ok", rec["error"]
    assert rec["params"] == count_params(build(genome))  # the objectives are the real network's
    assert rec["flops"] == count_flops(build(genome))
    assert count_params(trained[0]) == count_params(build(narrow.trained_genome(genome))) < rec["params"]


def test_a_spelled_out_fidelity_is_parsed_and_a_preset_name_stays_the_preset():
    from nas.errors import SettingError

    fid = fidelity.get_fidelity("3000X2b64w0.5lr1e-2")
    assert (fid.train_images, fid.epochs, fid.batch_size, fid.width, fid.lr) == (3000, 2, 64, 0.5, 0.01)
    assert fid.name == "3000x2b64w0.5lr1e-2" and fidelity.get_fidelity("6000x2w.5").width == 0.5
    assert fidelity.get_fidelity("6000x2").key != fidelity.get_fidelity("default").key  # the names differ
    assert fidelity.get_fidelity("default") is fidelity.FIDELITIES["default"]
    bad = {
        "huge": "unknown fidelity",
        "6000x2b": "unknown fidelity",
        "6000x2w0.5.5": "unknown fidelity",
        "6000x2lr.": "unknown fidelity",
        "6000x0": "epochs >= 1",
        "6000x2b0": "batch_size >= 1",
        "6000x2lr0": "lr > 0",
        "0x2": "at least 1 training image",
        "6000x2w0": "width must be in",
        "6000x2w1.5": "width must be in",
        "6000x4wsdc1.5": "branch must be in",  # a branch is drawn from one pass over the images
    }
    for spec, says in bad.items():
        with pytest.raises(SettingError, match=f"--fidelity.*{spec}.*{says}|--fidelity.*{says}"):
            fidelity.get_fidelity(spec)


def test_a_fidelity_stored_before_its_choices_existed_keeps_its_behaviour_and_cache_keys():
    from dataclasses import asdict

    from nas.config import migrate

    stored = {k: v for k, v in asdict(FID).items() if k not in ("validate_every_epoch", "validate_bf16", "width")}
    config = {"search": {}, "problem": {}, "space": {}, "data": "x", "evaluation": {"fidelity": stored}}
    old = Fidelity(**migrate(config, Path("config.json"))["evaluation"]["fidelity"])  # as a run of 2026-11-23 wrote it
    assert old.validate_every_epoch and not old.validate_bf16 and old.width == 1.0
    assert not old.train_config(0).validate_bf16  # it validates in fp32, as it did
    for name in ("validate_every_epoch", "validate_bf16", "width", "class_balance"):
        assert name not in old.key  # the key hashes what it hashed then
    assert FID.validate_bf16 and "validate_bf16" in FID.key  # a new run validates as it trains, under a new key


def test_fidelity_decision_is_the_cheapest_recorded_signal_as_faithful_as_the_old_default():
    from conftest import load_benchmark

    decide = load_benchmark("bench_fidelity").decide
    every = {
        "6000x4 (best of 4 epochs)": {"recorded": False, "cost": 40.0},  # the old default: the floor
        "6000x4, epoch 4": {"recorded": True, "cost": 40.0},
        "6000x2, epoch 2": {"recorded": True, "cost": 16.0},
        "3000x2b32, epoch 2": {"recorded": True, "cost": 10.0},
        "6000x4, epoch 2": {"recorded": False, "cost": 20.0},  # the start of a longer schedule: never recorded
        "6000x1, epoch 1": {"recorded": True, "cost": 8.0},
    }
    scores = {
        "6000x4 (best of 4 epochs)": (0.70, 0.0),
        "6000x4, epoch 4": (0.72, 0.10),
        "6000x2, epoch 2": (0.71, 0.05),
        "3000x2b32, epoch 2": (0.70, 0.02),
        "6000x4, epoch 2": (0.90, 0.30),
        "6000x1, epoch 1": (0.50, -0.05),
    }
    assert "**3000x2b32, epoch 2**" in decide(every, scores, "6000x4 (best of 4 epochs)")
    scores["3000x2b32, epoch 2"] = (0.69, 0.03)  # below the floor by its point estimate
    assert "**6000x2, epoch 2**" in decide(every, scores, "6000x4 (best of 4 epochs)")
    scores.update({k: (0.1, -0.2) for k in scores if k != "6000x4 (best of 4 epochs)"})
    assert "no recorded signal" in decide(every, scores, "6000x4 (best of 4 epochs)")


@pytest.mark.bench
def test_fidelity_benchmark_trains_references_as_train_py_and_ranks_spelled_out_signals(tmp_path, capsys):
    import json

    import numpy as np
    from conftest import load_benchmark

    from nas import data as fer
    from nas.genome.grammar import parse_genome
    from nas.training.loop import train

    bench = load_benchmark("bench_fidelity")
    out = tmp_path / "fidelity"
    args = ["--data", "synthetic:70", "--out", str(out), "--states", str(tmp_path / "checkpoints"), "--networks", "3",
            "--reference-epochs", "1", "--jobs", "1"]  # fmt: skip
    assert bench.main([*args, "--grid", "40x2b16w0.5"]) == 0
    refs = {r["genome"]: r for r in map(json.loads, (out / "reference.jsonl").read_text().splitlines())}
    # the tests' numeric rule: bf16 above 20 MFLOPs; generation 0's champion has 54, mini-Xception 7
    assert refs[bench.GEN0_CHAMPION]["numerics"] == "bf16" and len(refs) == 3
    assert {r["numerics"] for g, r in refs.items() if g != bench.GEN0_CHAMPION} == {"fp32"}
    assert "| 40x2b16w0.5 (best of 2 epochs) | 3 |" in capsys.readouterr().out
    assert bench.main([*args, "--stage", "table", "--compare", "40x2b16w0.5 (best of 2 epochs)"]) == 0
    assert "decision: " in capsys.readouterr().out
    assert bench.main([*args, "--stage", "cheap", "--grid", "full@2+auto"]) == 0  # a prefix of the full training
    table = capsys.readouterr().out
    assert "| full@2+auto, epoch 2 + 0.25-epoch cool-down | 3 |" in table
    assert "| full@2+auto, halving rungs 1,2 eta 3 | 3 | 1.67 |" in table  # 1.25 each, 1.25 more for one of 3
    truth = np.arange(12.0)
    lo, hi = bench.bootstrap_gap(truth, truth[::-1] + np.random.default_rng(0).normal(0, 4, 12), truth)
    assert 0 < lo <= hi  # a perfect signal agrees better than a noisy reversed one in every resample
    # a reference started in another mode is finished in its own
    genome = next(g for g in refs if g != bench.GEN0_CHAMPION)
    cfg = fidelity.Fidelity("reference", None, 2, validate_every_epoch=True).train_config(0).replace(cpu_bf16=True)
    dataset = fer.load("synthetic:70", ("train", "val"))
    states = tmp_path / "states"
    states.mkdir()
    torch.manual_seed(0)
    checkpoint = states / f"{parse_genome(genome).key}.pt"
    model = bench.build(parse_genome(genome))
    train(model, dataset["train"], dataset["val"], cfg, "cpu", checkpoint=checkpoint, until=1)
    row = bench.reference(genome, "synthetic:70", 2, 1, states, 0)
    assert row["numerics"] == "bf16" and row["epochs"] == 2


def test_the_full_fidelity_trains_as_the_final_training_does():
    """The search's top rung is the final training: every setting that changes what is trained is the
    default recipe's (a 100-epoch wsd schedule), so the two cannot disagree."""
    from dataclasses import asdict

    from nas.training.loop import RECIPES, RECORDING, changed_settings

    searched = fidelity.FIDELITIES["full"].train_config(seed=3)
    final = RECIPES["default"].replace(epochs=100, scheduler="wsd", seed=3)
    assert changed_settings(asdict(searched), final) == [] and set(RECORDING) == {"validate_every_epoch"}


def _training(folder, val: list[float], test: float):
    import json

    folder.mkdir(parents=True)
    rows = [f"{e},{1.5 - 0.1 * e},{v}" for e, v in enumerate(val, start=1)]
    (folder / "history.csv").write_text("epoch,train_loss,val_acc\n" + "\n".join(rows) + "\n")
    (folder / "report.json").write_text(json.dumps({"ten_crop": {"acc": test}}))


def test_the_curves_benchmark_says_from_which_epoch_the_order_is_the_final_one(tmp_path, capsys):
    from conftest import load_benchmark

    bench = load_benchmark("bench_curves")
    for seed in range(2):  # a fast learner that the slow one overtakes by the end
        _training(tmp_path / f"fast-wsd-{seed}", [0.50, 0.55, 0.56], 0.60 + seed / 100)
        _training(tmp_path / f"slow-wsd-{seed}", [0.40, 0.50, 0.60], 0.65 + seed / 100)
    assert bench.main(["--trainings", str(tmp_path / "*-wsd-*"), "--epochs", "1,3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "| epoch | slow (2) | fast (2) | Kendall tau | pairs in order |" in lines
    assert any(line.startswith("| 1 | 0.400 | 0.500 | -") and line.endswith("| 0.00 |") for line in lines)
    assert any(line.startswith("| 3 | 0.600 | 0.560 | 0.") and line.endswith("| 1.00 |") for line in lines)
    assert bench.main(["--trainings", str(tmp_path / "fast-*")]) == 2  # one network: nothing to order


def test_a_damaged_kept_state_is_trained_again_from_the_start_to_the_same_record(task, tmp_path, caplog):
    fresh = worker.train_candidate(GOOD[0], task, keep_state=True)
    whole = fresh.pop("state")
    same = ("status", "val_acc", "val_f1", "epochs", "curve")
    for damaged in (b"junk", b"", whole[: len(whole) // 2], whole[:100]):
        rec = worker.train_candidate(GOOD[0], task, state=damaged)
        assert {k: rec[k] for k in same} == {k: fresh[k] for k in same}, rec["error"]
    live = tmp_path / "live.pt"
    live.write_bytes(whole[:100])  # a finalist's live file, cut short
    rec = worker.train_candidate(GOOD[0], task, state=whole, live=str(live))
    assert {k: rec[k] for k in same} == {k: fresh[k] for k in same} and live.stat().st_size > 100
    assert "not a readable training state" in caplog.text and "trained again from the start" in caplog.text


def test_a_dask_scheduler_out_of_reach_is_one_error_and_no_candidates_failure(task, tmp_path):
    import dask

    cache = Cache(tmp_path / "cache.jsonl")
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        ev = Evaluator(task, cache, jobs=2, backend="dask", scheduler="tcp://127.0.0.1:9")
        with pytest.raises(NasError, match=r"--scheduler tcp://127.0.0.1:9: no Dask scheduler answers"):
            ev.evaluate(GOOD[:1])
    assert not (tmp_path / "cache.jsonl").exists() or not (tmp_path / "cache.jsonl").read_text().strip()


def test_a_long_training_that_fails_leaves_no_live_checkpoint_behind(task, tmp_path, monkeypatch):
    real = worker.train

    def diverges_after_its_first_checkpoint(*args, **kwargs):
        real(*args, **kwargs)  # one epoch, checkpointed in the live file
        raise RuntimeError("diverged: at the end")

    monkeypatch.setattr(worker, "train", diverges_after_its_first_checkpoint)
    ev = Evaluator(task, Cache(tmp_path / "cache.jsonl"), jobs=1, state_dir=tmp_path / "states")
    (record,) = ev.evaluate([Job(GOOD[0], keep_state=True, resumable=True)])
    assert record["status"] == "failed" and not list((tmp_path / "states").glob("*live*"))


def test_a_killed_workers_state_folder_is_removed_by_the_next_training_and_a_live_one_kept(task, tmp_path, monkeypatch):
    code = ("import os\nfrom nas.evolve import worker\nwith worker.state_folder() as d:\n"
            "    (d / 'state.pt').write_bytes(bytes(1000))\n    os.kill(os.getpid(), 9)")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], env=os.environ | {"TMPDIR": str(tmp_path)}, check=False)
    (dead,) = tmp_path.glob(worker.STATE_FOLDER + "*")  # what a worker killed mid-training leaves
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(worker, "STALE_AFTER", 0.0)
    with worker.state_folder() as live:  # a training still running beside
        assert worker.train_candidate(GOOD[0], task, keep_state=True)["status"] == "ok"
        assert list(tmp_path.glob(worker.STATE_FOLDER + "*")) == [live]
    assert not list(tmp_path.glob(worker.STATE_FOLDER + "*"))
