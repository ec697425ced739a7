"""Least-privilege database roles on a real PostgreSQL server (127.0.0.1:5432, db ``test``).

`metarec db upgrade` (``upgrade_registry``) migrates as the owner and grants three login roles
(created here with unique names, dropped at the end) their workloads' privileges in a unique
schema: the serving role reads versions and nothing else; the controller changes stages,
rollout state and appends to the ledger, but cannot rewrite a version's hashes or touch the
tables' definitions; the writer registers. A process opened with ``migrate_on_open`` off works
on a schema at head and refuses any other with the fix. Skipped with the reason when the server
does not answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from metarec.config import Settings, load_settings
from metarec.errors import RegistryError
from metarec.ops.database import registry_database_status, upgrade_registry
from metarec.registry import Registry, Stage, VersionRef
from metarec.rollout import Phase, RolloutSpec
from metarec.rollout.store import EventRecord, RolloutStore
from metarec.rollout.types import EventKind
from metarec.testing.registry import POSTGRES_URL, postgres_schema, register_fixture
from metarec.tuning.study import open_storage

pytestmark = pytest.mark.integration

WORKLOADS = ("serving", "controller", "writer")
DENIED = ("permission denied", "must be owner")


@dataclass
class Roles:
    """The owner's URL, each workload's login role and URL, and the artifact root."""

    owner_url: str
    names: dict[str, str]
    urls: dict[str, str]
    artifacts: str

    def settings(self, url: str | None = None, **registry: object) -> Settings:
        return load_settings(
            registry={
                "database_url": url or self.owner_url,
                "artifact_root": self.artifacts,
                "export_bentoml": False,
                "database_roles": self.names,
                **registry,
            }
        )

    def open(self, workload: str) -> Registry:
        return Registry.connect(
            url=self.urls[workload], artifact_root=self.artifacts, migrate=False
        )


@pytest.fixture
def roles(tmp_path: Path) -> Iterator[Roles]:
    try:
        owner_url, drop_schema = postgres_schema()
    except OSError as exc:
        print(f"SKIP reason: {exc}")
        pytest.skip(str(exc))
    suffix = uuid.uuid4().hex[:8]
    names = {workload: f"metarec_t{suffix}_{workload}" for workload in WORKLOADS}
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        for name in names.values():
            connection.execute(sa.text(f"CREATE ROLE {name} LOGIN"))
    urls = {w: owner_url.replace("//postgres@", f"//{n}@", 1) for w, n in names.items()}
    try:
        yield Roles(owner_url, names, urls, str(tmp_path / "artifacts"))
    finally:
        drop_schema()
        with admin.begin() as connection:
            for name in names.values():
                connection.execute(sa.text(f"DROP OWNED BY {name}"))
                connection.execute(sa.text(f"DROP ROLE {name}"))
        admin.dispose()


@pytest.fixture
def upgraded(roles: Roles, tmp_path: Path) -> Roles:
    """The schema at head with grants, one registered version and one rollout (owner-made)."""
    upgrade_registry(roles.settings())
    with Registry.connect(url=roles.owner_url, artifact_root=roles.artifacts) as owner:
        register_fixture(owner, tmp_path / "a1", seed=1)
        register_fixture(owner, tmp_path / "a2", seed=2)
        RolloutStore(engine=owner.engine).create(
            model="metarec", version=2, production_version=None, spec=RolloutSpec(), actor="t"
        )
    return roles


def run_as(url: str, statement: str) -> str | None:
    """Run ``statement`` as the URL's role; None when it succeeded (rolled back), else the error."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            try:
                connection.execute(sa.text(statement))
                return None
            except sa.exc.DBAPIError as exc:
                return str(exc.orig).splitlines()[0]
            finally:
                connection.rollback()
    finally:
        engine.dispose()


def assert_denied(url: str, statements: list[str]) -> None:
    allowed = [s for s in statements if not _denied(run_as(url, s))]
    assert not allowed, f"these statements were allowed: {allowed}"


def _denied(error: str | None) -> bool:
    return error is not None and any(word in error for word in DENIED)


WRITES = [
    "INSERT INTO registry_models (name, created_at) VALUES ('evil', now())",
    "UPDATE registry_versions SET stage = 'archived'",
    "UPDATE registry_versions SET files = '{}'",
    "UPDATE registry_versions SET digest = 'x'",
    "DELETE FROM registry_versions",
    "INSERT INTO registry_ledger (operation_id, model_id, action, actor, reason, evidence, "
    "created_at) VALUES ('x', 1, 'promote', 'evil', 'x', '{}', now())",
    "UPDATE rollout_runs SET phase = 'Failed'",
    "DELETE FROM rollout_events",
]
DDL = [
    "CREATE TABLE evil (id int)",
    "DROP TABLE registry_ledger",
    "ALTER TABLE registry_versions ADD COLUMN evil int",
    "DROP TRIGGER registry_ledger_no_change ON registry_ledger",
    "TRUNCATE registry_versions CASCADE",
]


def test_serving_role_reads_versions_and_cannot_write(upgraded: Roles):
    with upgraded.open("serving") as registry:
        assert [v.version for v in registry.list_versions("metarec")] == [1, 2]
        assert registry.read_card(VersionRef(model="metarec", version=1)) is not None
        with pytest.raises(RegistryError, match="permission denied"):
            registry.promote(VersionRef(model="metarec", version=1), actor="x", reason="evil")
    assert_denied(upgraded.urls["serving"], [*WRITES, *DDL, "SELECT * FROM registry_ledger"])


def test_controller_moves_stages_and_rollouts_but_cannot_rewrite_versions(upgraded: Roles):
    with upgraded.open("controller") as registry:
        registry.promote(VersionRef(model="metarec", version=1), actor="ctl", reason="canary ok")
        assert registry.production_version("metarec") == 1
        assert registry.history("metarec")[-1].actor == "ctl"
        store = RolloutStore(engine=registry.engine)
        state = store.active("metarec")[0]
        saved = store.save(
            state.model_copy(update={"phase": Phase.PROGRESSING, "canary_weight": 10}),
            event=EventRecord(action=EventKind.START, production_weight=90, canary_weight=10),
        )
        assert saved.canary_weight == 10 and len(store.events(state.id)) == 1
    assert_denied(
        upgraded.urls["controller"],
        [
            *WRITES[2:5],  # a version's hashes and digest; deleting versions
            "UPDATE registry_ledger SET actor = 'evil'",
            "UPDATE rollout_runs SET spec = '{}', version = 1",
            "INSERT INTO rollout_runs (id) VALUES ('x')",
            *DDL,
        ],
    )


def test_writer_registers_and_starts_rollouts_but_cannot_change_tables(
    upgraded: Roles, tmp_path: Path
):
    with upgraded.open("writer") as registry:
        info = register_fixture(registry, tmp_path / "w3", seed=3)
        assert info.version == 3 and info.stage is Stage.STAGING
    # Tuning trials in the Optuna tables `db upgrade` created (the writer creates none).
    storage = open_storage(upgraded.urls["writer"])
    study = optuna.create_study(storage=storage, study_name="roles", direction="minimize")
    study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=2)
    assert len(study.trials) == 2
    storage.engine.dispose()
    assert_denied(upgraded.urls["writer"], [*WRITES[2:5], "DELETE FROM registry_ledger", *DDL])


def test_upgrade_is_idempotent_and_revokes_what_a_role_should_not_hold(upgraded: Roles):
    serving = upgraded.names["serving"]
    with sa.create_engine(upgraded.owner_url).begin() as connection:
        connection.execute(sa.text(f"GRANT DELETE ON registry_versions TO {serving}"))
    result = upgrade_registry(upgraded.settings())
    assert result.from_revision == result.to_revision  # nothing to migrate
    assert_denied(upgraded.urls["serving"], ["DELETE FROM registry_versions"])
    status = registry_database_status(upgraded.settings())
    assert status.at_head
    assert status.grants[serving] == [
        "registry_alembic_version: SELECT",
        "registry_models: SELECT",
        "registry_versions: SELECT",
    ]
    controller = status.grants[upgraded.names["controller"]]
    assert "registry_versions: SELECT, UPDATE (stage)" in controller


@pytest.mark.parametrize(
    ("revision", "says"),
    [("0002_rollouts", "at revision 0002_rollouts"), ("9999_future", "newer than this")],
)
def test_a_process_with_migrate_on_open_off_refuses_a_schema_not_at_head(
    upgraded: Roles, revision: str, says: str
):
    with sa.create_engine(upgraded.owner_url).begin() as connection:
        connection.execute(
            sa.text(f"UPDATE registry_alembic_version SET version_num = '{revision}'")
        )
    settings = upgraded.settings(upgraded.urls["serving"], migrate_on_open=False)
    with pytest.raises(RegistryError, match=says) as caught:
        Registry.open(settings)
    assert "metarec db upgrade" in str(caught.value)


def test_a_missing_role_is_named_with_the_fix(roles: Roles):
    names = {**roles.names, "serving": "metarec_no_such_role"}
    with pytest.raises(RegistryError, match=r"metarec_no_such_role.*does not exist.*CREATE ROLE"):
        upgrade_registry(roles.settings(database_roles=names))


def test_sqlite_grants_are_a_no_op(tmp_path: Path):
    settings = load_settings(
        registry={
            "database_url": f"sqlite:///{tmp_path / 'r.db'}",
            "database_roles": {"serving": "metarec_serving"},
        }
    )
    result = upgrade_registry(settings)
    assert result.grants == [] and "no-op" in result.note
    off = settings.model_copy(deep=True)
    off.registry.migrate_on_open = False
    with Registry.open(off) as registry:
        assert registry.list_models() == []
