"""The tuning file (YAML): the search space, the objective, each trial's budget, sampler, pruner.

``metarec tune --space FILE`` reads it; without ``--space`` the file shipped beside this module
(``default_space.yaml``) is used. Every key is checked: a wrong one is named with the fix.
"""

from __future__ import annotations

from enum import StrEnum
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from metarec.errors import ConfigError, TuningSpaceError
from metarec.training.config import TrainingConfig
from metarec.tuning.space import Parameter, SearchSpace, tunable_names

DEFAULT_SPACE = "default_space.yaml"


class Objective(StrEnum):
    """What a trial is scored on: validation users only (never the test users)."""

    VAL_MAE = "val_mae"  # rating model: MAE of the validation users (early stopping's metric)
    VAL_NDCG = "val_ndcg@20"  # catalogue ranker: NDCG@20 of the validation users

    @property
    def direction(self) -> Literal["minimize", "maximize"]:
        """Optuna's direction for this objective."""
        return "minimize" if self is Objective.VAL_MAE else "maximize"


class PrunerSpec(BaseModel):
    """How bad trials stop early, from the value reported at every validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["median", "hyperband", "none"] = "median"
    n_startup_trials: int = Field(
        default=3, ge=0, description="median: trials finished before any is pruned."
    )
    n_warmup_steps: int = Field(
        default=0, ge=0, description="median: meta-training steps before a trial can be pruned."
    )
    interval_steps: int = Field(default=1, ge=1, description="median: check every N reports.")
    min_resource: int | Literal["auto"] = Field(
        default="auto", description="hyperband: the smallest budget (steps) of a bracket."
    )
    reduction_factor: int = Field(default=3, ge=2, description="hyperband: η of its rungs.")


class SamplerSpec(BaseModel):
    """The TPE sampler (seeded: the same study on the same data samples the same trials)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    n_startup_trials: int = Field(default=5, ge=0, description="Random trials before TPE.")


class HeartbeatSpec(BaseModel):
    """Trials of a crashed worker are failed once their heartbeat is this old."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval_s: int = Field(default=5, ge=1, description="A running trial beats every N s.")
    grace_period_s: int = Field(default=20, ge=2, description="No beat for N s: failed.")


class TuningSpec(BaseModel):
    """A tuning file: what to sample, what to optimise, and how much each trial may spend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    objective: Objective = Objective.VAL_MAE
    parameters: dict[str, Parameter] = Field(min_length=1)
    trial: dict[str, Any] = Field(
        default_factory=dict,
        description="TrainingConfig values of every trial (its budget), over the base config; "
        "the best parameters are re-trained on the base config without them.",
    )
    pruner: PrunerSpec = PrunerSpec()
    sampler: SamplerSpec = SamplerSpec()
    heartbeat: HeartbeatSpec = HeartbeatSpec()

    @model_validator(mode="after")
    def _check_space(self) -> TuningSpec:
        SearchSpace(parameters=self.parameters)  # its own checks (support range)
        return self

    @property
    def space(self) -> SearchSpace:
        """The search space of this file."""
        return SearchSpace(parameters=self.parameters)

    def trial_values(self) -> dict[str, Any]:
        """Every trial's fixed values; a ranker objective trains the ranker."""
        values = dict(self.trial)
        if self.objective is Objective.VAL_NDCG:
            values["ranker"] = True
        return values


def default_space_path() -> Path:
    """The tuning file shipped with MetaRec."""
    return Path(str(files("metarec.tuning").joinpath(DEFAULT_SPACE)))


def load_spec(path: Path | None = None) -> TuningSpec:
    """Read and check a tuning file (default: the shipped one).

    Raises:
        TuningSpaceError: The file is missing or not YAML, a key is unknown or a value invalid
            (the key is named), or a parameter sets no training field.
    """
    source = Path(path) if path is not None else default_space_path()
    fix = "correct the tuning file (its keys are described in docs/tuning.md)."
    try:
        data = yaml.safe_load(source.read_text()) or {}
    except OSError as exc:
        raise TuningSpaceError(source, key="", problem=f"cannot be read ({exc}).", fix=fix) from exc
    except yaml.YAMLError as exc:
        raise TuningSpaceError(source, key="", problem=f"not valid YAML ({exc}).", fix=fix) from exc
    if not isinstance(data, dict):
        raise TuningSpaceError(source, key="", problem="must be a mapping.", fix=fix)
    _check_names(source, data.get("parameters"))
    try:
        spec = TuningSpec.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"])
        raise TuningSpaceError(source, key=key or "", problem=f"{error['msg']}.", fix=fix) from exc
    _check_trial_values(source, spec)
    return spec


def _check_names(source: Path, parameters: object) -> None:
    """Name the first parameter that sets no training field."""
    if not isinstance(parameters, dict):
        return  # the model's validation names the problem
    known = set(tunable_names())
    for name in parameters:
        if name not in known:
            raise TuningSpaceError(
                source,
                key=f"parameters.{name}",
                problem="not a tunable training field.",
                fix="name a scalar TrainingConfig field (docs/learning.md) or hidden_width / "
                "hidden_layers, e.g. inner_lr, outer_lr, algorithm, embedding_dim.",
            )


def _check_trial_values(source: Path, spec: TuningSpec) -> None:
    """The ``trial`` block must be valid training-config values on their own."""
    try:
        TrainingConfig.build(spec.trial_values(), source=f"{source}: trial")
    except ConfigError as exc:
        raise TuningSpaceError(
            source,
            key="trial",
            problem=exc.problem,
            fix="the trial block holds TrainingConfig fields (docs/learning.md).",
        ) from exc
