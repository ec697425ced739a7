"""The rollout core talks to services only through its interfaces."""

from __future__ import annotations

import ast
from pathlib import Path

import metarec.rollout

ROLLOUT = Path(metarec.rollout.__file__).parent
FORBIDDEN = ("metarec.serving", "metarec.components", "metarec.workflows", "bentoml", "prefect")


def test_rollout_never_imports_a_concrete_service_or_orchestrator():
    for path in ROLLOUT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(FORBIDDEN), f"{path.name} imports {name}"


def test_decide_module_is_pure():
    source = (ROLLOUT / "analysis.py").read_text()
    imported = {
        node.module
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= {"__future__", "metarec.rollout.types"}
