from metarec.serving.metrics import ServingMetrics, status_class
from metarec.serving.quality import (
    POSITIVE_RATING,
    OnlineHitRate,
    PredictionMemory,
    RollingMAE,
    ServedLists,
)
from prometheus_client import generate_latest


def test_prediction_memory_forgets_oldest_first():
    memory = PredictionMemory(capacity=2)
    memory.remember(1, [10, 11], [3.0, 4.0])
    memory.remember(2, [10], [2.0])
    assert memory.get(1, 10) is None
    assert memory.get(1, 11) == 4.0
    assert memory.get(2, 10) == 2.0
    assert len(memory) == 2
    PredictionMemory(capacity=0).remember(1, [1], [1.0])


def test_rolling_mae_keeps_a_window():
    mae = RollingMAE(window=2)
    assert mae.add([1.0]) == 1.0
    assert mae.add([0.0, 0.5]) == 0.25


def test_metrics_are_labelled_with_the_model_version_and_exposed_under_contract_names():
    metrics = ServingMetrics(model_version="metarec:v3")
    metrics.observe_request("recommend", 200, 0.01)
    metrics.observe_request("recommend", 422, 0.002)
    metrics.observe_batch(4, steps=3)
    metrics.observe_feedback([0.5, 1.5], mae=1.0)
    text = generate_latest(metrics.registry).decode()
    assert (
        'metarec_requests_total{endpoint="recommend",model_version="metarec:v3",status="2xx"} 1.0'
        in text
    )
    assert 'status="4xx"} 1.0' in text
    assert 'metarec_adaptation_steps_total{model_version="metarec:v3"} 12.0' in text
    assert 'metarec_feedback_total{model_version="metarec:v3"} 2.0' in text
    assert 'metarec_feedback_abs_error_sum{model_version="metarec:v3"} 2.0' in text
    assert 'metarec_online_mae{model_version="metarec:v3"} 1.0' in text
    assert "metarec_request_latency_seconds_bucket" in text
    # Two instances in one process do not collide (no global registry).
    ServingMetrics(model_version="metarec:v4")


def test_status_class():
    assert status_class(200) == "2xx"
    assert status_class(413) == "4xx"
    assert status_class(503) == "5xx"


def test_served_lists_keep_the_last_list_per_user_least_recently_served_forgotten_first():
    lists = ServedLists(capacity=2)
    lists.remember(1, [30, 10, 20])
    lists.remember(2, [5])
    assert lists.contains(1, 10) is True and lists.contains(1, 11) is False
    lists.remember(1, [11])  # a new list replaces the last one
    assert lists.contains(1, 10) is False and lists.contains(1, 11) is True
    lists.remember(3, [7])  # user 2 was served least recently: forgotten
    assert lists.contains(2, 5) is None and len(lists) == 2
    assert lists.contains(99, 1) is None  # never served a list
    nothing = ServedLists(capacity=0)
    nothing.remember(1, [1])
    assert nothing.contains(1, 1) is None and len(nothing) == 0


def test_online_hit_rate_counts_positive_events_of_served_users_only():
    tracker = OnlineHitRate(capacity=10, window=100)
    assert POSITIVE_RATING == 4.0
    assert tracker.score([(1, 10, 5.0)]).rate is None  # no list served yet: nothing counts
    tracker.served(1, [10, 11, 12])
    counted = tracker.score(
        [
            (1, 10, 5.0),  # positive, in the list: a hit
            (1, 13, 4.0),  # positive, not in the list: a miss
            (1, 11, 3.5),  # not positive: not counted
            (2, 10, 5.0),  # user 2 was never served a list: not counted
        ]
    )
    assert (counted.positives, counted.hits, counted.rate) == (2, 1, 0.5)
    assert tracker.score([(1, 11, 1.0)]).rate == 0.5  # no positive event: rate unchanged


def test_events_without_a_rating_are_positive_interactions():
    tracker = OnlineHitRate(capacity=10, window=100)
    tracker.served(1, [10, 11])
    counted = tracker.score(
        [
            (1, 10, None),  # an interaction, in the list: a hit
            (1, 12, None),  # an interaction, not in the list: a miss
            (1, 11, 2.0),  # a low rating: not positive
            (2, 10, None),  # user 2 was never served a list: not counted
        ]
    )
    assert (counted.positives, counted.hits, counted.rate) == (2, 1, 0.5)


def test_online_hit_rate_rolls_over_the_last_window_positive_events():
    tracker = OnlineHitRate(capacity=10, window=4)
    tracker.served(1, [1])
    tracker.score([(1, 1, 5.0)] * 4)
    assert tracker.score([(1, 2, 5.0)] * 3).rate == 0.25  # 1 hit left in the last 4


def test_hit_series_are_labelled_with_the_model_version():
    metrics = ServingMetrics(model_version="metarec:v3")
    text = generate_latest(metrics.registry).decode()
    # The series exist from the start, so rates are defined at once.
    assert 'metarec_feedback_positive_total{model_version="metarec:v3"} 0.0' in text
    assert 'metarec_feedback_hits_total{model_version="metarec:v3"} 0.0' in text
    metrics.observe_hits(4, 1, 0.25)
    metrics.observe_hits(0, 0, None)  # no positive event yet: the gauge keeps its value
    text = generate_latest(metrics.registry).decode()
    assert 'metarec_feedback_positive_total{model_version="metarec:v3"} 4.0' in text
    assert 'metarec_feedback_hits_total{model_version="metarec:v3"} 1.0' in text
    assert 'metarec_online_hit_rate{model_version="metarec:v3"} 0.25' in text
