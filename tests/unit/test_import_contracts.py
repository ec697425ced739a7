"""The layer contracts in pyproject.toml ([tool.importlinter]) hold, and they do catch violations.

The contracts run through `scripts/lint_imports.py`, which stages the import root as installed
(components and workflows inside `metarec`) and runs import-linter's `lint-imports` on it.
"""

from __future__ import annotations

import importlib.util
import shutil
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "lint_imports.py"
ORCHESTRATION = {"components", "workflows"}

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("importlinter") is None,
    reason="import-linter is not installed: pip install -e '.[dev]'",
)


def _script():
    spec = importlib.util.spec_from_file_location("lint_imports", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {contract["id"]: contract for contract in config["contracts"]}


def _top_level_packages(staged: Path) -> set[str]:
    root = staged / "metarec"
    packages = {path.name for path in root.iterdir() if (path / "__init__.py").exists()}
    modules = {path.stem for path in root.glob("*.py") if path.stem != "__init__"}
    return packages | modules


def test_every_contract_is_kept(tmp_path):
    lint = _script()
    result = lint.run_lint_imports(lint.stage_import_root(tmp_path), ["--no-logo"], capture=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for contract in _contracts().values():
        assert f"{contract['name']} KEPT" in output, output
    assert "0 broken" in output


def _named(contract: dict, field: str) -> set[str]:
    named = (m.removeprefix("metarec.") for m in contract[field] if m.startswith("metarec."))
    return {m.removesuffix(".**") for m in named}


def test_core_lists_name_every_package_of_the_core(tmp_path):
    """A new package of `metarec` must join the contracts that list the core by name."""
    staged = _script().stage_import_root(tmp_path)
    core = _top_level_packages(staged) - ORCHESTRATION
    contracts = _contracts()
    listed = _named(contracts["core-no-orchestration"], "source_modules")
    assert listed == core, f"update core-no-orchestration: {listed ^ core}"
    production = (core - {"testing"}) | ORCHESTRATION
    listed = _named(contracts["no-fixtures-in-production"], "source_modules")
    assert listed == production, f"update no-fixtures-in-production: {listed ^ production}"
    others = (core | ORCHESTRATION) - {"learning"}
    listed = _named(contracts["learning-pure"], "forbidden_modules")
    assert listed == others, f"update learning-pure: {listed ^ others}"


def test_a_broken_contract_fails(tmp_path):
    """A contract the code base violates (learning imports torch) is reported broken."""
    config = tmp_path / "violated.toml"
    config.write_text(
        "[tool.importlinter]\n"
        'root_packages = ["metarec"]\n'
        "include_external_packages = true\n\n"
        "[[tool.importlinter.contracts]]\n"
        'name = "Learning must not import torch"\n'
        'type = "forbidden"\n'
        'source_modules = ["metarec.learning"]\n'
        'forbidden_modules = ["torch"]\n'
    )
    lint = _script()
    staged = lint.stage_import_root(tmp_path / "root")
    result = lint.run_lint_imports(staged, ["--no-logo", str(config)], capture=True)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Learning must not import torch BROKEN" in output, output
    assert "metarec.learning.model -> torch" in output, output


def test_a_violating_import_breaks_the_real_contracts(tmp_path):
    """A learning module importing the registry, pandas and the CLI breaks the real contracts."""
    lint = _script()
    staged = lint.stage_import_root(tmp_path)
    learning = staged / "metarec" / "learning"
    target = learning.resolve()
    learning.unlink()
    shutil.copytree(target, learning, ignore=shutil.ignore_patterns("__pycache__"))
    (learning / "violation.py").write_text(
        "import pandas\n\n"
        "from metarec.cli.console import console\n"
        "from metarec.registry import Registry\n"
    )
    result = lint.run_lint_imports(staged, ["--no-logo"], capture=True)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    contracts = _contracts()
    assert f"{contracts['learning-pure']['name']} BROKEN" in output, output
    assert "metarec.learning.violation -> metarec.registry" in output, output
    assert "metarec.learning.violation -> pandas" in output, output
    assert f"{contracts['layers']['name']} BROKEN" in output, output  # domain -> face
    assert "metarec.learning.violation -> metarec.cli.console" in output, output
