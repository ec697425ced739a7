"""The privilege sets of the registry's database roles (no database: see
tests/integration/test_registry_roles.py for PostgreSQL)."""

from __future__ import annotations

from metarec.registry.grants import MANAGED_TABLES, OPTUNA_TABLES, render, role_privileges


def test_serving_only_reads_and_nobody_but_the_owner_deletes_registry_rows():
    plan = role_privileges({"serving": "s", "controller": "c", "writer": "w"})
    assert {p for privileges in plan["s"].values() for p, _ in privileges} == {"SELECT"}
    for role in plan.values():
        for table, privileges in role.items():
            forbidden = {"TRUNCATE", "TRIGGER", "REFERENCES"}
            if table not in OPTUNA_TABLES:  # trials are rows of the writer's own work
                forbidden.add("DELETE")
            assert not {p for p, _ in privileges} & forbidden, table


def test_the_controller_updates_only_the_stage_of_a_version():
    plan = role_privileges({"controller": "c"})
    assert render(plan["c"]["registry_versions"]) == ["SELECT", "UPDATE (stage)"]
    assert ("INSERT", None) in plan["c"]["registry_ledger"]
    assert ("UPDATE", None) not in plan["c"]["registry_ledger"]


def test_one_role_for_two_workloads_gets_both_sets_and_every_table_is_managed():
    plan = role_privileges({"controller": "shared", "writer": "shared", "serving": None})
    assert set(plan) == {"shared"} and set(plan["shared"]) == set(MANAGED_TABLES)
    assert render(plan["shared"]["registry_versions"]) == [
        "INSERT",
        "SELECT",
        "UPDATE (bento_tag, stage)",
    ]
