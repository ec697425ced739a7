"""The materialize flow on a real (ephemeral) Prefect server, real Feast stores."""

import pytest
from metarec.config import load_settings
from metarec.features.store import online_features, open_store
from metarec.workflows.prefect_flows import materialize_flow

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_materialize_flow_loads_the_online_store_and_skips_an_unchanged_source(
    prefect_server, tmp_path
):
    home = str(tmp_path / "home")
    first = materialize_flow(source="synthetic", home=home)
    assert first["reused"] is False
    values = online_features(open_store(load_settings(home=tmp_path / "home")), user_id=1)
    assert values["occupation"]
    second = materialize_flow(source="synthetic", home=home)
    assert second["reused"] is True and second["snapshot_id"] == first["snapshot_id"]
