"""How the quickstart prints: a line per stage, training bars, the tables and the summary."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()

SUMMARY_METHODS = (
    "factor_map",
    "global_mean",
    "item_bias",
    "user_item_bias",
    "global_model",
    "finetune",
)
RANKING_METHODS = ("ranker", "meta_ranker", "plain_ranker", "popularity", "ease", "ease_weighted")


def done(label: str, started: float, extra: str = "") -> None:
    """The ✓ line of a finished stage, with its duration (and ``extra``)."""
    console.print(
        f"[green]✓[/green] {label} [dim]({time.perf_counter() - started:.1f}s{extra})[/dim]",
        highlight=False,
    )


@contextmanager
def stage(label: str) -> Iterator[None]:
    """A spinner while the stage runs, then its ✓ line."""
    started = time.perf_counter()
    with console.status(label):
        yield
    done(label, started)


@contextmanager
def training_bars() -> Iterator[Callable[[Any], None]]:
    """One bar per training phase; yields the ``on_progress(event)`` callback training takes."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bars: dict[str, Any] = {}

        def report(event: Any) -> None:
            if event.phase not in bars:
                bars[event.phase] = progress.add_task(event.phase, total=event.total)
            progress.update(bars[event.phase], completed=event.step)

        yield report


def print_features(user: int | str, values: dict[str, Any]) -> None:
    """A user's features as the online store holds them."""
    table = Table("feature", "value", title=f"User {user} (online store)")
    for name, value in values.items():
        table.add_row(name, str(value))
    console.print(table)


def item_labels(items: Any) -> Any:
    """What names each item: its title (MovieLens), else its declared scalar features.

    Args:
        items: The snapshot's ``items`` table, indexed by ``item_id``.

    Returns:
        A series of text, indexed by item id.
    """
    if "title" in items.columns:
        return items["title"]
    shown = [name for name in items.columns if name != "valid_from" and _is_scalar(items[name])]
    return items[shown].astype(str).apply(lambda row: ", ".join(row), axis=1)


def _is_scalar(column: Any) -> bool:
    """Whether a column's values are plain values (not vectors)."""
    first = column.dropna().head(1).tolist()
    return not first or not hasattr(first[0], "__len__") or isinstance(first[0], str)


def input_summary(fields: list[dict[str, Any]]) -> str:
    """The model's input fields, by side: ``user: country (categorical), …; item: …``."""
    parts = []
    for side in ("user", "item"):
        names = [f"{f['name']} ({f['kind']})" for f in fields if f["side"] == side]
        if names:
            parts.append(f"{side}: {', '.join(names)}")
    return "; ".join(parts)


def _rating(item: dict[str, Any]) -> str:
    """The predicted rating; "–" for a version of implicit events (it predicts none)."""
    value = item.get("predicted_rating", item["score"])
    return "–" if value is None else f"{value:.2f}"


def print_top(user: int | str, items: list[dict[str, Any]], titles: Any) -> None:
    """The service's answer: items ranked by the ranker, with the predicted rating."""
    table = Table(
        "item", "title", "ranker score", "predicted rating", title=f"Top 5 for user {user}"
    )
    for item in items:
        table.add_row(
            str(item["item_id"]),
            str(titles.get(item["item_id"], "?")),
            f"{item['score']:.2f}",
            _rating(item),
        )
    console.print(table)


def _rating_table(algorithm: str, new_user: dict[str, Any]) -> Table:
    table = Table(
        "support",
        algorithm,
        *SUMMARY_METHODS,
        title="New users: MAE (nDCG@3) on held-out users, meta-learned vs baselines",
    )
    for size, methods in new_user.items():
        cells = []
        for method in (algorithm, *SUMMARY_METHODS):
            values = methods.get(method)
            cells.append("–" if values is None else f"{values['mae']:.3f} ({values['ndcg@3']:.3f})")
        table.add_row(size, *cells)
    return table


def _ranking_table(ranking: dict[str, Any]) -> Table:
    table = Table(
        "support",
        *RANKING_METHODS,
        title="New users, whole catalogue ranked: NDCG@20 of the served ranker vs baselines",
    )
    for cell, methods in ranking.items():
        table.add_row(
            cell,
            *("–" if m not in methods else f"{methods[m]['ndcg@20']:.3f}" for m in RANKING_METHODS),
        )
    return table


def _online_quality(outcome: Any) -> str:
    """Online MAE, or for versions of implicit events (no ratings) the online hit rate."""
    notes = [] if outcome.state is None else list(outcome.state.spec.notes)
    if any(note.startswith("online MAE off") for note in notes):
        hits = outcome.online_hit_rate
        return (
            f"{notes[0]}; online hit rate canary {_fmt(hits.get('canary'))} vs production "
            f"{_fmt(hits.get('production'))}"
        )
    mae = outcome.online_mae
    return (
        f"online MAE canary {_fmt(mae.get('canary'))} vs production {_fmt(mae.get('production'))}"
    )


def outcome_text(outcome: Any, *, steps: list[int]) -> str:
    """One sentence on how the release ended."""
    tag = outcome.ref.tag
    if outcome.outcome == "bootstrapped":
        return (
            f"[green]{tag} is in production[/green] (first version: nothing to canary "
            f"against). Run the quickstart again to train a new version and canary it against "
            f"{tag}."
        )
    if outcome.outcome == "promoted":
        traffic = outcome.traffic
        return (
            f"[green]{tag} promoted to production[/green] after a canary over "
            f"{', '.join(f'{s} %' for s in steps)} "
            f"({_online_quality(outcome)}; {traffic.predictions:,} predictions, "
            f"{traffic.server_errors} server errors)"
        )
    if outcome.outcome == "already-production":
        return f"{tag} was already in production."
    return (
        f"[yellow]Canary of {tag} {outcome.outcome}: {outcome.reason}; production "
        f"stays v{outcome.production_after}.[/yellow]"
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def print_summary(run: Any) -> None:
    """The summary: the metric tables, every fact, the outcome and the reports."""
    console.rule("Summary")
    if run.metrics:
        console.print(_rating_table(run.algorithm, run.metrics.get("new_user", {})))
    else:
        console.print("No rating metrics: the model learnt from implicit events (ranking below).")
    ranking = run.ranking.get("new_user", {})
    if ranking:
        console.print(_ranking_table(ranking))
    for fact in run.facts:
        console.print(f"• {fact}", highlight=False, soft_wrap=True)
    console.print(f"• {run.outcome}", soft_wrap=True)
    for name, path in run.reports.items():
        console.print(f"• Report, {name}: {path}", highlight=False, soft_wrap=True)
    console.print(f"Quickstart finished in {time.perf_counter() - run.started:.0f} s.")
