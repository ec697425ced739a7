"""`helm lint`, and every rendered manifest against the Kubernetes schemas (1.30 and 1.33)."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest

GATEWAY_API = "gateway.networking.k8s.io/v1"
MONITORING_API = "monitoring.coreos.com/v1"
FLAGGER_API = "flagger.app/v1beta1"
# Not core APIs (kubernetes-validate bundles no schema for them): each is checked against a schema
# written from its upstream CRD (the HTTPRoute below, the monitors in test_monitoring.py, the
# Flagger Canary and MetricTemplates in test_flagger.py).
CUSTOM_APIS = {
    GATEWAY_API,
    MONITORING_API,
    FLAGGER_API,
    "kubeflow.org/v1beta1",  # Katib Experiment (test_tuning_and_distributed.py)
    "trainer.kubeflow.org/v1alpha1",  # Kubeflow Trainer TrainJob (same)
    "kubeflow.org/v1",  # PyTorchJob of the training operator (same)
}

# The HTTPRoute (gateway.networking.k8s.io/v1, standard channel) fields the chart uses, with the
# types and bounds of the Gateway API spec; unknown fields are rejected at every level.
_NAME = {"type": "string", "minLength": 1, "maxLength": 253}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
HTTPROUTE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": GATEWAY_API},
        "kind": {"const": "HTTPRoute"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": _NAME,
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "additionalProperties": False,
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "parentRefs": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 32,
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "group": {"const": "gateway.networking.k8s.io"},
                            "kind": {"const": "Gateway"},
                            "name": _NAME,
                            "namespace": {"type": "string", "minLength": 1, "maxLength": 63},
                            "sectionName": {"type": "string", "minLength": 1, "maxLength": 253},
                            "port": _PORT,
                        },
                    },
                },
                "hostnames": {
                    "type": "array",
                    "maxItems": 16,
                    "items": {"type": "string", "minLength": 1, "maxLength": 253},
                },
                "rules": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 16,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "matches": {
                                "type": "array",
                                "maxItems": 64,
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "path": {
                                            "type": "object",
                                            "additionalProperties": False,
                                            "required": ["type", "value"],
                                            "properties": {
                                                "type": {
                                                    "enum": [
                                                        "Exact",
                                                        "PathPrefix",
                                                        "RegularExpression",
                                                    ]
                                                },
                                                "value": {
                                                    "type": "string",
                                                    "pattern": "^/",
                                                    "maxLength": 1024,
                                                },
                                            },
                                        }
                                    },
                                },
                            },
                            "backendRefs": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": 16,
                                "items": {
                                    "type": "object",
                                    "required": ["name", "port"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "group": {"const": ""},
                                        "kind": {"const": "Service"},
                                        "name": _NAME,
                                        "port": _PORT,
                                        "weight": {
                                            "type": "integer",
                                            "minimum": 0,
                                            "maximum": 1000000,
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
            "required": ["parentRefs", "rules"],
        },
    },
}


def test_helm_lint_passes_with_default_and_gpu_values(chart):
    for extra in ([], ["-f", str(chart.gpu_values)]):
        proc = chart.run("lint", "--strict", str(chart.path), *extra)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "0 chart(s) failed" in proc.stdout


def test_both_value_sets_render_the_expected_objects(default, gpu_embedded, gpu, chart):
    for m in (default, gpu_embedded):
        assert {"Deployment", "Service", "HTTPRoute", "CronJob", "ConfigMap", "Role"} <= {
            d["kind"] for d in m.docs
        }
        assert not m.of_kind("Secret"), "the chart must never create Secrets"
    assert chart.name("serving-canary") not in default.names("Deployment")
    assert chart.name("serving-canary") in gpu_embedded.names("Deployment")
    assert chart.name("feast") in gpu.names("Deployment")
    assert {"Canary", "MetricTemplate", "PodMonitor"} <= {d["kind"] for d in gpu.docs}
    assert not gpu.of_kind("Secret"), "the chart must never create Secrets"


@pytest.mark.parametrize("version", ["1.30", "1.33"])
def test_every_manifest_validates_strictly_against_kubernetes(manifests, version):
    checked = 0
    for doc in manifests.docs:
        if doc["apiVersion"] in CUSTOM_APIS:
            continue  # not a core API: checked against the Gateway API schema below
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} invalid for {version}: {exc}")
        checked += 1
    assert checked >= 15


@pytest.mark.parametrize("version", ["1.30", "1.33"])
def test_strict_validation_catches_an_unknown_field(default, version):
    doc = copy.deepcopy(default.of_kind("Deployment")[0])
    doc["spec"]["template"]["spec"]["containers"][0]["resourcez"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, version, strict=True)


def test_httproute_matches_the_gateway_api_v1_structure(manifests):
    (route,) = manifests.of_kind("HTTPRoute")
    jsonschema.validate(route, HTTPROUTE_SCHEMA)
    services = {s["metadata"]["name"]: s for s in manifests.of_kind("Service")}
    for rule in route["spec"]["rules"]:
        for ref in rule["backendRefs"]:
            assert ref["name"] in services, f"backendRef to a Service the chart lacks: {ref}"
            ports = {p["port"] for p in services[ref["name"]]["spec"]["ports"]}
            assert ref["port"] in ports


def test_httproute_schema_rejects_a_misspelt_field(default):
    (route,) = default.of_kind("HTTPRoute")
    bad = copy.deepcopy(route)
    bad["spec"]["rules"][0]["backendRefs"][0]["weigth"] = 5
    with pytest.raises(jsonschema.ValidationError, match="weigth"):
        jsonschema.validate(bad, HTTPROUTE_SCHEMA)


@pytest.mark.parametrize("version", ["1.30", "1.33"])
def test_kubernetes_validate_cli_accepts_the_gpu_production_render(gpu, version, tmp_path):
    """The acceptance command itself: `kubernetes-validate --strict` over the rendered output."""
    cli = shutil.which("kubernetes-validate") or str(
        Path(sys.executable).parent / "kubernetes-validate"
    )
    out = tmp_path / "metarec.yaml"
    out.write_text(gpu.text)
    proc = subprocess.run(
        [cli, "--strict", "-k", version, str(out)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    passed = [line for line in proc.stdout.splitlines() if line.startswith("INFO")]
    custom = [d for d in gpu.docs if d["apiVersion"] in CUSTOM_APIS]
    assert len(passed) == len(gpu.docs) - len(custom)  # all but the CRD kinds (no schema bundled)
    assert "Canary" in proc.stdout + proc.stderr  # reported as a kind without a schema


def test_client_dry_run_install_renders_the_notes(chart):
    proc = chart.run(
        "install",
        chart.release,
        str(chart.path),
        "--namespace",
        chart.namespace,
        "--dry-run=client",
        "-f",
        str(chart.gpu_values),
    )
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert (
        "metarec-postgresql: keys owner-url, serving-url, controller-url, registry-url, "
        "feast-registry-url" in notes
    )
    # Production trains on 2 nodes: the TrainJob is started by unsuspending it.
    assert f"patch trainjob {chart.name('train-distributed')} --type merge" in notes
    assert "prefect work-pool create metarec-gpu --type kubernetes" in notes


@pytest.mark.parametrize("kube_version", ["1.30.0", "1.33.0"])
def test_renders_for_the_target_kubernetes_versions(chart, kube_version):
    proc = chart.run(
        "template",
        "x",
        str(chart.path),
        "--kube-version",
        kube_version,
        "-f",
        str(chart.gpu_values),
    )
    assert proc.returncode == 0, proc.stderr


def test_kubernetes_older_than_1_30_is_refused(chart):
    proc = chart.run("template", "x", str(chart.path), "--kube-version", "1.29.0")
    assert proc.returncode != 0
    assert "kubeVersion" in proc.stderr or "incompatible" in proc.stderr
