"""Module boundaries the style guide asks for, kept by a test rather than by a comment."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nas"
MODULES = {p: ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
           for p in PACKAGE.rglob("*.py")}  # fmt: skip


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of the file (lazy imports included), absolute names."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def _top(path: Path) -> set[str]:
    return {n.split(".")[0] for n in _imports(path)}


@pytest.mark.parametrize("library, allowed", [
    ("deap", {"evolve/algorithms/nsga2.py", "evolve/algorithms/ga.py"}),
    ("optuna", {"training/tuning.py", "evolve/algorithms/optuna_sampler.py"}),
    ("matplotlib", {"evolve/plots.py", "training/report.py"}),
])  # fmt: skip
def test_only_one_module_imports_each_library(library, allowed):
    users = {str(p.relative_to(PACKAGE)) for p in MODULES if library in _top(p)}
    assert users <= allowed, f"{library} imported by {sorted(users - allowed)}"


# the stages in the order data flows through them: a stage may use the ones before it, never one after it
STAGES = ("genome", "evolve", "training", "deploy")
LATER = {"genome": {"evolve", "training", "deploy"}, "training": {"evolve"}, "deploy": {"evolve", "training"}}


def test_the_package_is_laid_out_by_stage_and_no_stage_imports_a_later_one():
    top = {p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    # the stages, the entry points (api, cli), and what every stage shares: the data, errors, settings, run files
    assert top == {*STAGES, "__init__.py", "__main__.py", "api.py", "cli.py", "config.py", "data.py", "errors.py",
                   "rundir.py", "settings.py"}, sorted(top)  # fmt: skip
    for path, module in MODULES.items():
        stage = (module.split(".") + [""])[1]
        used = {n.split(".")[1] for n in _imports(path) if n.startswith("nas.") and n.count(".") >= 2}
        assert not used & LATER.get(stage, set()), f"{module} imports {sorted(used & LATER[stage])}"


def test_a_deployed_model_loads_no_search_and_no_training():
    code = (
        "import sys, nas.deploy.artifact, nas.deploy.classifier, nas.deploy.demo, nas.deploy.latency\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('nas.evolve', 'nas.training')))\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_import_cycle_inside_the_package():
    known = set(MODULES.values())
    graph = {mod: {n for n in _imports(p) if n in known and n != mod} for p, mod in MODULES.items()}
    graph = {mod: deps - {"nas"} for mod, deps in graph.items()}  # the package's lazy __getattr__ is no edge
    done, path = set(), []

    def visit(mod: str) -> None:
        if mod in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(mod) :], mod]))
        if mod not in done:
            path.append(mod)
            for dep in sorted(graph[mod]):
                visit(dep)
            path.pop()
            done.add(mod)

    for mod in sorted(graph):
        visit(mod)


def test_the_cli_only_parses_flags_and_calls_the_api():
    nas_modules = {n for n in _imports(PACKAGE / "cli.py") if n.startswith("nas.") and n in set(MODULES.values())}
    # demo: DemoConfig's defaults for --help; config, training.options and settings: the declared settings
    # the flags derive from
    allowed = {"nas.api", "nas.errors", "nas.evolve.progress", "nas.deploy.demo", "nas.config", "nas.settings",
               "nas.training.options"}  # fmt: skip
    assert nas_modules <= allowed, sorted(nas_modules - allowed)


def test_genomes_and_search_logic_need_no_torch():
    code = (
        "import sys, nas, nas.genome.grammar, nas.genome.space, nas.genome.blocks, nas.evolve.problem, "
        "nas.evolve.runner, nas.evolve.algorithms.nsga2, nas.evolve.algorithms.random_search\n"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["demo", "--help"], ["evolve", "--help"]])
def test_help_answers_without_importing_torch(argv):
    code = (
        f"import sys\nfrom nas.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_every_flag_of_every_command_has_help_and_shows_its_default():
    import argparse

    from nas.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        text = parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"nas {name} {action.option_strings or action.dest}: no help"
            if action.option_strings and action.default not in (None, False):
                assert "default" in parser._get_formatter()._get_help_string(action), (name, action.dest)
        assert "-q, --quiet" in text and "-v, --verbose" in text


def test_the_clis_literal_choices_are_the_librarys_names():
    """Some choices are spelled out where importing their modules would import torch for --help: kept equal."""
    import argparse

    from nas.cli import build_parser
    from nas.config import CHAMPION_RULES
    from nas.evolve.algorithms import ALGORITHMS
    from nas.evolve.runner import RULE_METRIC
    from nas.training.loop import RECIPES
    from nas.training.options import CLASS_BALANCE, RECIPE_NAMES

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    choices = {(c, a.dest): list(a.choices) for c, p in sub.choices.items() for a in p._actions if a.choices}
    assert set(choices["evolve", "algorithm"]) == set(ALGORITHMS)
    assert choices["evolve", "champion_rule"] == list(CHAMPION_RULES) and set(CHAMPION_RULES) == {*RULE_METRIC, "knee"}
    assert choices["evolve", "class_balance"] == choices["train", "class_balance"] == list(CLASS_BALANCE)
    assert choices["train", "recipe"] == ["auto", "tuned", "searched", *RECIPES] and tuple(RECIPES) == RECIPE_NAMES


def test_the_readme_is_a_front_door_and_every_link_in_the_docs_resolves():
    import re

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text().splitlines()
    ci = (root / ".ci/run").read_text()
    test_command = next(line for line in readme if "pytest" in line and line.startswith("python3 -m venv"))
    assert len(readme) <= 200 and readme.index(test_command) < 40
    assert test_command.split("&& python -m pytest")[0].replace(" -q", "") in ci.replace(" -q", "")
    assert any("scripts/evolve.py --generations 30" in line for line in readme[:40])
    for doc in (root / "README.md", root / "CONTRIBUTING.md", *sorted((root / "docs").glob("*.md"))):
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name}: the link {target} leads nowhere"


def test_every_function_of_the_package_fits_on_a_screen():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}")
    assert not long, long
