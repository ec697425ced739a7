"""The service module stays light to import: `bentoml serve`'s own process only reads it."""

import subprocess
import sys


def test_importing_the_service_module_loads_neither_torch_nor_feast():
    code = (
        "import sys, metarec.serving.service as s; "
        "print(s.AdaptationService.name, sorted(m for m in ('torch', 'feast') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "metarec_adaptation []"
