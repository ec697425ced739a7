"""The adaptation service as a real ``bentoml serve`` process over HTTP.

One small model is trained on a copy of the synthetic home, registered, promoted and served;
the tests call recommend, predict, feedback and metadata, compare served predictions with
offline evaluation's for the same support set, send bad input (always a 4xx naming the field),
read ``/metrics``, and fuzz the OpenAPI contract with schemathesis (never a 5xx).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from metarec.cli.main import run
from metarec.config import Settings, load_settings
from metarec.features.training_set import load_training_set
from metarec.learning.tasks import Task
from metarec.registry import Registry, VersionRef
from metarec.registry.types import VersionInfo
from metarec.serving.loading import offline_adaptation
from metarec.serving.process import ServiceProcess, feedback_headers
from metarec.testing.serving import mark_validated, train_and_register
from metarec.training.artifact import load_artifact, load_factor_model, load_ranker
from metarec.training.config import TrainingConfig
from metarec.training.encoding import FeatureEncoder
from metarec.training.evaluation import card_split
from metarec.training.factor_training import factor_predictions
from metarec.training.methods import AdaptedModel, adapted_predictions
from metarec.training.ranking import RankingTask
from metarec.training.ranking_eval import ServedRanker
from metarec.training.trainer import prepare, ranking_data

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Served and offline predictions run the same function on the same inputs; only the batch
# padding differs (masked support rows contribute exact zeros), so they agree to float32
# round-off. Stated tolerance: absolute 1e-5 on ratings (scale 1..5).
TOLERANCE = 1e-5
MAX_SUPPORT = 20
MAX_BODY = 20_000


@dataclass(frozen=True)
class Served:
    settings: Settings
    info: VersionInfo
    url: str
    training_set: Path
    log: Path
    feedback_token: str = ""

    @property
    def trusted(self) -> dict[str, str]:
        """Headers of a trusted caller (the feedback token)."""
        return feedback_headers(self.feedback_token)


@pytest.fixture(scope="module")
def served(synthetic_home: Settings, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("serving")
    shutil.copytree(synthetic_home.paths.home, root / "home")
    settings = load_settings(home=root / "home", registry={"export_bentoml": False})
    training_set = mark_validated(
        settings.paths.training_sets / "synthetic.parquet", root / "validated" / "ts.parquet"
    )
    info = train_and_register(settings, training_set, workdir=root / "work")
    log = root / "service.log"
    process = ServiceProcess(
        settings,
        version=info.tag,
        log_path=log,
        extra_env={
            "METAREC_SERVING__MAX_SUPPORT_SIZE": str(MAX_SUPPORT),
            "METAREC_SERVING__MAX_BODY_BYTES": str(MAX_BODY),
            "METAREC_SERVING__TORCH_THREADS": "1",
        },
    )
    with process:
        yield Served(settings, info, process.url, training_set, log, process.feedback_token)


@pytest.fixture(scope="module")
def client(served: Served):
    """A trusted caller (the team's backend): it sends the feedback token."""
    with httpx.Client(base_url=served.url, timeout=30, headers=served.trusted) as http:
        yield http


@pytest.fixture(scope="module")
def ratings(served: Served):
    df, _ = load_training_set(served.training_set)
    return df.sort_values(["user_id", "event_timestamp", "item_id"]).reset_index(drop=True)


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metadata_names_the_served_version(client: httpx.Client, served: Served):
    body = client.get("/metadata").json()
    assert body["model"] == "metarec"
    assert body["version"] == served.info.version
    assert body["model_version"] == served.info.tag
    assert body["stage"] == "production"
    assert body["feature_service"] == "online_adaptation"
    assert body["n_items"] == 150
    assert body["max_support_size"] == MAX_SUPPORT
    # The model's input fields, as the card's encoder lists them (ids have no view).
    with Registry.open(served.settings) as registry:
        folder = registry.fetch(
            VersionRef(model="metarec", version=served.info.version), served.log.parent / "meta"
        )
    encoder = FeatureEncoder(**load_artifact(folder)[1].encoder)
    fields = body["input_fields"]
    assert [f["name"] for f in fields] == [f.name for f in encoder.fields]
    assert fields == [{"vocabulary_size": None, **f} for f in encoder.describe()]
    by_name = {f["name"]: f for f in fields}
    assert by_name["genres"]["view"] == "item_profile" and by_name["genres"]["kind"] == "bag"
    assert by_name["gender"]["side"] == "user"
    assert client.get("/readyz").status_code == 200
    assert client.get("/livez").status_code == 200


def test_recommend_from_user_id_uses_recent_ratings(client: httpx.Client, served: Served):
    response = client.post("/recommend", json={"user_id": 1, "k": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == served.info.tag
    scores = [item["score"] for item in body["items"]]
    assert len(scores) == 5
    assert scores == sorted(scores, reverse=True)
    assert all(1.0 <= s <= 5.0 for s in scores)


def test_recommend_with_support_and_candidates(client: httpx.Client):
    support = [{"item_id": 1, "rating": 5}, {"item_id": 2, "rating": 1.5}]
    candidates = [1, 3, 4, 5, 6, 7]
    body = client.post(
        "/recommend", json={"support": support, "candidates": candidates, "k": 10}
    ).json()
    returned = [item["item_id"] for item in body["items"]]
    # Support items are never recommended; k larger than the candidates returns them all.
    assert sorted(returned) == [3, 4, 5, 6, 7]


def test_predictions_equal_offline_evaluation(client: httpx.Client, served: Served, ratings):
    with Registry.open(served.settings) as registry:
        folder = registry.fetch(
            VersionRef(model="metarec", version=served.info.version), served.log.parent / "copy"
        )
    model, card = load_artifact(folder)
    encoder = FeatureEncoder(**card.encoder)
    adapted = AdaptedModel(model, offline_adaptation(card), bool(card.inner_loop.get("meta_sgd")))
    # The service predicts ratings with the factor fold-in when the artifact has one (the
    # small test config trains one), else with the MeLU model.
    factor = load_factor_model(folder, card)
    served_model = "factor_map" if factor is not None else card.algorithm
    assert client.get("/metadata").json()["rating_model"] == served_model
    users = ratings.groupby("user_id").size()
    checked = 0
    for user_id in users[users >= 15].index[:3]:
        rows = ratings[ratings["user_id"] == user_id]
        support, query = rows.iloc[:10], rows.iloc[10:15]
        task = Task(
            user_id=int(user_id),
            support_x=encoder.encode(support),
            support_y=support["rating"].to_numpy(np.float32),
            support_items=support["item_id"].to_numpy(np.int64),
            query_x=encoder.encode(query),
            query_y=query["rating"].to_numpy(np.float32),
            query_items=query["item_id"].to_numpy(np.int64),
        )
        if factor is not None:
            offline = factor_predictions(factor, [task], device=torch.device("cpu"))[0]
        else:
            offline = adapted_predictions(adapted, [task], device=torch.device("cpu"))[0]
        body = client.post(
            "/predict",
            json={
                "user_id": int(user_id),
                "support": [
                    {"item_id": int(i), "rating": float(r)}
                    for i, r in zip(support["item_id"], support["rating"], strict=True)
                ],
                "item_ids": [int(i) for i in query["item_id"]],
            },
        ).json()
        online = np.array([p["rating"] for p in body["predictions"]])
        assert [p["item_id"] for p in body["predictions"]] == [int(i) for i in query["item_id"]]
        np.testing.assert_allclose(online, offline, atol=TOLERANCE, rtol=0)
        checked += 1
    assert checked == 3


def test_recommended_list_equals_offline_ranking(client: httpx.Client, served: Served, ratings):
    """The served list for a user and support set is the offline evaluation's list."""
    with Registry.open(served.settings) as registry:
        folder = registry.fetch(
            VersionRef(model="metarec", version=served.info.version), served.log.parent / "rank"
        )
    _, card = load_artifact(folder)
    parts = load_ranker(folder, card)
    assert parts is not None and card.ranker is not None
    config = TrainingConfig.build(card.hyperparameters)
    df, _ = load_training_set(served.training_set)
    split = card_split(df, card, config)
    data = ranking_data(
        prepare(df, split=split, encoder=FeatureEncoder(**card.encoder), config=config)
    )
    assert client.get("/metadata").json()["n_items"] == data.n_items  # same catalogue
    ranker = ServedRanker(
        model=parts.model,
        steps=int(card.ranker["inner_steps"]),
        ease=parts.ease,
        blend_weight=float(card.ranker["blend_weight"]),
    )
    position = {int(item): n for n, item in enumerate(data.item_ids)}
    users = ratings.groupby("user_id").size()
    for user_id in users[users >= 12].index[:3]:
        support = ratings[ratings["user_id"] == user_id].iloc[:8]
        task = RankingTask(
            user_id=int(user_id),
            support=np.array([position[int(i)] for i in support["item_id"]]),
            support_ratings=support["rating"].to_numpy(np.float32),
            relevant=np.zeros(0, np.int64),
        )
        every = np.ones(data.n_items, bool)
        scores = ranker.scores(data, [task], every)[0]
        scores[task.support] = -np.inf
        order = np.lexsort((data.item_ids, -scores))[:20]
        offline = [int(data.item_ids[n]) for n in order]
        body = client.post(
            "/recommend",
            json={
                "user_id": int(user_id),
                "support": [
                    {"item_id": int(i), "rating": float(r)}
                    for i, r in zip(support["item_id"], support["rating"], strict=True)
                ],
                "k": 20,
            },
        ).json()
        assert [item["item_id"] for item in body["items"]] == offline
        served_scores = [item["score"] for item in body["items"]]
        np.testing.assert_allclose(served_scores, scores[order], atol=1e-4, rtol=0)
        assert all(1.0 <= item["predicted_rating"] <= 5.0 for item in body["items"])


def test_feedback_updates_online_quality_metrics(client: httpx.Client, served: Served):
    before = client.get("/metrics").text
    tag = served.info.tag
    predicted = client.post(
        "/predict",
        json={"user_id": 2, "support": [{"item_id": 10, "rating": 4}], "item_ids": [11, 12]},
    ).json()["predictions"]
    events = [
        {"user_id": 2, "item_id": 11, "rating": 5},
        {"user_id": 2, "item_id": 12, "rating": 1},
        {"user_id": 3, "item_id": 13, "rating": 3},  # never predicted: adapted on the fly
    ]
    response = client.post("/feedback", json={"events": events})
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 3}
    after = client.get("/metrics").text
    count = metric(after, "metarec_feedback_total", model_version=tag) - metric(
        before, "metarec_feedback_total", model_version=tag
    )
    error_sum = metric(after, "metarec_feedback_abs_error_sum", model_version=tag) - metric(
        before, "metarec_feedback_abs_error_sum", model_version=tag
    )
    assert count == 3
    known = abs(predicted[0]["rating"] - 5) + abs(predicted[1]["rating"] - 1)
    assert known <= error_sum <= known + 4.0
    assert metric(after, "metarec_online_mae", model_version=tag) > 0
    assert metric(after, "metarec_adaptation_steps_total", model_version=tag) > 0


def test_unrated_feedback_counts_for_the_hit_rate_only(client: httpx.Client, served: Served):
    """An event without a rating is a positive interaction: a hit-rate positive, never MAE."""
    tag = served.info.tag
    listed = client.post("/recommend", json={"user_id": 5, "k": 5}).json()["items"]
    assert all(item["predicted_rating"] is not None for item in listed)  # a rating version
    before = client.get("/metrics").text
    events = [{"user_id": 5, "item_id": listed[0]["item_id"]}]  # in the list: a hit
    response = client.post("/feedback", json={"events": events})
    assert response.status_code == 200, response.text
    after = client.get("/metrics").text

    def delta(name: str) -> float:
        return metric(after, name, model_version=tag) - metric(before, name, model_version=tag)

    assert delta("metarec_feedback_positive_total") == 1
    assert delta("metarec_feedback_hits_total") == 1
    assert delta("metarec_feedback_total") == 0
    assert delta("metarec_feedback_abs_error_sum") == 0
    assert client.get("/metadata").json()["label"] == "rating"


BAD_REQUESTS = [
    ("/recommend", {"user_id": 999_999}, 404, "user_id"),
    ("/recommend", {"support": [{"item_id": 999_999, "rating": 4}]}, 422, "support[0].item_id"),
    ("/recommend", {"support": []}, 422, "support"),
    ("/recommend", {}, 422, "support"),
    (
        "/recommend",
        {"support": [{"item_id": 1, "rating": 3}] * (MAX_SUPPORT + 1)},
        422,
        "support",
    ),
    ("/recommend", {"support": [{"item_id": 1, "rating": 6}]}, 400, "rating"),
    ("/recommend", {"support": [{"item_id": 1, "rating": 0.5}]}, 400, "rating"),
    ("/recommend", {"support": [{"item_id": 1, "rating": "4"}]}, 400, "rating"),
    ("/recommend", {"support": [{"item_id": "1", "rating": 4}]}, 400, "item_id"),
    ("/recommend", {"user_id": 1, "k": 0}, 400, "k"),
    ("/recommend", {"user_id": 1, "candidates": [1, 999_999]}, 422, "candidates[1]"),
    ("/recommend", {"user_id": 1, "unknown": 1}, 400, "unknown"),
    # A rating version adapts on ratings: a support item without one names its rating field.
    ("/recommend", {"support": [{"item_id": 1}]}, 400, "support[0].rating"),
    (
        "/predict",
        {"support": [{"item_id": 1, "rating": 4}, {"item_id": 2}], "item_ids": [3]},
        400,
        "support[1].rating",
    ),
    ("/predict", {"user_id": 1}, 400, "item_ids"),
    ("/predict", {"user_id": 1, "item_ids": [999_999]}, 422, "item_ids[0]"),
    ("/feedback", {"events": []}, 400, "events"),
    ("/feedback", {"events": [{"user_id": 1, "item_id": 999_999, "rating": 3}]}, 422, "item_id"),
    ("/feedback", {"events": [{"user_id": 999_999, "item_id": 1, "rating": 3}]}, 404, "user_id"),
]


@pytest.mark.parametrize(("path", "body", "status", "field"), BAD_REQUESTS)
def test_bad_input_is_a_4xx_naming_the_field(client, path, body, status, field):
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    assert field in response.text


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_ratings_are_refused(client: httpx.Client, literal: str):
    raw = '{"support": [{"item_id": 1, "rating": ' + literal + '}], "item_ids": [2]}'
    response = client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert "rating" in response.text


def test_malformed_and_oversized_bodies_are_4xx(client: httpx.Client):
    broken = client.post(
        "/predict", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert 400 <= broken.status_code < 500
    big = {"user_id": 1, "item_ids": [1] * (MAX_BODY // 2)}
    response = client.post("/predict", json=big)
    assert response.status_code == 413
    assert response.json()["field"] == "body"

    def chunks():
        for _ in range(MAX_BODY // 1000 + 2):
            yield b" " * 1000

    streamed = client.post(
        "/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    multipart = client.post(
        "/recommend",
        content=b'{"user_id": 1}',
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert multipart.status_code == 415
    assert multipart.json()["field"] == "content-type"


SAME_ANSWER_BODIES = [
    ("/recommend", {"user_id": 1, "k": 4}),
    ("/recommend", {"support": [{"item_id": 1, "rating": 5}], "candidates": [2, 3, 4], "k": 2}),
    ("/predict", {"user_id": 2, "support": [{"item_id": 10, "rating": 4}], "item_ids": [11, 3]}),
    ("/feedback", {"events": [{"user_id": 4, "item_id": 5, "rating": 2}]}),
    ("/feedback", {"events": [{"user_id": 4, "item_id": 5}]}),
    *[(path, body) for path, body, _, _ in BAD_REQUESTS],
    ("/recommend", b'{"support": [{"item_id": 1, "rating": NaN}]}'),
    ("/predict", b"{not json"),
    ("/predict", b""),
]


@pytest.fixture(scope="module")
def bentoml_answered(served: Served):
    """A second service of the same version with serving.direct_endpoints off."""
    process = ServiceProcess(
        served.settings,
        version=served.info.tag,
        log_path=served.log.with_name("service-bentoml-path.log"),
        extra_env={
            "METAREC_SERVING__MAX_SUPPORT_SIZE": str(MAX_SUPPORT),
            "METAREC_SERVING__MAX_BODY_BYTES": str(MAX_BODY),
            "METAREC_SERVING__TORCH_THREADS": "1",
            "METAREC_SERVING__DIRECT_ENDPOINTS": "false",
        },
        feedback_token=served.feedback_token,
    )
    with process, httpx.Client(base_url=process.url, timeout=30, headers=served.trusted) as http:
        yield http


def test_direct_endpoints_answer_exactly_as_bentoml_does(
    client: httpx.Client, bentoml_answered: httpx.Client
):
    """Status, body bytes and content type agree for valid, refused and malformed requests."""
    json_type = {"content-type": "application/json"}
    for path, body in SAME_ANSWER_BODIES:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        direct = client.post(path, content=content, headers=json_type)
        through_bentoml = bentoml_answered.post(path, content=content, headers=json_type)
        assert direct.status_code == through_bentoml.status_code, (path, body, direct.text)
        assert direct.content == through_bentoml.content, (path, body)
        assert direct.headers["content-type"] == through_bentoml.headers["content-type"]
        # Only BentoML's own layer sets a request id: each path really answered.
        assert "x-bentoml-request-id" in through_bentoml.headers
        assert "x-bentoml-request-id" not in direct.headers
        assert direct.headers["server"] == through_bentoml.headers["server"]


def test_direct_endpoints_skip_bentomls_access_log_and_tracing(
    client: httpx.Client, bentoml_answered: httpx.Client, served: Served
):
    """Direct answers are counted by both metrics but left out of BentoML's access log.

    Before issue 17 the direct endpoints ran in front of BentoML's layers (a patch of BentoML's
    private app factory), so BentoML's request metrics did not count them. Now they are a
    mounted app behind all of BentoML's layers; its documented config skips only the access log
    and the traces for them.
    """

    def counts(http: httpx.Client) -> tuple[float, float]:
        text = http.get("/metrics").text
        bentoml = metric(text, "bentoml_service_request_total", endpoint="/recommend")
        ours = metric(text, "metarec_requests_total", endpoint="recommend", status="2xx")
        return bentoml, ours

    body = {"user_id": 1, "k": 2}
    direct_before, bentoml_before = counts(client), counts(bentoml_answered)
    assert client.post("/recommend", json=body).status_code == 200
    assert bentoml_answered.post("/recommend", json=body).status_code == 200
    direct_after, bentoml_after = counts(client), counts(bentoml_answered)
    assert direct_after[0] - direct_before[0] == 1  # behind BentoML's layers: its metrics count it
    assert direct_after[1] - direct_before[1] == 1
    assert bentoml_after[0] - bentoml_before[0] == 1  # BentoML's path: its layers count it
    assert bentoml_after[1] - bentoml_before[1] == 1
    # Everything else still goes through all of BentoML's layers on the direct service too.
    assert client.get("/metadata").status_code == 200
    text = client.get("/metrics").text
    assert metric(text, "bentoml_service_request_total", endpoint="/metadata") >= 1
    direct_log = served.log.read_text()
    bentoml_log = served.log.with_name("service-bentoml-path.log").read_text()
    assert "path=/recommend" not in direct_log  # skipped by logging.access.skip_paths
    assert "path=/metadata" in direct_log
    assert "path=/recommend" in bentoml_log


def test_request_metrics_count_status_classes(client: httpx.Client, served: Served):
    tag = served.info.tag
    before = client.get("/metrics").text
    client.post("/recommend", json={"user_id": 1})
    client.post("/recommend", json={"user_id": "x"})
    after = client.get("/metrics").text

    def delta(status: str) -> float:
        labels = {"endpoint": "recommend", "model_version": tag, "status": status}
        return metric(after, "metarec_requests_total", **labels) - metric(
            before, "metarec_requests_total", **labels
        )

    assert delta("2xx") == 1
    assert delta("4xx") == 1
    assert delta("5xx") == 0
    assert metric(after, "metarec_request_latency_seconds_count", endpoint="recommend") >= 2


def test_feedback_needs_the_feedback_token(
    client: httpx.Client, bentoml_answered: httpx.Client, served: Served
):
    """The issue's probe (a caller-supplied rating steering the online MAE) is refused."""
    tag = served.info.tag
    events = {"events": [{"user_id": 1, "item_id": 2, "rating": 1.0}]}
    quality = ("metarec_feedback_total", "metarec_feedback_abs_error_sum", "metarec_online_mae")
    for http in (client, bentoml_answered):  # the direct path and BentoML's
        before = http.get("/metrics").text
        for headers in ({}, feedback_headers("a-guess"), {"authorization": "Basic eA=="}):
            refused = httpx.post(http.base_url.join("/feedback"), json=events, headers=headers)
            assert refused.status_code == 401, refused.text
            assert refused.json()["field"] == "authorization"
            assert refused.headers["www-authenticate"].startswith("Bearer")
        after = http.get("/metrics").text
        for name in quality:
            assert metric(after, name, model_version=tag) == metric(
                before, name, model_version=tag
            ), name
        labels = {"endpoint": "feedback", "model_version": tag, "status": "4xx"}
        counted = metric(after, "metarec_requests_total", **labels)
        assert counted - metric(before, "metarec_requests_total", **labels) == 3
        assert http.post("/feedback", json=events).status_code == 200  # with the token


def test_an_untrusted_caller_cannot_plant_what_feedback_is_judged_against(
    client: httpx.Client, served: Served
):
    tag = served.info.tag
    support = [{"item_id": 1, "rating": 4.0}]

    def recommend(http_post, candidates: list[int]) -> list[int]:
        body = {"user_id": 1, "support": support, "candidates": candidates, "k": 2}
        response = http_post(f"{served.url}/recommend", json=body)
        assert response.status_code == 200, response.text
        return [item["item_id"] for item in response.json()["items"]]

    def predict(http_post, rating: float) -> float:
        body = {"user_id": 1, "support": [{"item_id": 1, "rating": rating}], "item_ids": [30]}
        response = http_post(f"{served.url}/predict", json=body)
        assert response.status_code == 200, response.text
        return response.json()["predictions"][0]["rating"]

    assert sorted(recommend(client.post, [10, 11])) == [10, 11]  # the backend's list
    remembered = predict(client.post, 4.0)
    untrusted = recommend(httpx.post, [20, 21])  # anyone's: answered, never remembered
    planted = predict(httpx.post, 1.0)
    assert planted != remembered
    before = client.get("/metrics").text
    events = [{"user_id": 1, "item_id": untrusted[0]}, {"user_id": 1, "item_id": 30, "rating": 5}]
    assert client.post("/feedback", json={"events": events}).status_code == 200
    after = client.get("/metrics").text

    def delta(name: str) -> float:
        return metric(after, name, model_version=tag) - metric(before, name, model_version=tag)

    assert delta("metarec_feedback_positive_total") == 2  # the user has the backend's list
    assert delta("metarec_feedback_hits_total") == 0  # the item was not in it
    assert delta("metarec_feedback_abs_error_sum") == pytest.approx(abs(5 - remembered), abs=1e-4)


def _hang_up(url: httpx.URL) -> None:
    """Send a request's headers and part of its body, then close the connection."""
    head = (
        b"POST /predict HTTP/1.1\r\nHost: metarec\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )
    with socket.create_connection((url.host, url.port), timeout=10) as sock:
        sock.sendall(head + b'{"user_id": 1, "item_ids": [')
        time.sleep(0.3)  # the service is reading the body when the client goes away


def test_a_client_that_disconnects_is_counted_as_499_not_5xx(
    client: httpx.Client, bentoml_answered: httpx.Client, served: Served
):
    tag = served.info.tag

    def counts(http: httpx.Client) -> tuple[float, float]:
        text = http.get("/metrics").text
        labels = {"endpoint": "predict", "model_version": tag}
        return tuple(
            metric(text, "metarec_requests_total", status=status, **labels)
            for status in ("4xx", "5xx")
        )

    for http in (client, bentoml_answered):  # the direct path and BentoML's
        before = counts(http)
        _hang_up(http.base_url)
        deadline = time.monotonic() + 15
        while sum(after := counts(http)) == sum(before) and time.monotonic() < deadline:
            time.sleep(0.2)  # the service counts the request once it notices the hang-up
        assert after == (before[0] + 1, before[1]), (str(http.base_url), before, after)
        assert http.post("/predict", json={"user_id": 1, "item_ids": [2]}).status_code == 200


def test_concurrent_requests_are_adapted_together(client: httpx.Client, served: Served):
    import concurrent.futures

    tag = served.info.tag
    before = client.get("/metrics").text

    def call(user: int) -> int:
        with httpx.Client(base_url=served.url, timeout=30) as http:
            return http.post("/recommend", json={"user_id": user, "k": 3}).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(call, [1 + n % 50 for n in range(48)]))
    assert codes == [200] * 48
    after = client.get("/metrics").text
    batches = metric(after, "metarec_adaptation_batch_size_count", model_version=tag) - metric(
        before, "metarec_adaptation_batch_size_count", model_version=tag
    )
    requests = metric(after, "metarec_adaptation_batch_size_sum", model_version=tag) - metric(
        before, "metarec_adaptation_batch_size_sum", model_version=tag
    )
    assert requests == 48
    assert batches < 48  # some requests shared a batch


def test_cli_serve_refuses_a_missing_version_with_one_line(served: Served, capsys, monkeypatch):
    monkeypatch.setenv("METAREC_HOME", str(served.settings.paths.home))
    monkeypatch.setenv("METAREC_REGISTRY__EXPORT_BENTOML", "false")
    code = run(["serve", "--version", "99"])
    err = capsys.readouterr().err
    assert code != 0
    assert "99" in err and "Fix:" in err
    assert "Traceback" not in err


def test_schemathesis_finds_no_server_error(served: Served, client: httpx.Client):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings
    from hypothesis import strategies as st

    schema = schemathesis.openapi.from_url(f"{served.url}/docs.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/recommend", "/predict", "/feedback", "/metadata"} <= paths

    def known(value, n: int):
        """An id of this (integer-id) version's catalogue; text ids too, mapped by length."""
        if isinstance(value, str):
            return 1 + len(value) % n
        return 1 + value % n if isinstance(value, int) and not isinstance(value, bool) else value

    def known_ids(case):
        """Half the cases use catalogue ids and users, so adaptation paths run."""
        body = case.body
        if isinstance(body, dict):
            if "user_id" in body:
                body["user_id"] = known(body["user_id"], 100)
            for entry in body.get("support") or []:
                if isinstance(entry, dict) and "item_id" in entry:
                    entry["item_id"] = known(entry["item_id"], 150)
                    entry.setdefault("rating", 4.0)  # this rating version adapts on ratings
            for key in ("candidates", "item_ids"):
                if isinstance(body.get(key), list):
                    body[key] = [known(i, 150) for i in body[key][:50]]
            if isinstance(body.get("support"), list):
                body["support"] = body["support"][:20]
            if isinstance(body.get("k"), int) and not isinstance(body["k"], bool):
                body["k"] = 1 + body["k"] % 20
        return case

    seen: dict[str, set[int]] = {}
    for operation in operations:

        @hypothesis_settings(
            max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=st.one_of(operation.as_strategy(), operation.as_strategy().map(known_ids)))
        def check(case) -> None:
            response = case.call(base_url=served.url, timeout=30)
            assert response.status_code < 500, (case.method, case.path, case.body, response.text)
            seen.setdefault(f"{case.method} {case.path}", set()).add(response.status_code)

        check()
    # Valid requests (a catalogue user and items) succeed on the same server after the fuzzing.
    for path, body in (
        ("/recommend", {"user_id": 1, "support": [{"item_id": 2, "rating": 4.0}], "k": 5}),
        ("/predict", {"user_id": 1, "item_ids": [2, 3]}),
    ):
        seen.setdefault(f"POST {path}", set()).add(client.post(path, json=body).status_code)
    assert 200 in seen["POST /recommend"] and 200 in seen["POST /predict"], seen


# -- a version trained on implicit events ------------------------------------------------------

EVENT_POLICY = """
name: events
require_same_users: false
margins:
  - {table: ranking, metric: ndcg@20, over: popularity, min_improvement: -1.0, cells: mean}
"""


def _serve_event_version(settings: Settings, root: Path, training_set: Path):
    """Train an event version on ``training_set``, register it, serve it; yield (served, http)."""
    from metarec.gate.policy import load_policy
    from metarec.gate.run import gate_artifact
    from metarec.testing.serving import SMALL_CONFIG
    from metarec.training.trainer import train

    artifact = root / "artifact"
    train(training_set, config=TrainingConfig.build(SMALL_CONFIG), out=artifact)
    (root / "policy.yaml").write_text(EVENT_POLICY)
    model = settings.registry.model_name
    with Registry.open(settings) as registry:
        decision = gate_artifact(artifact, policy=load_policy(root / "policy.yaml"), model=model)
        info = registry.register(artifact, model=model, gate_decision=decision, actor="test")
    log = root / "service.log"
    process = ServiceProcess(
        settings,
        version=info.tag,
        log_path=log,
        extra_env={"METAREC_SERVING__TORCH_THREADS": "1"},
    )
    headers = process.feedback_headers
    with process, httpx.Client(base_url=process.url, timeout=30, headers=headers) as http:
        yield Served(settings, info, process.url, training_set, log, process.feedback_token), http


@pytest.fixture(scope="module")
def served_events(event_home: Settings, tmp_path_factory: pytest.TempPathFactory):
    """An event version (ranker alone) trained on the events home, registered and served."""
    root = tmp_path_factory.mktemp("serving-events")
    shutil.copytree(event_home.paths.home, root / "home")
    settings = load_settings(home=root / "home", registry={"export_bentoml": False})
    training_set = settings.paths.training_sets / "events.parquet"
    yield from _serve_event_version(settings, root, training_set)


def test_an_event_version_ranks_interactions_and_predicts_no_ratings(served_events):
    served, http = served_events
    meta = http.get("/metadata").json()
    assert meta["label"] == "event" and meta["model_version"] == served.info.tag
    assert meta["rating_model"] is None and meta["adaptation_lr"] is None
    assert meta["meta_sgd"] is None and meta["adaptation_steps"] >= 1
    df, _ = load_training_set(served.training_set)
    assert "rating" not in df.columns
    users = [int(u) for u in df["user_id"].unique()[:2]]
    items = [int(i) for i in df["item_id"].unique()[:3]]

    support = [{"item_id": items[0]}, {"item_id": items[1]}]
    response = http.post("/recommend", json={"user_id": users[0], "support": support, "k": 5})
    assert response.status_code == 200, response.text
    listed = response.json()["items"]
    assert len(listed) == 5 and not {items[0], items[1]} & {i["item_id"] for i in listed}
    assert all(i["predicted_rating"] is None for i in listed)
    scores = [i["score"] for i in listed]
    assert scores == sorted(scores, reverse=True)

    # A known user alone: their recent liked items in the online store are the support.
    alone = http.post("/recommend", json={"user_id": users[1], "k": 4})
    assert alone.status_code == 200, alone.text
    assert len(alone.json()["items"]) == 4

    rated = http.post("/recommend", json={"support": [{"item_id": items[0], "rating": 5}]})
    assert rated.status_code == 400, rated.text
    assert rated.json()["field"] == "support[0].rating"
    assert "implicit events" in rated.json()["error"]

    predict = http.post("/predict", json={"user_id": users[0], "item_ids": items})
    assert predict.status_code == 422, predict.text
    assert predict.json()["field"] == "endpoint"
    assert "predicts no ratings" in predict.json()["error"]

    tag = served.info.tag
    before = http.get("/metrics").text
    events = [
        {"user_id": users[0], "item_id": listed[0]["item_id"]},  # an interaction: a hit
        {"user_id": users[0], "item_id": listed[1]["item_id"], "rating": 2},  # not positive
    ]
    feedback = http.post("/feedback", json={"events": events})
    assert feedback.status_code == 200 and feedback.json() == {"accepted": 2}
    after = http.get("/metrics").text

    def delta(name: str) -> float:
        return metric(after, name, model_version=tag) - metric(before, name, model_version=tag)

    assert delta("metarec_feedback_positive_total") == 1
    assert delta("metarec_feedback_hits_total") == 1
    assert metric(after, "metarec_feedback_total", model_version=tag) == 0  # no MAE


# -- a team's text ids (users c001, items sku-01) ------------------------------------------------


@pytest.fixture(scope="module")
def served_text(tmp_path_factory: pytest.TempPathFactory):
    """An event version trained on a small catalogue of text ids (a text-id Feast home), served."""
    from metarec.data.catalogue import CatalogueSpec
    from metarec.testing.catalogue import catalogue_home

    root = tmp_path_factory.mktemp("serving-text")
    spec = CatalogueSpec(n_users=120, n_items=60, label="event", ids="text", seed=5)
    settings, training_set = catalogue_home(root, spec=spec, registry={"export_bentoml": False})
    yield from _serve_event_version(settings, root, training_set)


def test_a_text_id_version_serves_the_teams_ids(served_text):
    from metarec.serving.features import FeatureCache
    from metarec.training.artifact import read_card

    served, http = served_text
    meta = http.get("/metadata").json()
    assert (meta["user_ids"], meta["item_ids"], meta["label"]) == ("text", "text", "event")
    df, _ = load_training_set(served.training_set)
    catalogue = set(df["item_id"].astype(str))
    assert all(i.startswith("sku-") for i in catalogue)

    # The feature cache reads Feast's String keys: text items aligned with the ranker's.
    card = read_card(served.log.parent / "artifact")  # the registered artifact
    cache = FeatureCache(served.settings, encoder=FeatureEncoder(**card.encoder))
    assert cache.text_users and cache.text_items
    assert set(cache.items.item_ids.tolist()) == set(card.ranker["item_ids"]) == catalogue
    users = sorted(df["user_id"].astype(str).unique())
    assert cache.user(users[0]) is not None and cache.user("c-nobody") is None
    user, recent = next((u, r) for u in users if (r := cache.user(u).recent_item_ids))
    assert all(isinstance(i, str) and i in catalogue for i in recent)

    # A known user alone: their recent liked items are the support set (not recommended).
    alone = http.post("/recommend", json={"user_id": user, "k": 5})
    assert alone.status_code == 200, alone.text
    listed = [i["item_id"] for i in alone.json()["items"]]
    assert len(listed) == 5 and set(listed) <= catalogue and not set(listed) & set(recent)
    items = sorted(catalogue)[:3]
    ranked = http.post(
        "/recommend",
        json={"support": [{"item_id": items[0]}], "candidates": items[1:], "k": 5},
    )
    assert ranked.status_code == 200, ranked.text
    assert sorted(i["item_id"] for i in ranked.json()["items"]) == items[1:]

    # The other kind of id, and unknown text ids: a 4xx naming the field.
    for body, status, field in [
        ({"user_id": 1}, 400, "user_id"),
        ({"support": [{"item_id": 3}]}, 400, "support[0].item_id"),
        ({"support": [{"item_id": "sku-nope"}]}, 422, "support[0].item_id"),
        ({"user_id": "c-nobody"}, 404, "user_id"),
    ]:
        response = http.post("/recommend", json=body)
        assert response.status_code == status, response.text
        assert response.json()["field"] == field

    tag = served.info.tag
    before = http.get("/metrics").text
    events = [
        {"user_id": user, "item_id": listed[0]},  # an interaction with a listed item: a hit
        {"user_id": user, "item_id": next(i for i in sorted(catalogue) if i not in listed)},
    ]
    feedback = http.post("/feedback", json={"events": events})
    assert feedback.status_code == 200 and feedback.json() == {"accepted": 2}
    after = http.get("/metrics").text

    def delta(name: str) -> float:
        return metric(after, name, model_version=tag) - metric(before, name, model_version=tag)

    assert delta("metarec_feedback_positive_total") == 2
    assert delta("metarec_feedback_hits_total") == 1
