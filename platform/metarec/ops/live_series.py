"""The live per-version series of the adaptation services, for ``metarec status``.

Read from Prometheus when ``rollout.prometheus_url`` is set (a cluster), else scraped from the
services' own ``/metrics`` at ``rollout.production_url`` and ``rollout.canary_url`` (a laptop).
Only gauges labelled by ``model_version`` are kept: online quality, drift, cold-start share
and the offline evaluation each version was registered with. The offline MAE is the online
MAE's quantity; the offline hit rate is the card's user-level hit@10 (any held-out liked item
in the top 10), not the online hit rate's per-event quantity, and is shown under that name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ConfigDict, Field

from metarec import metrics_contract as mc
from metarec.config import Settings

# The gauges shown per version, in this order; a drift series is shown per statistic.
SHOWN = (
    mc.OFFLINE_MAE,
    mc.ONLINE_MAE,
    mc.OFFLINE_HIT_RATE,
    mc.ONLINE_HIT_RATE,
    mc.COLD_START_SHARE,
    mc.DRIFT_WINDOW_REQUESTS,
    mc.DRIFT_PSI,
)


class VersionSeries(BaseModel):
    """One served version's live values: series name (``drift_psi[statistic]``) → value."""

    model_config = ConfigDict(frozen=True)

    model_version: str
    values: dict[str, float] = Field(default_factory=dict)


class LiveSeries(BaseModel):
    """What the services (or Prometheus) said, and which could not be read."""

    model_config = ConfigDict(frozen=True)

    source: str
    versions: list[VersionSeries] = Field(default_factory=list)
    unreachable: dict[str, str] = Field(default_factory=dict)


def series_key(name: str, labels: dict[str, str]) -> str:
    """The key of a sample: its name, with the drift statistic in brackets."""
    statistic = labels.get(mc.STATISTIC)
    return f"{name}[{statistic}]" if statistic else name


def read_live_series(settings: Settings, *, timeout_s: float = 2.0) -> LiveSeries:
    """The live per-version values (never raises: what cannot be read is named).

    Args:
        settings: ``rollout.prometheus_url``, else ``rollout.production_url`` / ``canary_url``.
        timeout_s: Per request.
    """
    rollout = settings.rollout
    if rollout.prometheus_url:
        return _from_prometheus(rollout.prometheus_url, timeout_s=timeout_s)
    found: dict[str, dict[str, float]] = {}
    unreachable = {}
    for url in dict.fromkeys((rollout.production_url, rollout.canary_url)):
        try:
            response = httpx.get(f"{url.rstrip('/')}/metrics", timeout=timeout_s)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            unreachable[url] = type(exc).__name__
            continue
        for version, key, value in _samples(response.text):
            found.setdefault(version, {})[key] = value
    return LiveSeries(source="scrape", versions=_versions(found), unreachable=unreachable)


def _samples(text: str) -> Iterable[tuple[str, str, float]]:
    """``(model_version, key, value)`` of the shown gauges in a Prometheus exposition."""
    for family in text_string_to_metric_families(text):
        if family.name not in SHOWN:
            continue
        for sample in family.samples:
            version = sample.labels.get(mc.MODEL_VERSION)
            if version and not math.isnan(sample.value):
                yield version, series_key(sample.name, sample.labels), sample.value


def _from_prometheus(url: str, *, timeout_s: float) -> LiveSeries:
    """The shown gauges by instant queries (one per name) to the Prometheus HTTP API."""
    found: dict[str, dict[str, float]] = {}
    query = f"{url.rstrip('/')}/api/v1/query"
    try:
        for name in SHOWN:
            response = httpx.get(query, params={"query": name}, timeout=timeout_s)
            response.raise_for_status()
            for item in response.json()["data"]["result"]:
                labels, value = item["metric"], float(item["value"][1])
                version = labels.get(mc.MODEL_VERSION)
                if version and not math.isnan(value):
                    found.setdefault(version, {})[series_key(name, labels)] = value
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return LiveSeries(source="prometheus", unreachable={url: type(exc).__name__})
    return LiveSeries(source="prometheus", versions=_versions(found))


def _versions(found: dict[str, dict[str, float]]) -> list[VersionSeries]:
    return [VersionSeries(model_version=v, values=found[v]) for v in sorted(found)]
