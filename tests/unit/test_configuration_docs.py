"""docs/configuration.md lists every setting with its environment variable."""

from pathlib import Path

from metarec.config import Settings
from pydantic import BaseModel

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _settings(model: type[BaseModel], prefix: str = "", env: str = "METAREC_"):
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _settings(annotation, f"{prefix}{name}.", f"{env}{name.upper()}__")
        else:
            yield f"{prefix}{name}", f"{env}{name.upper()}"


def test_every_setting_is_documented_with_its_environment_variable():
    text = DOC.read_text()
    missing = [
        name
        for name, env in _settings(Settings)
        if f"`{name}`" not in text or f"`{env}`" not in text
    ]
    assert not missing, f"document these settings in docs/configuration.md: {missing}"
