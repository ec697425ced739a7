"""The study: Optuna's RDB storage, the seeded TPE sampler, the pruner, create or load.

Trials share one RDB storage (a SQLAlchemy URL; by default the registry's database: SQLite on
a laptop, PostgreSQL on a cluster), so worker processes or pods run trials of one study at once.
Optuna's tables (``studies``, ``trials``…) sit beside the registry's (``registry_*``) without
clashing. Each running trial beats a heartbeat; a trial whose worker died (no beat for the grace
period) is failed by the next worker that starts a trial, or by :func:`fail_stale`.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from metarec.errors import TuningStorageError
from metarec.tuning.spec import HeartbeatSpec, PrunerSpec, SamplerSpec, TuningSpec

SPEC_ATTR = "metarec.objective"  # study user attribute: the objective it was created for


def _redacted(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparsable URL>"


def open_storage(url: str, *, heartbeat: HeartbeatSpec | None = None) -> optuna.storages.RDBStorage:
    """Open (and create the tables of) the Optuna storage at ``url``.

    Args:
        url: SQLAlchemy URL (``sqlite:///…``, ``postgresql+psycopg://…``).
        heartbeat: Heartbeat settings of running trials (default: :class:`HeartbeatSpec`).

    Raises:
        TuningStorageError: The URL is malformed, its driver is missing, or the database cannot
            be reached (the URL is named with its password hidden).
    """
    beat = heartbeat or HeartbeatSpec()
    engine_kwargs: dict[str, Any] = {}
    try:
        if make_url(url).get_backend_name() == "sqlite":
            engine_kwargs["connect_args"] = {"timeout": 60}  # workers wait for the write lock
        else:
            engine_kwargs["pool_pre_ping"] = True
        with warnings.catch_warnings():  # the heartbeat is "experimental" since Optuna 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=beat.interval_s,
                grace_period=beat.grace_period_s,
            )
    except (ArgumentError, ValueError, ImportError, SQLAlchemyError) as exc:
        raise TuningStorageError(
            f"Cannot open the study storage {_redacted(url)} ({type(exc).__name__}).",
            fix="pass --storage with a reachable SQLAlchemy URL (sqlite:///path/tune.db or "
            "postgresql+psycopg://user@host:5432/db), or leave it out to use the registry's "
            "database.",
        ) from exc


def make_sampler(spec: SamplerSpec, *, seed_offset: int = 0) -> optuna.samplers.TPESampler:
    """The TPE sampler, seeded ``seed + seed_offset`` (each worker its own offset)."""
    return optuna.samplers.TPESampler(
        seed=spec.seed + seed_offset, n_startup_trials=spec.n_startup_trials
    )


def make_pruner(spec: PrunerSpec) -> optuna.pruners.BasePruner:
    """The median or Hyperband pruner of the tuning file (``none``: never prune)."""
    if spec.type == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=spec.n_startup_trials,
            n_warmup_steps=spec.n_warmup_steps,
            interval_steps=spec.interval_steps,
        )
    if spec.type == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=spec.min_resource, reduction_factor=spec.reduction_factor
        )
    return optuna.pruners.NopPruner()


def open_study(
    storage: optuna.storages.BaseStorage,
    *,
    name: str,
    spec: TuningSpec,
    create: bool = True,
    seed_offset: int = 0,
) -> optuna.Study:
    """Create the study ``name`` in ``storage``, or load it when it exists.

    Args:
        storage: The shared storage (:func:`open_storage`).
        name: The study's name.
        spec: The tuning file (direction, sampler, pruner).
        create: False: the study must exist already (a worker joining it).
        seed_offset: This worker's offset of the sampler's seed (workers sharing a study
            must not draw the same random stream).

    Raises:
        TuningStorageError: ``create`` is False and there is no such study, or the study was
            created for another objective.
    """
    sampler = make_sampler(spec.sampler, seed_offset=seed_offset)
    pruner = make_pruner(spec.pruner)
    if not create and name not in {s.study_name for s in storage.get_all_studies()}:
        raise TuningStorageError(
            f"No study {name!r} in the study storage.",
            fix="start it with `metarec tune --study NAME` (or check --study and --storage).",
        )
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            sampler=sampler,
            pruner=pruner,
            direction=spec.objective.direction,
            load_if_exists=True,
        )
    except ValueError as exc:  # an existing study with the other direction
        raise TuningStorageError(
            f"Study {name!r} cannot be loaded for {spec.objective.value} ({exc}).",
            fix="use the tuning file the study was created with, or another --study name.",
        ) from exc
    recorded = study.user_attrs.get(SPEC_ATTR)
    if recorded is None:
        study.set_user_attr(SPEC_ATTR, spec.objective.value)
    elif recorded != spec.objective.value:
        raise TuningStorageError(
            f"Study {name!r} optimises {recorded}, not {spec.objective.value}.",
            fix="use the tuning file the study was created with, or another --study name.",
        )
    return study


def fail_stale(study: optuna.Study) -> None:
    """Fail the running trials whose worker stopped beating (a crashed process or pod)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
