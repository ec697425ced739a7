"""Print the functions over a line budget (default 60) and the modules over 450 lines.

Usage: ``python scripts/longfn.py DIR [DIR ...] [--max-function 60] [--max-module 450]``.
Exit status 1 when anything is over budget. ``tests/unit/test_code_size.py`` runs the same check.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def oversized(roots: list[Path], *, max_function: int = 60, max_module: int = 450) -> list[str]:
    """``"LINES path name"`` for each function and module over its budget under ``roots``."""
    found = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            text = path.read_text()
            lines = text.count("\n")
            if lines > max_module:
                found.append(f"{lines} {path} <module>")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = node.end_lineno - node.lineno + 1
                    if length > max_function:
                        found.append(f"{length} {path} {node.name}")
    return found


def main() -> int:
    """Print what is over budget; 1 when anything is."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path)
    parser.add_argument("--max-function", type=int, default=60)
    parser.add_argument("--max-module", type=int, default=450)
    args = parser.parse_args()
    found = oversized(args.roots, max_function=args.max_function, max_module=args.max_module)
    print("\n".join(found))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
