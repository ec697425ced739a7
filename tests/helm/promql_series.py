"""Which series a PromQL expression reads, and which series dashboards and alerts may read.

Allowed: the ``metarec_*`` series of :mod:`metarec.metrics_contract` (the names the service and
the local router export; a ``_bucket``/``_sum``/``_count`` sample resolves to its series when
the exporters make that a histogram or summary), and the external series below, each from a
component the cluster runs beside MetaRec (docs/kubernetes.md, "Dashboards and alerts", lists
them with their source).
"""

from __future__ import annotations

import re

import promql_parser
from metarec import metrics_contract
from metarec.rollout.routers.local_metrics import RouterMetrics
from metarec.serving.metrics import ServingMetrics

# External series → where they come from. Keep docs/kubernetes.md's list in step.
EXTERNAL_SERIES = {
    "up": "Prometheus (one per scraped target)",
    "kube_cronjob_status_last_successful_time": "kube-state-metrics",
    "kube_cronjob_next_schedule_time": "kube-state-metrics",
    "kube_cronjob_created": "kube-state-metrics",
    "kube_cronjob_spec_suspend": "kube-state-metrics",
    "kube_job_status_failed": "kube-state-metrics",
    "flagger_canary_weight": "Flagger",
    "flagger_canary_status": "Flagger",
}
SAMPLE_SUFFIXES = ("_bucket", "_sum", "_count")
# Grafana's template variables, replaced by values the PromQL parser accepts.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": "metarec", "$model_version": ".*"}


def contract_series() -> set[str]:
    """Every series name the metrics contract declares."""
    return {
        value
        for name, value in vars(metrics_contract).items()
        if name.isupper() and isinstance(value, str) and value.startswith("metarec_")
    }


def distributions() -> set[str]:
    """Series the exporters expose as histograms or summaries (with _bucket/_sum/_count)."""
    families = [*ServingMetrics(model_version="v").registry.collect(), *RouterMetrics().collect()]
    return {f.name for f in families if f.type in ("histogram", "summary")}


def series_in(expr: str) -> set[str]:
    """Names of the series an expression selects (parsed, so labels and functions never count)."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def resolve(name: str, declared: set[str], histograms: set[str]) -> str | None:
    """The declared series a sample name belongs to (``x_bucket`` of a histogram → ``x``)."""
    if name in declared:
        return name
    base = re.sub(rf"({'|'.join(SAMPLE_SUFFIXES)})$", "", name)
    return base if base != name and base in declared & histograms else None


def unknown_series(expr: str) -> set[str]:
    """Series an expression reads that are neither in the contract nor external."""
    declared, histograms = contract_series(), distributions()
    return {
        n
        for n in series_in(expr)
        if n not in EXTERNAL_SERIES and not resolve(n, declared, histograms)
    }
