"""The registry follows Flagger's verdict: its webhooks confirm, promote and roll back a version.

Flagger (the progressive-delivery engine on a cluster) calls the control-plane API at each
step of a canary analysis; these use cases decide what the registry answers and records:

* :func:`confirm_promotion` (``pre-rollout`` and ``confirm-promotion`` hooks): the version under
  canary may take traffic / be promoted only when the registry holds it with a passing gate
  decision, in ``staging`` (or already in ``production``). Nothing is written.
* :func:`promote_canary` (``post-rollout`` hook, phase ``Succeeded``): the version becomes the
  registry's production version through :func:`metarec.ops.transitions.promote`, actor the
  webhook caller's identity (default ``flagger``), the webhook as evidence; a second call is a
  no-op.
* :func:`roll_back_canary` (``post-rollout`` hook, phase ``Failed``): the canary version is
  archived through :func:`metarec.ops.transitions.archive` (production is left as it is); as a
  ``rollback`` hook (phases ``Progressing``/``Waiting``/``WaitingPromotion``) it asks Flagger to
  roll back exactly when the registry would refuse the promotion.

Every outcome says whether Flagger should read it as a success (``accepted``): the API answers
2xx then and a 4xx otherwise, which Flagger reads as "not yet" or "no rollback".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, ValidationError

from metarec.config import Settings
from metarec.errors import InvalidTransitionError, ModelNotFoundError, VersionNotFoundError
from metarec.notify import Notifier
from metarec.ops import notifications
from metarec.ops._registry import registry_session
from metarec.ops.transitions import archive, promote
from metarec.registry import Registry
from metarec.registry.types import Stage, VersionInfo, VersionRef

ACTOR: Final = "flagger"
SUCCEEDED: Final = "Succeeded"
FAILED: Final = "Failed"
TOKEN_KEY: Final = "token"
VERSION_KEY: Final = "version"
MODEL_KEY: Final = "model"


class HookOutcome(BaseModel):
    """What the registry answers a Flagger webhook.

    Attributes:
        accepted: Whether Flagger should read the answer as a success (HTTP 2xx).
        action: What happened: ``confirmed``, ``denied``, ``promoted``, ``already-production``,
            ``archived``, ``already-archived``, ``rollback-requested``, ``no-rollback``,
            ``refused`` or ``ignored``.
        version: The version under canary as the registry holds it now (None: not found).
        reason: One sentence for Flagger's events and logs.
    """

    model_config = ConfigDict(frozen=True)

    accepted: bool
    action: str
    version: VersionInfo | None
    reason: str


def canary_ref(metadata: Mapping[str, str], *, default_model: str) -> VersionRef:
    """The version under canary, named by the webhook's ``metadata.version`` (and ``model``).

    Args:
        metadata: The webhook's metadata (``version``: ``3``, ``v3`` or ``<model>:v3``;
            ``model``: the registered model, default ``default_model``).
        default_model: The model when neither ``version`` nor ``model`` names one.

    Raises:
        VersionNotFoundError: ``metadata.version`` is missing or not a version.
    """
    text = metadata.get(VERSION_KEY, "").strip()
    if not text:
        raise VersionNotFoundError(
            "The Flagger webhook does not name the version under canary (metadata.version).",
            fix="set metadata.version (e.g. 'metarec:v3') on the Canary's webhooks when the "
            "serving Deployment gets a new version.",
        )
    try:
        return VersionRef.parse(text, default_model=metadata.get(MODEL_KEY) or default_model)
    except ValidationError as exc:  # version 0, or metadata.model is not a model name
        raise VersionNotFoundError(
            f"The Flagger webhook names an invalid version {text!r} "
            f"(model {metadata.get(MODEL_KEY) or default_model!r}).",
            fix="set metadata.version to a version number >= 1 and metadata.model to a "
            "registered model name (or leave it out).",
        ) from exc


def _ref(settings: Settings, metadata: Mapping[str, str]) -> VersionRef:
    return canary_ref(metadata, default_model=settings.registry.model_name)


def webhook_evidence(payload: Mapping[str, Any], *, hook: str) -> dict[str, Any]:
    """The ledger evidence of a webhook: the payload as Flagger sent it, without the token."""
    metadata = {k: v for k, v in dict(payload.get("metadata") or {}).items() if k != TOKEN_KEY}
    return {"source": ACTOR, "hook": hook, "webhook": {**dict(payload), "metadata": metadata}}


def refusal(info: VersionInfo) -> str | None:
    """Why ``info`` may not be promoted by Flagger (None: it may).

    A version may be promoted when its stored gate decision is accepted and made for its own
    artifact, and it is in ``staging`` (or already in ``production``).
    """
    decision = info.gate_decision or {}
    if decision.get("accepted") is not True:
        return f"{info.tag} has no passing gate decision in the registry"
    if decision.get("artifact_digest", info.digest) != info.digest:
        return f"{info.tag}'s gate decision is for another artifact"
    if info.stage == Stage.ARCHIVED:
        return f"{info.tag} is archived in the registry, not in staging"
    return None


def confirm_promotion(
    settings: Settings, *, metadata: Mapping[str, str], registry: Registry | None = None
) -> HookOutcome:
    """May the version under canary take traffic and be promoted? Nothing is written.

    Args:
        settings: MetaRec settings (the registry, the default model).
        metadata: The webhook's metadata, naming the version under canary (:func:`canary_ref`).
        registry: An open registry (default: open the configured one for this call).

    Returns:
        ``confirmed`` (accepted) or ``denied`` with the reason (also when the metadata names
        no valid version).
    """
    try:
        ref = _ref(settings, metadata)
    except VersionNotFoundError as exc:
        return HookOutcome(accepted=False, action="denied", version=None, reason=exc.problem)
    with registry_session(settings, registry) as current:
        info = _find(current, ref)
    if info is None:
        return HookOutcome(
            accepted=False,
            action="denied",
            version=None,
            reason=f"{ref.tag} is not in the registry",
        )
    why = refusal(info)
    if why is not None:
        return HookOutcome(accepted=False, action="denied", version=info, reason=why)
    return HookOutcome(
        accepted=True,
        action="confirmed",
        version=info,
        reason=f"{info.tag} passed the gate and is in {info.stage.value}",
    )


def promote_canary(
    settings: Settings,
    *,
    metadata: Mapping[str, str],
    phase: str,
    evidence: dict[str, Any],
    actor: str = ACTOR,
    registry: Registry | None = None,
    notifier: Notifier | None = None,
) -> HookOutcome:
    """Promote the version under canary once Flagger's rollout ``Succeeded`` (idempotent).

    Args:
        settings: MetaRec settings (the registry, the default model).
        metadata: The webhook's metadata, naming the version under canary (:func:`canary_ref`).
        phase: The canary phase Flagger sent (any other than ``Succeeded`` is ignored).
        evidence: The webhook as ledger evidence (:func:`webhook_evidence`).
        actor: Who acts in the ledger: the identity that called the webhook.
        registry: An open registry (default: open the configured one for this call).
        notifier: Sends the verdict to ``notifications.webhooks`` (default: a one-shot one).

    Returns:
        ``promoted``, ``already-production``, ``refused`` (not accepted: the registry would not
        promote it) or ``ignored``.

    Raises:
        VersionNotFoundError / ModelNotFoundError: No such version, or none named.
        RegistryConflictError: Production changed while the promotion ran.
    """
    if phase != SUCCEEDED:
        return _ignored(phase, "promotion follows only a Succeeded rollout")
    ref = _ref(settings, metadata)
    with registry_session(settings, registry) as current:
        info = current.get_version(ref)
        if info.stage == Stage.PRODUCTION:
            return _already(info, "already-production", "production")
        why = refusal(info)
        if why is not None:
            return HookOutcome(accepted=False, action="refused", version=info, reason=why)
        try:
            moved = promote(
                settings,
                ref=ref,
                actor=actor,
                reason=f"Flagger promoted the canary ({_canary_name(evidence)})",
                evidence=evidence,
                registry=current,
            ).version
        except InvalidTransitionError:  # a concurrent identical webhook won
            return _already(current.get_version(ref), "already-production", "production")
    _tell(settings, moved, promoted=True, evidence=evidence, notifier=notifier)
    return HookOutcome(
        accepted=True,
        action="promoted",
        version=moved,
        reason=f"{moved.tag} is the production version",
    )


def roll_back_canary(
    settings: Settings,
    *,
    metadata: Mapping[str, str],
    phase: str,
    evidence: dict[str, Any],
    actor: str = ACTOR,
    registry: Registry | None = None,
    notifier: Notifier | None = None,
) -> HookOutcome:
    """Follow a failed rollout (archive the canary version), or say whether one is wanted.

    Args:
        settings: MetaRec settings (the registry, the default model).
        metadata: The webhook's metadata, naming the version under canary (:func:`canary_ref`).
        phase: ``Failed`` (post-rollout: archive the canary version; production is left as
            it is), ``Succeeded`` (post-rollout of a promotion: ignored) or the phase of a
            ``rollback`` hook call (``Progressing``, ``Waiting``, ``WaitingPromotion``).
        evidence: The webhook as ledger evidence (:func:`webhook_evidence`).
        actor: Who acts in the ledger: the identity that called the webhook.
        registry: An open registry (default: open the configured one for this call).
        notifier: Sends the verdict to ``notifications.webhooks`` (default: a one-shot one).

    Returns:
        After ``Failed``: ``archived``, ``already-archived`` or ``refused`` (the registry has
        the version in production: nothing is changed). ``Succeeded``: ``ignored``. Otherwise
        ``rollback-requested`` (accepted: the registry would refuse the promotion) or
        ``no-rollback``.

    Raises:
        VersionNotFoundError / ModelNotFoundError: After ``Failed``, no such version, or none
            named.
    """
    if phase == SUCCEEDED:
        return _ignored(phase, "a Succeeded rollout is followed by the promote hook")
    if phase != FAILED:
        confirmation = confirm_promotion(settings, metadata=metadata, registry=registry)
        if confirmation.accepted:
            return confirmation.model_copy(update={"accepted": False, "action": "no-rollback"})
        return confirmation.model_copy(update={"accepted": True, "action": "rollback-requested"})
    ref = _ref(settings, metadata)
    with registry_session(settings, registry) as current:
        return _archive_failed(settings, current, ref, evidence, actor=actor, notifier=notifier)


def _archive_failed(
    settings: Settings,
    registry: Registry,
    ref: VersionRef,
    evidence: dict[str, Any],
    *,
    actor: str,
    notifier: Notifier | None,
) -> HookOutcome:
    """Archive the canary version of a failed rollout (never the production version)."""
    info = registry.get_version(ref)
    if info.stage == Stage.ARCHIVED:
        return _already(info, "already-archived", "archived")
    if info.stage == Stage.PRODUCTION:
        return HookOutcome(
            accepted=False,
            action="refused",
            version=info,
            reason=f"{info.tag} is the registry's production version; a failed canary "
            "does not archive it (roll back with `metarec models rollback` if wanted)",
        )
    try:
        moved = archive(
            settings,
            ref=ref,
            actor=actor,
            reason=f"Flagger rolled back the canary ({_canary_name(evidence)}); "
            "production unchanged",
            evidence={**evidence, "rolled_back": True},
            registry=registry,
        ).version
    except InvalidTransitionError:  # a concurrent identical webhook won
        return _already(registry.get_version(ref), "already-archived", "archived")
    outcome = HookOutcome(
        accepted=True,
        action="archived",
        version=moved,
        reason=f"{moved.tag} was rolled back by Flagger and archived; production unchanged",
    )
    _tell(settings, moved, promoted=False, evidence=evidence, notifier=notifier)
    return outcome


def _tell(
    settings: Settings,
    info: VersionInfo,
    *,
    promoted: bool,
    evidence: Mapping[str, Any],
    notifier: Notifier | None,
) -> None:
    """Notify the webhooks of the verdict Flagger reached on ``info``."""
    canary = _canary_name(evidence)
    verb = "promoted" if promoted else "rolled back"
    notification = notifications.flagger_verdict(
        model=info.model,
        version=info.version,
        promoted=promoted,
        reason=f"Flagger {verb} the canary ({canary})",
        canary=canary,
    )
    notifications.send(settings, notification, notifier=notifier)


def _find(registry: Registry, ref: VersionRef) -> VersionInfo | None:
    try:
        return registry.get_version(ref)
    except (ModelNotFoundError, VersionNotFoundError):
        return None


def _ignored(phase: str, why: str) -> HookOutcome:
    return HookOutcome(accepted=True, action="ignored", version=None, reason=f"{phase}: {why}")


def _already(info: VersionInfo, action: str, stage: str) -> HookOutcome:
    return HookOutcome(
        accepted=True,
        action=action,
        version=info,
        reason=f"{info.tag} is already {stage}; nothing to do",
    )


def _canary_name(evidence: Mapping[str, Any]) -> str:
    webhook = evidence.get("webhook") or {}
    return f"{webhook.get('namespace', '?')}/{webhook.get('name', '?')}"
