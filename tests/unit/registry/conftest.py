"""A fresh SQLite registry (BentoML export off) and fixture artifacts per test."""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from metarec.registry import Registry
from metarec.testing.registry import register_fixture, write_fixture_artifact


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry.connect(
        url=f"sqlite:///{tmp_path / 'registry.db'}", artifact_root=str(tmp_path / "artifacts")
    ) as opened:
        yield opened


@pytest.fixture
def artifact(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(10_000))

    def make(**kwargs: Any) -> Path:
        seed = kwargs.pop("seed", next(counter))
        return write_fixture_artifact(tmp_path / f"candidate-{seed}", seed=seed, **kwargs)

    return make


@pytest.fixture
def register(registry: Registry, tmp_path: Path) -> Callable[..., Any]:
    counter = iter(range(100, 10_000))

    def make(**kwargs: Any) -> Any:
        seed = kwargs.pop("seed", next(counter))
        return register_fixture(registry, tmp_path / f"registered-{seed}", seed=seed, **kwargs)

    return make
