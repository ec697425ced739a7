"""The HTML report of a validation result: one self-contained page (jinja2)."""

from __future__ import annotations

import os
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from metarec.validation.result import ValidationResult

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


def render_report(result: ValidationResult) -> str:
    """Render the report page of ``result``."""
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html", "j2"]),
        keep_trailing_newline=True,
    )
    return environment.get_template("report.html.j2").render(result=result)


def write_report(result: ValidationResult, path: Path) -> Path:
    """Write the report page of ``result`` to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render_report(result), encoding="utf-8")
    os.replace(tmp, path)
    return path
