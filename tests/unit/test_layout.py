import importlib
import sys
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


def test_core_never_imports_workflows_components_or_orchestrators():
    forbidden = ("metarec.components", "metarec.workflows", "prefect", "kfp")
    offenders = []
    for path in (REPO / "platform" / "metarec").rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")) and any(
                stripped.split()[1] == name or stripped.split()[1].startswith(name + ".")
                for name in forbidden
            ):
                offenders.append(f"{path.relative_to(REPO)}: {stripped}")
    assert not offenders, offenders


def test_learning_core_depends_on_torch_and_numpy_only():
    allowed_third_party = {"torch", "numpy"}
    learning = REPO / "platform" / "metarec" / "learning"
    offenders = []
    for path in learning.rglob("*.py"):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if not stripped.startswith(("import ", "from ")):
                continue
            module = stripped.split()[1].split(".")[0]
            if (
                module in sys.stdlib_module_names
                or module in allowed_third_party
                or module == "__future__"
            ):
                continue
            if module == "metarec" and stripped.split()[1].startswith(
                ("metarec.learning", "metarec.errors")
            ):
                continue
            offenders.append(f"{path.relative_to(REPO)}: {stripped}")
    assert not offenders, offenders
