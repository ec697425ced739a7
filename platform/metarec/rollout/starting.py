"""Starting a rollout (the controller carries it out) and watching one from elsewhere."""

from __future__ import annotations

import time

from metarec.errors import RolloutError
from metarec.registry import Registry, Stage, VersionRef
from metarec.rollout.store import RolloutStore
from metarec.rollout.types import RolloutSpec, RolloutState


def start_rollout(
    *,
    registry: Registry,
    store: RolloutStore,
    ref: VersionRef,
    spec: RolloutSpec,
    actor: str,
) -> RolloutState:
    """Create a rollout of a staging version (the controller carries it out).

    Raises:
        VersionNotFoundError: No such version.
        RolloutError: The version is not in staging.
        RolloutConflictError: Another rollout of the model is active.
    """
    info = registry.get_version(ref)
    if info.stage is not Stage.STAGING:
        raise RolloutError(
            f"{ref.tag} is in {info.stage.value}; only a staging version can be rolled out.",
            fix="register a new version (`metarec models register`) or pick a staging one "
            "(`metarec models list`).",
        )
    return store.create(
        model=ref.model,
        version=ref.version,
        production_version=registry.production_version(ref.model),
        spec=spec,
        actor=actor,
    )


def wait_for_rollout(
    store: RolloutStore,
    rollout_id: str,
    *,
    timeout_s: float,
    poll_s: float = 5.0,
) -> RolloutState:
    """Watch a rollout that a controller elsewhere carries out, until it ends or time is up.

    Returns:
        The last state read (terminal unless the timeout passed).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        state = store.get(rollout_id)
        if state.phase.terminal or time.monotonic() > deadline:
            return state
        time.sleep(poll_s)
