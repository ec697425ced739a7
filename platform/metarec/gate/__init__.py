"""The evaluation gate: a declared YAML policy and a pure decision over evaluation numbers.

The rule types (what each declares and how it judges) live in :mod:`metarec.gate.rules`, the
policy file in :mod:`metarec.gate.policy`, cell selection and check rows in
:mod:`metarec.gate.checks`, and ``decide`` (pure: the caller passes the numbers and the time) in
:mod:`metarec.gate.decision`; ``gate_artifact`` (reads the card and the registry) in
:mod:`metarec.gate.run`. The gate reads the registry; the registry never imports the gate.
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
