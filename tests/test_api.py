"""The Python API as the README shows it, run as written on synthetic data."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    text = README.read_text()
    code = re.search(r"### From Python.*?```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    result, report = scope["result"], scope["report"]
    assert result.generation == 2 and result.front and result.champion["genome"] in {r["genome"] for r in result.front}
    assert result.run_dir.parent == Path("runs") and (result.run_dir / "checkpoint.json").exists()
    assert report["split"] == "PrivateTest" and report["epochs_run"] == 3
    assert {p.name for p in (result.run_dir / "export").iterdir()} >= {"model.onnx", "model.ts", "model.json"}
    assert result.champion["genome"] in capsys.readouterr().out


def test_resume_extends_a_search_and_search_refuses_a_used_directory(tmp_path):
    import pytest

    import nas
    from nas.errors import RunDirError

    run = tmp_path / "run"
    kwargs = dict(space="tiny", population=4, fidelity="cheap", objectives="acc,params", plots=False)
    first = nas.search("synthetic:300", generations=0, algorithm="random", run_dir=run, **kwargs)
    assert first.generation == 0 and len(first.progress) == 1
    more = nas.resume(run, generations=1, plots=False)
    assert more.generation == 1 and [p["gen"] for p in more.progress] == [0, 1]
    with pytest.raises(RunDirError, match="already holds a run"):
        nas.search("synthetic:300", generations=1, run_dir=run, **kwargs)


def test_ctrl_c_or_sigterm_in_any_command_ends_in_one_line_and_exit_130(monkeypatch, capsys):
    import logging
    import os
    import signal
    import time

    from nas import api, cli

    def interrupted(run_dir):
        raise KeyboardInterrupt

    def terminated(run_dir):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the handler interrupts this

    before = signal.getsignal(signal.SIGTERM)
    for stop in (interrupted, terminated):
        monkeypatch.setattr(api, "report", stop)
        assert cli.main(["report", "runs/x"]) == 130
    err = capsys.readouterr().err
    assert err.count("interrupted: what report finished stays saved") == 2 and "Traceback" not in err
    assert signal.getsignal(signal.SIGTERM) is before
    cli._console(-2)  # -qq: quieter than -q, never louder
    assert all(h.level == logging.WARNING for h in logging.getLogger("nas").handlers if isinstance(h, cli._Stderr))
    cli._console(0)


def test_a_command_run_outside_the_main_thread_sets_no_signal_handler(capsys):
    import threading

    from nas import cli

    codes = []
    thread = threading.Thread(target=lambda: codes.append(cli.main(["baselines"])))
    thread.start()
    thread.join()
    assert codes == [0] and "mini_xception" in capsys.readouterr().out
