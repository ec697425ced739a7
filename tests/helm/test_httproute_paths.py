"""The public route exposes only the clients' endpoints and health checks; the feedback token
reaches the serving pods (and only them) from a Secret, by reference."""

from __future__ import annotations

import pytest

PUBLIC = ("/recommend", "/predict", "/livez", "/readyz")
PRIVATE = ("/feedback", "/feedback/", "/metrics", "/metadata", "/docs.json", "/", "/recommendx")
TOKEN_VAR = "METAREC_SERVING__FEEDBACK_TOKEN"


def _routed(route: dict, path: str) -> bool:
    """Whether a Gateway sends ``path`` to the route (Gateway API v1 path matching)."""
    for rule in route["spec"]["rules"]:
        for match in rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]:
            kind, value = match["path"]["type"], match["path"]["value"]
            if kind == "Exact" and path == value:
                return True
            if kind == "PathPrefix":
                prefix = value.rstrip("/")
                if path == prefix or path.startswith(prefix + "/"):
                    return True
            assert kind in ("Exact", "PathPrefix"), f"unexpected match type {kind}"
    return False


def test_the_route_forwards_only_the_public_paths(manifests):
    (route,) = manifests.of_kind("HTTPRoute")
    for path in PUBLIC:
        assert _routed(route, path), path
    for path in PRIVATE:
        assert not _routed(route, path), f"{path} must not be reachable from the Gateway"
    (rule,) = route["spec"]["rules"]
    assert [m["path"] for m in rule["matches"]] == [{"type": "Exact", "value": p} for p in PUBLIC]


def test_a_path_prefix_prefixes_each_public_path(chart):
    m = chart.render(sets=["route.pathPrefix=/metarec/"])
    (route,) = m.of_kind("HTTPRoute")
    assert all(_routed(route, f"/metarec{p}") for p in PUBLIC)
    assert not any(_routed(route, f"/metarec{p}") for p in PRIVATE)
    assert not _routed(route, "/recommend")


@pytest.mark.parametrize("prefix", ["//", "/a//b", "metarec", "/a b"])
def test_a_malformed_path_prefix_is_refused(chart, prefix):
    with pytest.raises(chart.RenderError, match="pathPrefix"):
        chart.render(sets=[f"route.pathPrefix={prefix}"])


def _token_env(container: dict) -> dict | None:
    return next((e for e in container.get("env", []) if e["name"] == TOKEN_VAR), None)


def test_serving_pods_read_the_feedback_token_from_its_secret_and_nobody_else_does(manifests):
    serving = 0
    for name, container in manifests.containers():
        env = _token_env(container)
        if "serving-" in name and name.endswith("/adaptation"):
            serving += 1
            assert env == {
                "name": TOKEN_VAR,
                "valueFrom": {"secretKeyRef": {"name": "metarec-feedback-token", "key": "token"}},
            }, name
        else:
            assert env is None, f"{name} must not hold the feedback token"
    assert serving >= 1
    assert "feedback-token" not in str(manifests.of_kind("ConfigMap"))


def test_the_feedback_token_secret_is_configurable_and_optional(chart):
    named = chart.render(
        sets=["serving.feedbackTokenSecret=team-feedback", "serving.feedbackTokenSecretKey=k"]
    )
    refs = [
        _token_env(c)["valueFrom"]["secretKeyRef"]
        for name, c in named.containers()
        if _token_env(c) is not None
    ]
    assert refs and all(ref == {"name": "team-feedback", "key": "k"} for ref in refs)
    off = chart.render(sets=["serving.feedbackTokenSecret="])
    assert all(_token_env(c) is None for _, c in off.containers())
