"""Flagger as the chart's canary engine (rollout.engine=flagger).

The rendered Canary and MetricTemplates validate against schemas written from the upstream CRDs
(tests/helm/schemas/flagger/SOURCE.md). The Canary drives the serving Deployment through the
Gateway API with the chart's Gateways; Flagger's Services select only the serving pods, whose
primary copies the monitors, NetworkPolicies and PDB still match. The MetricTemplates run the
embedded analysis's own PromQL (recorded from PrometheusMetricSource) on Flagger's canary and
primary pods. The webhooks call the API's /flagger routes with the token read from the API
token Secret at install time (a fake Kubernetes API answers Helm's lookup), never from values.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from metarec.api.routes import flagger as flagger_routes
from metarec.rollout.metrics import PrometheusMetricSource
from metarec.rollout.types import RolloutSpec, RolloutState

SCHEMAS = Path(__file__).parent / "schemas" / "flagger"
FLAGGER_API = "flagger.app/v1beta1"
CHECKS = ("error-rate", "latency-p99", "online-mae-delta", "online-hit-rate-delta")
# Flagger's default -selector-labels (cmd/flagger/main.go, v1.44.0): the primary's selector is
# the first of these found in the target Deployment's selector.
SELECTOR_LABELS = ("app", "name", "app.kubernetes.io/name")
# Flagger's template functions (pkg/apis/flagger/v1beta1/metric.go, v1.44.0).
FLAGGER_FUNCTION = re.compile(r"\{\{\s*(namespace|target|interval|variables\.(\w+))\s*\}\}")
TOKEN = "s3cr3t-webhook-token"


def schema(kind: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{kind.lower()}.schema.json").read_text())


def of_api(manifests, kind: str) -> list[dict[str, Any]]:
    return [d for d in manifests.docs if d["apiVersion"] == FLAGGER_API and d["kind"] == kind]


def the_canary(manifests) -> dict[str, Any]:
    (canary,) = of_api(manifests, "Canary")
    return canary


def templates(manifests) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in of_api(manifests, "MetricTemplate")}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value = labels.get(expr["key"])
        inside = value in expr.get("values", [])
        if {"In": not inside, "NotIn": inside, "Exists": value is None}.get(expr["operator"]):
            return False
        if expr["operator"] == "DoesNotExist" and value is not None:
            return False
    return True


def flagger_query(query: str, *, target: str, interval: str, variables: dict[str, str]) -> str:
    """The PromQL Flagger runs: its template functions replaced (KeyError: variable missing)."""

    def value(match: re.Match[str]) -> str:
        if match[2]:
            return variables[match[2]]
        return {"namespace": "metarec", "target": target, "interval": interval}[match[1]]

    rendered = FLAGGER_FUNCTION.sub(value, query)
    assert "{{" not in rendered, rendered
    return rendered


# ------------------------------------------------------------------ schemas


def test_gpu_production_renders_a_canary_metric_templates_and_a_pod_monitor(gpu, chart):
    canary = the_canary(gpu)
    jsonschema.validate(canary, schema("Canary"))
    found = templates(gpu)
    assert set(found) == {chart.name(check) for check in CHECKS}
    for template in found.values():
        jsonschema.validate(template, schema("MetricTemplate"))
    monitors = [d for d in gpu.docs if d["apiVersion"] == "monitoring.coreos.com/v1"]
    assert sorted(d["kind"] for d in monitors) == ["PodMonitor", "PrometheusRule"]
    # Every check is on in production, each against its own template.
    refs = {m["name"]: m["templateRef"]["name"] for m in canary["spec"]["analysis"]["metrics"]}
    assert refs == {check: chart.name(check) for check in CHECKS}


def test_the_schemas_reject_what_the_crds_reject(gpu):
    canary, template = the_canary(gpu), next(iter(templates(gpu).values()))
    cases = [
        (canary, lambda c: c["spec"].update(provider="gatewayapi"), "is not one of"),
        (canary, lambda c: c["spec"].pop("targetRef"), "'targetRef' is a required property"),
        (canary, lambda c: c["spec"]["targetRef"].update(kind="StatefulSet"), "is not one of"),
        (canary, lambda c: c["spec"]["analysis"].pop("stepWeights"), "is not valid under any"),
        (canary, lambda c: c["spec"]["analysis"].update(interval="1 minute"), "does not match"),
        (canary, lambda c: c["spec"]["analysis"]["webhooks"][0].update(type="pre"), "not one of"),
        (canary, lambda c: c["spec"]["analysis"]["webhooks"][0].pop("url"), "'url' is a required"),
        (canary, lambda c: c["spec"]["analysis"]["metrics"][0].pop("name"), "'name' is a required"),
        (canary, lambda c: c["spec"]["service"].update(gatewayRef=[]), "gatewayRef"),
        (canary, lambda c: c["spec"]["service"]["gatewayRefs"][0].update(name=""), "non-empty"),
        (template, lambda t: t["spec"]["provider"].update(type="prom"), "is not one of"),
        (template, lambda t: t["spec"].pop("query"), "'query' is a required property"),
    ]
    for doc, mutate, expected in cases:
        bad = copy.deepcopy(doc)
        mutate(bad)
        with pytest.raises(jsonschema.ValidationError, match=expected):
            jsonschema.validate(bad, schema(doc["kind"]))


# ------------------------------------------------------------------ what Flagger takes over


def test_flagger_replaces_the_embedded_controller_route_and_serving_services(default, gpu, chart):
    assert not [d for d in default.docs if d["apiVersion"] == FLAGGER_API]
    controller = chart.name("rollout-controller")
    assert controller in default.names("Deployment") and default.of_kind("HTTPRoute")
    assert controller not in gpu.names("Deployment") | gpu.names("ServiceAccount")
    assert gpu.names("Role") == {chart.name("deployer")} and not gpu.of_kind("HTTPRoute")
    assert not {chart.name("serving-production"), chart.name("serving-canary")} & gpu.names(
        "Service"
    ), "Flagger creates the serving Services; the chart's would fight over their selectors"
    assert gpu.names("Deployment") & {chart.name("serving-production")}


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["serving.canary.enabled=true", "serving.canary.version=7"], "serving.canary.enabled"),
        (["route.enabled=false"], "route.enabled=true"),
        (["monitoring.serving.kind=ServiceMonitor"], "monitoring.serving.kind=PodMonitor"),
        (["rollout.engine=argo"], "rollout/engine"),
        (["rollout.flagger.webhooks.metadata.token=x"], "token"),
    ],
)
def test_misconfigurations_fail_naming_the_fix(chart, sets, message):
    with pytest.raises(chart.RenderError, match=re.escape(message)):
        chart.render(chart.gpu_values, sets=sets)


def test_the_canary_drives_the_serving_deployment_through_the_chart_gateways(gpu, chart):
    spec = the_canary(gpu)["spec"]
    assert spec["provider"] == "gatewayapi:v1"
    target = gpu.get("Deployment", spec["targetRef"]["name"])
    assert target["metadata"]["name"] == chart.name("serving-production")
    hpa = gpu.get("HorizontalPodAutoscaler", spec["autoscalerRef"]["name"])
    assert hpa["spec"]["scaleTargetRef"]["name"] == target["metadata"]["name"]
    (container,) = target["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    service = spec["service"]
    assert ports[service["targetPort"]] == service["port"]
    # Flagger's route and apex Service keep the name of the embedded engine's HTTPRoute.
    assert service["name"] == chart.name("serving")
    values = yaml.safe_load(chart.gpu_values.read_text())["route"]
    assert service["hosts"] == values["hostnames"]
    assert [
        {k: ref[k] for k in ("name", "namespace", "sectionName")} for ref in service["gatewayRefs"]
    ] == values["parentRefs"]
    weights = spec["analysis"]["stepWeights"]
    assert weights == sorted(set(weights)) and weights[0] > 0 and weights[-1] < 100


def test_flagger_services_select_only_the_serving_pods_and_its_primary_keeps_the_policies(gpu):
    target = gpu.get("Deployment", the_canary(gpu)["spec"]["targetRef"]["name"])
    selector = target["spec"]["selector"]["matchLabels"]
    label = next(name for name in SELECTOR_LABELS if name in selector)
    value = selector[label]
    for name, _ in gpu.pod_specs():
        kind, doc_name = name.split("/", 1)
        doc = gpu.get(kind, doc_name)
        spec = doc["spec"]["jobTemplate"]["spec"] if kind == "CronJob" else doc["spec"]
        labels = spec["template"]["metadata"]["labels"]
        mine = doc is target
        assert (labels.get(label) == value) is mine, f"{name}: Flagger's Services would select it"
        assert labels.get(label) != f"{value}-primary"
    # Flagger's primary pods: the target's labels, the selector label renamed (makePrimaryLabels).
    canary_pod = target["spec"]["template"]["metadata"]["labels"]
    primary_pod = {**canary_pod, label: f"{value}-primary"}
    (monitor,) = [d for d in gpu.docs if d["kind"] == "PodMonitor"]
    policies = {p["metadata"]["name"]: p for p in gpu.of_kind("NetworkPolicy")}
    pdb = gpu.get("PodDisruptionBudget", target["metadata"]["name"])
    for selector in (
        monitor["spec"]["selector"],
        policies["mr-metarec-serving"]["spec"]["podSelector"],
        policies["mr-metarec-default-deny"]["spec"]["podSelector"],
        pdb["spec"]["selector"],
    ):
        assert selects(selector, canary_pod) and selects(selector, primary_pod), selector


# ------------------------------------------------------------------ the analysis


def _embedded_queries(production: str, canary: str) -> dict[str, list[str]]:
    """The PromQL PrometheusMetricSource runs for a window, per side (label → side name)."""
    source = PrometheusMetricSource(url="http://prometheus.invalid")
    seen: list[str] = []
    source.query = lambda promql: seen.append(promql) or 1.0  # type: ignore[method-assign]
    state = RolloutState(id="r", model="m", version=2, production_version=1, spec=RolloutSpec())
    source.read_window(state, window_s=60)
    sides = {'model_version="m:v1"': production, 'model_version="m:v2"': canary}
    out: dict[str, list[str]] = {production: [], canary: []}
    for query in seen:
        (side,) = [s for s in sides if s in query]
        out[sides[side]].append(query.replace(side, f"<{sides[side]}>").replace("[60s]", "<w>"))
    return out


def _pod_selectors(query: str) -> tuple[str, str]:
    pods = sorted(set(re.findall(r'namespace="\{\{ namespace \}\}",pod=~"[^"]+"', query)))
    canary = [p for p in pods if "-primary-" not in p]
    primary = [p for p in pods if "-primary-" in p]
    return (canary[0] if canary else ""), (primary[0] if primary else "")


def test_metric_templates_run_the_embedded_analysis_queries_on_flaggers_pods(gpu, chart):
    """Every query the embedded analysis runs (PrometheusMetricSource) appears in the template
    of its check, with the version selector swapped for Flagger's pod selector."""
    embedded = _embedded_queries("primary", "canary")
    p99, requests, errors, feedback, abs_error, positive, hits = embedded["canary"]
    primary = embedded["primary"]
    wanted = {
        "error-rate": [requests, errors],
        "latency-p99": [p99],
        "online-mae-delta": [feedback, abs_error, primary[3], primary[4]],
        "online-hit-rate-delta": [positive, hits, primary[5], primary[6]],
    }
    found = templates(gpu)
    for check, queries in wanted.items():
        query = found[chart.name(check)]["spec"]["query"]
        canary_pods, primary_pods = _pod_selectors(query)
        as_flagger = query.replace(canary_pods, "<canary>").replace("[{{ interval }}]", "<w>")
        as_flagger = as_flagger.replace(primary_pods or "\0", "<primary>")
        for embedded_query in queries:
            assert embedded_query in as_flagger, f"{check}: {embedded_query}"


def test_pod_selectors_tell_flaggers_canary_pods_from_its_primary_pods(gpu):
    canary = the_canary(gpu)
    target = canary["spec"]["targetRef"]["name"]
    canary_pods, primary_pods = _pod_selectors(
        templates(gpu)["mr-metarec-online-mae-delta"]["spec"]["query"]
    )
    canary_re = re.fullmatch(
        r'.*pod=~"(.+)"', flagger_query(canary_pods, target=target, interval="1m", variables={})
    )[1]
    primary_re = re.fullmatch(
        r'.*pod=~"(.+)"', flagger_query(primary_pods, target=target, interval="1m", variables={})
    )[1]
    canary_pod = f"{target}-7d9f8b6c5d-x2x7q"  # <deployment>-<pod-template-hash>-<suffix>
    primary_pod = f"{target}-primary-5c6d7f8b9-abcde"
    # PromQL regexes are fully anchored (RE2), as re.fullmatch.
    assert re.fullmatch(canary_re, canary_pod) and not re.fullmatch(canary_re, primary_pod)
    assert re.fullmatch(primary_re, primary_pod) and not re.fullmatch(primary_re, canary_pod)
    assert not re.fullmatch(canary_re, "mr-metarec-api-6b5d8c7f9-qwert")


def test_every_template_renders_with_the_variables_the_canary_gives_it(gpu):
    canary = the_canary(gpu)
    found = templates(gpu)
    for metric in canary["spec"]["analysis"]["metrics"]:
        query = found[metric["templateRef"]["name"]]["spec"]["query"]
        promql = flagger_query(
            query,
            target=canary["spec"]["targetRef"]["name"],
            interval=metric["interval"],
            variables=metric["templateVariables"],
        )
        assert "[1m]" in promql and promql.count("(") == promql.count(")")


def test_thresholds_and_minimum_counts_come_from_values(chart, tmp_path):
    checks = {
        "maxErrorRate": 0.02,
        "maxP99Ms": 300,
        "maxOnlineMaeDelta": 0.1,
        "maxOnlineHitRateDrop": 0.05,
        "minRequests": 50,
        "minFeedback": 30,
        "minPositiveFeedback": 40,
    }
    values = tmp_path / "values.yaml"  # --set would pass the fractions as strings
    values.write_text(yaml.safe_dump({"rollout": {"flagger": {"checks": checks}}}))
    canary = the_canary(chart.render(chart.gpu_values, values))
    metrics = {m["name"]: m for m in canary["spec"]["analysis"]["metrics"]}
    assert metrics["error-rate"]["thresholdRange"] == {"max": 0.02}
    assert metrics["latency-p99"]["thresholdRange"] == {"max": 300}
    assert metrics["online-mae-delta"]["thresholdRange"] == {"max": 0.1}
    # The embedded check fails when canary - production < -drop: the template is canary - primary.
    assert metrics["online-hit-rate-delta"]["thresholdRange"] == {"min": -0.05}
    assert metrics["error-rate"]["templateVariables"]["min_requests"] == "50"
    assert metrics["online-mae-delta"]["templateVariables"]["min_feedback"] == "30"
    assert metrics["online-hit-rate-delta"]["templateVariables"]["min_positive_feedback"] == "40"
    # Unset thresholds (the defaults) leave their checks out, as the embedded analysis does.
    plain = the_canary(chart.render(sets=["rollout.engine=flagger"]))
    assert [m["name"] for m in plain["spec"]["analysis"]["metrics"]] == ["error-rate"]


# ------------------------------------------------------------------ webhooks


def test_webhooks_call_the_api_flagger_routes(gpu, chart):
    hooks = the_canary(gpu)["spec"]["analysis"]["webhooks"]
    api = gpu.get("Service", chart.name("api"))
    base = (
        f"http://{api['metadata']['name']}.{chart.namespace}.svc:{api['spec']['ports'][0]['port']}"
    )
    assert [(h["type"], h["url"].removeprefix(base)) for h in hooks] == [
        ("pre-rollout", "/flagger/confirm-promotion"),
        ("confirm-promotion", "/flagger/confirm-promotion"),
        # Flagger stops at the first failing post-rollout hook: promote (a no-op after Failed)
        # runs before the hook that archives a failed version.
        ("post-rollout", "/flagger/promote"),
        ("post-rollout", "/flagger/rollback"),
        ("rollback", "/flagger/rollback"),
    ]
    served = {route.path for route in flagger_routes.router.routes}
    assert {h["url"].removeprefix(base) for h in hooks} <= served
    other = chart.render(
        chart.gpu_values,
        sets=[
            "rollout.flagger.webhooks.apiUrl=https://api.example.com/",
            "rollout.flagger.webhooks.metadata.model=metarec",
        ],
    )
    for hook in the_canary(other)["spec"]["analysis"]["webhooks"]:
        assert hook["url"].startswith("https://api.example.com/flagger/")
        assert hook["metadata"] == {"model": "metarec"}


def test_without_a_cluster_no_token_is_rendered(gpu):
    for hook in the_canary(gpu)["spec"]["analysis"]["webhooks"]:
        assert "token" not in hook.get("metadata", {})


@pytest.fixture
def kubernetes_api(gpu, tmp_path) -> Iterator[Path]:
    """A fake Kubernetes API (discovery of the rendered kinds, the API token Secret) and its
    kubeconfig, for `helm template --dry-run=server` and its `lookup`."""
    kinds: dict[str, set[str]] = {"v1": {"Secret"}}
    for doc in gpu.docs:
        kinds.setdefault(doc["apiVersion"], set()).add(doc["kind"])
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "metarec-api-token"}}
    secret["data"] = {"token": base64.b64encode(TOKEN.encode()).decode()}

    def resources(gv: str) -> dict[str, Any]:
        listed = [
            {"name": k.lower() + "s", "kind": k, "namespaced": True, "verbs": ["get"]}
            for k in sorted(kinds[gv])
        ]
        return {"kind": "APIResourceList", "groupVersion": gv, "resources": listed}

    groups = [
        {"name": gv.split("/")[0], "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}]}
        for gv in kinds
        if "/" in gv
    ]
    answers = {
        "/version": {"major": "1", "minor": "33", "gitVersion": "v1.33.0"},
        "/api": {"kind": "APIVersions", "versions": ["v1"]},
        "/apis": {"kind": "APIGroupList", "groups": groups},
        "/api/v1": resources("v1"),
        "/api/v1/namespaces/metarec/secrets/metarec-api-token": secret,
        **{f"/apis/{gv}": resources(gv) for gv in kinds if "/" in gv},
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = answers.get(self.path.split("?")[0])
            payload = json.dumps(body or {"kind": "Status", "code": 404}).encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = tmp_path / "kubeconfig"
    config.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: fake, cluster: {{server: "http://127.0.0.1:{server.server_port}"}}}}]
users: [{{name: fake, user: {{token: x}}}}]
contexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]
current-context: fake
"""
    )
    yield config
    server.shutdown()


def test_at_install_the_token_comes_from_the_api_token_secret(chart, kubernetes_api):
    """Flagger sends no custom headers, so the API reads the token from metadata.token; Helm
    fills it from the chart's API token Secret at install/upgrade (lookup), not from values."""
    args = ["template", chart.release, str(chart.path), "--namespace", chart.namespace]
    args += ["-f", str(chart.gpu_values), "--dry-run=server", "--disable-openapi-validation"]
    args += ["--set", "rollout.flagger.extraWebhooks[0].name=load"]
    args += ["--set", "rollout.flagger.extraWebhooks[0].url=http://loadtester/"]
    proc = subprocess.run(
        [str(chart.helm), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KUBECONFIG": str(kubernetes_api)},
    )
    assert proc.returncode == 0, proc.stderr
    (canary,) = [d for d in yaml.safe_load_all(proc.stdout) if d and d["kind"] == "Canary"]
    jsonschema.validate(canary, schema("Canary"))
    *ours, extra = canary["spec"]["analysis"]["webhooks"]
    assert len(ours) == 5 and all(h["metadata"]["token"] == TOKEN for h in ours)
    assert extra == {"name": "load", "url": "http://loadtester/"}, "the token stays with the API"


def test_a_network_policy_lets_flaggers_webhooks_reach_the_api(gpu, chart):
    policy = gpu.get("NetworkPolicy", chart.name("api-from-flagger"))["spec"]
    api = gpu.get("Deployment", chart.name("api"))["spec"]["template"]["metadata"]["labels"]
    assert selects(policy["podSelector"], api)
    (rule,) = policy["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "flagger-system"}}}
    ]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert not chart.render(chart.gpu_values, sets=["networkPolicy.enabled=false"]).of_kind(
        "NetworkPolicy"
    )
