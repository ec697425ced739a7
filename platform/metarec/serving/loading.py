"""Load one registry version for serving: checksum verified, rebuilt from safetensors only.

The served model adapts exactly as offline evaluation does (:func:`offline_adaptation`): the
card's inner-loop steps and rate, Meta-SGD rates when the card says so, first-order inner
gradients, predictions clamped to 1..5 (see :mod:`metarec.training.methods`). When the artifact
holds a meta-learned factor fold-in (``factor_model.safetensors``), it is loaded too (checksum
verified) and predicts the served ratings instead (:mod:`metarec.serving.factor_adapter`).

A version trained on implicit events (``card.label == "event"``) has no rating model: it is
served by its ranker alone (``adapted`` is None), which it must have.

A version trained on a team's text ids (``c001``, ``sku-001``) serves them as they are: the card
records its users and its ranker's catalogue by their original ids (:attr:`ServedModel.text_users`,
:attr:`ServedModel.text_items`), and its encoder reads the ids as text.
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
    load_factor_model,
    load_ranker,
    load_rating_model,
    read_card,
)
from metarec.training.drift_profile import DRIFT_FILE
from metarec.training.encoding import FeatureEncoder
from metarec.training.methods import AdaptedModel
from metarec.training.served_method import served_rating_method


@dataclass(frozen=True)
class ServedModel:
    """A loaded version: the model with its adaptation rule, encoder and registry record.

    ``factor`` is the artifact's factor fold-in (None without one): when present it predicts
    the served ratings, else the MeLU model (``adapted``) does. A version trained on implicit
    events predicts no ratings: ``adapted`` (and ``factor``) are None and ``ranker`` serves it.
    """

    info: VersionInfo
    card: ModelCard
    adapted: AdaptedModel | None
    encoder: FeatureEncoder
    ranker: RankerParts | None = None
    factor: FactorModel | None = None
    drift_file: bytes | None = None  # the artifact's drift reference, when it has one

    @property
    def predicts_ratings(self) -> bool:
        """Whether the version has a rating model (``/predict``, online MAE)."""
        return self.adapted is not None

    @property
    def rating_model(self) -> str | None:
        """The model that predicts ratings: ``"factor_map"``, the card's algorithm, or None."""
        if not self.predicts_ratings:
            return None
        return served_rating_method(self.card)

    @property
    def text_items(self) -> bool:
        """Whether the version's item ids are a team's text ids (its ranker's catalogue is)."""
        ranker = self.card.ranker or {}
        return "item_ids" in ranker

    @property
    def text_users(self) -> bool:
        """Whether the version's user ids are a team's text ids (those its card records are)."""
        split = self.card.split or {}
        listed = [
            *(u for users in self.card.test_users.values() for u in users),
            *(split.get("val_users") or []),
            *(split.get("test_users") or []),
        ]
        return any(isinstance(u, str) for u in listed)

    @property
    def tag(self) -> str:
        """``<model>:v<version>``, the ``model_version`` label of every metric."""
        return self.info.tag


def offline_adaptation(card: ModelCard, *, steps_override: int | None = None) -> InnerLoop:
    """The inner loop offline evaluation uses for this card (``evaluate_artifact``'s).

    Only rating versions have one (an event version's ranker adapts with the card's
    ``ranker.inner_steps``).
    """
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
            return load_served_folder(folder, info=info, adaptation_steps=serving.adaptation_steps)


def load_served_folder(
    folder: Path, *, info: VersionInfo, adaptation_steps: int | None = None
) -> ServedModel:
    """Rebuild a fetched artifact directory for serving (every weights file checksum verified).

    Args:
        folder: The version's artifact directory.
        info: Its registry record.
        adaptation_steps: Inner steps of the rating model instead of the card's (None: the
            card's).

    Returns:
        The model, its card, encoder and adaptation rule, the ranker and factor model when the
        artifact has them; for an event version the ranker alone (``adapted`` None).

    Raises:
        ServingModelError: An event version without a ranker (nothing could serve it).
        ArtifactError: A weights file is missing, altered or does not fit the card.
    """
    card = read_card(folder)
    model = load_rating_model(folder, card)
    ranker = load_ranker(folder, card)
    factor = load_factor_model(folder, card) if model is not None else None
    if model is None and ranker is None:
        raise ServingModelError(
            f"Version {info.tag} learnt from implicit events but its artifact has no ranker.",
            fix="retrain it with `metarec train` (an event version is served by its ranker), "
            "or serve another version with --version V.",
        )
    for module in (model, factor):
        if module is None:
            continue
        module.eval()
        for parameter in module.parameters():
            parameter.requires_grad_(False)
    adapted = None
    if model is not None:
        inner = offline_adaptation(card, steps_override=adaptation_steps)
        adapted = AdaptedModel(model, inner, bool(card.inner_loop.get("meta_sgd")))
    return ServedModel(
        info=info,
        card=card,
        adapted=adapted,
        encoder=FeatureEncoder(**card.encoder),
        ranker=ranker,
        factor=factor,
        drift_file=(folder / DRIFT_FILE).read_bytes() if DRIFT_FILE in card.files else None,
    )
