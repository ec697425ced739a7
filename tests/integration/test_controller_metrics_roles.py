"""The controller's /metrics reads the registry under its least-privilege PostgreSQL role.

The collector's queries (models, versions, ledger, rollouts) must run as the ``controller`` login
role that `metarec db upgrade` grants; the ``serving`` role, which may not read the ledger or the
rollouts, gets a read error from a scrape, never a failed one. Skipped without PostgreSQL at
``metarec.testing.registry.POSTGRES_URL`` (the fixtures of test_registry_roles.py).
"""

from __future__ import annotations

import pytest
from metarec import metrics_contract as contract
from metarec.ops.control_metrics import control_metrics_registry
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_registry_roles import Roles, roles, upgraded  # noqa: F401

pytestmark = pytest.mark.integration


def scrape_as(schema: Roles, workload: str) -> dict[tuple[str, tuple], float]:
    with schema.open(workload) as registry:
        text = generate_latest(control_metrics_registry(registry.engine)).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_controller_role_may_read_every_series(upgraded):  # noqa: F811
    found = scrape_as(upgraded, "controller")
    assert found[(contract.REGISTRY_READ_ERROR, ())] == 0
    registered = (contract.REGISTRY_EVENTS, (("action", "register"), ("model", "metarec")))
    assert found[registered] == 2
    assert found[(contract.STAGING_VERSION, (("model", "metarec"),))] == 2
    initializing = (("model", "metarec"), ("phase", "Initializing"), ("version", "2"))
    assert found[(contract.ROLLOUT_PHASE, initializing)] == 1
    assert (contract.LAST_TRAINING, (("model", "metarec"),)) in found


def test_a_role_without_the_ledger_gets_a_read_error_not_a_failed_scrape(upgraded):  # noqa: F811
    assert scrape_as(upgraded, "serving") == {(contract.REGISTRY_READ_ERROR, ()): 1}
