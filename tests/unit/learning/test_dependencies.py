"""The learning core depends on torch and numpy alone (ARCHITECTURE.md, dependency direction)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import metarec.learning

ALLOWED = {"torch", "numpy", "metarec"}


def test_learning_imports_only_torch_numpy_and_itself():
    root = Path(metarec.learning.__file__).parent
    offenders = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                foreign_metarec = top == "metarec" and not name.startswith("metarec.learning")
                third_party = top not in ALLOWED and top not in sys.stdlib_module_names
                if foreign_metarec or third_party:
                    offenders.append(f"{path.name}: {name}")
    assert not offenders, offenders
