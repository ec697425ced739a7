"""Where a served version's drift reference comes from.

The reference (:class:`~metarec.training.drift_profile.DriftReference`: support-sized samples
of the training users' first ratings, see :mod:`metarec.training.drift_profile`) is written
into the artifact at training time (``drift_reference.json``, listed in the card's file hashes,
so registration and fetching verify it): a serving pod reads it from the registry and needs no
training set (:func:`served_drift_reference`). An artifact trained before that has none: its
reference is then built the same way from its training set, found among the training sets of
the MetaRec home by the card's ``dataset_fingerprint`` (:func:`load_drift_reference`), with the
support range its card's hyper-parameters record. Without either, drift is not monitored and
one warning says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from metarec.config import Settings
from metarec.errors import FeatureStoreError, MetaRecError
from metarec.features.training_set import read_manifest
from metarec.registry.service import Registry
from metarec.registry.types import VersionInfo, VersionRef
from metarec.training.config import TrainingConfig
from metarec.training.drift_profile import (
    DECILES,
    DRIFT_FILE,
    SAMPLE_USERS,
    DriftReference,
    ReferenceUser,
    build_reference,
    popularity_deciles,
    support_size_bins,
)
from metarec.training.implicit import is_event_training_set, positive_interactions
from metarec.training.model_card import ModelCard

__all__ = [
    "DECILES",
    "DRIFT_FILE",
    "SAMPLE_USERS",
    "DriftReference",
    "ReferenceUser",
    "build_reference",
    "card_support_range",
    "find_training_set",
    "load_drift_reference",
    "popularity_deciles",
    "served_drift_reference",
    "support_size_bins",
]

_LOG = logging.getLogger(__name__)
_DEFAULTS = TrainingConfig()


def card_support_range(card: ModelCard, *, max_support_size: int) -> tuple[int, int]:
    """The support range a version was trained for, capped at ``serving.max_support_size``.

    Read from the card's hyper-parameters (a larger support set is refused anyway).
    """
    params = card.hyperparameters
    low = int(params.get("train_support_min", _DEFAULTS.train_support_min))
    high = int(params.get("train_support_max", _DEFAULTS.train_support_max))
    return min(low, max_support_size), min(max(low, high), max_support_size)


def find_training_set(folder: Path, fingerprint: str) -> Path | None:
    """The training set under ``folder`` whose manifest records ``fingerprint`` (None: none)."""
    for parquet in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        try:
            if read_manifest(parquet).fingerprint == fingerprint:
                return parquet
        except (FeatureStoreError, ValueError):  # no readable manifest: not a training set
            continue
    return None


def load_drift_reference(
    training_sets: Path,
    *,
    fingerprint: str,
    max_support_size: int,
    support_range: tuple[int, int] | None = None,
    warn: bool = True,
) -> DriftReference | None:
    """The reference built from the training set with content ``fingerprint``, or None.

    Args:
        training_sets: Where the home keeps its training sets (``settings.paths.training_sets``).
        fingerprint: The served card's ``dataset_fingerprint``.
        max_support_size: ``serving.max_support_size`` (caps the support range).
        support_range: The version's (min, max) support size (default: the training config's
            defaults).
        warn: Log a warning when the training set is not there.
    """
    found = find_training_set(training_sets, fingerprint)
    if found is None:
        if warn:
            _LOG.warning(
                "drift: no training set with fingerprint %s under %s; metarec_drift_psi is not "
                "exported for this version (copy its training set there to monitor drift)",
                fingerprint[:16],
                training_sets,
            )
        return None
    frame = pd.read_parquet(found)
    if is_event_training_set(frame):  # the positive interactions, as training reads them
        frame = positive_interactions(frame)
    low, high = support_range or (_DEFAULTS.train_support_min, _DEFAULTS.train_support_max)
    return build_reference(
        frame,
        support_min=min(low, max_support_size),
        support_max=min(high, max_support_size),
        source=f"{found} (fingerprint {fingerprint[:16]})",
    )


def served_drift_reference(
    settings: Settings, *, info: VersionInfo, card: ModelCard, data: bytes | None = None
) -> DriftReference | None:
    """A served version's drift reference: its artifact's, else its training set's, else None.

    The artifact's file is ``data`` when the caller read it with the artifact (the service:
    :attr:`~metarec.serving.loading.ServedModel.drift_file`), else it is read from the
    registry (checksum verified). Exactly one warning is logged when neither exists (drift is
    then not monitored).

    Args:
        settings: The registry, ``paths.training_sets`` and ``serving.max_support_size``.
        info: The served version's registry record (its files).
        card: Its model card (fingerprint, support range).
        data: The artifact's drift reference file, already fetched and verified (None: read it
            from the registry when the version has one).
    """
    if DRIFT_FILE in info.files:
        try:
            if data is None:
                ref = VersionRef(model=info.model, version=info.version)
                with Registry.open(settings) as registry:
                    data = registry.read_file(ref, DRIFT_FILE)
            return DriftReference.model_validate_json(data)
        except (MetaRecError, ValidationError) as exc:
            _LOG.warning("drift: %s of %s is unreadable (%s)", DRIFT_FILE, info.tag, exc)
    limit = settings.serving.max_support_size
    found = load_drift_reference(
        settings.paths.training_sets,
        fingerprint=card.dataset_fingerprint,
        max_support_size=limit,
        support_range=card_support_range(card, max_support_size=limit),
        warn=False,
    )
    if found is None:
        _LOG.warning(
            "drift: %s has no %s (trained before it was written) and no training set with "
            "fingerprint %s is under %s; metarec_drift_psi is not exported for this version "
            "(retrain it, or copy its training set there, to monitor drift)",
            info.tag,
            DRIFT_FILE,
            card.dataset_fingerprint[:16],
            settings.paths.training_sets,
        )
    return found
