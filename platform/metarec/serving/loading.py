"""Load one registry version for serving: checksum verified, rebuilt from safetensors only.

The served model adapts exactly as offline evaluation does (:func:`offline_adaptation`): the
card's inner-loop steps and rate, Meta-SGD rates when the card says so, first-order inner
gradients, predictions clamped to 1..5 (see :mod:`metarec.training.methods`). When the artifact
holds a meta-learned factor fold-in (``factor_model.safetensors``), it is loaded too (checksum
verified) and predicts the served ratings instead (:mod:`metarec.serving.factor_adapter`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from metarec.config import Settings
from metarec.errors import ServingModelError
from metarec.learning.algorithms import InnerLoop
from metarec.learning.factor_model import FactorModel
from metarec.registry.service import Registry
from metarec.registry.types import Stage, VersionInfo, VersionRef
from metarec.training.artifact import (
    ModelCard,
    RankerParts,
    load_artifact,
    load_factor_model,
    load_ranker,
)
from metarec.training.encoding import FeatureEncoder
from metarec.training.methods import AdaptedModel


@dataclass(frozen=True)
class ServedModel:
    """A loaded version: the model with its adaptation rule, encoder and registry record.

    ``factor`` is the artifact's factor fold-in (None without one): when present it predicts
    the served ratings, else the MeLU model (``adapted``) does.
    """

    info: VersionInfo
    card: ModelCard
    adapted: AdaptedModel
    encoder: FeatureEncoder
    ranker: RankerParts | None = None
    factor: FactorModel | None = None

    @property
    def rating_model(self) -> str:
        """The model that predicts ratings: ``"factor_map"`` or the card's algorithm."""
        return "factor_map" if self.factor is not None else self.card.algorithm

    @property
    def tag(self) -> str:
        """``<model>:v<version>``, the ``model_version`` label of every metric."""
        return self.info.tag


def offline_adaptation(card: ModelCard, *, steps_override: int | None = None) -> InnerLoop:
    """The inner loop offline evaluation uses for this card (``evaluate_artifact``'s)."""
    steps = int(card.inner_loop["steps"]) if steps_override is None else int(steps_override)
    return InnerLoop(steps=steps, lr=float(card.inner_loop["lr"]))


def resolve_version(
    registry: Registry, *, model: str, version: str | None, stage: str
) -> VersionRef:
    """The version to serve: ``version`` when given, else the one in ``stage``.

    Raises:
        ServingModelError: No version is in the stage.
        VersionNotFoundError: ``version`` is not a version reference.
    """
    if version:
        return VersionRef.parse(version, default_model=model)
    if Stage(stage) is Stage.PRODUCTION:
        info = registry.production(model)
        if info is None:
            raise ServingModelError(
                f"Model {model!r} has no production version to serve.",
                fix="pass --version V, or promote a version with `metarec models promote`.",
            )
        return VersionRef(model=model, version=info.version)
    versions = registry.list_versions(model, stage=Stage(stage))
    if not versions:
        raise ServingModelError(
            f"Model {model!r} has no {stage} version to serve.",
            fix="register one with `metarec models register`, or pass --version V.",
        )
    return VersionRef(model=model, version=versions[-1].version)


def load_served_model(
    settings: Settings, *, version: str | None = None, stage: str | None = None
) -> ServedModel:
    """Fetch a version from the registry (checksum verified) and rebuild it for serving.

    Args:
        settings: MetaRec settings (registry, serving overrides).
        version: ``3``, ``v3`` or ``<model>:v3``; default ``settings.serving.version``.
        stage: Stage used when no version is given; default ``settings.serving.stage``.

    Returns:
        The model, its card, encoder and adaptation rule (and the ranker and factor model
        when the artifact has them).
    """
    serving = settings.serving
    with Registry.open(settings) as registry:
        ref = resolve_version(
            registry,
            model=settings.registry.model_name,
            version=version if version is not None else serving.version,
            stage=stage or serving.stage,
        )
        info = registry.verify(ref)
        with tempfile.TemporaryDirectory(prefix="metarec-serve-") as tmp:
            folder = registry.fetch(ref, Path(tmp) / "artifact")
            model, card = load_artifact(folder)
            ranker = load_ranker(folder, card)
            factor = load_factor_model(folder, card)
    for module in (model, factor):
        if module is None:
            continue
        module.eval()
        for parameter in module.parameters():
            parameter.requires_grad_(False)
    inner = offline_adaptation(card, steps_override=serving.adaptation_steps)
    adapted = AdaptedModel(model, inner, bool(card.inner_loop.get("meta_sgd")))
    return ServedModel(
        info=info,
        card=card,
        adapted=adapted,
        encoder=FeatureEncoder(**card.encoder),
        ranker=ranker,
        factor=factor,
    )
