"""The candidate's card verified: its metrics re-evaluated on its own held-out users.

A model card is written by training, but it is only a file: a card whose numbers were edited
would pass every rule that reads them. When the candidate's training set is at hand, the gate
re-evaluates the candidate on the card's ``test_users`` (the same evaluators that re-evaluate
production) and compares every number the card and the re-evaluation share, within
``tolerance``. A mismatch is a failed check (the candidate is rejected); without a training set
the decision says that the metrics were taken from the card, unverified.

The numbers the policy reads must be re-evaluated: the candidate's own method and every
baseline a margin rule compares it with, in each table that is verified. Nothing here reads
files or databases; the evaluators do.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metarec.gate.checks import GateCheck, Metrics
from metarec.gate.pairing import PairedEvaluator, training_set_paired_evaluator
from metarec.gate.policy import GatePolicy
from metarec.gate.rules import Table

if TYPE_CHECKING:
    from metarec.training.model_card import ModelCard

DEFAULT_TOLERANCE = 0.01
RULE = "verification: the card's metrics match a re-evaluation on its held-out users"
MISMATCH = "the card's metrics do not match a re-evaluation"
UNVERIFIED = (
    "the candidate's metrics were taken from its card, unverified: no training set to "
    "re-evaluate them on (pass the candidate's training set, e.g. `--training-set`)"
)
NOTHING_TO_VERIFY = (
    "the candidate's metrics were not re-evaluated: its card has no table that the policy "
    "reads and the training set can re-evaluate"
)
UNVERIFIED_BASIS = "the card's metrics, unverified (not re-evaluated)"
VERIFIED_BASIS = "the card's metrics, verified by a re-evaluation on its held-out users"
_SHOWN = 3

TableEvaluator = Callable[[Path, Mapping[str, Any]], Mapping[str, Any]]


@dataclass(frozen=True)
class Reevaluation:
    """How to re-evaluate the candidate: its training set and one evaluator per table.

    Attributes:
        training_set: Where the training set is (named in the decision).
        fingerprint: The training set's fingerprint (its manifest's), compared with the card's
            ``dataset_fingerprint``; None: not known, not compared.
        evaluate: Re-evaluates the rating table (None: not verified).
        evaluate_ranking: Re-evaluates the ranking table (None: not verified).
        evaluate_paired: Evaluates the candidate and production on the same users, per user,
            for the paired regression test (None: both on ``training_set``, see
            :func:`metarec.gate.pairing.training_set_paired_evaluator`).
    """

    training_set: str
    fingerprint: str | None
    evaluate: TableEvaluator | None
    evaluate_ranking: TableEvaluator | None
    evaluate_paired: PairedEvaluator | None = None

    def paired_evaluator(self) -> PairedEvaluator:
        """The evaluator of both versions' per-user values (default: on the training set)."""
        return self.evaluate_paired or training_set_paired_evaluator(self.training_set)


@dataclass(frozen=True)
class Verification:
    """The verification's check rows (empty: not verified), its notes and how long it took."""

    checks: list[GateCheck]
    notes: list[str]
    seconds: float = 0.0

    @property
    def basis(self) -> str:
        """The decision's ``metrics_basis``: verified only when every verification passed."""
        if self.checks and all(check.passed for check in self.checks):
            return VERIFIED_BASIS
        return UNVERIFIED_BASIS


def verify_card(
    artifact_dir: Path,
    card: ModelCard,
    reevaluation: Reevaluation | None,
    *,
    policy: GatePolicy,
    method: str,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Verification:
    """Re-evaluate the candidate on its card's held-out users and compare with the card.

    Args:
        artifact_dir: The candidate's folder (passed to the evaluators).
        card: The candidate's model card (both tables, held-out users, dataset fingerprint).
        reevaluation: The training set and evaluators (None: nothing is verified, and the
            decision notes that the metrics are the card's, unverified).
        policy: The gate policy (which tables and methods its rules read).
        method: The candidate's method in the rating table (the policy's, else the card's).
        tolerance: The largest absolute difference accepted between a card number and its
            re-evaluation (devices and thread counts change the last digits).

    Returns:
        One check (passed or failed) and a note, or no check and the "unverified" note.
    """
    if reevaluation is None:
        return Verification(checks=[], notes=[UNVERIFIED])
    if reevaluation.fingerprint and reevaluation.fingerprint != card.dataset_fingerprint:
        detail = (
            f"{MISMATCH}: the card was trained on dataset {card.dataset_fingerprint[:19]}, not "
            f"on {reevaluation.training_set} ({reevaluation.fingerprint[:19]}); pass the "
            "training set the candidate was trained on"
        )
        check = _check(passed=False, detail=detail, worst=None, tolerance=tolerance)
        return Verification(checks=[check], notes=[])
    tables = _tables(card, reevaluation, policy)
    if not tables:
        return Verification(checks=[], notes=[NOTHING_TO_VERIFY])
    started = time.perf_counter()
    findings = [
        _compare_table(
            table,
            claimed,
            evaluate(artifact_dir, card.test_users),
            _methods_read(table, policy, method),
        )
        for table, claimed, evaluate in tables
    ]
    seconds = time.perf_counter() - started
    check = _verdict(findings, tolerance=tolerance, seconds=seconds, where=reevaluation)
    return Verification(
        checks=[check], notes=[check.detail] if check.passed else [], seconds=seconds
    )


def _tables(
    card: ModelCard, reevaluation: Reevaluation, policy: GatePolicy
) -> list[tuple[Table, Metrics, TableEvaluator]]:
    """The tables to verify: those the card has, the policy reads and an evaluator re-computes."""
    tables: list[tuple[Table, Metrics, TableEvaluator | None]] = [
        ("rating", card.metrics, reevaluation.evaluate),
        ("ranking", card.ranking, reevaluation.evaluate_ranking),
    ]
    read = {rule.table for rule in policy.rules()}
    return [
        (table, claimed, evaluate)
        for table, claimed, evaluate in tables
        if evaluate is not None and claimed and table in read
    ]


@dataclass(frozen=True)
class _Finding:
    """One table compared: every number both have, and the methods read but not re-evaluated."""

    table: Table
    pairs: list[tuple[str, float, float]]  # (scenario/cell/method/metric, card, re-evaluated)
    missing: list[str]  # methods the policy reads that the re-evaluation lacks


def _compare_table(
    table: Table, claimed: Metrics, recomputed: Metrics, needed: set[str]
) -> _Finding:
    """Pair every number of ``claimed`` with the re-evaluation's, where it has one."""
    pairs: list[tuple[str, float, float]] = []
    seen: set[str] = set()
    claimed_methods: set[str] = set()
    for where, value in _numbers(claimed):
        claimed_methods.add(where[2])
        again = _lookup(recomputed, where)
        if again is not None:
            seen.add(where[2])
            pairs.append(("/".join(where), value, again))
    missing = sorted((needed & claimed_methods) - seen)
    return _Finding(table=table, pairs=pairs, missing=missing)


def _differs(card: float, again: float, tolerance: float) -> bool:
    """Whether two numbers disagree by more than ``tolerance`` (NaN agrees with NaN only)."""
    if math.isnan(card) or math.isnan(again):
        return not (math.isnan(card) and math.isnan(again))
    return abs(card - again) > tolerance


def _numbers(table: Metrics) -> list[tuple[tuple[str, str, str, str], float]]:
    """Every number of a table with its place ``(scenario, cell, method, metric)``."""
    numbers = []
    for scenario, by_cell in sorted(table.items()):
        for cell, by_method in sorted((by_cell or {}).items(), key=lambda kv: str(kv[0])):
            for method, by_metric in sorted((by_method or {}).items()):
                for metric, value in sorted((by_metric or {}).items()):
                    if isinstance(value, int | float):
                        numbers.append(((scenario, str(cell), method, metric), float(value)))
    return numbers


def _lookup(table: Metrics, where: tuple[str, str, str, str]) -> float | None:
    """The number at ``where`` in ``table`` (cells may be ints or strings), or None."""
    scenario, cell, method, metric = where
    by_cell = table.get(scenario) or {}
    found = next((v for k, v in by_cell.items() if str(k) == cell), None)
    value = ((found or {}).get(method) or {}).get(metric)
    return float(value) if isinstance(value, int | float) else None


def _methods_read(table: Table, policy: GatePolicy, method: str) -> set[str]:
    """The candidate's method of ``table`` and every baseline a margin rule on it compares with."""
    own = method if table == "rating" else policy.ranking_method
    return {own} | {rule.over for rule in policy.margins if rule.table == table}


def _verdict(
    findings: Sequence[_Finding], *, tolerance: float, seconds: float, where: Reevaluation
) -> GateCheck:
    """One check over every table verified."""
    differences = [
        (f"{f.table} {place}", card, again)
        for f in findings
        for place, card, again in f.pairs
        if _differs(card, again, tolerance)
    ]
    missing = [f"{f.table}: {', '.join(f.missing)}" for f in findings if f.missing]
    compared = sum(len(f.pairs) for f in findings)
    gaps = [abs(card - again) for _, card, again in differences]
    worst = max((gap for gap in gaps if not math.isnan(gap)), default=None)
    if differences:
        shown = "; ".join(
            f"{place}: card {card:.4f}, re-evaluated {again:.4f}"
            for place, card, again in differences[:_SHOWN]
        )
        more = len(differences) - _SHOWN
        detail = (
            f"{MISMATCH}: {len(differences)} of {compared} numbers differ by more than "
            f"{tolerance} ({shown}{f'; and {more} more' if more > 0 else ''})"
        )
        return _check(passed=False, detail=detail, worst=worst, tolerance=tolerance)
    if missing or not compared:
        detail = (
            f"{MISMATCH}: the re-evaluation on {where.training_set} has none of the card's "
            f"numbers for {'; '.join(missing) or 'any table the policy reads'}"
        )
        return _check(passed=False, detail=detail, worst=None, tolerance=tolerance)
    tables = " and ".join(f.table for f in findings)
    detail = (
        f"the card's metrics were verified: {compared} {tables} numbers re-evaluated on its "
        f"held-out users with {where.training_set} agree within {tolerance} "
        f"({seconds:.1f} s)"
    )
    return _check(passed=True, detail=detail, worst=None, tolerance=tolerance)


def _check(*, passed: bool, detail: str, worst: float | None, tolerance: float) -> GateCheck:
    """The verification's one check row."""
    return GateCheck(
        rule=RULE,
        kind="verification",
        scenario="all",
        support_size="all",
        metric="all",
        value=worst,
        reference=None,
        reference_name="re-evaluation",
        threshold=tolerance,
        observed=worst,
        passed=passed,
        detail=detail,
    )
