"""Write the chart's Grafana dashboards (helm/metarec/dashboards/*.json).

Four dashboards: service, model quality & drift, rollout, data & training. Generated rather than
hand-written: the selectors, variables, units and grid layout are written once
(:mod:`grafana_json`), so 41 panels cannot drift apart and a series rename is one edit here.
``tests/helm/test_dashboards.py`` checks that the committed JSON is what this writes, and that
every query names only series of :mod:`metarec.metrics_contract` or of the external allow-list
(Prometheus' ``up``, kube-state-metrics, Flagger) documented in docs/kubernetes.md.

Usage: ``python scripts/dashboards.py`` writes the files; ``--check`` exits 1 when a committed
file differs from what it would write.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_json import Panel, Rows, dashboard

OUT = Path(__file__).resolve().parents[1] / "helm" / "metarec" / "dashboards"
RATE = "$__rate_interval"
NS = 'namespace="$namespace"'
VER = f'{NS}, model_version=~"$model_version"'
TRAFFIC = 'endpoint=~"recommend|predict|feedback"'
SCORING = 'endpoint=~"recommend|predict"'
WINDOW = "1h"  # the online-quality window (monitoring.prometheusRules.onlineQuality.window)
# PSI bands of metarec_drift_psi (metrics_contract.DRIFT_PSI): moderate and major shift.
PSI_STEPS = ((None, "green"), (0.1, "orange"), (0.25, "red"))
STATUS_TEXTS = {"0": "running", "1": "succeeded", "2": "failed"}
LATENCY = "metarec_request_latency_seconds"
MAE = ("metarec_feedback_abs_error_sum", "metarec_feedback_total")
HITS = ("metarec_feedback_hits_total", "metarec_feedback_positive_total")
EVENTS_WINDOW = "1h"  # registry events are counted per hour (they are rare)


def q(expr: str, legend: str = "") -> tuple[str, str]:
    """A query (whitespace collapsed) and its legend (Grafana ``{{label}}`` templates)."""
    return (" ".join(expr.split()), legend)


def one(title: str, unit: str, expr: str, legend: str, description: str = "", **kw: Any) -> Panel:
    """A panel with one query."""
    return Panel(title, (q(expr, legend),), unit, description, **kw)


def rate(metric: str, selector: str, by: str = "model_version") -> str:
    """Per-second rate of a counter, summed over pods by ``by``."""
    return f"sum by ({by}) (rate({metric}{{{selector}}}[{RATE}]))"


def quantile(value: float, histogram: str, selector: str, by: str = "") -> str:
    """``histogram_quantile`` over the summed rate of a histogram's buckets."""
    labels = ", ".join(["le", *([by] if by else [])])
    return f"histogram_quantile({value}, {rate(histogram + '_bucket', selector, labels)})"


def windowed(pair: tuple[str, str], selector: str, by: str = "model_version") -> str:
    """Δ numerator / Δ denominator over the quality window, summed over pods."""
    num, den = (f"sum by ({by}) (increase({m}{{{selector}}}[{WINDOW}]))" for m in pair)
    return f"{num} / {den}"


def service_rows() -> Rows:
    """Request rate, errors by class, latency percentiles and adaptation batches."""
    errors = rate("metarec_requests_total", f'{VER}, {TRAFFIC}, status="5xx"')
    total = rate("metarec_requests_total", f"{VER}, {TRAFFIC}")
    percentiles = ((0.5, "p50"), (0.95, "p95"), (0.99, "p99"))
    latency = tuple(q(quantile(p, LATENCY, f"{VER}, {SCORING}"), n) for p, n in percentiles)
    sizes = "metarec_adaptation_batch_size"
    batch = tuple(
        q(quantile(p, sizes, VER, "model_version"), n + " {{model_version}}")
        for p, n in percentiles[:2]
    )
    by_class = rate("metarec_requests_total", f'{VER}, status=~"4xx|5xx"', "status, endpoint")
    p99 = quantile(0.99, LATENCY, f"{VER}, {SCORING}", "endpoint, model_version")
    return [
        ("Traffic", [
            one("Request rate by endpoint", "reqps",
                rate("metarec_requests_total", VER, "endpoint"), "{{endpoint}}"),
            one("Request rate by version", "reqps", total, "{{model_version}}"),
            one("Errors by class", "reqps", by_class, "{{status}} {{endpoint}}",
                "4xx: bad input, answered with a reason; 5xx: the service failed."),
            one("5xx ratio by version", "percentunit", f"{errors} / {total}", "{{model_version}}",
                "Alert MetaRecHighErrorRatio (monitoring.prometheusRules.errorRatio).",
                steps=((None, "green"), (0.01, "orange"), (0.05, "red"))),
        ]),
        ("Latency", [
            Panel("Latency of /recommend and /predict", latency, "s",
                  "Whole HTTP request in the service process.",
                  steps=((None, "green"), (0.5, "red"))),
            one("p99 by endpoint and version", "s", p99, "{{endpoint}} {{model_version}}"),
        ]),
        ("Adaptation", [
            Panel("Adaptation batch size", batch, "none", "Requests adapted together in one batch.",
                  width=8),
            one("Inner-loop steps", "ops", rate("metarec_adaptation_steps_total", VER),
                "{{model_version}}", width=8),
            one("Serving targets up", "short", f'sum by (job) (up{{{NS}, job=~".*serving.*"}})',
                "{{job}}", "Prometheus' own `up` of the scraped serving targets (external).",
                kind="stat", width=8),
        ]),
    ]  # fmt: skip


def quality_rows() -> Rows:
    """Online MAE against the offline one, the online hit rate, drift, cold-start share."""
    psi_help = "PSI vs the training reference: < 0.1 stable, 0.1-0.25 moderate, > 0.25 major."
    psi = [
        one(f"PSI: {stat.replace('_', ' ')}", "none",
            f'max by (model_version) (metarec_drift_psi{{{VER}, statistic="{stat}"}})',
            "{{model_version}}", psi_help, steps=PSI_STEPS, width=8)
        for stat in ("support_size", "item_popularity", "predicted_score")
    ]  # fmt: skip
    mae = (
        q(windowed(MAE, VER), "online {{model_version}}"),
        q(f"max by (model_version) (metarec_offline_mae{{{VER}}})", "offline {{model_version}}"),
        q(f"avg by (model_version) (metarec_online_mae{{{VER}}})", "rolling {{model_version}}"),
    )
    # The card's hit@10 is user-level (any held-out liked item in the top 10), the online hit
    # rate per positive feedback event: it gets its own panel, never the online rate's reference.
    hits = (
        q(windowed(HITS, VER), "online {{model_version}}"),
        q(f"avg by (model_version) (metarec_online_hit_rate{{{VER}}})",
          "rolling {{model_version}}"),
    )  # fmt: skip
    feedback = (
        q(rate("metarec_feedback_total", VER), "scored {{model_version}}"),
        q(rate("metarec_feedback_positive_total", VER), "positive {{model_version}}"),
    )
    cold = (
        q(f"avg by (model_version) (metarec_cold_start_share{{{VER}}})", "live {{model_version}}"),
        q(f"max by (model_version) (metarec_reference_cold_start_share{{{VER}}})",
          "reference {{model_version}}"),
    )  # fmt: skip
    return [
        ("Online quality and the model card's evaluation", [
            Panel(f"MAE: online ({WINDOW}) vs offline", mae, "none",
                  "Online: summed |error| / scored feedback over the window, all pods. "
                  "Offline: the version's model card. Alert MetaRecOnlineMaeWorseThanOffline.",
                  width=8),
            Panel(f"Online hit rate ({WINDOW}) and rolling", hits, "percentunit",
                  "Share of positive feedback items that were in the last list served to the "
                  "user. Alert MetaRecOnlineHitRateDropped: below half the version's own rate "
                  "over the day before.", width=7),
            one("Offline hit@10 (user-level, card)", "percentunit",
                f"max by (model_version) (metarec_offline_hit_rate{{{VER}}})", "{{model_version}}",
                "The model card's share of new users with any held-out liked item in the top 10. "
                "Not comparable with the online hit rate (per feedback event).",
                kind="stat", width=3),
            Panel("Feedback events", feedback, "ops",
                  "Trusted feedback; the quality alerts need a minimum count.", width=6),
        ]),
        ("Drift of the traffic vs the training reference", [
            *psi,
            Panel("Cold-start share vs reference", cold, "percentunit",
                  "Requests with no known ratings (support size 0)."),
            one("Drift window requests", "short",
                f"max by (model_version) (metarec_drift_window_requests{{{VER}}})",
                "{{model_version}}", "The drift alerts need a minimum."),
        ]),
    ]  # fmt: skip


def rollout_rows() -> Rows:
    """Traffic split by track, versions served, canary vs production, Flagger's weight."""
    track = "metarec_io_track"
    share = (
        f"{rate('metarec_requests_total', f'{NS}, {SCORING}', track)} / "
        f"scalar(sum(rate(metarec_requests_total{{{NS}, {SCORING}}}[{RATE}])))"
    )
    served = f'count by ({track}, model_version) (metarec_requests_total{{{NS}, endpoint="recommend", status="2xx"}})'  # noqa: E501
    errors = rate("metarec_requests_total", f'{NS}, {TRAFFIC}, status="5xx"', track)
    total = rate("metarec_requests_total", f"{NS}, {TRAFFIC}", track)
    p99 = quantile(0.99, LATENCY, f"{NS}, {SCORING}", track)
    router = "metarec_router_request_duration_seconds"
    return [
        ("Traffic split", [
            one("Traffic share by track", "percentunit", share, "{{metarec_io_track}}",
                "Requests served by the production and canary pods (the monitor's track label)."),
            one("Versions served by track", "short", served,
                "{{metarec_io_track}} {{model_version}}",
                "A promotion shows as the production track changing version."),
        ]),
        ("Canary vs production", [
            one("5xx ratio by track", "percentunit", f"{errors} / {total}", "{{metarec_io_track}}",
                steps=((None, "green"), (0.01, "red")), width=8),
            one("p99 by track", "s", p99, "{{metarec_io_track}}", width=8),
            one(f"Online MAE by track ({WINDOW})", "none", windowed(MAE, NS, track),
                "{{metarec_io_track}}", width=8),
        ]),
        *controller_rows(),
        ("Flagger (rollout.engine=flagger)", [
            one("Canary weight", "percent", f"max by (workload) (flagger_canary_weight{{{NS}}})",
                "{{workload}}", "Flagger's traffic weight (external: Flagger's /metrics)."),
            one("Canary verdicts", "short", f"max by (name) (flagger_canary_status{{{NS}}})",
                "{{name}}", "Flagger's last status: 0 running, 1 promoted, 2 rolled back.",
                mappings=STATUS_TEXTS),
        ]),
        ("Local weighted router (laptop)", [
            one("Router requests by backend", "reqps",
                rate("metarec_router_requests_total", TRAFFIC, "backend"), "{{backend}}",
                "The local router's /-/rollout/metrics (where a Prometheus scrapes it): what "
                "it forwarded to production and canary, as the caller saw it."),
            one("Router p99 by backend", "s", quantile(0.99, router, TRAFFIC, "backend"),
                "{{backend}}", "A backend that never answered counts as 5xx, at its timeout."),
        ]),
    ]  # fmt: skip


def controller_rows() -> Rows:
    """The embedded controller's rollout and the registry's ledger (the controller's /metrics)."""
    by_rollout = "model, version"
    phase = f"max by ({by_rollout}, phase) (metarec_rollout_phase{{{NS}}}) > 0"
    counted = f"metarec_registry_events_total{{{NS}}}[{EVENTS_WINDOW}]"
    events = f"sum by (model, action) (increase({counted}))"
    versions = (
        q(f"max by (model) (metarec_production_version{{{NS}}})", "production {{model}}"),
        q(f"max by (model) (metarec_staging_version{{{NS}}})", "newest staging {{model}}"),
    )
    last = f"max by (model, action) (metarec_registry_last_event_timestamp_seconds{{{NS}}}) * 1000"
    source = "The rollout controller's /metrics, read from the registry on each scrape."
    return [
        ("Embedded rollout controller (rollout.engine=embedded)", [
            one("Canary weight", "percent",
                f"max by ({by_rollout}) (metarec_canary_weight{{{NS}}})",
                "{{model}} v{{version}}",
                f"The latest rollout's canary traffic weight; 0 once it ended. {source}",
                width=8),
            one("Rollout phase and verdict", "none", phase, "{{model}} v{{version}} {{phase}}",
                "The phase the latest rollout is in, over time: Succeeded (promoted), Failed "
                "(checks failed, canary weight 0) or Aborted end it.", kind="state-timeline",
                width=8),
            one("Failed checks in a row", "short",
                f"max by ({by_rollout}) (metarec_rollout_failed_checks{{{NS}}})",
                "{{model}} v{{version}}", "Analysis windows that failed in a row; the "
                "rollout fails at its failure threshold.",
                steps=((None, "green"), (1, "orange")), width=8),
        ]),
        ("Registry: gate and promotion events", [
            one(f"Gate and promotion events (per {EVENTS_WINDOW})", "short", events,
                "{{model}} {{action}}",
                "Ledger entries: register (gate passed), reject (gate failed), promote, "
                f"rollback, archive. {source}", width=8),
            Panel("Production and staging versions", versions, "none",
                  "A promotion shows as the production version stepping up.", width=8),
            one("Last event by action", "dateTimeAsIso", last, "{{model}} {{action}}",
                kind="stat", width=5),
            one("Registry read failing", "bool", f"max(metarec_registry_read_error{{{NS}}})",
                "error", "1 while the controller's scrape cannot read the registry database.",
                kind="stat", steps=((None, "green"), (1, "red")), width=3),
        ]),
    ]  # fmt: skip


def data_rows() -> Rows:
    """Feature freshness, materialisation, and the scheduled retrain (kube-state-metrics)."""
    retrain = f'{NS}, cronjob=~".*-retrain"'
    materialize = f'{NS}, cronjob=~".*-data-materialize"'
    last_end = "metarec_feature_last_materialization_timestamp_seconds"
    ksm = "kube-state-metrics (external series)."
    return [
        ("Features", [
            one("Feature freshness", "s",
                f"min by (feature_view) (metarec_feature_freshness_seconds{{{NS}}})",
                "{{feature_view}}", "Seconds since each view's latest materialisation "
                "(+Inf: never). Alert MetaRecFeaturesStale.",
                steps=((None, "green"), (86400, "orange"), (172800, "red"))),
            one("Last materialisation", "dateTimeAsIso",
                f"max by (feature_view) ({last_end}{{{NS}}}) * 1000", "{{feature_view}}",
                kind="stat", width=4),
            one("Feast registry read failing", "bool",
                f"max(metarec_feature_freshness_error{{{NS}}})", "error",
                "1 while the services cannot read the Feast registry.", kind="stat",
                steps=((None, "green"), (1, "red")), width=4),
            one("Materialise CronJob: since last success", "s",
                f"time() - max(kube_cronjob_status_last_successful_time{{{materialize}}})",
                "age", ksm, kind="stat", width=4),
        ]),
        ("Training", [
            one("Last training: time since", "s",
                f"time() - max by (model) (metarec_last_training_timestamp_seconds{{{NS}}})",
                "{{model}}", "Since the newest version was registered (its training passed "
                "the gate); the rollout controller's /metrics. A rejected candidate does not "
                "reset it.", kind="stat",
                steps=((None, "green"), (8 * 86400, "orange"), (15 * 86400, "red")), width=6),
            one("Retrain: last success", "dateTimeAsIso",
                f"max(kube_cronjob_status_last_successful_time{{{retrain}}}) * 1000", "last",
                f"The retrain CronJob's last success, {ksm} Alert MetaRecRetrainMissed.",
                kind="stat", width=6),
            one("Retrain: next run", "dateTimeAsIso",
                f"max(kube_cronjob_next_schedule_time{{{retrain}}}) * 1000", "next", ksm,
                kind="stat", width=6),
            one("Retrain: failed runs kept", "short",
                f'sum(kube_job_status_failed{{{NS}, job_name=~".*-retrain-.*"}})', "failed",
                ksm, kind="stat", steps=((None, "green"), (1, "red")), width=6),
        ]),
    ]  # fmt: skip


def dashboards() -> dict[str, dict[str, Any]]:
    """File name → dashboard, every dashboard the chart ships."""
    boards = (
        ("service", "Service", "Adaptation service: traffic, errors, latency, adaptation batches.",
         service_rows()),
        ("quality", "Model quality & drift", "Per model version: online quality vs the offline "
         "evaluation, drift of the traffic vs the training reference.", quality_rows()),
        ("rollout", "Rollout", "Canary traffic split, versions served, canary vs production; "
         "the embedded controller's canary weight, phase and failed checks; gate and "
         "promotion events of the registry; Flagger weight and verdicts.", rollout_rows()),
        ("data", "Data & training", "Feature freshness and materialisation; the last "
         "training registered; the scheduled retrain (kube-state-metrics).", data_rows()),
    )  # fmt: skip
    return {
        f"metarec-{uid}.json": dashboard(f"metarec-{uid}", f"MetaRec / {title}", text, rows)
        for uid, title, text, rows in boards
    }


def main(argv: list[str] | None = None) -> int:
    """Write the dashboards, or with ``--check`` name the files that differ."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name, board in dashboards().items():
        text = json.dumps(board, indent=2, ensure_ascii=False) + "\n"
        path = OUT / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
            continue
        OUT.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run python scripts/dashboards.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
