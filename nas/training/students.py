"""The distillation stage (``nas distill``): the search's small networks taught by its best ones.

The students are the front members the search ranks best at the small end of the front, in two groups: within
a hand-made network's latency (mini-Xception's unless told) and within a parameter and latency budget. Each
is trained fully twice with the same recipe, seed and length, without a teacher (``students/``) and with the
teachers (``distilled/``, ``nas.training.distill``), so that the summary compares like with like; the
teachers' own test accuracy, alone and as the ensemble the students learn from, stands beside them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas import rundir
from nas.errors import NasError, RunDirError, SettingError, first_line
from nas.genome.build import build
from nas.genome.grammar import parse_genome
from nas.genome.space import checked_genome
from nas.rundir import distilled_sentence
from nas.settings import number_in, typed
from nas.training.distill import BEST, ensemble_accuracy, resolve

if TYPE_CHECKING:
    from nas.training.options import StudentOptions


def distill_run(run_dir: str | Path, teacher: tuple[str, ...] = (BEST,),
                on_epoch: Callable[[int, dict], None] | None = None, **settings: Any) -> dict:  # fmt: skip
    """Teach the search's small networks: the best-ranked front members of each group (``StudentOptions``),
    each trained fully without a teacher (under ``students/``) and with the teachers (under ``distilled/``),
    with the same recipe, seed and length; then the teachers' own test accuracy, alone and as the ensemble,
    beside them in ``distilled/summary-s<seed>.md``. ``settings``: ``StudentOptions``' fields and ``train``'s.
    Run again, it finishes what an interrupted stage left (the same teachers and students: ``_plan``)."""
    from nas.training.final import train_final
    from nas.training.options import NO_TEACHER, StudentOptions

    run_dir = Path(run_dir)
    own = {f.name for f in fields(StudentOptions)}
    o = typed(StudentOptions, {k: settings.pop(k) for k in list(settings) if k in own}, "distill")
    if settings.get("out") is not None:
        raise SettingError("--out: the distillation stage writes under the run directory (distilled/, students/)")
    settings["seed"] = seed = settings.get("seed") or 0  # both trainings, and the folders' names, say it
    paths, students = _plan(run_dir, o, tuple(teacher), seed)
    untaught = {k: v for k, v in settings.items() if not k.startswith("distill_")}
    rows = []
    for key, student in students.items():
        where = f"{key}-s{seed}"
        plain = train_final(run_dir, genome=student["genome"], out=run_dir / rundir.STUDENTS / where, on_epoch=on_epoch,
                            teacher=(NO_TEACHER,), **untaught)  # fmt: skip
        taught = train_final(run_dir, genome=student["genome"], out=run_dir / rundir.DISTILLED / where, teacher=paths,
                             on_epoch=on_epoch, **settings)  # fmt: skip
        rows.append(student | {"seed": seed, "without": _figures(plain), "with": _figures(taught)})
    summary = {"teachers": taught["teacher"]["members"], "ensemble": _ensemble_test(run_dir, paths, settings),
               "distillation": {k: taught["teacher"][k] for k in ("weight", "temperature", "targets")},
               "students": rows}  # fmt: skip
    out = rundir.make_dir(run_dir / rundir.DISTILLED)
    rundir.write_json(out / f"summary-s{seed}.json", summary)
    rundir.atomic_write(out / f"summary-s{seed}.md", summary_markdown(summary).encode())
    return summary


def _plan(run_dir: Path, o, teacher: tuple[str, ...], seed: int) -> tuple[list[str], dict[str, dict]]:
    """The teachers' files and the students, chosen once and kept (``distilled/plan-s<seed>.json``): a
    latency measured again, or a network trained since, must not change them under a stage that resumes."""
    from dataclasses import asdict

    path = run_dir / rundir.DISTILLED / f"plan-s{seed}.json"
    asked = {"teacher": list(teacher), "students": asdict(o)}
    kept = rundir.read_json(path, "distillation plan") if path.exists() else {}
    chosen = kept.get("chosen")
    if kept.get("asked") == asked and _whole(chosen) and isinstance(kept.get("teachers"), list):
        return [str(t) for t in kept["teachers"]], chosen
    paths = [str(p) for p in resolve(run_dir, teacher)]
    chosen = choose_students(run_dir, o)
    rundir.make_dir(path.parent)
    rundir.write_json(path, {"asked": asked, "teachers": paths, "chosen": chosen})
    return paths, chosen


def _whole(chosen: object) -> bool:
    """Whether a kept plan's students are all there is to train and summarise; else they are chosen again."""

    def entry(c: object) -> bool:
        return (isinstance(c, dict) and isinstance(c.get("key"), str) and isinstance(c.get("genome"), str)
                and number_in(c.get("params"), 0) and number_in(c.get("latency_ms"), 0)
                and isinstance(c.get("groups"), list) and bool(c["groups"]))  # fmt: skip

    return isinstance(chosen, dict) and bool(chosen) and all(entry(c) for c in chosen.values())


def choose_students(run_dir: Path, o: StudentOptions) -> dict[str, dict]:
    """The front members to teach, by key: in each group, the ``o.students`` the search ranks best (the
    highest rung first, then its accuracy there: halving's order), latencies measured now, beside the
    reference baseline's, round-robin."""
    front = read_front(run_dir)
    latency = timed(front, (o.like,))
    fast = f"within {o.like}'s latency ({latency[o.like]:.3f} ms)"
    small = f"within {o.max_params:,} parameters and {o.max_latency_ms:g} ms"
    fits = {fast: lambda r: latency[r["key"]] <= latency[o.like],
            small: lambda r: r["params"] <= o.max_params and latency[r["key"]] <= o.max_latency_ms}  # fmt: skip
    ranked = search_order(front)
    chosen: dict[str, dict] = {}
    for group, fit in fits.items():
        for row in [r for r in ranked if fit(r)][: o.students]:
            entry = chosen.setdefault(row["key"], row | {"latency_ms": latency[row["key"]], "groups": []})
            entry["groups"].append(group)
    if not chosen:
        raise RunDirError(f"{run_dir / rundir.PARETO}: no front member {fast}, nor {small}")
    return chosen


def timed(front: list[dict], baselines: tuple[str, ...]) -> dict[str, float]:
    """The latency (ms) of every front member, by key, and of the named baselines, by name: all timed
    round-robin in one measurement, so that they compare."""
    from nas.deploy.latency import measure
    from nas.genome.space import load_baselines

    known = load_baselines()
    unknown = [name for name in baselines if name not in known]
    if unknown:
        raise SettingError(f"--like: unknown baseline {unknown[0]!r}; choose from {', '.join(known)}")
    models = {row["key"]: build(parse_genome(row["genome"])) for row in front}
    return measure(models | {name: build(known[name].genome) for name in baselines})


def search_order(front: list[dict]) -> list[dict]:
    """The front as the search ranks it: the highest rung first, then the accuracy there (halving's order)."""
    return sorted(front, key=lambda r: (-r["epochs"], -r["val_acc"], r["key"]))


def read_front(run_dir: Path) -> list[dict]:
    """The front table (``pareto.csv``): each member's key, genome, parameters, accuracy and the epochs it
    reached; a damaged table is one line naming it and the column."""
    import pandas as pd

    path = Path(run_dir) / rundir.PARETO
    if not path.exists():
        raise RunDirError(f"{path}: no front yet; run scripts/evolve.py first")
    try:
        table = pd.read_csv(path, dtype={"key": str, "genome": str})
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path}: not a front table ({first_line(exc)})") from None
    rows = []
    for i, row in enumerate(table.to_dict("records"), start=2):
        problem = _front_problem(row)
        if problem:
            raise RunDirError(f"{path}:{i}: {problem}")
        rows.append({"key": row["key"], "genome": row["genome"], "params": int(row["params"]),
                     "val_acc": float(row["val_acc"]), "epochs": int(row["epochs"])})  # fmt: skip
    return rows


def _front_problem(row: dict) -> str | None:
    for name, ok in {"key": isinstance(row.get("key"), str), "genome": isinstance(row.get("genome"), str),
                     "params": number_in(row.get("params"), 0), "val_acc": number_in(row.get("val_acc"), 0, 1),
                     "epochs": number_in(row.get("epochs"), 0)}.items():  # fmt: skip
        if not ok:
            return f"{name} missing or damaged"
    try:
        checked_genome(row["genome"], "genome")
    except NasError as exc:
        return first_line(exc)
    return None


def _figures(report: dict) -> dict:
    """A trained network's test figures and cost, for the summary."""
    epochs = max(1, report.get("epochs_run", 1))
    return {"ten_crop": report["ten_crop"]["acc"], "single_crop": report["single_crop"]["acc"],
            "f1": report["ten_crop"]["f1"], "val_acc": report.get("val_acc"),
            "seconds_per_epoch": round(report.get("train_seconds", 0.0) / epochs, 1), "out": report["out"],
            "targets_seconds": (report.get("teacher") or {}).get("targets_seconds", 0.0)}  # fmt: skip


def _ensemble_test(run_dir: Path, paths: list[str], settings: dict) -> dict:
    """The teachers averaged, ten-crop, on the test split: what the students are taught from, measured as
    each of them is (PrivateTest, reported only)."""
    from nas import data as fer

    test = fer.load(fer.resolve_data_path(settings.get("data") or rundir.run_data(run_dir)), ("test",))["test"]
    return ensemble_accuracy(paths, test, settings.get("device") or "auto")


def summary_markdown(summary: dict) -> str:
    """``distilled/summary-s<seed>.md``: teachers, ensemble, and each student with and without them."""
    lines = ["# Distillation", "", distilled_sentence(summary["distillation"] | {"members": summary["teachers"]}), "",
             "| teacher | PublicTest acc | PrivateTest acc (10 crops) |", "|---|---|---|"]  # fmt: skip
    for m in summary["teachers"]:
        test = m.get("test_acc_ten_crop")
        lines.append(f"| `{Path(m['path']).parent.name}` | {m.get('val_acc') or float('nan'):.4f} | "
                     f"{'not reported' if test is None else f'{test:.4f}'} |")  # fmt: skip
    lines += [f"| the ensemble | | {summary['ensemble']['acc']:.4f} |", "",
              "| student | group | params | latency ms | seed | acc without (10 crops) | acc with | s/epoch without "
              "| s/epoch with | s of teachers' targets |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for s in summary["students"]:
        lines.append(
            f"| `{s['key']}` | {'; '.join(s['groups'])} | {s['params']:,} | {s['latency_ms']:.3f} | {s['seed']} "
            f"| {s['without']['ten_crop']:.4f} | {s['with']['ten_crop']:.4f} | {s['without']['seconds_per_epoch']} "
            f"| {s['with']['seconds_per_epoch']} | {s['with']['targets_seconds']} |"
        )
    return "\n".join([*lines, ""])
