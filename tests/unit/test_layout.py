"""Layout checks import-linter cannot express: the `platform` folder, package declarations.

The import rules (the core never imports components, workflows, Prefect or KFP; the learning core
imports nothing else of metarec) are import-linter contracts in pyproject.toml, checked by
tests/unit/test_import_contracts.py.
"""

import importlib
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_platform_is_the_standard_library_module():
    import platform

    assert hasattr(platform, "python_version")
    assert Path(platform.__file__).parent == Path(importlib.import_module("os").__file__).parent
    assert not (REPO / "platform" / "__init__.py").exists()


def test_every_package_folder_is_declared_in_pyproject():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(config["packages"])
    roots = {name: REPO / path for name, path in config["package-dir"].items()}
    found = set()
    for name, root in roots.items():
        for init in root.rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                found.add(".".join((name, *init.parent.relative_to(root).parts)))
    missing = found - declared
    assert not missing, (
        f"add these packages to pyproject.toml [tool.setuptools] packages: {missing}"
    )


def test_components_and_workflows_install_under_metarec():
    assert importlib.import_module("metarec.components").__file__.startswith(
        str(REPO / "components")
    )
    assert importlib.import_module("metarec.workflows").__file__.startswith(str(REPO / "workflows"))
