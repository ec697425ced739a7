"""Reports of a study people can open: the trials table, the best parameters, Optuna's plots.

Written into one folder: ``trials.csv`` and ``trials.md`` (every trial: number, state, value,
last reported step, duration, parameters), ``best_params.json`` (the best trial's number, value
and parameters), and Optuna's optimisation history and parameter importances, each as HTML
(plotly) and PNG (matplotlib).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState


@dataclass(frozen=True)
class TrialRow:
    """One row of the trials table."""

    number: int
    state: str
    value: float | None
    last_step: int | None
    duration_s: float | None
    params: dict[str, Any]


@dataclass(frozen=True)
class StudyReports:
    """Where the reports of a study were written (paths; a plot is None when not drawable)."""

    folder: Path
    trials_csv: Path
    trials_md: Path
    best_params: Path | None
    history_html: Path | None
    history_png: Path | None
    importance_html: Path | None
    importance_png: Path | None

    def paths(self) -> dict[str, str]:
        """Every written report by name."""
        names = ("trials_csv", "trials_md", "best_params")
        names += ("history_html", "history_png", "importance_html", "importance_png")
        return {n: str(getattr(self, n)) for n in names if getattr(self, n) is not None}


def trial_row(trial: FrozenTrial) -> TrialRow:
    """A trial as a table row."""
    duration = trial.duration.total_seconds() if trial.duration is not None else None
    steps = trial.intermediate_values
    value = trial.value if trial.state is TrialState.COMPLETE else None
    if trial.state is TrialState.PRUNED and steps:
        value = steps[max(steps)]  # the last value reported before pruning
    return TrialRow(
        number=trial.number,
        state=trial.state.name.lower(),
        value=None if value is None or math.isnan(value) else float(value),
        last_step=max(steps) if steps else None,
        duration_s=None if duration is None else round(duration, 2),
        params=dict(trial.params),
    )


def trial_rows(study: optuna.Study) -> list[TrialRow]:
    """Every trial of ``study`` as a row, by number."""
    return [trial_row(t) for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)]


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state (complete, pruned, fail, running, waiting)."""
    result = {state.name.lower(): 0 for state in TrialState}
    for trial in study.get_trials(deepcopy=False):
        result[trial.state.name.lower()] += 1
    return result


def _columns(rows: list[TrialRow]) -> list[str]:
    names = sorted({name for row in rows for name in row.params})
    return ["number", "state", "value", "last_step", "duration_s", *names]


def _cells(row: TrialRow, columns: list[str]) -> list[str]:
    fixed = {
        "number": row.number,
        "state": row.state,
        "value": "" if row.value is None else f"{row.value:.6g}",
        "last_step": "" if row.last_step is None else row.last_step,
        "duration_s": "" if row.duration_s is None else row.duration_s,
    }
    return [str(fixed[c]) if c in fixed else _text(row.params.get(c)) for c in columns]


def _text(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_trials_table(rows: list[TrialRow], folder: Path) -> tuple[Path, Path]:
    """Write ``trials.csv`` and ``trials.md``; returns both paths."""
    columns = _columns(rows)
    csv_path, md_path = folder / "trials.csv", folder / "trials.md"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(_cells(row, columns) for row in rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cells(row, columns)) + " |" for row in rows]
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial, or None when no trial completed."""
    if not any(t.state is TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return None
    return study.best_trial


def write_best_params(study: optuna.Study, folder: Path) -> Path | None:
    """Write ``best_params.json`` (study, trial number, value, parameters); None: no best."""
    best = best_trial(study)
    if best is None:
        return None
    path = folder / "best_params.json"
    payload = {
        "study": study.study_name,
        "trial": best.number,
        "value": best.value,
        "direction": study.direction.name.lower(),
        "params": best.params,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def _plot(folder: Path, name: str, html_figure: Any, png_figure: Any) -> tuple[Path, Path]:
    """Write one plot as ``<name>.html`` (plotly) and ``<name>.png`` (matplotlib)."""
    import matplotlib.pyplot as plt

    html = folder / f"{name}.html"
    html_figure().write_html(str(html), include_plotlyjs=True)
    png = folder / f"{name}.png"
    axes = png_figure()
    figure = axes.figure if hasattr(axes, "figure") else axes[0].figure
    figure.savefig(png, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return html, png


def write_plots(study: optuna.Study, folder: Path) -> dict[str, Path | None]:
    """Optimisation history and parameter importances as HTML and PNG (None: not drawable).

    Importances need at least two complete trials; the history at least one.
    """
    import matplotlib

    matplotlib.use("Agg")
    from optuna import visualization as vis
    from optuna.visualization import matplotlib as vis_png

    complete = [t for t in study.get_trials(deepcopy=False) if t.state is TrialState.COMPLETE]
    out: dict[str, Path | None] = dict.fromkeys(
        ("history_html", "history_png", "importance_html", "importance_png")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if complete:
            out["history_html"], out["history_png"] = _plot(
                folder,
                "optimization_history",
                lambda: vis.plot_optimization_history(study),
                lambda: vis_png.plot_optimization_history(study),
            )
        if len(complete) >= 2 and study.best_trial.params:
            # Not drawable when, e.g., every complete trial has the same parameter values.
            with contextlib.suppress(RuntimeError, ValueError):
                out["importance_html"], out["importance_png"] = _plot(
                    folder,
                    "param_importances",
                    lambda: vis.plot_param_importances(study),
                    lambda: vis_png.plot_param_importances(study),
                )
    return out


def write_reports(study: optuna.Study, folder: Path) -> StudyReports:
    """Write every report of ``study`` into ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = write_trials_table(trial_rows(study), folder)
    best = write_best_params(study, folder)
    plots = write_plots(study, folder)
    return StudyReports(
        folder=folder, trials_csv=csv_path, trials_md=md_path, best_params=best, **plots
    )
