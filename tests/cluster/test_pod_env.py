"""The harness resolves a container's env as Kubernetes does (no services needed)."""

from __future__ import annotations

import base64
import sys

import pytest

# Loaded from its file by tests/cluster/conftest.py (tests/ is not a package).
workloads = sys.modules["metarec_tests_cluster_workloads"]

DOCS = [
    {"kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"A": "from-cm", "B": "b"}},
    {
        "kind": "Secret",
        "metadata": {"name": "rendered"},
        "data": {"token": base64.b64encode(b"s3cret").decode()},
        "stringData": {"plain": "p"},
    },
]
EXISTING = {"pre": {"url": "postgresql://db"}}
POD = {"metadata.namespace": "ns", "metadata.name": "pod-1"}


def _env(container):
    objects = workloads.Objects.of(DOCS, secrets=EXISTING)
    return workloads.container_env(container, objects, pod=POD)


def test_env_from_then_env_in_order_with_references_and_field_refs():
    env = _env(
        {
            "envFrom": [
                {"configMapRef": {"name": "cm"}},
                {"secretRef": {"name": "pre"}, "prefix": "X_"},
            ],
            "env": [
                {"name": "A", "value": "literal wins over envFrom"},
                {
                    "name": "TOKEN",
                    "valueFrom": {"secretKeyRef": {"name": "rendered", "key": "token"}},
                },
                {
                    "name": "PLAIN",
                    "valueFrom": {"secretKeyRef": {"name": "rendered", "key": "plain"}},
                },
                {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "B"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "JOINED", "value": "$(C)-$(NS)-$(UNDEFINED)"},
                {
                    "name": "GONE",
                    "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}},
                },
            ],
        }
    )
    assert env == {
        "A": "literal wins over envFrom",
        "B": "b",
        "X_url": "postgresql://db",
        "TOKEN": "s3cret",
        "PLAIN": "p",
        "C": "b",
        "NS": "ns",
        "JOINED": "b-ns-$(UNDEFINED)",
    }


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"secretKeyRef": {"name": "missing", "key": "k"}}, "Secret 'missing' not found"),
        ({"secretKeyRef": {"name": "pre", "key": "nokey"}}, "Secret 'pre' has no key 'nokey'"),
        ({"configMapKeyRef": {"name": "cm", "key": "Z"}}, "ConfigMap 'cm' has no key 'Z'"),
    ],
)
def test_a_missing_reference_keeps_the_container_from_starting(item, message):
    with pytest.raises(workloads.PodConfigError, match=message):
        _env({"env": [{"name": "V", "valueFrom": item}]})


def test_the_image_entrypoint_is_this_checkouts_metarec():
    argv = workloads.local_argv({"command": ["metarec"], "args": ["features", "materialize"]})
    assert argv[0].endswith("/bin/metarec") and argv[1:] == ["features", "materialize"]
