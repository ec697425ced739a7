"""Schemathesis against the served OpenAPI: generated requests never get a 5xx."""

from __future__ import annotations

from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the dev extra")

from hypothesis import HealthCheck, given  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from metarec.api import create_app  # noqa: E402
from metarec.config import load_settings  # noqa: E402
from metarec.registry import Registry, VersionRef  # noqa: E402
from metarec.testing.registry import register_fixture  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "fuzz-token"
EXAMPLES = 40


def pin_to_existing(case):
    """Half the cases address the seeded model and versions, so deeper code paths run."""
    if case.path_parameters:
        case.path_parameters["model"] = "metarec"
        if "version" in case.path_parameters:
            case.path_parameters["version"] = 1 + abs(hash(str(case.body))) % 3
    return case


@pytest.mark.parametrize("authorized", [True, False], ids=["token", "no-token"])
def test_generated_requests_get_no_server_error(tmp_path: Path, authorized: bool):
    settings = load_settings(
        home=tmp_path / "home", registry={"api_token": TOKEN, "export_bentoml": False}
    )
    with Registry.open(settings) as registry:
        register_fixture(registry, tmp_path / "a1", seed=1)
        register_fixture(registry, tmp_path / "a2", seed=2)
        registry.promote(VersionRef(model="metarec", version=1), actor="t", reason="seed")
    app = create_app(settings)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = {"Authorization": f"Bearer {TOKEN}"} if authorized else {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    seen: dict[str, set[int]] = {}
    for operation in operations:

        @hypothesis_settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(
            case=st.one_of(operation.as_strategy(), operation.as_strategy().map(pin_to_existing))
        )
        def check(case) -> None:
            response = case.call_and_validate(headers=headers, checks=[not_a_server_error])
            assert response.status_code < 500, (case.method, case.formatted_path, response.text)
            seen.setdefault(f"{case.method} {case.path}", set()).add(response.status_code)

        check()
    if not authorized:
        mutating = {key: codes for key, codes in seen.items() if key.startswith("POST")}
        # Authentication comes before the body is parsed: never 422 without a token.
        assert mutating and all(codes == {401} for codes in mutating.values()), mutating
    else:
        assert 200 in seen["GET /models/{model}/versions"]
        assert seen["POST /models/{model}/versions/{version}/promote"] & {200, 409}
