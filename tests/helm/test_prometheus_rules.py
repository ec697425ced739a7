"""The chart's alert rules, evaluated by Prometheus' own `promtool test rules` on recorded series.

The PrometheusRule rendered with `monitoring.prometheusRules.enabled` is written out as a rule
file; each case below records series (promtool's expanding notation, one sample per interval)
and says which alerts fire, with which labels and annotations, at which times, and which do
not (below a threshold, too little traffic or feedback, suspended). promtool comes from PATH or
the venv, where `make setup` puts it (scripts/fetch-promtool.sh extracts it from Debian's
`prometheus` package); the tests skip with the reason only when it cannot be obtained. The rule
object also validates against a schema written from the upstream PrometheusRule CRD.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
FETCH = REPO / "scripts" / "fetch-promtool.sh"
SCHEMA = Path(__file__).parent / "schemas" / "prometheus-operator" / "prometheusrule.schema.json"
DOCS = REPO / "docs" / "kubernetes.md"
ON = ("monitoring.prometheusRules.enabled=true",)
PROD = 'namespace="metarec", job="mr-metarec-serving-production"'
POD = 'namespace="metarec", job="metarec/mr-metarec-serving"'  # a PodMonitor's job label
CRON = 'namespace="metarec", cronjob="mr-metarec-retrain"'


@cache
def _find_promtool() -> tuple[str | None, str]:
    for candidate in (shutil.which("promtool"), Path(sys.prefix) / "bin" / "promtool"):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate), ""
    dest = Path(sys.prefix) / "bin"
    try:
        proc = subprocess.run(
            ["bash", str(FETCH), str(dest)], capture_output=True, text=True, timeout=600
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"promtool is not on PATH and {FETCH.name} failed: {exc}"
    if proc.returncode == 0 and (dest / "promtool").is_file():
        return str(dest / "promtool"), ""
    return None, f"promtool unavailable ({FETCH.name}: {proc.stderr.strip()[-300:]})"


@pytest.fixture(scope="session")
def promtool() -> str:
    path, reason = _find_promtool()
    if path is None:
        print(f"SKIP rule tests: {reason}", file=sys.stderr)
        pytest.skip(reason)
    return path


def prometheus_rule(chart, *sets: str, values: Path | None = None) -> dict[str, Any]:
    files = () if values is None else (values,)
    (rule,) = chart.render(*files, sets=[*ON, *sets]).of_kind("PrometheusRule")
    return rule


def alerts(rule: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def expect(rule: dict[str, Any], name: str, labels: dict[str, str], summary: str) -> dict:
    """An expected alert: its labels, the given summary, the rule's description and runbook."""
    spec = alerts(rule)[name]
    annotations = dict(spec["annotations"], summary=summary)
    annotations["description"] = re.sub(
        r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m[1]], annotations["description"]
    )
    return {"exp_labels": {**labels, **spec["labels"]}, "exp_annotations": annotations}


def run_promtool(
    promtool: str, rule: dict[str, Any], tests: list[dict], tmp_path: Path, every="1m"
):
    """`promtool test rules` with the rule evaluated every `every` over the test's span."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    spec = tmp_path / "tests.yaml"
    body = {"rule_files": [str(rules)], "evaluation_interval": every, "tests": tests}
    spec.write_text(yaml.safe_dump(body, sort_keys=False))
    return subprocess.run(
        [promtool, "test", "rules", str(spec)], capture_output=True, text=True, timeout=120
    )


def check(promtool: str, rule: dict[str, Any], tests: list[dict], tmp_path: Path, every="1m"):
    proc = run_promtool(promtool, rule, tests, tmp_path, every)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def case(series: dict[str, str], evals: list[tuple[str, str, list[dict]]], interval="1m"):
    """A promtool test group: series → values, and (time, alert, expected alerts) checks."""
    return {
        "interval": interval,
        "input_series": [{"series": s, "values": v} for s, v in series.items()],
        "alert_rule_test": [
            {"eval_time": t, "alertname": name, "exp_alerts": exp} for t, name, exp in evals
        ],
    }


# ---------------------------------------------------------------- the rule object


def test_the_rule_validates_against_the_upstream_crd_schema(chart):
    schema = json.loads(SCHEMA.read_text())
    rule = prometheus_rule(chart)
    jsonschema.validate(rule, schema)
    gpu = chart.render(chart.gpu_values, sets=[*chart.gpu_embedded, *ON])
    (on_gpu,) = gpu.of_kind("PrometheusRule")
    jsonschema.validate(on_gpu, schema)
    for mutate, message in (
        (lambda r: r["spec"]["groups"][0]["rules"][0].update(four="5m"), "four"),
        (lambda r: r["spec"]["groups"][0]["rules"][0].update({"for": "5 min"}), "does not match"),
        (lambda r: r["spec"]["groups"][0]["rules"][0].pop("expr"), "'expr' is a required"),
        (lambda r: r["spec"]["groups"][0].pop("name"), "'name' is a required"),
        (lambda r: r["spec"]["groups"][0]["rules"][0]["labels"].update(x=1), "is not of type"),
    ):
        bad = copy.deepcopy(rule)
        mutate(bad)
        with pytest.raises(jsonschema.ValidationError, match=message):
            jsonschema.validate(bad, schema)


def test_rules_dashboards_and_service_monitor_render_together_and_validate(chart):
    """Issue 22's acceptance: with their values on, the chart renders the dashboard ConfigMaps,
    the PrometheusRule and the ServiceMonitor, each valid against its schema."""
    monitors = SCHEMA.parent / "servicemonitor.schema.json"
    sets = [*ON, "monitoring.prometheusOperator.enabled=true"]
    manifests = chart.render(sets=[*sets, "monitoring.grafanaDashboards.enabled=true"])
    (rule,) = manifests.of_kind("PrometheusRule")
    jsonschema.validate(rule, json.loads(SCHEMA.read_text()))
    (monitor,) = manifests.of_kind("ServiceMonitor")
    jsonschema.validate(monitor, json.loads(monitors.read_text()))
    maps = [
        m for m in manifests.of_kind("ConfigMap") if "grafana_dashboard" in m["metadata"]["labels"]
    ]
    assert len(maps) == 4
    for cm in maps:
        for version in chart.kubernetes_versions:
            kubernetes_validate.validate(cm, version, strict=True)


def test_off_by_default_and_the_retrain_alert_only_with_the_retrain_cronjob(chart, default):
    assert not default.of_kind("PrometheusRule")
    assert "MetaRecRetrainMissed" in alerts(prometheus_rule(chart))
    assert "MetaRecRetrainMissed" not in alerts(prometheus_rule(chart, "retrain.enabled=false"))


def test_every_alert_has_a_severity_a_summary_and_a_runbook_section(chart):
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in DOCS.read_text().splitlines()
        if line.startswith("#")
    }
    rule = prometheus_rule(chart, "monitoring.prometheusRules.alertLabels.team=ml")
    assert len(alerts(rule)) == 11
    for name, spec in alerts(rule).items():
        assert spec["labels"]["severity"] in {"critical", "warning"}, name
        assert spec["labels"]["team"] == "ml"
        assert spec["annotations"]["summary"] and spec["annotations"]["description"], name
        page, anchor = spec["annotations"]["runbook_url"].split("#")
        assert page == "docs/kubernetes.md"
        assert anchor == name.lower() and anchor in headings, f"no docs section for {name}"


def test_labels_select_the_rule_for_prometheus(chart):
    rule = prometheus_rule(
        chart, "monitoring.labels.release=kps", "monitoring.prometheusRules.labels.team=ml"
    )
    labels = rule["metadata"]["labels"]
    assert labels["release"] == "kps" and labels["team"] == "ml"
    assert labels["app.kubernetes.io/instance"] == "mr"


# ---------------------------------------------------------------- the rules, by promtool


def test_the_rule_file_passes_promtool_check(promtool, chart, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(prometheus_rule(chart)["spec"]))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 11 rules found" in proc.stdout


def test_drift_alert_fires_when_item_popularity_crosses_the_threshold(promtool, chart, tmp_path):
    """Issue 22's acceptance: item popularity drifts (PSI 0.02 → 0.4); the drift rules fire for
    that statistic and that version only, and not where the window has too few requests."""
    rule = prometheus_rule(chart)
    labels = {"model_version": "metarec:v2", "statistic": "item_popularity"}
    v2 = f'{PROD}, model_version="metarec:v2"'
    series = {
        f'metarec_drift_psi{{{v2}, statistic="item_popularity"}}': "0.02x20 0.05x10 0.4x60",
        f'metarec_drift_psi{{{v2}, statistic="support_size"}}': "0.03x90",
        f'metarec_drift_psi{{{v2}, statistic="predicted_score"}}': "0.04x90",
        f"metarec_drift_window_requests{{{v2}}}": "500x90",
        # v3: a large PSI over a window of 50 requests is noise, not drift.
        f'metarec_drift_psi{{{POD}, model_version="metarec:v3", statistic="item_popularity"}}': (
            "0.9x90"
        ),
        f'metarec_drift_window_requests{{{POD}, model_version="metarec:v3"}}': "50x90",
    }
    summary = "MetaRec metarec:v2: item_popularity drifted (PSI 0.40)."
    evals = [
        ("25m", "MetaRecDriftMajor", []),
        ("25m", "MetaRecDriftModerate", []),
        ("40m", "MetaRecDriftMajor", []),  # over 0.25 since 30m, not yet for 15m
        ("50m", "MetaRecDriftMajor", [expect(rule, "MetaRecDriftMajor", labels, summary)]),
        ("50m", "MetaRecDriftModerate", [expect(rule, "MetaRecDriftModerate", labels, summary)]),
    ]
    check(promtool, rule, [case(series, evals)], tmp_path)
    # The threshold comes from values: at 0.5 the same series raises no critical alert.
    values = tmp_path / "values.yaml"
    values.write_text("monitoring: {prometheusRules: {drift: {criticalPsi: 0.5}}}\n")
    higher = prometheus_rule(chart, values=values)
    check(promtool, higher, [case(series, [("50m", "MetaRecDriftMajor", [])])], tmp_path)


def test_the_rule_test_fails_when_an_expectation_is_wrong(promtool, chart, tmp_path):
    """The harness can fail: a stable series expected to alert is reported by promtool."""
    rule = prometheus_rule(chart)
    labels = {"model_version": "metarec:v2", "statistic": "item_popularity"}
    series = {
        f'metarec_drift_psi{{{PROD}, model_version="metarec:v2", statistic="item_popularity"}}': (
            "0.02x60"
        ),
        f'metarec_drift_window_requests{{{PROD}, model_version="metarec:v2"}}': "500x60",
    }
    wrong = [("50m", "MetaRecDriftMajor", [expect(rule, "MetaRecDriftMajor", labels, "x")])]
    proc = run_promtool(promtool, rule, [case(series, wrong)], tmp_path)
    assert proc.returncode != 0
    assert "MetaRecDriftMajor" in proc.stdout + proc.stderr


def test_service_down_and_target_down(promtool, chart, tmp_path):
    rule = prometheus_rule(chart)
    target = {"namespace": "metarec", "job": "mr-metarec-serving-production", "instance": "a"}
    series = {f'up{{{PROD}, instance="a"}}': "1x10 0x20"}
    down = "A MetaRec serving target is down: mr-metarec-serving-production a."
    evals = [
        ("8m", "MetaRecServingDown", []),
        ("8m", "MetaRecServingTargetDown", []),
        (
            "20m",
            "MetaRecServingDown",
            [
                expect(
                    rule,
                    "MetaRecServingDown",
                    {},
                    "No MetaRec adaptation service target is up in metarec.",
                )
            ],
        ),
        (
            "20m",
            "MetaRecServingTargetDown",
            [expect(rule, "MetaRecServingTargetDown", target, down)],
        ),
    ]
    # A release with no serving target at all is down too.
    nothing = {'up{namespace="other", job="mr-metarec-serving-production"}': "1x20"}
    gone = [
        (
            "10m",
            "MetaRecServingDown",
            [
                expect(
                    rule,
                    "MetaRecServingDown",
                    {},
                    "No MetaRec adaptation service target is up in metarec.",
                )
            ],
        )
    ]
    check(promtool, rule, [case(series, evals), case(nothing, gone)], tmp_path)


def test_error_ratio_needs_enough_requests(promtool, chart, tmp_path):
    rule = prometheus_rule(chart)
    req = "metarec_requests_total"
    series = {
        f'{req}{{{PROD}, endpoint="recommend", model_version="v2", status="2xx"}}': "0+100x60",
        f'{req}{{{PROD}, endpoint="recommend", model_version="v2", status="5xx"}}': "0+10x60",
        # v3 fails a third of its requests, but 3 a minute are too few to judge.
        f'{req}{{{PROD}, endpoint="predict", model_version="v3", status="2xx"}}': "0+2x60",
        f'{req}{{{PROD}, endpoint="predict", model_version="v3", status="5xx"}}': "0+1x60",
        # health checks are not traffic
        f'{req}{{{PROD}, endpoint="metadata", model_version="v1", status="5xx"}}': "0+100x60",
    }
    summary = "MetaRec v2 answers 9.091% of requests with 5xx."
    evals = [
        ("10m", "MetaRecHighErrorRatio", []),
        (
            "30m",
            "MetaRecHighErrorRatio",
            [expect(rule, "MetaRecHighErrorRatio", {"model_version": "v2"}, summary)],
        ),
    ]
    check(promtool, rule, [case(series, evals)], tmp_path)


def test_p99_latency_over_target(promtool, chart, tmp_path):
    rule = prometheus_rule(chart)
    bucket = "metarec_request_latency_seconds_bucket"
    slow = f'{PROD}, endpoint="recommend", model_version="v2"'
    fast = f'{PROD}, endpoint="recommend", model_version="v1"'
    series = {
        f'{bucket}{{{slow}, le="0.1"}}': "0+50x60",
        f'{bucket}{{{slow}, le="0.5"}}': "0+50x60",
        f'{bucket}{{{slow}, le="1.0"}}': "0+100x60",
        f'{bucket}{{{slow}, le="+Inf"}}': "0+100x60",
        f'{bucket}{{{fast}, le="0.1"}}': "0+100x60",
        f'{bucket}{{{fast}, le="+Inf"}}': "0+100x60",
    }
    summary = "MetaRec v2 p99 latency is 990ms."
    labels = {"model_version": "v2"}
    evals = [
        ("30m", "MetaRecHighLatencyP99", [expect(rule, "MetaRecHighLatencyP99", labels, summary)])
    ]
    check(promtool, rule, [case(series, evals)], tmp_path)


def test_online_mae_worse_than_offline_with_minimum_feedback(promtool, chart, tmp_path):
    rule = prometheus_rule(chart)

    def version(v: str, scored: str, abs_error: str) -> dict:
        sel = f'{PROD}, model_version="{v}"'
        return {
            f"metarec_offline_mae{{{sel}}}": "0.7x150",
            f"metarec_feedback_total{{{sel}}}": scored,
            f"metarec_feedback_abs_error_sum{{{sel}}}": abs_error,
        }

    series = {
        # v2: MAE 0.9 vs 0.7 offline, with plenty of feedback.
        **version("v2", "0+10x150", "0+9x150"),
        # v3: as bad, but 30 events an hour are too few.
        **version("v3", "0+0.5x150", "0+0.5x150"),
        # v1: as good online as offline.
        **version("v1", "0+10x150", "0+7x150"),
    }
    mae = "MetaRec v2 online MAE is 0.200 above its offline MAE."
    evals = [
        ("25m", "MetaRecOnlineMaeWorseThanOffline", []),  # pending: not yet for 30m
        (
            "120m",
            "MetaRecOnlineMaeWorseThanOffline",
            [expect(rule, "MetaRecOnlineMaeWorseThanOffline", {"model_version": "v2"}, mae)],
        ),
    ]
    check(promtool, rule, [case(series, evals)], tmp_path)


# Hit-rate series: 5-minute samples, 25 h of the version's usual traffic, then 3 h more.
DROP_AT, STEPS = 300, 336


def feedback(sel: str, per_step: float, rate: float, rate_after: float) -> dict[str, str]:
    """A pod's positive-feedback and hit counters: `per_step` positives every 5 minutes, a
    share `rate` of them hits, `rate_after` from DROP_AT (25 h) on."""
    hits, after = per_step * rate, per_step * rate_after
    return {
        f"metarec_feedback_positive_total{{{sel}}}": f"0+{per_step}x{STEPS}",
        f"metarec_feedback_hits_total{{{sel}}}": (
            f"0+{hits}x{DROP_AT} {hits * DROP_AT}+{after}x{STEPS - DROP_AT}"
        ),
    }


def test_normal_traffic_below_the_user_level_offline_hit_rate_raises_no_alert(
    promtool, chart, tmp_path
):
    """Issue 22: trusted traffic of ml-100k's new users gives a steady online hit rate of 0.24
    per positive event while the card's hit@10 (user-level) is 0.93. Different quantities:
    nothing alerts (the former MetaRecOnlineHitRateWorseThanOffline fired here)."""
    rule = prometheus_rule(chart)
    series = {f'up{{{PROD}, instance="a"}}': f"1x{STEPS}"}
    for job, share in ((PROD, 0.6), (POD, 0.4)):  # two pods of the version
        sel = f'{job}, model_version="metarec:v2"'
        series |= feedback(sel, 100 * share, 0.24, 0.24)
        series |= {
            f"metarec_offline_hit_rate{{{sel}}}": f"0.93x{STEPS}",
            f"metarec_offline_mae{{{sel}}}": f"0.75x{STEPS}",
            f"metarec_feedback_total{{{sel}}}": f"0+{200 * share}x{STEPS}",
            f"metarec_feedback_abs_error_sum{{{sel}}}": f"0+{200 * share * 0.76}x{STEPS}",
        }
    evals = [(t, name, []) for t in ("2h", "25h", "28h") for name in alerts(rule)]
    check(promtool, rule, [case(series, evals, interval="5m")], tmp_path, every="5m")


def test_hit_rate_dropped_below_the_versions_own_baseline(promtool, chart, tmp_path):
    """The hit rate falls from 0.24 to 0.02 at 25 h: the alert fires after `for` (30m) for the
    version (its pods summed), not for a version with too few positives, and not where the
    drop is within `dropRatio`."""
    rule = prometheus_rule(chart)
    series = {
        # v2: 100 positives per 5 minutes on one pod.
        **feedback(f'{PROD}, model_version="v2"', 100, 0.24, 0.02),
        # v3: two pods of 30 positives an hour each, 60 for the version: enough together.
        **feedback(f'{PROD}, model_version="v3"', 2.5, 0.24, 0.02),
        **feedback(f'{POD}, model_version="v3"', 2.5, 0.24, 0.02),
        # v4: the same drop over 24 positives an hour is too little feedback to judge.
        **feedback(f'{PROD}, model_version="v4"', 2, 0.24, 0.02),
        # v1: a steady version.
        **feedback(f'{PROD}, model_version="v1"', 100, 0.24, 0.24),
    }
    name = "MetaRecOnlineHitRateDropped"

    def fired(*versions: str, by: dict[str, Any] = rule) -> list[dict]:
        summary = "MetaRec {} online hit rate dropped to 2%."
        return [expect(by, name, {"model_version": v}, summary.format(v)) for v in versions]

    evals = [
        ("25h", name, []),
        ("1530m", name, []),  # 30 minutes of 0.02: the hour's rate is 0.13, above 0.12
        ("1560m", name, []),  # below half the baseline since 1535m, not yet for 30m
        ("1570m", name, fired("v2", "v3")),
        ("27h", name, fired("v2", "v3")),  # the baseline (1d, 1h ago) is still the usual rate
    ]
    check(promtool, rule, [case(series, evals, interval="5m")], tmp_path, every="5m")
    # The drop ratio comes from values: within 95 % of the baseline, nothing fires.
    values = tmp_path / "values.yaml"
    values.write_text("monitoring: {prometheusRules: {onlineQuality: {dropRatio: 0.95}}}\n")
    tolerant = prometheus_rule(chart, values=values)
    quiet = [("1570m", name, []), ("27h", name, [])]
    check(promtool, tolerant, [case(series, quiet, interval="5m")], tmp_path, every="5m")
    # A 2 h baseline ending an hour ago: the alert still fires at 70 minutes (the baseline is
    # all before the drop), and resolves once the drop fills the baseline.
    two_hours = tmp_path / "baseline.yaml"  # another file: renders are cached by path
    two_hours.write_text("monitoring: {prometheusRules: {onlineQuality: {baselineWindow: 2h}}}\n")
    short = prometheus_rule(chart, values=two_hours)
    evals = [("1570m", name, fired("v2", "v3", by=short)), ("28h", name, [])]
    check(promtool, short, [case(series, evals, interval="5m")], tmp_path, every="5m")


def test_hit_rate_alert_needs_positive_feedback_in_both_windows(promtool, chart, tmp_path):
    """The same drop, silent with too few positives in the window (v4: 36 an hour) or in the
    baseline (v5: 29 over the day before, then 1200 an hour)."""
    rule = prometheus_rule(chart)
    name = "MetaRecOnlineHitRateDropped"
    series = {
        **feedback(f'{PROD}, model_version="v4"', 3, 0.24, 0.02),
        f'metarec_feedback_positive_total{{{PROD}, model_version="v5"}}': (
            f"0+0.1x{DROP_AT} {0.1 * DROP_AT}+100x{STEPS - DROP_AT}"
        ),
        f'metarec_feedback_hits_total{{{PROD}, model_version="v5"}}': (
            f"0+0.024x{DROP_AT} {0.024 * DROP_AT}+2x{STEPS - DROP_AT}"
        ),
    }
    evals = [(t, name, []) for t in ("1550m", "1570m", "27h", "28h")]
    check(promtool, rule, [case(series, evals, interval="5m")], tmp_path, every="5m")


def test_features_stale_and_freshness_unknown(promtool, chart, tmp_path):
    rule = prometheus_rule(chart)
    fresh = "metarec_feature_freshness_seconds"
    series = {
        # Two pods: the freshest knowledge counts (min); user_profile crosses 2 days at ~47m.
        f'{fresh}{{{PROD}, instance="a", feature_view="user_profile"}}': "170000+60x120",
        f'{fresh}{{{PROD}, instance="b", feature_view="user_profile"}}': "170000+60x120",
        f'{fresh}{{{PROD}, instance="a", feature_view="item_profile"}}': "3600x120",
        f"metarec_feature_freshness_error{{{PROD}}}": "0x10 1x60",
    }
    stale = "Feature view user_profile was last materialised 2d 0h 43m 20s ago."
    unknown = "The adaptation services cannot read the Feast registry."
    evals = [
        ("40m", "MetaRecFeaturesStale", []),
        (
            "90m",
            "MetaRecFeaturesStale",
            [expect(rule, "MetaRecFeaturesStale", {"feature_view": "user_profile"}, stale)],
        ),
        ("20m", "MetaRecFeatureFreshnessUnknown", []),
        (
            "40m",
            "MetaRecFeatureFreshnessUnknown",
            [expect(rule, "MetaRecFeatureFreshnessUnknown", {}, unknown)],
        ),
    ]
    check(promtool, rule, [case(series, evals)], tmp_path)


def test_retrain_missed_from_kube_state_metrics(promtool, chart, tmp_path):
    """Hourly samples over 10 days: an old last success, no success since creation, a
    suspended CronJob (no alert) and a weekly success (no alert)."""
    rule = prometheus_rule(chart)
    job = {"cronjob": "mr-metarec-retrain"}
    late = "The scheduled retrain mr-metarec-retrain has not succeeded for 9d 23h 0m 0s."
    never = "The scheduled retrain mr-metarec-retrain has not succeeded for 10d 0h 0m 0s."
    success, created = "kube_cronjob_status_last_successful_time", "kube_cronjob_created"
    suspend = "kube_cronjob_spec_suspend"
    cases = [
        case({f"{success}{{{CRON}}}": "3600x240", f"{suspend}{{{CRON}}}": "0x240"},
             [("240h", "MetaRecRetrainMissed", [expect(rule, "MetaRecRetrainMissed", job, late)])],
             interval="1h"),
        case({f"{created}{{{CRON}}}": "0x240", f"{suspend}{{{CRON}}}": "0x240"},
             [("240h", "MetaRecRetrainMissed", [expect(rule, "MetaRecRetrainMissed", job, never)])],
             interval="1h"),
        case({f"{success}{{{CRON}}}": "3600x240", f"{suspend}{{{CRON}}}": "1x240"},
             [("240h", "MetaRecRetrainMissed", [])], interval="1h"),
        case({f"{success}{{{CRON}}}": "3600x167 608400x73", f"{suspend}{{{CRON}}}": "0x240"},
             [("240h", "MetaRecRetrainMissed", [])], interval="1h"),
    ]  # fmt: skip
    check(promtool, rule, cases, tmp_path, every="6h")
