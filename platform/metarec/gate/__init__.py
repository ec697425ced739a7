"""The evaluation gate: a declared YAML policy and a pure decision over evaluation numbers.

``decide`` (pure) lives in :mod:`metarec.gate.decision`; ``gate_artifact`` (reads the card and
the registry) in :mod:`metarec.gate.run`.
"""

from metarec.gate.decision import GateCheck, GateDecision, RankingSummaryRow, decide
from metarec.gate.policy import GatePolicy, load_policy

__all__ = [
    "GateCheck",
    "GateDecision",
    "GatePolicy",
    "RankingSummaryRow",
    "decide",
    "load_policy",
]
