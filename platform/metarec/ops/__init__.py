"""Use cases: the operations the CLI, the API and the components share, written once.

Each takes typed inputs and returns a typed output; it is the only kind of module that calls
more than one domain package. The faces (``metarec.cli``, ``metarec.api``) and the pipeline
components parse, call one of these and print or serialise the result.
"""

from metarec.ops.register import (
    DEFAULT_REASON,
    RegistrationOutcome,
    Rejection,
    gate_candidate,
    register_candidate,
)

__all__ = [
    "DEFAULT_REASON",
    "RegistrationOutcome",
    "Rejection",
    "gate_candidate",
    "register_candidate",
]
