"""The learning core depends on torch and numpy alone (ARCHITECTURE.md, dependency direction).

import-linter's `learning-pure` contract (pyproject.toml) forbids every other metarec package and
the heavy third-party ones by name; it cannot say "nothing but torch, numpy and the standard
library", so that allowlist stays here.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import metarec.learning

ALLOWED_THIRD_PARTY = {"torch", "numpy"}


def test_learning_imports_only_torch_numpy_the_standard_library_and_itself():
    root = Path(metarec.learning.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                own = name == "metarec.learning" or name.startswith("metarec.learning.")
                allowed = top in ALLOWED_THIRD_PARTY or top in sys.stdlib_module_names
                if not (own or allowed):
                    offenders.append(f"{path.relative_to(root)}: {name}")
    assert not offenders, offenders
