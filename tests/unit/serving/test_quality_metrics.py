from metarec.serving.metrics import ServingMetrics, status_class
from metarec.serving.quality import PredictionMemory, RollingMAE
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
