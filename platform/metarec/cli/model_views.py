"""How ``metarec models`` and ``metarec gate`` print: gate decisions, versions, the ledger."""

from __future__ import annotations

import json
from typing import Any

from rich.table import Table

from metarec.cli.console import console

STAGE_COLOURS = {"production": "green", "staging": "yellow", "archived": "dim"}


def fmt(value: float | None) -> str:
    """A metric with four decimals, ``-`` when absent."""
    return "-" if value is None else f"{value:.4f}"


def _mark(check: Any) -> str:
    """✓ passed, ✗ failed, – skipped (a rule that does not apply to this candidate)."""
    if check.skipped:
        return "[dim]–[/dim]"
    return "[green]✓[/green]" if check.passed else "[red]✗[/red]"


def print_decision(decision: Any) -> None:
    """Print a gate decision: every check with its numbers, then the verdict."""
    table = Table(title=f"Evaluation gate — policy {decision.policy_name!r}", show_lines=False)
    for column in (
        "",
        "rule",
        "scenario",
        "support/cell",
        "candidate",
        "reference",
        "observed",
        "detail",
    ):
        table.add_column(column)
    for check in decision.checks:
        table.add_row(
            _mark(check),
            check.rule,
            check.scenario,
            check.support_size,
            fmt(check.value),
            _reference(check),
            fmt(check.observed),
            check.detail,
        )
    console.print(table)
    print_ranking_summary(decision)
    production = decision.production_version
    console.print(
        f"candidate method: {decision.candidate_method} (learnt from "
        f"{'implicit events' if decision.candidate_label == 'event' else 'ratings'}); production: "
        f"{'none' if production is None else f'v{production}'}"
        f" ({decision.comparison_basis}); artifact {decision.artifact_digest[:12]}"
    )
    for note in decision.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    if decision.accepted:
        console.print(f"[green]ACCEPTED[/green]: {decision.summary()}")
    else:
        console.print(f"[red]REJECTED[/red]: {decision.summary()}")


def _reference(check: Any) -> str:
    if check.reference is not None:
        return f"{check.reference_name}={check.reference:.4f}"
    return str(check.reference_name) if check.reference_name else "-"


def print_ranking_summary(decision: Any) -> None:
    """One table per scenario: methods as rows, ranking cells as columns (nDCG@20).

    The served ranker comes first, then production (when compared), then every baseline.
    """
    rows = decision.ranking_summary
    if not rows:
        return
    candidate = decision.ranking_method or "candidate"
    for scenario in dict.fromkeys(row.scenario for row in rows):
        cells = [row for row in rows if row.scenario == scenario]
        table = Table(
            "method",
            *(row.cell for row in cells),
            title=f"{scenario}: {cells[0].metric} by support order@K "
            f"({decision.ranking_comparison_basis or 'no production'})",
        )
        table.add_row(f"[bold]{candidate}[/bold]", *(fmt(row.candidate) for row in cells))
        if any(row.production is not None for row in cells):
            table.add_row("production", *(fmt(row.production) for row in cells))
        for name in sorted({name for row in cells for name in row.baselines}):
            table.add_row(name, *(fmt(row.baselines.get(name)) for row in cells))
        console.print(table)


def print_versions(name: str, versions: list[Any]) -> None:
    """The versions of a model: stage, algorithm, dataset, gate result, who and when."""
    table = Table(title=f"Model {name!r}")
    for column in ("version", "stage", "algorithm", "dataset", "gate", "created", "by", "digest"):
        table.add_column(column)
    for info in versions:
        gate_result = "-"
        if info.gate_decision:
            gate_result = "accepted" if info.gate_decision.get("accepted") else "rejected"
        table.add_row(
            f"v{info.version}",
            f"[{STAGE_COLOURS[info.stage.value]}]{info.stage.value}[/]",
            info.lineage.algorithm or "-",
            (info.lineage.dataset_fingerprint or "-")[:19],
            gate_result,
            info.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            info.created_by,
            info.digest[:12],
        )
    console.print(table)


def print_history(entries: list[Any]) -> None:
    """The ledger: one row per registration, rejection, promotion, rollback or archive."""
    table = Table(title="Ledger")
    for column in (
        "#",
        "when (UTC)",
        "who",
        "action",
        "version",
        "from → to",
        "reason",
        "evidence",
    ):
        table.add_column(column, overflow="fold")
    for entry in entries:
        table.add_row(
            str(entry.id),
            entry.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            entry.actor,
            entry.action.value,
            "-" if entry.version is None else f"v{entry.version}",
            f"{entry.from_stage or '∅'} → {entry.to_stage or '∅'}",
            entry.reason,
            _evidence(entry.evidence),
        )
    console.print(table)


def _evidence(evidence: dict[str, Any]) -> str:
    """Evidence as one line; a gate decision is shortened to its verdict and check count."""
    rest = dict(evidence)
    gate_decision = rest.pop("gate", None)
    text = json.dumps(rest, sort_keys=True) if rest else ""
    if gate_decision:
        verdict = "accepted" if gate_decision.get("accepted") else "rejected"
        text = f"gate {verdict} ({len(gate_decision.get('checks', []))} checks) {text}"
    return text.strip()


def print_version(info: Any) -> None:
    """A version: stage, then its lineage and its metrics tables."""
    console.print(f"[bold]{info.tag}[/bold]  stage: [bold]{info.stage.value}[/bold]")
    lineage = Table(show_header=False, title="Lineage")
    lineage.add_column("field")
    lineage.add_column("value", overflow="fold")
    for key, value in _lineage_rows(info).items():
        lineage.add_row(key, value)
    console.print(lineage)
    if info.lineage.metrics:
        console.print(_metrics_table(info.lineage.metrics))


def _lineage_rows(info: Any) -> dict[str, str]:
    test_users = info.lineage.test_users.items()
    return {
        "artifact": info.artifact_uri,
        "digest": info.digest,
        "files (sha256)": "\n".join(f"{n}  {s}" for n, s in sorted(info.files.items())),
        "bentoml tag": info.bento_tag or "-",
        "registered": f"{info.created_at:%Y-%m-%d %H:%M:%S} by {info.created_by}",
        **{
            key.replace("_", " "): str(value) if value is not None else "-"
            for key, value in info.lineage.model_dump(
                exclude={"training_config", "metrics", "test_users"}
            ).items()
        },
        "training config": json.dumps(info.lineage.training_config, sort_keys=True),
        "test users": ", ".join(f"{scenario}: {len(users)}" for scenario, users in test_users)
        or "-",
    }


def _metrics_table(metrics: dict[str, Any]) -> Table:
    table = Table(title="Metrics (MAE / RMSE / nDCG@5)")
    for column in ("scenario", "support", "method", "mae", "rmse", "ndcg@5"):
        table.add_column(column)
    for scenario, by_size in metrics.items():
        for size, by_method in by_size.items():
            for method, values in by_method.items():
                table.add_row(
                    scenario,
                    str(size),
                    method,
                    *(fmt(values.get(key)) for key in ("mae", "rmse", "ndcg@5")),
                )
    return table
