"""The quickstart: the whole loop on embedded defaults, printing each stage, then a summary.

``metarec quickstart`` is a CLI plugin (entry point ``metarec.cli``) because it runs the loop
over the same components as the Prefect flow and the KFP pipeline (the core never imports them).

Data → features → validation → meta-training → evaluation → gate → registry → a production
service → a canary of the new version under generated traffic → promotion. The first run has no
production version to canary against: its version becomes production directly (the ledger says
so). Every later run trains a new version (the next seed, on the same user split, as a scheduled
retrain would on new data) and canaries it against the one in production.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from metarec.cli.console import console, stage, training_progress
from metarec.cli.data import DataSourceOption
from metarec.config import Settings
from rich.table import Table

STAGES = 13
# A short canary for a laptop: three steps of 10 s under ~40 user visits/s (recommend +
# feedback). The online-MAE and hit-rate limits are loose because a 10 s window at 25 % holds
# only ~100 feedback events (MAE noise ≈ 0.1) and a few dozen positive ones (hit-rate noise
# ≈ 0.07).
QUICKSTART_CANARY: dict[str, Any] = {
    "steps": [25, 50, 100],
    "interval_s": 10.0,
    "max_error_rate": 0.01,
    "max_p99_ms": 2000.0,
    "max_online_mae_delta": 0.25,
    "max_online_hit_rate_drop": 0.15,
    "failure_threshold": 2,
    "min_requests": 30,
    "min_feedback": 20,
    "min_positive_feedback": 20,
}
QUICKSTART_TRAINING: dict[str, Any] = {"split_seed": 0}
SUMMARY_METHODS = (
    "factor_map",
    "global_mean",
    "item_bias",
    "user_item_bias",
    "global_model",
    "finetune",
)
RANKING_METHODS = ("ranker", "meta_ranker", "plain_ranker", "popularity", "ease", "ease_weighted")


@dataclass
class QuickstartRun:
    """What the stages produced, for the summary."""

    started: float = field(default_factory=time.perf_counter)
    facts: list[str] = field(default_factory=list)
    reports: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    ranking: dict[str, Any] = field(default_factory=dict)
    algorithm: str = ""
    outcome: str = ""


def _step(index: int, text: str) -> str:
    return f"{index:>2}/{STAGES} {text}"


def run_quickstart(
    settings: Settings,
    *,
    source: str,
    path: Path | None,
    user: int,
    canary_interval_s: float = QUICKSTART_CANARY["interval_s"],
) -> None:
    """Run every stage of the loop on ``settings``' home and print a summary."""
    run = QuickstartRun()
    console.rule(f"MetaRec quickstart (home: {settings.paths.home})")
    training_set = _data_stages(settings, run, source=source, path=path, user=user)
    artifact = _train_stages(settings, run, training_set=training_set)
    canary = {**QUICKSTART_CANARY, "interval_s": canary_interval_s}
    version = _release_stages(
        settings, run, artifact=artifact, training_set=training_set, canary=canary
    )
    if version is not None:
        _serve_stage(settings, run, user=user)
    _summary(settings, run)


# ---------------------------------------------------------------------------- data
def _data_stages(
    settings: Settings, run: QuickstartRun, *, source: str, path: Path | None, user: int
) -> Path:
    from metarec.data.ingest import DataSource, input_identity, read_source, write_snapshot
    from metarec.data.snapshots import SnapshotStore
    from metarec.errors import ReferenceProfileNotFoundError
    from metarec.features.definitions import META_TRAINING
    from metarec.features.store import (
        apply_features,
        materialize_features,
        online_features,
        open_store,
    )
    from metarec.features.training_set import build_training_set, default_training_set_path
    from metarec.validation.gate import (
        build_reference_profile,
        profile_store,
        raise_for_failure,
        validate_training_set,
    )

    data_source = DataSource(source)
    origin = "the generator" if data_source is DataSource.SYNTHETIC else "the official archive"
    with stage(_step(1, f"Ingest {source} from {path or origin}")):
        dataset = read_source(
            data_source, path=path, download_dir=settings.paths.home / "downloads"
        )
        snapshot = write_snapshot(
            dataset,
            SnapshotStore(settings.paths.snapshots),
            input_checksum=input_identity(data_source, path=path),
        )
    with stage(_step(2, "Register features in Feast (apply)")):
        apply_features(settings, snapshot)
    with stage(_step(3, "Materialise features into the online store")):
        materialize_features(settings)
    with stage(_step(4, f"Read user {user}'s features from the online store")):
        values = online_features(open_store(settings), user_id=user)
    table = Table("feature", "value", title=f"User {user} (online store)")
    for name, value in values.items():
        table.add_row(name, str(value))
    console.print(table)
    out = default_training_set_path(settings, snapshot.snapshot_id)
    with stage(_step(5, "Build the point-in-time training set (Feast historical retrieval)")):
        manifest = build_training_set(settings, out=out)
    try:
        profile = profile_store(settings).current(META_TRAINING)
        profile_note = f"reference profile {profile.label}"
        console.print(f"   {_step(6, f'Reference profile {profile.label} already exists')}")
    except ReferenceProfileNotFoundError:
        with stage(_step(6, "Accept this first training set as the reference profile")):
            profile, _ = build_reference_profile(settings, training_set=out)
        profile_note = f"reference profile {profile.label} (new)"
    with stage(_step(7, "Validate the training set (Great Expectations gate)")):
        result = validate_training_set(settings, training_set=out)
    raise_for_failure(result)
    counts = dataset.summary()
    passed = sum(item.success for item in result.expectations)
    run.facts += [
        f"Snapshot {snapshot.snapshot_id}: {counts['interactions']:,} ratings, "
        f"{counts['users']:,} users, {counts['items']:,} items",
        f"Training set: {manifest.rows:,} rows, fingerprint {manifest.fingerprint[:19]}…",
        f"Validation: passed {passed}/{len(result.expectations)} expectations against "
        f"{profile_note}",
    ]
    run.reports["validation (HTML)"] = str(result.report_html)
    return out


# ---------------------------------------------------------------------------- model
def _next_artifact(settings: Settings, fingerprint: str) -> tuple[Path, int]:
    """The artifact folder and seed of this run: one more seed per finished earlier run.

    An interrupted run (a folder without a model card) keeps its seed and resumes from its
    checkpoint; a finished one (registered or rejected) moves the next run to a new seed.
    """
    folder = settings.paths.artifacts / "quickstart"
    finished = len(list(folder.glob(f"{fingerprint}-seed*/model_card.json")))
    return folder / f"{fingerprint}-seed{finished}", finished


def _train_stages(settings: Settings, run: QuickstartRun, *, training_set: Path) -> Path:
    import yaml
    from metarec.features.training_set import read_manifest
    from metarec.training.config import TrainingConfig
    from metarec.training.evaluation import plot_mae
    from metarec.training.trainer import train

    fingerprint = read_manifest(training_set).fingerprint.removeprefix("sha256:")[:12]
    artifact, seed = _next_artifact(settings, fingerprint)
    # The split stays fixed (split_seed 0) so the gate compares versions on the same users.
    values = dict(QUICKSTART_TRAINING)
    if settings.workflows.training_config is not None:  # the same YAML scheduled retrains use
        values.update(yaml.safe_load(settings.workflows.training_config.read_text()) or {})
    config = TrainingConfig.build({**values, "seed": seed})
    label = f"Meta-train {config.algorithm.value} (seed {seed}) and evaluate cold start"
    started = time.perf_counter()
    console.print(f"   {_step(8, label)}", highlight=False)
    with training_progress(config.algorithm.value) as report:
        card = train(training_set, config=config, out=artifact, on_progress=report)
    console.print(
        f"[green]✓[/green] {_step(8, label)} [dim]({time.perf_counter() - started:.1f}s, "
        f"{card.training['steps']} steps, best at {card.training['best_step']})[/dim]",
        highlight=False,
    )
    with stage(_step(9, "Plot cold-start MAE against the baselines")):
        png = plot_mae(card.metrics, artifact.with_name(artifact.name + ".evaluation.png"))
    run.reports["evaluation (PNG)"] = str(png)
    run.metrics = card.metrics
    run.ranking = card.ranking
    run.algorithm = str(card.algorithm)
    return artifact


# ---------------------------------------------------------------------------- release
def _release_stages(
    settings: Settings,
    run: QuickstartRun,
    *,
    artifact: Path,
    training_set: Path,
    canary: dict[str, Any],
) -> int | None:
    """Gate, register, canary (or bootstrap); the version now in production, or None."""
    from metarec.components.canary_rollout import canary_rollout
    from metarec.components.gate_model import gate_model
    from metarec.components.register_model import register_model

    home = str(settings.paths.home)
    with stage(_step(10, "Evaluation gate (default policy, against production if any)")):
        verdict = gate_model(
            artifact=str(artifact),
            home=home,
            training_set=str(training_set),
            actor="quickstart",
            raise_on_reject=False,
        )
    run.facts.append(f"Gate: {verdict.summary} (decision {verdict.decision_path})")
    if not verdict.accepted:
        run.outcome = (
            f"[yellow]The gate rejected the candidate ({', '.join(verdict.broken_rules)}); "
            "production is unchanged.[/yellow]"
        )
        return None
    with stage(_step(11, "Register the candidate in staging")):
        registered = register_model(
            artifact=str(artifact), decision=verdict.decision_path, home=home, actor="quickstart"
        )
    run.facts.append(f"Registered {registered.tag}" + (" (already)" if registered.reused else ""))
    production = verdict.production_version  # what the gate compared against
    label = _step(
        12,
        f"Canary {registered.tag} against v{production} under generated traffic, then promote"
        if production is not None
        else f"Promote {registered.tag}: the first version, nothing to canary against yet",
    )
    console.print(f"   {label} …", highlight=False)
    started = time.perf_counter()
    rollout = canary_rollout(
        version=registered.version,
        home=home,
        spec=canary,
        training_set=str(training_set),
        actor="quickstart",
        raise_on_failure=False,
    )
    console.print(
        f"[green]✓[/green] {label} [dim]({time.perf_counter() - started:.1f}s)[/dim]",
        highlight=False,
    )
    if rollout.outcome == "bootstrapped":
        run.outcome = (
            f"[green]{rollout.tag} is in production[/green] (first version: nothing to canary "
            "against). Run the quickstart again to train a new version and canary it against "
            f"{rollout.tag}."
        )
    elif rollout.outcome == "promoted":
        mae = rollout.online_mae
        run.outcome = (
            f"[green]{rollout.tag} promoted to production[/green] after a canary over "
            f"{', '.join(f'{s} %' for s in canary['steps'])} "
            f"(online MAE canary {_fmt(mae.get('canary'))} vs production "
            f"{_fmt(mae.get('production'))}; {rollout.traffic['predictions']:,} predictions, "
            f"{rollout.traffic['server_errors']} server errors)"
        )
    elif rollout.outcome == "already-production":
        run.outcome = f"{rollout.tag} was already in production."
    else:
        run.outcome = (
            f"[yellow]Canary of {rollout.tag} {rollout.outcome}: {rollout.reason}; production "
            f"stays v{rollout.production_after}.[/yellow]"
        )
    if rollout.report_html:
        run.reports["rollout timeline (HTML)"] = rollout.report_html
        run.reports["rollout timeline (PNG)"] = str(rollout.report_png)
    return rollout.production_after


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


# ---------------------------------------------------------------------------- serving
def _serve_stage(settings: Settings, run: QuickstartRun, *, user: int) -> None:
    """Start the production service, ask it for the user's top 5, stop it."""
    import httpx
    from metarec.data.snapshots import SnapshotStore
    from metarec.serving.process import ServiceProcess

    log = settings.paths.rollouts / "quickstart-production.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    label = _step(13, f"Production service: adapt to user {user} and recommend")
    with stage(label), ServiceProcess(settings, stage="production", log_path=log) as service:
        answer = httpx.post(f"{service.url}/recommend", json={"user_id": user, "k": 5}, timeout=60)
        metadata = httpx.get(f"{service.url}/metadata", timeout=10).json()
    answer.raise_for_status()
    titles = SnapshotStore(settings.paths.snapshots).read_table("items").set_index("item_id")
    # Ranked by the ranker's score; the rating model predicts each item's rating (1..5).
    table = Table(
        "item", "title", "ranker score", "predicted rating", title=f"Top 5 for user {user}"
    )
    for item in answer.json()["items"]:
        title = titles["title"].get(item["item_id"], "?")
        table.add_row(
            str(item["item_id"]),
            str(title),
            f"{item['score']:.2f}",
            f"{item.get('predicted_rating', item['score']):.2f}",
        )
    console.print(table)
    run.facts.append(
        f"Production service: {metadata['model_version']} (ranker + "
        f"{metadata.get('rating_model', metadata['algorithm'])} ratings, "
        f"{metadata['n_items']:,} items); serve it with `metarec serve --stage production`"
    )


# ---------------------------------------------------------------------------- summary
def _summary(settings: Settings, run: QuickstartRun) -> None:
    new_user = run.metrics.get("new_user", {})
    table = Table(
        "support",
        run.algorithm,
        *SUMMARY_METHODS,
        title="New users: MAE (nDCG@3) on held-out users, meta-learned vs baselines",
    )
    for size, methods in new_user.items():
        cells = []
        for method in (run.algorithm, *SUMMARY_METHODS):
            values = methods.get(method)
            cells.append("–" if values is None else f"{values['mae']:.3f} ({values['ndcg@3']:.3f})")
        table.add_row(size, *cells)
    console.rule("Summary")
    console.print(table)
    ranking = run.ranking.get("new_user", {})
    if ranking:
        ranked = Table(
            "support",
            *RANKING_METHODS,
            title="New users, whole catalogue ranked: NDCG@20 of the served ranker vs baselines",
        )
        for cell, methods in ranking.items():
            ranked.add_row(
                cell,
                *(
                    "–" if m not in methods else f"{methods[m]['ndcg@20']:.3f}"
                    for m in RANKING_METHODS
                ),
            )
        console.print(ranked)
    for fact in run.facts:
        console.print(f"• {fact}", highlight=False, soft_wrap=True)
    console.print(f"• {run.outcome}", soft_wrap=True)
    for name, path in run.reports.items():
        console.print(f"• Report, {name}: {path}", highlight=False, soft_wrap=True)
    console.print(f"Quickstart finished in {time.perf_counter() - run.started:.0f} s.")


def quickstart(
    ctx: typer.Context,
    path: Annotated[
        Path | None,
        typer.Option(help="Local ml-100k.zip or folder; default: download the official archive."),
    ] = None,
    source: Annotated[
        DataSourceOption, typer.Option(help="Dataset to use.")
    ] = DataSourceOption.ML_100K,
    user: Annotated[
        int, typer.Option(help="User whose features and recommendations are shown.")
    ] = 1,
    canary_interval: Annotated[
        float,
        typer.Option(
            min=2.0,
            help="Seconds per canary step (25, 50, 100 %) under generated traffic (~40 "
            "predictions/s); shorter windows hold fewer feedback events.",
        ),
    ] = QUICKSTART_CANARY["interval_s"],
) -> None:
    """Run the whole loop on embedded defaults and print a summary.

    Ingest → Feast features → validation → meta-training → evaluation → gate → registry →
    canary under generated traffic → promotion → production service. The first run puts its
    version in production directly (nothing to canary against); each later run trains a new
    version and canaries it against the one in production.
    """
    run_quickstart(
        ctx.obj, source=source.value, path=path, user=user, canary_interval_s=canary_interval
    )
