"""LocalWeightedRouter without a socket: user ids, the weighted choice, its metrics.

The proxy under real HTTP traffic is tested in ``tests/integration/test_rollout_local_router.py``.
"""

from __future__ import annotations

from metarec.rollout.routers import LocalWeightedRouter
from metarec.rollout.routers.local import user_bucket, user_id_of
from metarec.rollout.routers.local_metrics import RouterMetrics, endpoint_label


def test_user_id_is_read_from_the_body():
    assert user_id_of(b'{"user_id": 7, "item_ids": [1]}') == 7
    assert user_id_of(b'{"events": [{"user_id": "u9", "item_id": 1, "rating": 4}]}') == "u9"
    assert user_id_of(b'{"support": []}') is None
    assert user_id_of(b"not json") is None
    assert user_bucket(7) == user_bucket("7") and 0 <= user_bucket(7) < 100


def test_requests_without_user_split_by_weight():
    # Never started: choosing a side needs no socket.
    proxied = LocalWeightedRouter(
        production_url="http://127.0.0.1:9", canary_url="http://127.0.0.1:9", seed=1
    )
    proxied.set_weights(production=70, canary=30)
    assert {proxied.choose(b"") for _ in range(10)} == {"production", "canary"}
    share = sum(proxied.choose(b'{"support": []}') == "canary" for _ in range(4000)) / 4000
    assert 0.26 < share < 0.34
    proxied.set_weights(production=100, canary=0)
    assert {proxied.choose(b"{}") for _ in range(500)} == {"production"}


def test_router_metrics_belong_to_the_instance():
    first, second = RouterMetrics(), RouterMetrics(buckets=(0.1, 1.0))
    first.observe(backend="canary", endpoint="predict", status=503, seconds=0.05)
    first.observe(backend="canary", endpoint="predict", status=200, seconds=2.0)
    text = first.exposition().decode()
    assert (
        'metarec_router_requests_total{backend="canary",endpoint="predict",status="5xx"} 1.0'
        in text
    )
    assert 'le="+Inf"} 2.0' in text and "metarec_router_request_duration_seconds_sum" in text
    assert "canary" not in second.exposition().decode()  # no shared, global state
    assert endpoint_label("/predict?debug=1") == "predict"
    assert endpoint_label("/v1/recommend") == "recommend"
    assert endpoint_label("/metadata") == endpoint_label("/x/y/z") == "other"
