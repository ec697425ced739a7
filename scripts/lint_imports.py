"""Run import-linter over the whole `metarec` import root, components and workflows included.

`metarec.components` and `metarec.workflows` live in the top-level folders `components/` and
`workflows/` (setuptools `package-dir`), not under `platform/metarec/`. import-linter (grimp) builds
its graph by walking the root package's folder, so under an editable install it would never see
them. This script stages the import root as setuptools installs it — a temporary `metarec/` folder
of symbolic links to `platform/metarec/*`, `components/` and `workflows/` — puts it first on
`PYTHONPATH` and runs `lint-imports` with the contracts in `pyproject.toml`.

Usage (from anywhere): `python scripts/lint_imports.py [lint-imports options]`,
e.g. `--verbose`, `--contract <id>`, or a config file to check instead of `pyproject.toml`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def stage_import_root(target: Path) -> Path:
    """Lay out `metarec` under `target` as an installed copy would be (links, no copies)."""
    package_dir = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    root = target / "metarec"
    root.mkdir(parents=True)
    for entry in (REPO / package_dir["metarec"]).iterdir():
        if entry.name != "__pycache__":
            (root / entry.name).symlink_to(entry)
    for name, path in package_dir.items():
        if name == "metarec":
            continue
        relative = name.split(".")[1:]  # e.g. metarec.components -> components
        link = root.joinpath(*relative)
        if link.exists() or link.is_symlink():
            msg = f"{name} ({path}) collides with {link}: rename one of them"
            raise SystemExit(msg)
        link.symlink_to(REPO / path)
    return target


def lint_imports_executable() -> str:
    """`lint-imports` next to this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "lint-imports"
    found = str(beside) if beside.exists() else shutil.which("lint-imports")
    if not found:
        msg = "lint-imports not found: install the dev extra (pip install -e '.[dev]')"
        raise SystemExit(msg)
    return found


def run_lint_imports(
    staged: Path, argv: list[str], *, capture: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run `lint-imports` from the repository root with `staged` first on `PYTHONPATH`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(staged), env.get("PYTHONPATH")]))
    command = [lint_imports_executable(), "--no-cache", *argv]
    return subprocess.run(
        command, cwd=REPO, env=env, check=False, capture_output=capture, text=True
    )


def main(argv: list[str]) -> int:
    """Stage the import root, run lint-imports, return its exit code (0: every contract kept)."""
    with tempfile.TemporaryDirectory(prefix="metarec-import-root-") as tmp:
        return run_lint_imports(stage_import_root(Path(tmp)), argv).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
