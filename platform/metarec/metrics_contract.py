"""The Prometheus series and labels that MetaRec's producers and consumers agree on.

Producers: the adaptation service (:mod:`metarec.serving.metrics`), the local weighted
router (:mod:`metarec.rollout.routers.local_metrics`) and the rollout controller's view of the
registry (:mod:`metarec.ops.control_metrics`). Consumers: the canary analysis
(:mod:`metarec.rollout.metrics`) and the chart's dashboards (``scripts/dashboards.py``). Both
sides import the names from here, so a rename is one edit and the two can never disagree.

Names are the exposed sample names (a counter's ``_total`` included); prometheus_client accepts
them as they are for a ``Counter``. This module imports nothing, so any package may use it.
"""

from __future__ import annotations

# ---------------------------------------------------------------- labels
ENDPOINT = "endpoint"
MODEL_VERSION = "model_version"
STATUS = "status"  # the HTTP status class: "2xx", "4xx", "5xx"
BACKEND = "backend"  # the router's side: "production" or "canary"
LE = "le"  # a histogram bucket's upper bound
FEATURE_VIEW = "feature_view"  # a Feast feature view's name

# Endpoints whose requests are traffic (health, metadata and /metrics are not).
TRAFFIC_ENDPOINTS = ("recommend", "predict", "feedback")

# ---------------------------------------------------------------- adaptation service
REQUESTS = "metarec_requests_total"  # counter {endpoint, model_version, status}
REQUEST_LATENCY = "metarec_request_latency_seconds"  # histogram {endpoint, model_version}
ADAPTATION_STEPS = "metarec_adaptation_steps_total"  # counter {model_version}
ADAPTATION_BATCH_SIZE = "metarec_adaptation_batch_size"  # histogram {model_version}
FEEDBACK = "metarec_feedback_total"  # counter {model_version}: scored feedback events
# Summary {model_version}: its ``_sum`` is a monotonic sum of |predicted - observed|, so the
# windowed online MAE is Δ FEEDBACK_ABS_ERROR_SUM / Δ FEEDBACK.
FEEDBACK_ABS_ERROR = "metarec_feedback_abs_error"
FEEDBACK_ABS_ERROR_SUM = f"{FEEDBACK_ABS_ERROR}_sum"
ONLINE_MAE = "metarec_online_mae"  # gauge {model_version}: rolling MAE
FEEDBACK_POSITIVE = "metarec_feedback_positive_total"  # counter {model_version}
FEEDBACK_HITS = "metarec_feedback_hits_total"  # counter {model_version}
ONLINE_HIT_RATE = "metarec_online_hit_rate"  # gauge {model_version}: rolling hit rate

# Live drift of the traffic against the version's training reference (metarec.serving.drift),
# over the last ``serving.drift_window_requests`` /recommend and /predict requests, recomputed
# at most every ``serving.drift_refresh_seconds`` (never per request).
STATISTIC = "statistic"  # label: which distribution a drift series compares
DRIFT_STATISTICS = ("support_size", "item_popularity", "predicted_score")
# Gauge {model_version, statistic}: population stability index of the window vs the reference
# (< 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift); not set without a reference.
DRIFT_PSI = "metarec_drift_psi"
# Gauge {model_version}: share of the window's requests with a cold start (support size 0).
COLD_START_SHARE = "metarec_cold_start_share"
# Gauge {model_version}: the reference's cold-start share (not set when unknown).
REFERENCE_COLD_START_SHARE = "metarec_reference_cold_start_share"
# Gauge {model_version}: requests in the current drift window (alerts require a minimum).
DRIFT_WINDOW_REQUESTS = "metarec_drift_window_requests"
# Gauges {model_version}: the version's offline evaluation from its model card (not set when
# the card has no such metric), to compare with metarec_online_mae / metarec_online_hit_rate.
OFFLINE_MAE = "metarec_offline_mae"
OFFLINE_HIT_RATE = "metarec_offline_hit_rate"

# Feature freshness (adaptation service), read from the Feast registry on a timer, not per
# request. Gauge {feature_view}: seconds since the end of the view's latest materialisation
# (+Inf: applied, never materialised; NaN: no longer applied).
FEATURE_FRESHNESS = "metarec_feature_freshness_seconds"
# Gauge {feature_view}: that end as a Unix time (0: never), for ``time() - x`` in PromQL.
FEATURE_LAST_MATERIALIZATION = "metarec_feature_last_materialization_timestamp_seconds"
# Gauge: 1 while the latest registry read failed (the two above then keep the last known ends).
FEATURE_FRESHNESS_ERROR = "metarec_feature_freshness_error"

# ---------------------------------------------------------------- local weighted router
ROUTER_REQUESTS = "metarec_router_requests_total"  # counter {backend, endpoint, status}
ROUTER_LATENCY = "metarec_router_request_duration_seconds"  # histogram {backend, endpoint}
ROUTER_METRICS_PATH = "/-/rollout/metrics"  # where the router exposes them

# ---------------------------------------------------------------- registry and rollout controller
# Read from the registry database on each scrape of the rollout controller's health port
# (GET /metrics; metarec.ops.control_metrics): every registered model, by name, up to a bound.
MODEL = "model"  # a registered model's name
VERSION = "version"  # a version number of that model ("3")
PHASE = "phase"  # a rollout phase (metarec.rollout.Phase: "Progressing", "Succeeded"…)
ACTION = "action"  # a ledger action (metarec.registry.Action: "register", "promote"…)
PRODUCTION_VERSION = "metarec_production_version"  # gauge {model}: absent while none
STAGING_VERSION = "metarec_staging_version"  # gauge {model}: the newest staging version
# Gauge {model, version}: canary weight in percent of the latest embedded rollout while it is
# active, 0 once it ended (version: that rollout's; "" before the model's first rollout).
CANARY_WEIGHT = "metarec_canary_weight"
# Gauge {model, version, phase}: 1 for the phase of the model's latest rollout, 0 for the others.
ROLLOUT_PHASE = "metarec_rollout_phase"
ROLLOUT_FAILED_CHECKS = "metarec_rollout_failed_checks"  # gauge {model, version}: in a row
# Counter {model, action}: ledger entries (append-only, so a counter), 0 for actions not seen.
REGISTRY_EVENTS = "metarec_registry_events_total"
# Gauge {model, action}: Unix time of the newest ledger entry of the action (absent: none yet).
REGISTRY_LAST_EVENT = "metarec_registry_last_event_timestamp_seconds"
# Gauge {model}: Unix time the newest version was registered (the last training that passed the
# gate; a rejected one is REGISTRY_LAST_EVENT{action="reject"}).
LAST_TRAINING = "metarec_last_training_timestamp_seconds"
# Gauge: 1 while the scrape's read of the registry failed (the series above are then absent).
REGISTRY_READ_ERROR = "metarec_registry_read_error"


def bucket(histogram: str) -> str:
    """The sample name of a histogram's buckets: ``x`` → ``x_bucket``."""
    return f"{histogram}_bucket"
