"""Evaluate a saved artifact on a training set, and report (rich table, JSON, PNG plot)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Column, Table

from metarec.errors import ArtifactError
from metarec.features.training_set import Location, load_training_set
from metarec.learning.algorithms import InnerLoop
from metarec.learning.item_models import EASE, ItemKNN, ItemMean, Popularity
from metarec.learning.metrics import METRIC_NAMES
from metarec.learning.model import MeLU
from metarec.training.artifact import (
    ModelCard,
    RankerParts,
    load_factor_model,
    load_global_model,
    load_ranker,
    load_rating_model,
    read_card,
)
from metarec.training.config import TrainingConfig
from metarec.training.encoding import FeatureEncoder
from metarec.training.methods import AdaptedModel, evaluate_all
from metarec.training.preparation import (
    PreparedData,
    config_split,
    interactions,
    prepare,
    ranking_data,
)
from metarec.training.ranking import Cells, RankingData
from metarec.training.ranking_eval import (
    RankingMethods,
    RankingTable,
    ServedRanker,
    evaluate_ranking,
)
from metarec.training.scenarios import Scenario, Split
from metarec.training.trainer import resolve_device

Metrics = dict[str, dict[str, dict[str, dict[str, float]]]]


def evaluate_artifact(
    artifact_dir: Path,
    training_set_path: Location,
    *,
    scenarios: Sequence[Scenario | str] | None = None,
    support_sizes: Sequence[str | int] | None = None,
    users: dict[str, list[int]] | None = None,
    device: str = "cpu",
) -> Metrics:
    """Metrics of an artifact and every baseline on a training set.

    The user split is rebuilt from the card's seed, so by default the held-out users are the
    card's ``test_users``; pass ``users`` (``{scenario: [user ids]}``, e.g. another model's
    ``test_users``) to evaluate on exactly those users. An artifact with a factor fold-in
    (``factor_model.safetensors``) adds the method ``factor_map``.

    Args:
        artifact_dir: Directory written by ``metarec train``.
        training_set_path: Training set (parquet with manifest).
        scenarios: Scenarios to run (default: all three).
        support_sizes: Support sizes, ints or ``"all"`` (default: 5, 10, 20, all).
        users: Users per scenario to evaluate (default: the card's test users).
        device: ``auto``, ``cpu`` or ``cuda``.

    Returns:
        ``{scenario: {support_size: {method: {"mae", "rmse", "ndcg@1", "ndcg@3", "ndcg@5"}}}}``;
        empty for a version trained on implicit events (it predicts no ratings).
    """
    card = read_card(Path(artifact_dir))
    model = load_rating_model(Path(artifact_dir), card)
    if model is None:  # implicit events: no rating model, no rating metrics
        return {}
    global_model = load_global_model(artifact_dir, card)
    factor = load_factor_model(Path(artifact_dir), card)
    config, data = _card_data(artifact_dir, training_set_path, card)
    target = resolve_device(device)
    model.to(target)
    if global_model is not None:
        global_model.to(target)
    if factor is not None:
        factor.to(target)
    chosen = _coded_users(data, users if users is not None else card.test_users)
    metrics, _ = evaluate_all(
        data,
        meta={card.algorithm: card_adapted_model(model, card)},
        global_model=global_model,
        finetune=InnerLoop(steps=int(card.finetune["steps"]), lr=float(card.finetune["lr"])),
        scenarios=tuple(Scenario(s) for s in (scenarios or config.scenarios)),
        support_sizes=tuple(str(s).lower() for s in (support_sizes or config.support_sizes)),
        users=chosen,
        min_ratings=config.min_ratings,
        max_ratings=config.max_ratings,
        device=target,
        factor=factor,
    )
    return metrics


def _coded_users(data: PreparedData, users: Mapping[str, Sequence[Any]]) -> dict[str, list[int]]:
    """Users per scenario (original ids, as cards record them) as the training set's codes.

    Users the training set does not have are left out.
    """
    return {scenario: data.ids.codes_of_users(list(chosen)) for scenario, chosen in users.items()}


def card_adapted_model(model: MeLU, card: ModelCard) -> AdaptedModel:
    """The card's meta-learned model with the inner loop the card records."""
    inner = InnerLoop(steps=int(card.inner_loop["steps"]), lr=float(card.inner_loop["lr"]))
    return AdaptedModel(model, inner, bool(card.inner_loop.get("meta_sgd")))


def _card_data(
    artifact_dir: Path, training_set_path: Location, card: ModelCard
) -> tuple[TrainingConfig, PreparedData]:
    """The card's training config and the training set prepared as the card's run did."""
    config = card_config(card, source=f"{artifact_dir} model card")
    raw, _ = load_training_set(training_set_path)
    df = interactions(raw)
    data = prepare(
        df,
        split=card_split(df, card, config),
        encoder=FeatureEncoder(**card.encoder),
        config=config,
    )
    return config, data


def metrics_table(metrics: Metrics, *, title: str = "Cold-start evaluation") -> Table:
    """A rich table: one row per (scenario, support size, method)."""
    table = Table(
        Column("scenario", overflow="fold"),
        Column("support", overflow="fold"),
        Column("method", overflow="fold", min_width=14),
        *(Column(name, justify="right") for name in METRIC_NAMES),
        title=title,
    )
    for scenario, sizes in metrics.items():
        for size, methods in sizes.items():
            best = min(methods.values(), key=lambda m: m["mae"])["mae"] if methods else None
            for method, values in methods.items():
                cells = [f"{values[m]:.4f}" for m in METRIC_NAMES]
                if values["mae"] == best:
                    cells[0] = f"[bold green]{cells[0]}[/bold green]"
                table.add_row(scenario, size, method, *cells)
    return table


def ranking_tables(
    table: RankingTable, *, metric: str = "ndcg@20", title: str = "Whole-catalogue ranking"
) -> list[Table]:
    """Rich tables of a ranking table: one per scenario, methods as rows, order@K as columns.

    The best value of each column is bold green.
    """
    out = []
    for scenario, cells in table.items():
        names = list(cells)
        methods = list(dict.fromkeys(m for cell in cells.values() for m in cell))
        best = {c: max(v[metric] for v in cells[c].values()) for c in names}
        rich = Table(
            Column("method", min_width=14),
            *(Column(c, justify="right") for c in names),
            title=f"{title}: {scenario}, {metric}",
        )
        for method in methods:
            row = []
            for c in names:
                value = cells[c].get(method, {}).get(metric)
                text = "–" if value is None else f"{value:.4f}"
                row.append(f"[bold green]{text}[/bold green]" if value == best[c] else text)
            rich.add_row(method, *row)
        out.append(rich)
    return out


def write_json(metrics: Metrics | RankingTable, path: Path) -> Path:
    """Write the metrics as JSON; return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=False))
    return path


def plot_mae(metrics: Metrics, path: Path) -> Path:
    """PNG: MAE vs support size, one line per method, one panel per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = [s for s in metrics if metrics[s]]
    fig, axes = plt.subplots(
        1, max(len(scenarios), 1), figsize=(5 * max(len(scenarios), 1), 4), squeeze=False
    )
    for ax, scenario in zip(axes[0], scenarios, strict=False):
        sizes = list(metrics[scenario])
        methods = sorted({m for s in sizes for m in metrics[scenario][s]})
        for method in methods:
            ys = [metrics[scenario][s].get(method, {}).get("mae", float("nan")) for s in sizes]
            ax.plot(sizes, ys, marker="o", label=method)
        ax.set_title(scenario)
        ax.set_xlabel("support size")
        ax.set_ylabel("MAE")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def evaluate_ranking_artifact(
    artifact_dir: Path,
    training_set_path: Location,
    *,
    users: dict[str, list[int]] | None = None,
    scenarios: Sequence[Scenario | str] | None = None,
    cells: Sequence[str] | None = None,
    device: str = "cpu",
) -> RankingTable:
    """The ranking table of an artifact's served ranker and the item baselines on given users.

    The baselines are refitted on the training set's meta-training users with the
    hyper-parameters the artifact chose on its validation users (in its card), so a
    production artifact re-evaluated on a candidate's users is compared on equal terms.

    Args:
        artifact_dir: Directory written by ``metarec train`` (with a ranker).
        training_set_path: Training set (parquet with manifest).
        users: Users per scenario (default: the card's test users).
        scenarios: Scenarios (default: those of the card's ranking table).
        cells: Cells such as ``random@10`` (default: the card's).
        device: Unused (ranking runs on the CPU); kept for the evaluator's signature.

    Returns:
        ``{scenario: {cell: {method: {metric: value}}}}``.

    Raises:
        ArtifactError: The artifact has no ranker (trained before ranking existed).
    """
    del device
    card = read_card(Path(artifact_dir))
    model = load_rating_model(Path(artifact_dir), card)
    parts = load_ranker(Path(artifact_dir), card)
    if parts is None or card.ranker is None:
        raise ArtifactError(
            f"{artifact_dir}: the artifact has no catalogue ranker.",
            fix="retrain it with this MetaRec (`metarec train`), which trains and stores one.",
        )
    config, data = _card_data(artifact_dir, training_set_path, card)
    rdata = ranking_data(data)
    catalogue = np.asarray(data.ids.items_of(rdata.item_ids), dtype=parts.item_ids.dtype)
    if not np.array_equal(catalogue, parts.item_ids):
        raise ArtifactError(
            f"{artifact_dir}: the ranker's catalogue differs from {training_set_path}'s items.",
            fix="evaluate on the training set the artifact was trained on (or retrain).",
        )
    return evaluate_ranking(
        card_ranking_methods(
            card, parts, None if model is None else card_adapted_model(model, card), rdata
        ),
        rdata,
        data.split,
        scenarios=tuple(Scenario(s) for s in (scenarios or card.ranking or config.scenarios)),
        cells=Cells.parse(cells or card.ranker.get("cells")),
        users=_coded_users(data, users if users is not None else card.test_users),
        seed=data.split.seed,
    )


def card_ranking_methods(
    card: ModelCard, parts: RankerParts, rating_model: AdaptedModel | None, rdata: RankingData
) -> RankingMethods:
    """The served ranker of an artifact plus the item baselines refitted on ``rdata``.

    The baselines take the hyper-parameters the card chose on its validation users.
    """
    ranker = card.ranker or {}
    chosen = ranker.get("chosen_on_validation", {})
    return RankingMethods(
        served=ServedRanker(
            model=parts.model,
            steps=int(ranker["inner_steps"]),
            ease=parts.ease,
            blend_weight=float(ranker["blend_weight"]),
        ),
        rating_model=rating_model,
        popularity=Popularity.fit(rdata.train_binary),
        item_mean=ItemMean.fit(
            rdata.train_ratings, shrinkage=float(chosen.get("item_mean_shrinkage", 20.0))
        )
        if rdata.graded
        else None,
        item_knn=ItemKNN.fit(rdata.train_binary, neighbours=chosen.get("item_knn_neighbours")),
        ease_binary=EASE.fit(rdata.train_binary, l2=float(chosen.get("ease_l2", 1000.0))),
    )


def card_config(card: ModelCard, *, source: str) -> TrainingConfig:
    """The card's training config; cards written before ``factor_model`` existed read as off."""
    data = {"factor_model": card.factor_model is not None, **card.hyperparameters}
    return TrainingConfig.build(data, source=source)


def card_split(df: pd.DataFrame, card: ModelCard, config: TrainingConfig) -> Split:
    """The card's user split, rebuilt from its seed (and its new-item cutoff year)."""
    split = config_split(df, config, seed=int(card.split["seed"]))
    cutoff = int(card.split["new_item_cutoff_year"])
    return Split(**{**split.model_dump(), "new_item_cutoff_year": cutoff})
