"""The service module stays light to import: `bentoml serve`'s own process only reads it."""

import json
import os
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


def describe_service(direct_endpoints: str) -> dict:
    """How the service is built, read in a fresh interpreter (the module reads its settings)."""
    code = (
        "import json, metarec.serving.service as s; svc = s.AdaptationService; "
        "spec = svc.openapi_spec.asdict(); "
        "print(json.dumps({'apis': sorted(svc.apis), "
        "'mounted': [type(app).__name__ for app, *_ in svc.mount_apps], "
        "'config': svc.config, 'paths': sorted(spec['paths']), "
        "'recommend': spec['paths']['/recommend']['post'].get('requestBody')}))"
    )
    env = {**os.environ, "METAREC_SERVING__DIRECT_ENDPOINTS": direct_endpoints}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=env,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_direct_endpoints_are_a_mounted_app_skipped_by_access_log_and_tracing():
    built = describe_service("true")
    assert built["apis"] == []  # no @bentoml.api route in front of the mounted app
    assert built["mounted"] == ["Starlette", "FastAPI"]  # the endpoints' app is matched first
    assert {"/recommend", "/predict", "/feedback"} <= set(
        built["config"]["logging"]["access"]["skip_paths"]
    )
    assert built["config"]["tracing"]["excluded_urls"] == ["/recommend$", "/predict$", "/feedback$"]
    assert {"/recommend", "/predict", "/feedback", "/metadata"} <= set(built["paths"])
    schema = built["recommend"]["content"]["application/json"]["schema"]
    assert "$ref" not in json.dumps(schema)  # self-contained: the OpenAPI document has no $defs
    assert {"user_id", "support", "candidates", "k"} <= set(schema["properties"])


def test_without_direct_endpoints_bentoml_answers_them_with_all_its_layers():
    built = describe_service("false")
    assert built["apis"] == ["feedback", "predict", "recommend"]
    assert built["mounted"] == ["FastAPI"]
    assert "logging" not in built["config"] and "tracing" not in built["config"]
    assert {"/recommend", "/predict", "/feedback", "/metadata"} <= set(built["paths"])


def test_the_garbage_collector_is_tuned_once_the_model_is_loaded():
    """Start-up objects frozen; young collections above what requests in flight hold."""
    code = (
        "import gc, metarec.serving.service as s; s.tune_garbage_collector(); "
        "print(list(gc.get_threshold()), gc.get_freeze_count() > 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[10000, 10, 100] True"
