"""Module boundaries the style guide asks for, kept by a test rather than by a comment."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nas"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("library, allowed", [("deap", {"evolve.py"}), ("optuna", {"tune.py", "optuna_search.py"}),
                                              ("matplotlib", {"report.py"})])  # fmt: skip
def test_only_one_module_imports_each_library(library, allowed):
    users = {p.name for p in PACKAGE.glob("*.py") if library in _imports(p)}
    assert users <= allowed, f"{library} imported by {sorted(users - allowed)}"


def test_the_genome_needs_no_torch():
    assert not {"torch", "numpy"} & _imports(PACKAGE / "genome.py")
