"""Small, valid model artifacts for tests and demos (no training needed).

The weights are a tiny safetensors file; the card is a complete, valid training card
(:class:`~metarec.training.artifact.ModelCard`), with metrics that the caller can make good or
bad.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metarec.digests import sha256_file

if TYPE_CHECKING:
    from metarec.training.artifact import ModelCard

METHODS = ("global_mean", "item_bias", "user_item_bias", "global_model", "finetune")
SCENARIOS = ("new_user", "new_item", "new_user_new_item")
SUPPORT_SIZES = (5, 10)
RANKING_CELLS = tuple(f"{order}@{k}" for order in ("time", "random") for k in (5, 10, 20))
# nDCG@20 of the ranking baselines (the served ranker's is the caller's).
RANKING_BASELINES = {
    "meta_ranker": 0.27,
    "plain_ranker": 0.25,
    "rating_model": 0.15,
    "popularity": 0.20,
    "item_mean": 0.10,
    "item_knn": 0.22,
    "ease": 0.24,
    "ease_weighted": 0.26,
}


def fixture_metrics(
    *, algorithm: str = "maml", mae: float = 0.78, ndcg: float = 0.86
) -> dict[str, Any]:
    """Card metrics where ``algorithm`` has ``mae``/``ndcg`` and baselines are fixed, worse."""
    baselines = {
        "global_mean": (0.95, 0.80),
        "item_bias": (0.86, 0.83),
        "user_item_bias": (0.84, 0.84),
        "global_model": (0.83, 0.84),
        "finetune": (0.82, 0.85),
    }
    metrics: dict[str, Any] = {}
    for scenario in SCENARIOS:
        metrics[scenario] = {}
        for size in SUPPORT_SIZES:
            cell: dict[str, dict[str, float]] = {}
            for method, (m, n) in {**baselines, algorithm: (mae, ndcg)}.items():
                cell[method] = {
                    "mae": m,
                    "rmse": m * 1.25,
                    "ndcg@1": n - 0.05,
                    "ndcg@3": n - 0.02,
                    "ndcg@5": n,
                }
            metrics[scenario][str(size)] = cell
    return metrics


def fixture_ranking(*, ranker: float = 0.30, **baselines: float) -> dict[str, Any]:
    """A card ranking table where the served ranker has nDCG@20 ``ranker``.

    The layout is ``ranking[scenario][cell][method][metric]``; the baselines default to
    :data:`RANKING_BASELINES` (popularity: 0.20, so the default ranker beats them all) and
    can be overridden by name.
    """
    methods = {**RANKING_BASELINES, **baselines, "ranker": ranker}
    return {
        scenario: {
            cell: {
                method: {
                    "recall@20": min(1.0, ndcg * 1.5),
                    "ndcg@20": ndcg,
                    "hit@10": min(1.0, ndcg * 2),
                    "mrr": ndcg * 0.9,
                    "coverage": 0.3,
                    "personalisation": 0.8,
                    "popularity": 1.0 if method == "popularity" else 0.6,
                }
                for method, ndcg in methods.items()
            }
            for cell in RANKING_CELLS
        }
        for scenario in SCENARIOS
    }


def write_fixture_artifact(
    directory: Path,
    *,
    seed: int = 0,
    algorithm: str = "maml",
    mae: float = 0.78,
    ndcg: float = 0.86,
    test_users: dict[str, list[int]] | None = None,
    ranker_ndcg: float | None = 0.30,
    label: str = "rating",
) -> Path:
    """Write ``model.safetensors`` + a valid ``model_card.json`` into ``directory``; return it.

    ``label="event"`` writes a version trained on implicit events instead: ``ranker.safetensors``
    as its weights, no rating metrics, and the ranking table.

    The card is a complete :class:`~metarec.training.artifact.ModelCard` (validated before it
    is written), with the sha256 of the weights. Different seeds give different weights (so
    different digests). ``ranker_ndcg`` is the served ranker's nDCG@20 in the card's ranking
    table (None: a card written before ranking evaluation, with an empty ``ranking``).
    """
    import torch
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    weights = directory / ("model.safetensors" if label == "rating" else "ranker.safetensors")
    save_file(
        {
            "decision.0.weight": torch.randn(4, 3, generator=generator),
            "decision.0.bias": torch.zeros(4),
        },
        str(weights),
    )
    card = fixture_card(
        seed=seed,
        algorithm=algorithm,
        metrics=fixture_metrics(algorithm=algorithm, mae=mae, ndcg=ndcg)
        if label == "rating"
        else {},
        test_users=test_users
        if test_users is not None
        else {scenario: [1, 2, 3] for scenario in SCENARIOS},
        ranking={} if ranker_ndcg is None else fixture_ranking(ranker=ranker_ndcg),
        weights_sha256=sha256_file(weights),
        label=label,
    )
    (directory / "model_card.json").write_text(card.model_dump_json(indent=2))
    return directory


def fixture_card(
    *,
    seed: int,
    algorithm: str,
    metrics: dict[str, Any],
    test_users: dict[str, list[int]],
    ranking: dict[str, Any],
    weights_sha256: str,
    label: str = "rating",
) -> ModelCard:
    """A complete, valid model card for fixture weights with sha256 ``weights_sha256``."""
    from metarec.training.artifact import FORMAT_VERSION, RANKER_WEIGHTS, WEIGHTS, ModelCard

    return ModelCard(
        format_version=FORMAT_VERSION,
        label=label,
        algorithm=algorithm,
        model={"embedding_dim": 8, "hidden": [4]},
        encoder={"users": {}, "items": {}},
        inner_loop={"lr": 0.01, "steps": 3},
        finetune={"lr": 0.01, "steps": 3},
        hyperparameters={"inner_lr": 0.01, "inner_steps": 3, "seed": seed},
        split={"seed": seed, "test_users": sorted({u for us in test_users.values() for u in us})},
        feature_service="meta_training",
        feature_service_version="1",
        dataset_fingerprint=f"sha256:{seed:064x}",
        snapshot_id="snapshot-0001",
        validation_result_id=f"validation-{seed}",
        code_version={"metarec": "0.1.0+test", "git_commit": None},
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
        training={"epochs": 1, "history": [{"epoch": 1, "loss": 0.5}]},
        metrics=metrics,
        test_users=test_users,
        ranking=ranking,
        weights_sha256=weights_sha256,
        files={(WEIGHTS if label == "rating" else RANKER_WEIGHTS): weights_sha256},
    )


def register_fixture(
    registry: Any, directory: Path, *, model: str = "metarec", **kwargs: Any
) -> Any:
    """Write a fixture artifact, gate it (default policy) and register it; return the version."""
    from metarec.gate.policy import load_policy
    from metarec.gate.run import gate_artifact

    artifact = write_fixture_artifact(directory, **kwargs)
    decision = gate_artifact(artifact, policy=load_policy(), model=model, registry=registry)
    return registry.register(artifact, model=model, gate_decision=decision, actor="test")


def promotion_worker(
    connection: Any, *, url: str, artifact_root: str, barrier: Any, model: str = "metarec"
) -> None:
    """Child process loop for concurrency tests: promote what the parent sends, in lock-step.

    Receives ``(version, expected_production)`` tuples (``None`` ends the loop;
    ``"observe"``: let the registry observe production itself); waits on
    ``barrier`` so both children promote at the same moment; answers ``("ok", version)`` or
    ``("conflict", message)`` or ``("error", repr)``.
    """
    from metarec.errors import RegistryConflictError
    from metarec.registry.service import UNSET, Registry
    from metarec.registry.types import VersionRef

    registry = Registry.connect(url=url, artifact_root=artifact_root)
    try:
        while (message := connection.recv()) is not None:
            version, expected = message
            if expected == "observe":
                expected = UNSET
            barrier.wait(timeout=60)
            try:
                registry.promote(
                    VersionRef(model=model, version=version),
                    actor=f"worker-{version}",
                    reason="concurrency test",
                    expected_production=expected,
                )
                connection.send(("ok", version))
            except RegistryConflictError as exc:
                connection.send(("conflict", str(exc)))
            except Exception as exc:  # reported to the parent, which fails the test
                connection.send(("error", repr(exc)))
    finally:
        registry.close()


def registry_snapshot(registry: Any, model: str = "metarec") -> tuple[Any, Any]:
    """Every version's stage and every ledger entry: equal before/after means unchanged."""
    from metarec.errors import ModelNotFoundError

    try:
        versions = [(v.version, v.stage.value) for v in registry.list_versions(model)]
        ledger = [entry.model_dump() for entry in registry.history(model)]
    except ModelNotFoundError:
        return [], []
    return versions, ledger


POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_schema(base_url: str = POSTGRES_URL) -> tuple[str, Any]:
    """Create a uniquely named schema; return a URL that uses it and a function that drops it.

    Raises:
        OSError: The server does not answer (callers skip with the reason).
    """
    import uuid

    import sqlalchemy as sa

    schema = f"metarec_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base_url, connect_args={"connect_timeout": 3})
    try:
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        raise OSError(f"PostgreSQL at {base_url} does not answer: {exc.orig}") from exc

    def drop() -> None:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

    separator = "&" if "?" in base_url else "?"
    return f"{base_url}{separator}options=-csearch_path%3D{schema}", drop
