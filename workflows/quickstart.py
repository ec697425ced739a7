"""The quickstart: the whole loop on embedded defaults, printing each stage, then a summary.

``metarec quickstart`` is a plugin of the ``metarec`` command (an entry point in
``pyproject.toml``). It runs the loop through the same use cases the pipeline's components call
(:mod:`metarec.ops`); how it prints is in :mod:`metarec.workflows.quickstart_views`.

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
from metarec.config import Settings
from metarec.data.ingest import DataSource
from metarec.workflows.quickstart_views import (
    console,
    done,
    input_summary,
    item_labels,
    outcome_text,
    print_features,
    print_summary,
    print_top,
    stage,
    training_bars,
)

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
ACTOR = "quickstart"


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
    user: int | str | None,
    schema: Path | None = None,
    canary_interval_s: float = QUICKSTART_CANARY["interval_s"],
) -> None:
    """Run every stage of the loop on ``settings``' home and print a summary.

    Args:
        settings: Platform settings (the home everything is written to).
        source: Dataset layout (:class:`DataSource` value).
        path: Local MovieLens archive or folder.
        user: User whose features and recommendations are shown; None: user 1, or the
            snapshot's first user when it has no user 1.
        schema: The schema YAML of a ``table`` source.
        canary_interval_s: Seconds per canary step.

    Raises:
        MetaRecError: A bad option (before any work) or a failing stage, as one line.
    """
    data_source = DataSource(source)
    _check_source(data_source, path=path, schema=schema)
    run = QuickstartRun()
    console.rule(f"MetaRec quickstart (home: {settings.paths.home})")
    snapshot, user = _data_stages(
        settings, run, source=data_source, path=path, schema=schema, user=user
    )
    training_set = _training_set_stages(settings, run, snapshot_id=snapshot)
    artifact = _train_stages(settings, run, training_set=training_set)
    gated = _gate_and_register(settings, run, artifact=artifact, training_set=training_set)
    if gated is not None:
        canary = {**QUICKSTART_CANARY, "interval_s": canary_interval_s}
        version, production = gated
        in_production = _canary_stage(
            settings,
            run,
            version=version,
            production=production,
            training_set=training_set,
            canary=canary,
        )
        if in_production is not None:
            _serve_stage(settings, run, user=user)
    print_summary(run)


# ---------------------------------------------------------------------------- data
def _check_source(source: DataSource, *, path: Path | None, schema: Path | None) -> None:
    """Refuse options that do not fit ``source`` before any work, with the fix."""
    from metarec.errors import MetaRecError

    if source is DataSource.TABLE and schema is None:
        raise MetaRecError(
            "--source table needs --schema, the YAML declaring your tables.",
            fix="write one for your files (docs/your-data.md), or generate a catalogue to try "
            "it: `metarec data generate --out my-data --label rating --ids int`, then "
            "`metarec quickstart --source table --schema my-data/schema.yaml`.",
        )
    if source is not DataSource.TABLE and schema is not None:
        raise MetaRecError(
            f"--schema is for --source table, not {source.value}.",
            fix="drop --schema, or pass --source table.",
        )
    if source is DataSource.TABLE and path is not None:
        raise MetaRecError(
            "--path is for MovieLens sources; --source table reads the files --schema declares.",
            fix="drop --path, and name the files in the schema YAML.",
        )


def _data_stages(
    settings: Settings,
    run: QuickstartRun,
    *,
    source: DataSource,
    path: Path | None,
    schema: Path | None,
    user: int | str | None,
) -> tuple[str, int | str]:
    """Ingest, apply the features, materialise them, read one user's.

    Returns:
        The snapshot id, and the shown user's id (typed as the snapshot's ids).
    """
    from metarec.features.store import (
        apply_features,
        materialize_features,
        online_features,
        open_store,
    )
    from metarec.ops.ingestion import ingest

    origins = {DataSource.SYNTHETIC: "the generator", DataSource.TABLE: schema}
    origin = path or origins.get(source, "the official archive")
    with stage(_step(1, f"Ingest {source.value} from {origin}")):
        ingested = ingest(settings, source=source, path=path, schema=schema)
    snapshot = ingested.snapshot
    with stage(_step(2, "Register features in Feast (apply)")):
        apply_features(settings, snapshot)
    with stage(_step(3, "Materialise features into the online store")):
        materialize_features(settings)
    shown = _shown_user(snapshot, user)
    with stage(_step(4, f"Read user {shown}'s features from the online store")):
        values = online_features(open_store(settings), user_id=shown)
    shown = values["user_id"]
    print_features(shown, values)
    counts = ingested.counts
    noun = "events" if ingested.label_kind == "event" else "ratings"
    run.facts.append(
        f"Snapshot {snapshot.snapshot_id}: {counts['interactions']:,} {noun}, "
        f"{counts['users']:,} users, {counts['items']:,} items"
    )
    return snapshot.snapshot_id, shown


def _shown_user(snapshot: Any, user: int | str | None) -> int | str:
    """The user to show: ``user`` when given, else 1 when it rated, else the first who did."""
    import pandas as pd

    if user is not None:
        return user
    rated = pd.read_parquet(snapshot.table_path("interactions"), columns=["user_id"])["user_id"]
    if (rated == 1).any():
        return 1
    first = rated.sort_values().iloc[0]
    return first.item() if hasattr(first, "item") else first


def _training_set_stages(settings: Settings, run: QuickstartRun, *, snapshot_id: str) -> Path:
    """Build the training set, accept a first reference profile, validate; the set's path."""
    from metarec.errors import ReferenceProfileNotFoundError
    from metarec.features.definitions import META_TRAINING
    from metarec.features.training_set import default_training_set_path
    from metarec.ops import check_training_set, prepare_training_set
    from metarec.validation.gate import build_reference_profile, profile_store

    out = default_training_set_path(settings, snapshot_id)
    with stage(_step(5, "Build the point-in-time training set (Feast historical retrieval)")):
        manifest = prepare_training_set(settings, out=out)
    try:
        profile = profile_store(settings).current(META_TRAINING)
        profile_note = f"reference profile {profile.label}"
        console.print(f"   {_step(6, f'Reference profile {profile.label} already exists')}")
    except ReferenceProfileNotFoundError:
        with stage(_step(6, "Accept this first training set as the reference profile")):
            profile, _ = build_reference_profile(settings, training_set=out)
        profile_note = f"reference profile {profile.label} (new)"
    with stage(_step(7, "Validate the training set (Great Expectations gate)")):
        result = check_training_set(settings, training_set=out)
    passed = sum(item.success for item in result.expectations)
    run.facts += [
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
    from metarec.features.training_set import read_manifest
    from metarec.ops import train_candidate, training_config
    from metarec.training.evaluation import plot_mae

    fingerprint = read_manifest(training_set).fingerprint.removeprefix("sha256:")[:12]
    artifact, seed = _next_artifact(settings, fingerprint)
    # The split stays fixed (split_seed 0) so the gate compares versions on the same users;
    # the YAML of scheduled retrains (workflows.training_config) applies on top.
    config = training_config(
        defaults=QUICKSTART_TRAINING,
        config_file=settings.workflows.training_config,
        values={"seed": seed},
    )
    label = _step(8, f"Meta-train {config.algorithm.value} (seed {seed}) and evaluate cold start")
    started = time.perf_counter()
    console.print(f"   {label}", highlight=False)
    with training_bars() as report:
        card = train_candidate(
            settings, training_set=training_set, config=config, out=artifact, on_progress=report
        ).card
    training = card.training
    if card.predicts_ratings:
        done(label, started, f", {training['steps']} steps, best at {training['best_step']}")
        with stage(_step(9, "Plot cold-start MAE against the baselines")):
            png = plot_mae(card.metrics, artifact.with_name(artifact.name + ".evaluation.png"))
        run.reports["evaluation (PNG)"] = str(png)
    else:
        done(label, started, ", the ranker alone: the training set holds implicit events")
        console.print(f"✓ {_step(9, 'No ratings, no MAE to plot: the ranking is the evaluation')}")
    run.metrics = card.metrics
    run.ranking = card.ranking
    run.algorithm = str(card.algorithm)
    return artifact


# ---------------------------------------------------------------------------- release
def _gate_and_register(
    settings: Settings, run: QuickstartRun, *, artifact: Path, training_set: Path
) -> tuple[int, int | None] | None:
    """Gate the candidate, then register it in staging.

    Returns:
        The registered version and the production version the gate compared it with; None
        when the gate rejected it.
    """
    from metarec.ops import register_candidate, register_gated

    model = settings.registry.model_name
    decision_file = artifact.with_name(artifact.name + ".gate.json")
    with stage(_step(10, "Evaluation gate (default policy, against production if any)")):
        gated = register_candidate(
            settings,
            artifact=artifact,
            model=model,
            policy=None,
            training_set=training_set,
            actor=ACTOR,
            register=False,
            on_decision=lambda d: decision_file.write_text(d.model_dump_json(indent=2)),
        )
    decision = gated.decision
    run.facts.append(f"Gate: {decision.summary()} (decision {decision_file})")
    if not decision.accepted:
        broken = ", ".join(sorted({check.rule for check in decision.broken}))
        run.outcome = (
            f"[yellow]The gate rejected the candidate ({broken}); production is unchanged.[/yellow]"
        )
        return None
    with stage(_step(11, "Register the candidate in staging")):
        registered = register_gated(
            settings, artifact=artifact, model=model, decision=decision, actor=ACTOR
        )
    run.facts.append(
        f"Registered {registered.version.tag}" + (" (already)" if registered.reused else "")
    )
    return registered.version.version, decision.production_version


def _canary_stage(
    settings: Settings,
    run: QuickstartRun,
    *,
    version: int,
    production: int | None,
    training_set: Path,
    canary: dict[str, Any],
) -> int | None:
    """Canary (or, first, promote) the version; the version now in production, or None."""
    from metarec.ops import release_canary
    from metarec.registry import VersionRef
    from metarec.rollout.traffic import replay_rows
    from metarec.rollout.types import RolloutSpec

    ref = VersionRef(model=settings.registry.model_name, version=version)
    label = _step(
        12,
        f"Canary {ref.tag} against v{production} under generated traffic, then promote"
        if production is not None
        else f"Promote {ref.tag}: the first version, nothing to canary against yet",
    )
    console.print(f"   {label} …", highlight=False)
    started = time.perf_counter()
    outcome = release_canary(
        settings,
        ref=ref,
        spec=RolloutSpec(**canary),
        actor=ACTOR,
        rows=lambda: replay_rows(training_set),
    )
    done(label, started)
    run.outcome = outcome_text(outcome, steps=canary["steps"])
    if "html" in outcome.reports:
        run.reports["rollout timeline (HTML)"] = str(outcome.reports["html"])
        run.reports["rollout timeline (PNG)"] = str(outcome.reports["png"])
    return outcome.production_after


# ---------------------------------------------------------------------------- serving
def _serve_stage(settings: Settings, run: QuickstartRun, *, user: int | str) -> None:
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
    items = SnapshotStore(settings.paths.snapshots).read_table("items").set_index("item_id")
    # Ranked by the ranker's score; the rating model predicts each item's rating (1..5).
    print_top(user, answer.json()["items"], item_labels(items))
    ratings = metadata.get("rating_model") or metadata["algorithm"]
    models = (
        "the ranker alone: learnt from implicit events"
        if metadata.get("label") == "event"
        else f"ranker + {ratings} ratings"
    )
    run.facts.append(
        f"Production service: {metadata['model_version']} ({models}, "
        f"{metadata['n_items']:,} items); serve it with `metarec serve --stage production`"
    )
    if metadata.get("input_fields"):
        run.facts.append(f"Model inputs (GET /metadata): {input_summary(metadata['input_fields'])}")


def quickstart(
    ctx: typer.Context,
    path: Annotated[
        Path | None,
        typer.Option(help="Local ml-100k.zip or folder; default: download the official archive."),
    ] = None,
    source: Annotated[
        DataSource,
        typer.Option(help="Dataset to use; table: your own tables, declared by --schema."),
    ] = DataSource.ML_100K,
    schema: Annotated[
        Path | None,
        typer.Option(
            help="--source table: the schema YAML declaring your tables (docs/your-data.md); "
            "`metarec data generate --out my-data --label rating --ids int` writes one to try."
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            help="User whose features and recommendations are shown (default: 1, or the "
            "snapshot's first user when it has no user 1)."
        ),
    ] = None,
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
        ctx.obj,
        source=source.value,
        path=path,
        schema=schema,
        user=user,
        canary_interval_s=canary_interval,
    )
