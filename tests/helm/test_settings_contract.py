"""Every METAREC_* variable the chart sets is one MetaRec's settings accept (unknown keys would
crash the pod at start: settings forbid them)."""

import os

import pytest
from metarec.config import load_settings


def test_every_container_environment_loads_as_settings(manifests, monkeypatch):
    checked = 0
    for name, container in manifests.containers():
        env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        secret_backed = {e["name"] for e in container.get("env", []) if "valueFrom" in e}
        metarec_vars = {k: v for k, v in env.items() if k.startswith("METAREC_")}
        if not metarec_vars and not secret_backed:
            continue
        for key in [k for k in os.environ if k.startswith("METAREC_")]:
            monkeypatch.delenv(key, raising=False)
        for key, value in metarec_vars.items():
            monkeypatch.setenv(key, value)
        for key in secret_backed:
            if key.startswith("METAREC_"):
                monkeypatch.setenv(key, "from-a-secret")
        try:
            load_settings()
        except Exception as exc:
            pytest.fail(f"{name}: {exc}")
        checked += 1
    assert checked >= 3
