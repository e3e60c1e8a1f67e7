import pytest

from nas import evaluate
from nas.evaluate import RECORD_FIELDS, Cache, EvalTask, Evaluator, Fidelity

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
    real_train = evaluate.train

    def flaky(model, *args, **kwargs):
        if model.genome == GOOD[1]:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real_train(model, *args, **kwargs)

    monkeypatch.setattr(evaluate, "train", flaky)
    records = Evaluator(task, Cache(tmp_path / "c.jsonl")).evaluate([*GOOD, "conv_k3_c8_s1_relu | bogus"])
    assert [r["status"] for r in records] == ["ok", "failed", "failed"]
    assert "out of memory" in records[1]["error"] and "unknown block type" in records[2]["error"]


def test_nan_and_time_limit_are_recorded(synthetic_csv, tmp_path):
    nan_task = EvalTask(str(synthetic_csv), Fidelity("nan", 140, 2, lr=1e30), seed=0)
    (rec,) = Evaluator(nan_task).evaluate(GOOD[:1])
    assert rec["status"] == "failed" and rec["error"].startswith("diverged")
    slow_task = EvalTask(str(synthetic_csv), FID, seed=0, time_limit=1e-6)
    (rec,) = Evaluator(slow_task).evaluate(GOOD[:1])
    assert rec["status"] == "timeout" and rec["val_acc"] is None if "val_acc" in rec else rec["status"] == "timeout"


def test_cache_prevents_retraining_and_survives_restart(task, tmp_path, monkeypatch):
    path = tmp_path / "cache.jsonl"
    first = Evaluator(task, Cache(path)).evaluate(GOOD + GOOD[:1])
    assert first[0] == first[2]
    monkeypatch.setattr(evaluate, "train_candidate", lambda *a: pytest.fail("retrained a cached genome"))
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


def test_networks_over_the_flops_budget_fail_untrained(synthetic_csv, monkeypatch):
    task = EvalTask(str(synthetic_csv), FID, seed=0, max_flops=1e6)
    monkeypatch.setattr(evaluate, "train", lambda *a, **k: pytest.fail("trained a network over budget"))
    big = "conv_k3_c16_s1_relu_bn | conv_k3_c16_s1_relu_bn | gap"
    (rec,) = Evaluator(task).evaluate([big])
    assert rec["status"] == "failed" and rec["error"] == "over budget: 11.3 MFLOPs, over the run's budget of 1 MFLOPs"
