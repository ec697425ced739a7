import math
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

from metarec import metrics_contract as contract
from metarec.serving.metrics import FeatureFreshness, ServingMetrics
from prometheus_client import CollectorRegistry, generate_latest

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Registry:
    """A stand-in for the Feast registry: the ends it holds, how often read, whether up."""

    def __init__(self, ends: dict[str, datetime | None]) -> None:
        self.ends = ends
        self.reads = 0
        self.up = True

    def __call__(self) -> dict[str, datetime | None]:
        self.reads += 1
        if not self.up:
            raise ConnectionError("registry database unreachable")
        return dict(self.ends)


def _freshness(registry: Registry, clock: Clock, read_every_s: float = 60.0):
    prometheus = CollectorRegistry()
    gauges = FeatureFreshness(registry, registry=prometheus, read_every_s=read_every_s, clock=clock)
    return gauges, prometheus


def _sample(prometheus: CollectorRegistry, name: str, view: str | None = None) -> float | None:
    labels = {} if view is None else {contract.FEATURE_VIEW: view}
    return prometheus.get_sample_value(name, labels)


def test_freshness_is_seconds_since_the_latest_materialisation_of_each_view():
    registry = Registry({"user_profile": T0 - timedelta(minutes=5), "item_profile": None})
    clock = Clock()
    gauges, prometheus = _freshness(registry, clock)
    gauges.update()
    assert _sample(prometheus, contract.FEATURE_FRESHNESS, "user_profile") == 300.0
    assert _sample(prometheus, contract.FEATURE_FRESHNESS, "item_profile") == math.inf
    end = (T0 - timedelta(minutes=5)).timestamp()
    assert _sample(prometheus, contract.FEATURE_LAST_MATERIALIZATION, "user_profile") == end
    assert _sample(prometheus, contract.FEATURE_LAST_MATERIALIZATION, "item_profile") == 0
    assert _sample(prometheus, contract.FEATURE_FRESHNESS_ERROR) == 0


def test_registry_is_read_at_most_every_interval_while_the_age_keeps_growing():
    registry = Registry({"user_profile": T0})
    clock = Clock()
    gauges, prometheus = _freshness(registry, clock, read_every_s=60)
    gauges.update()
    clock.advance(30)
    registry.ends["user_profile"] = T0 + timedelta(seconds=20)  # materialised meanwhile
    gauges.update()
    assert registry.reads == 1
    assert _sample(prometheus, contract.FEATURE_FRESHNESS, "user_profile") == 30.0  # cached end
    clock.advance(30)
    gauges.update()
    assert registry.reads == 2
    assert _sample(prometheus, contract.FEATURE_FRESHNESS, "user_profile") == 40.0  # new end


def test_unreachable_registry_raises_the_error_gauge_and_keeps_the_last_known_ends():
    registry = Registry({"user_profile": T0})
    clock = Clock()
    gauges, prometheus = _freshness(registry, clock, read_every_s=10)
    gauges.update()
    registry.up = False
    clock.advance(15)
    gauges.update()  # does not raise
    assert _sample(prometheus, contract.FEATURE_FRESHNESS_ERROR) == 1
    assert _sample(prometheus, contract.FEATURE_FRESHNESS, "user_profile") == 15.0
    registry.up = True
    clock.advance(10)
    gauges.update()
    assert _sample(prometheus, contract.FEATURE_FRESHNESS_ERROR) == 0


def test_nothing_but_the_error_is_exported_when_the_registry_was_never_read():
    registry = Registry({"user_profile": T0})
    registry.up = False
    gauges, prometheus = _freshness(registry, Clock())
    gauges.update()
    text = generate_latest(prometheus).decode()
    assert f"{contract.FEATURE_FRESHNESS_ERROR} 1.0" in text
    assert "user_profile" not in text


def test_a_view_no_longer_applied_reads_nan():
    registry = Registry({"user_profile": T0, "user_history": T0})
    clock = Clock()
    gauges, prometheus = _freshness(registry, clock, read_every_s=1)
    gauges.update()
    del registry.ends["user_history"]
    clock.advance(5)
    gauges.update()
    assert math.isnan(_sample(prometheus, contract.FEATURE_FRESHNESS, "user_history"))
    assert _sample(prometheus, contract.FEATURE_FRESHNESS, "user_profile") == 5.0


def test_serving_metrics_export_freshness_only_with_a_reader():
    plain = ServingMetrics(model_version="metarec:v3")
    plain.observe_freshness()  # no reader: nothing to do
    assert contract.FEATURE_FRESHNESS not in generate_latest(plain.registry).decode()

    end = datetime.now(UTC) - timedelta(hours=1)
    metrics = ServingMetrics(model_version="metarec:v3", materializations=lambda: {"u": end})
    metrics.observe_freshness()
    text = generate_latest(metrics.registry).decode()
    assert f'{contract.FEATURE_FRESHNESS}{{feature_view="u"}} 36' in text  # 3600.x s
    assert f'{contract.FEATURE_LAST_MATERIALIZATION}{{feature_view="u"}}' in text
    assert f"{contract.FEATURE_FRESHNESS_ERROR} 0.0" in text


def test_freshness_reaches_the_multiprocess_metrics_that_bentoml_serves(tmp_path):
    # Under `bentoml serve` the values go through prometheus_client's multiprocess files
    # (chosen at import, hence a fresh interpreter), collected by /metrics.
    script = textwrap.dedent(
        """
        from datetime import UTC, datetime, timedelta
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector
        from metarec.serving.metrics import ServingMetrics

        end = datetime.now(UTC) - timedelta(seconds=90)
        ServingMetrics(
            model_version="m:v1", materializations=lambda: {"user_profile": end, "never": None}
        ).observe_freshness()
        scraped = CollectorRegistry()
        MultiProcessCollector(scraped)
        print(generate_latest(scraped).decode())
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert f'{contract.FEATURE_FRESHNESS}{{feature_view="user_profile"}} 9' in out  # 90.x s
    assert f'{contract.FEATURE_FRESHNESS}{{feature_view="never"}} +Inf' in out
    assert f"{contract.FEATURE_FRESHNESS_ERROR} 0.0" in out
