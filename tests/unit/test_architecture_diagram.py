"""The package diagram in docs/architecture.md is the one the contracts and imports draw today."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("grimp") is None,
    reason="grimp (with import-linter) is not installed: pip install -e '.[dev]'",
)


def _script():
    path = REPO / "scripts" / "architecture_diagram.py"
    spec = importlib.util.spec_from_file_location("architecture_diagram", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_documented_diagram_is_the_generated_one():
    diagram = _script()
    documented = diagram.DOC.read_text()
    block = diagram.render()
    assert diagram.replace_block(documented, block) == documented, (
        "docs/architecture.md's diagram is stale: "
        "run python scripts/architecture_diagram.py --write"
    )


def test_the_diagram_draws_every_layer_and_forbidden_arrow():
    block = _script().render()
    assert "L0 --> L1" in block
    assert 'registry -.-x|"registry-knows-no-consumer"| gate' in block
    assert 'rollout -.-x|"rollout-no-service"| serving' in block
    assert "training --> learning" in block  # an import that exists today


def test_replace_block_swaps_only_the_generated_part():
    diagram = _script()
    text = f"before\n{diagram.BEGIN}\nold\n{diagram.END}\nafter\n"
    replaced = diagram.replace_block(text, f"{diagram.BEGIN}\nnew\n{diagram.END}")
    assert replaced == f"before\n{diagram.BEGIN}\nnew\n{diagram.END}\nafter\n"
