"""docs/configuration.md lists every setting with its environment variable."""

import types
import typing
from pathlib import Path

from metarec.config import Settings
from pydantic import BaseModel

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _models(annotation) -> list[type[BaseModel]]:
    """The settings model(s) a field holds: one model, or every member of a tagged union."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return []  # a scalar, or a list of models (e.g. tolerations): one setting
    members = typing.get_args(annotation)
    if all(isinstance(m, type) and issubclass(m, BaseModel) for m in members):
        return list(members)
    return []


def _settings(model: type[BaseModel], prefix: str = "", env: str = "METAREC_"):
    for name, field in model.model_fields.items():
        models = _models(field.annotation)
        if not models:
            yield f"{prefix}{name}", f"{env}{name.upper()}"
        for sub in models:
            yield from _settings(sub, f"{prefix}{name}.", f"{env}{name.upper()}__")


def test_every_setting_is_documented_with_its_environment_variable():
    text = DOC.read_text()
    missing = [
        name
        for name, env in _settings(Settings)
        if f"`{name}`" not in text or f"`{env}`" not in text
    ]
    assert not missing, f"document these settings in docs/configuration.md: {missing}"


def test_every_router_kind_is_walked():
    names = {name for name, _ in _settings(Settings)}
    assert {"rollout.router.kind", "rollout.router.listen_port", "rollout.router.url"} <= names
    assert "rollout.router.httproute" in names and "rollout.router" not in names
