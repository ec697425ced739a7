"""The search space: typed parameter ranges, what a trial samples, and how it maps onto training.

A parameter is named after the :class:`~metarec.training.config.TrainingConfig` field it sets
(``inner_lr``, ``algorithm``, ``train_support_max``…), or is one of the two width parameters
that together set the tuple ``hidden``: ``hidden_width`` (every decision layer's width) and
``hidden_layers`` (how many). A float range may be sampled on a log scale; an int range too;
a categorical picks among listed values (strings, numbers, booleans).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import optuna
from pydantic import BaseModel, ConfigDict, Field, model_validator

from metarec.errors import TuningError, UnknownTuningParameterError
from metarec.training.config import TrainingConfig

WIDTH_PARAMETERS = ("hidden_width", "hidden_layers")
# TrainingConfig fields that are not scalars: a parameter cannot sample them directly.
NOT_SCALAR = frozenset(
    {"hidden", "inputs", "scenarios", "support_sizes", "ranking_support_sizes", "ranking_orders"}
)
Scalar = str | bool | int | float


class FloatRange(BaseModel):
    """A float in ``[low, high]``, uniform or on a log scale (``log: true``), or on a grid."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = Field(default=None, gt=0, description="Grid step (not with log).")

    @model_validator(mode="after")
    def _check(self) -> FloatRange:
        _check_bounds(self.low, self.high, log=self.log)
        if self.log and self.step is not None:
            raise ValueError("a log-scale range has no step: remove `step` or `log`")
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> float:
        """Sample this range in ``trial`` under ``name``."""
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)

    def parse(self, text: str) -> float:
        """``text`` as a value of this range (a fixed trial parameter)."""
        value = float(text)
        if not self.low <= value <= self.high:
            raise ValueError(f"{value} is outside [{self.low}, {self.high}]")
        return value


class IntRange(BaseModel):
    """An int in ``[low, high]`` (every ``step``), uniform or on a log scale."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _check(self) -> IntRange:
        _check_bounds(self.low, self.high, log=self.log)
        if self.log and self.step != 1:
            raise ValueError("a log-scale int range has step 1: remove `step` or `log`")
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> int:
        """Sample this range in ``trial`` under ``name``."""
        return trial.suggest_int(name, self.low, self.high, log=self.log, step=self.step)

    def parse(self, text: str) -> int:
        """``text`` as a value of this range (a fixed trial parameter)."""
        value = int(text)
        if not self.low <= value <= self.high:
            raise ValueError(f"{value} is outside [{self.low}, {self.high}]")
        return value


class Choice(BaseModel):
    """One of ``choices`` (strings, numbers or booleans)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["categorical"]
    choices: list[Scalar] = Field(min_length=1)

    def suggest(self, trial: optuna.Trial, name: str) -> Scalar:
        """Sample one of the choices in ``trial`` under ``name``."""
        return trial.suggest_categorical(name, self.choices)

    def parse(self, text: str) -> Scalar:
        """The choice whose text is ``text`` (``64`` matches the int 64, ``true`` True)."""
        for choice in self.choices:
            if str(choice).lower() == text.strip().lower():
                return choice
        raise ValueError(f"{text!r} is not one of {self.choices}")


Parameter = Annotated[FloatRange | IntRange | Choice, Field(discriminator="type")]


def _check_bounds(low: float, high: float, *, log: bool) -> None:
    if low > high:
        raise ValueError(f"low ({low}) is above high ({high})")
    if log and low <= 0:
        raise ValueError(f"a log-scale range needs low > 0 (got {low})")


def tunable_names() -> list[str]:
    """Every name a parameter may have: scalar training fields and the width parameters."""
    fields = [name for name in TrainingConfig.model_fields if name not in NOT_SCALAR]
    return sorted([*fields, *WIDTH_PARAMETERS])


class SearchSpace(BaseModel):
    """The parameters a study samples, by name (see the module docstring for the names)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    parameters: dict[str, Parameter] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_support_range(self) -> SearchSpace:
        low_end = self.parameters.get("train_support_min")
        high_end = self.parameters.get("train_support_max")
        ranges = isinstance(low_end, IntRange) and isinstance(high_end, IntRange)
        if ranges and low_end.high > high_end.low:
            raise ValueError(
                "train_support_min's range must end at or below train_support_max's start "
                f"({low_end.high} > {high_end.low}): every sampled support range must be valid"
            )
        return self

    def unknown_names(self) -> list[str]:
        """Parameters that set no training field (none in a valid space file)."""
        known = set(tunable_names())
        return [name for name in self.parameters if name not in known]

    def suggest(self, trial: optuna.Trial) -> dict[str, Scalar]:
        """Sample every parameter in ``trial`` (TPE, or whatever the study's sampler is)."""
        return {name: param.suggest(trial, name) for name, param in self.parameters.items()}

    def fixed(self, assignments: list[str]) -> dict[str, Scalar]:
        """Parse ``name=value`` assignments (``tune trial --param``) against the space.

        Raises:
            UnknownTuningParameterError: A name is not a parameter of the space.
            TuningError: A value is not valid for its parameter, or an assignment has no ``=``.
        """
        values: dict[str, Scalar] = {}
        for assignment in assignments:
            name, sep, text = assignment.partition("=")
            name = name.strip()
            if not sep:
                raise TuningError(
                    f"--param {assignment!r} is not name=value.",
                    fix="write each fixed parameter as --param name=value, e.g. inner_lr=0.01.",
                )
            if name not in self.parameters:
                raise UnknownTuningParameterError(
                    f"--param {name}: not a parameter of the search space.",
                    fix=f"use one of {', '.join(sorted(self.parameters))} (or add {name} to "
                    "the space file).",
                )
            try:
                values[name] = self.parameters[name].parse(text)
            except ValueError as exc:
                raise TuningError(
                    f"--param {name}={text}: {exc}.",
                    fix="give a value inside the parameter's range in the space file.",
                ) from exc
        return values


def config_values(params: dict[str, Any], base: TrainingConfig) -> dict[str, Any]:
    """Training-config values for sampled ``params`` (the width parameters set ``hidden``).

    Args:
        params: Parameter name → sampled value.
        base: The configuration the trial starts from (its ``hidden`` fills a missing width or
            depth).
    """
    values = {name: value for name, value in params.items() if name not in WIDTH_PARAMETERS}
    if any(name in params for name in WIDTH_PARAMETERS):
        width = params.get("hidden_width", base.hidden[0] if base.hidden else 64)
        layers = params.get("hidden_layers", len(base.hidden) or 1)
        values["hidden"] = [int(width)] * int(layers)
    return values
