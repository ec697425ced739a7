"""The deploy step of a release on a cluster: put the new version where the canary engine looks.

* :func:`deploy_version` (``metarec rollout deploy``, and :func:`metarec.ops.release_canary`
  when ``rollout.deploy.kind`` is ``kubernetes``) sets a registry version on the serving
  Deployment named by ``rollout.deploy`` through the Kubernetes API
  (:class:`~metarec.rollout.deployer.KubernetesDeployer`). Engine ``embedded``: the canary
  Deployment, then it waits until the new pods are available (the rollout controller then moves
  the HTTPRoute weights). Engine ``flagger``: the ``metadata.version`` of the Canary's webhooks
  first (what they confirm, promote and roll back), then Flagger's target Deployment, whose
  change starts Flagger's analysis.
* :func:`await_flagger` waits until the registry follows Flagger's verdict: the version in
  ``production`` (promoted by the ``post-rollout`` webhook) or ``archived`` (rolled back).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from metarec.config import Settings
from metarec.errors import DeployError
from metarec.ops._registry import registry_session
from metarec.ops.canary_spec import Outcome
from metarec.registry import Registry, Stage, VersionRef
from metarec.rollout.deployer import KubernetesDeployer


@dataclass(frozen=True)
class Deployed:
    """What :func:`deploy_version` set.

    Attributes:
        ref: The version deployed.
        deployment: ``namespace/name`` of the Deployment patched.
        args: Its serving container's args now.
        patched: False when it already served the version (nothing was sent).
        canary: ``namespace/name`` of the Flagger Canary whose webhooks name the version (None:
            engine ``embedded``).
        canary_patched: Whether the Canary was patched (False: already named the version).
    """

    ref: VersionRef
    deployment: str
    args: tuple[str, ...]
    patched: bool
    canary: str | None = None
    canary_patched: bool = False


@dataclass(frozen=True)
class FlaggerVerdict:
    """How a Flagger canary ended, as the registry tells it."""

    outcome: Outcome
    reason: str


def deployer_for(settings: Settings) -> KubernetesDeployer:
    """The deployer of ``rollout.deploy`` (the pod's ServiceAccount, else the kubeconfig).

    Raises:
        DeployError: ``rollout.deploy.kind`` is not ``kubernetes``, or no credentials.
    """
    if settings.rollout.deploy.kind != "kubernetes":
        raise DeployError(
            "rollout.deploy.kind is 'none': there is no Deployment to set a version on.",
            fix="set rollout.deploy.kind: kubernetes and its namespace/deployment "
            "(METAREC_ROLLOUT__DEPLOY__KIND=kubernetes; the chart's retrain pod has them).",
        )
    return KubernetesDeployer.from_settings(settings.rollout.deploy)


def deploy_version(
    settings: Settings,
    *,
    ref: VersionRef,
    registry: Registry | None = None,
    deployer: KubernetesDeployer | None = None,
    wait_ready: bool | None = None,
) -> Deployed:
    """Set registry version ``ref`` on the serving Deployment of ``rollout.deploy``.

    Args:
        settings: MetaRec settings (``rollout.deploy``, the registry).
        ref: The version to serve; it must be registered and not archived.
        registry: An open registry (default: open the configured one for this call).
        deployer: The deployer to use (default: :func:`deployer_for` the settings).
        wait_ready: Wait until the Deployment's new pods are available (default: with engine
            ``embedded``; Flagger scales its target itself).

    Returns:
        What was set.

    Raises:
        VersionNotFoundError: No such version.
        DeployError: ``rollout.deploy.kind`` is ``none``; the version is archived; the
            Deployment/Canary cannot be read or patched (403 names the chart's Role); the pods
            did not roll out in time.
    """
    config = settings.rollout.deploy
    chosen = deployer or deployer_for(settings)
    with registry_session(settings, registry) as current:
        info = current.get_version(ref)
    if info.stage is Stage.ARCHIVED:
        raise DeployError(
            f"{ref.tag} is archived; an archived version is never deployed.",
            fix="deploy a staging or production version (`metarec models list`).",
        )
    canary, canary_patched = None, False
    if config.engine == "flagger":
        canary_patched = chosen.set_canary_version(model=ref.model, version=ref.version)
        canary = f"{config.namespace}/{config.flagger_canary}"
    done = chosen.set_version(model=ref.model, version=ref.version)
    if wait_ready if wait_ready is not None else config.engine == "embedded":
        chosen.wait_ready(
            generation=done.generation,
            timeout_s=config.ready_timeout_s,
            poll_s=settings.rollout.poll_s,
        )
    return Deployed(
        ref=ref,
        deployment=done.deployment,
        args=done.args,
        patched=done.patched,
        canary=canary,
        canary_patched=canary_patched,
    )


def await_flagger(
    settings: Settings,
    *,
    ref: VersionRef,
    timeout_s: float,
    registry: Registry | None = None,
    poll_s: float | None = None,
) -> FlaggerVerdict:
    """Wait until the registry follows Flagger's verdict on the deployed version ``ref``.

    Args:
        settings: MetaRec settings (the registry; ``rollout.poll_s`` is the default period).
        ref: The version under canary.
        timeout_s: Give up after this long (the version then stays in staging).
        registry: An open registry (default: open the configured one for this call).
        poll_s: Seconds between two reads of the registry.

    Returns:
        ``promoted`` (in production), ``rolled-back`` (archived by the webhook) or ``aborted``
        (timed out: Flagger may still decide later).
    """
    period = settings.rollout.poll_s if poll_s is None else poll_s
    deadline = time.monotonic() + timeout_s
    with registry_session(settings, registry) as current:
        while True:
            stage = current.get_version(ref).stage
            if stage is Stage.PRODUCTION:
                return FlaggerVerdict("promoted", f"Flagger promoted {ref.tag}")
            if stage is Stage.ARCHIVED:
                return FlaggerVerdict(
                    "rolled-back", f"Flagger rolled {ref.tag} back; production unchanged"
                )
            if time.monotonic() > deadline:
                return FlaggerVerdict(
                    "aborted",
                    f"Flagger gave no verdict on {ref.tag} within {timeout_s:g}s; it stays in "
                    "staging (Flagger may still promote or roll it back)",
                )
            time.sleep(period)
