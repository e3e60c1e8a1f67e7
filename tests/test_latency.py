"""The latency table: a network's predicted latency from units measured once, kept, and never measured again."""

import json
from pathlib import Path

import pytest

import nas.deploy.latency
from nas.deploy.latency import LatencyTable
from nas.genome.grammar import parse_genome

GENOME = parse_genome("conv_k3_c8_s1_relu_bn | pool_max | ir_k3_e2_c16_s2_r2_se | gap | dense_u16_d0")


def test_units_are_the_blocks_at_their_input_shapes_and_the_head():
    units = LatencyTable().units(GENOME, (1, 48, 48), 7)
    assert list(units) == [
        "conv_k3_c8_s1_relu_bn@1x48x48",
        "pool_max@8x48x48",
        "ir_k3_e2_c16_s2_r2_se@8x24x24",
        "gap | dense_u16_d0@16x12x12->7",
    ]
    module, shape = units["ir_k3_e2_c16_s2_r2_se@8x24x24"]()
    assert shape == (8, 24, 24)


def test_predictions_come_from_kept_entries_and_a_run_keeps_its_own(tmp_path, monkeypatch):
    machine, run = tmp_path / "machine.json", tmp_path / "run.json"
    first = LatencyTable(machine, run, rounds=1, runs=5).predict(GENOME)
    entries = json.loads(run.read_text())["entries"]
    assert len(entries) == 5 and json.loads(machine.read_text())["entries"] == entries  # 4 units + the call overhead
    overhead = entries.pop(LatencyTable.OVERHEAD)
    assert first == pytest.approx(sum(v - overhead for v in entries.values()) + overhead)
    monkeypatch.setattr(nas.deploy.latency, "measure", lambda *a, **k: pytest.fail("measured a unit it knew"))
    assert LatencyTable(machine, run).predict(GENOME) == first
    # another machine's table, or a wiped cache: the run's own entries still decide its predictions
    doubled = {k: 2 * v for k, v in json.loads(run.read_text())["entries"].items()}
    machine.write_text(json.dumps({"entries": doubled}))
    assert LatencyTable(machine, run).predict(GENOME) == first
    assert LatencyTable(machine, None).predict(GENOME) == pytest.approx(2 * first)
    # a new run on this machine: the units it uses come from the machine's table and are copied into its own
    other = tmp_path / "other-run.json"
    assert LatencyTable(machine, other).predict(GENOME) == pytest.approx(2 * first)
    assert json.loads(other.read_text())["entries"] == doubled
    machine.unlink()  # then the cache is wiped: the run predicts as before, from its own copy
    assert LatencyTable(machine, other).predict(GENOME) == pytest.approx(2 * first)


def test_a_machine_cache_that_cannot_be_written_is_a_warning_and_the_run_keeps_its_own(tmp_path, monkeypatch, caplog):
    from nas.deploy.latency import machine_table_path

    (tmp_path / "not-a-folder").write_text("")  # $XDG_CACHE_HOME/fer-nas cannot be made, even as root
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    run = tmp_path / "run.json"
    predicted = LatencyTable(machine_table_path(), run, rounds=1, runs=5).predict(GENOME)
    assert predicted > 0 and len(json.loads(run.read_text())["entries"]) == 5
    assert "not kept" in caplog.text and "measured again by the next run" in caplog.text


def _add_many(path: str, prefix: str, start) -> None:
    from nas.deploy.latency import _add_entries

    start.wait(60)
    for i in range(100):
        _add_entries(Path(path), {f"{prefix}{i}": 1.0}, shared=True)


def test_two_runs_adding_to_the_machine_table_at_once_keep_each_others_entries(tmp_path):
    """Two searches measuring units on one machine: each adds its entries to the file the other just read."""
    import multiprocessing

    path = tmp_path / "machine.json"
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    workers = [ctx.Process(target=_add_many, args=(str(path), prefix, start)) for prefix in "ab"]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0]  # None: still running after two minutes
    assert set(json.loads(path.read_text())["entries"]) == {f"{p}{i}" for p in "ab" for i in range(100)}
