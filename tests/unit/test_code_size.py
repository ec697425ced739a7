"""Size budgets of issue 17: no module of the package over 450 lines, no function over 60.

Tests are exempt; everything else that ships or runs (the package, components, workflows,
benchmarks, scripts) is measured by `scripts/longfn.py`, which prints the offenders.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MEASURED = ["platform/metarec", "components", "workflows", "benchmarks", "scripts"]


def _oversized():
    spec = importlib.util.spec_from_file_location("longfn", REPO / "scripts" / "longfn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.oversized


def test_no_function_over_60_lines_and_no_module_over_450():
    found = _oversized()([REPO / d for d in MEASURED])
    assert not found, "split these (lines, file, function):\n" + "\n".join(found)


def test_the_budget_check_sees_an_oversized_function_and_module(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    (tmp_path / "big.py").write_text(f"def long():\n{body}\n" + "\n" * 400)
    found = _oversized()([tmp_path])
    assert any(line.endswith("long") and line.startswith("62 ") for line in found), found
    assert any(line.endswith("<module>") for line in found), found
