"""Fixtures of the integration tests: the S3-compatible server (``tests/s3_server.py``).

``tests/`` is not a package (``--import-mode=importlib``), so the module is loaded from its file
and registered once under ``metarec_tests_s3_server``; its fixtures are re-exported here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_NAME = "metarec_tests_s3_server"


def _load_s3_server() -> ModuleType:
    if _NAME in sys.modules:
        return sys.modules[_NAME]
    path = Path(__file__).resolve().parents[1] / "s3_server.py"
    spec = importlib.util.spec_from_file_location(_NAME, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = module
    spec.loader.exec_module(module)
    return module


_s3_server = _load_s3_server()
s3_server = _s3_server.s3_server
s3 = _s3_server.s3
