"""The reference profile: statistics of an accepted training set that later ones are held to.

Profiles are versioned per feature service under ``<home>/validation/profiles/<service>/``
(``v0001.json``, ``v0002.json`` …). A new profile is always a new file, created exclusively:
an existing version is never overwritten, and a failing run writes nothing. The newest version
is the current reference.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from metarec.data.schema import RATING_MAX, RATING_MIN
from metarec.errors import ReferenceProfileNotFoundError
from metarec.features.declared import DeclaredFeature
from metarec.validation.declared import FeatureStatistics, feature_statistics

RATING_VALUES: tuple[int, ...] = tuple(range(RATING_MIN, RATING_MAX + 1))
# Great Expectations' pandas quantiles use this interpolation; the profile uses the same.
QUANTILE_INTERPOLATION = "nearest"
_VERSION_FILE = re.compile(r"^v(\d{4,})\.json$")


class ProfileStatistics(BaseModel):
    """The statistics the drift expectations compare against."""

    model_config = ConfigDict(frozen=True)

    row_count: int
    user_count: int
    mean_rating: float | None = Field(default=None, description="None without ratings.")
    rating_shares: dict[int, float] = Field(
        default_factory=dict, description="Rating value → share of rows."
    )
    ratings_per_user_quantiles: dict[float, float] = Field(
        description="Quantile → ratings (interactions) per user at that quantile."
    )
    features: dict[str, FeatureStatistics] = Field(
        default_factory=dict, description="Per checked feature: range, categories or dimension."
    )


class ReferenceProfile(BaseModel):
    """A versioned reference profile and the training set it came from."""

    model_config = ConfigDict(frozen=True)

    version: int
    feature_service: str
    feature_service_version: str
    suite_name: str
    suite_version: str
    training_set: str
    dataset_fingerprint: str
    snapshot_id: str
    created_at: datetime
    statistics: ProfileStatistics

    @property
    def label(self) -> str:
        """``<service>@v<version>``, as results record it."""
        return f"{self.feature_service}@v{self.version}"


def compute_statistics(
    frame: pd.DataFrame,
    *,
    quantiles: tuple[float, ...],
    features: Sequence[DeclaredFeature] = (),
) -> ProfileStatistics:
    """Compute the profile statistics of a training set (one that passed the integrity checks).

    Args:
        frame: The training set.
        quantiles: Quantiles of ratings per user to record.
        features: Features checked from their type (the manifest's ``declared_features``).

    Returns:
        The statistics (rating statistics only when the training set has a ``rating`` column).
    """
    per_user = frame.groupby("user_id", sort=False).size()
    values = per_user.quantile(list(quantiles), interpolation=QUANTILE_INTERPOLATION).tolist()
    rating_stats: dict[str, object] = {}
    if "rating" in frame.columns:
        ratings = frame["rating"]
        counts = ratings.value_counts()
        rating_stats = {
            "mean_rating": float(ratings.mean()),
            "rating_shares": {r: float(counts.get(r, 0)) / len(frame) for r in RATING_VALUES},
        }
    return ProfileStatistics(
        row_count=len(frame),
        user_count=int(per_user.size),
        ratings_per_user_quantiles={
            float(q): float(v) for q, v in zip(quantiles, values, strict=True)
        },
        features=feature_statistics(frame, list(features)),
        **rating_stats,
    )


class ProfileStore:
    """Versioned reference profiles, one folder per feature service."""

    def __init__(self, root: Path) -> None:
        """Open the store rooted at ``root`` (``<home>/validation/profiles``)."""
        self.root = root

    def folder(self, feature_service: str) -> Path:
        """Where the profiles of ``feature_service`` live."""
        return self.root / feature_service

    def versions(self, feature_service: str) -> list[int]:
        """Stored versions, oldest first."""
        folder = self.folder(feature_service)
        if not folder.is_dir():
            return []
        found = (_VERSION_FILE.match(path.name) for path in folder.iterdir())
        return sorted(int(match.group(1)) for match in found if match)

    def path(self, feature_service: str, version: int) -> Path:
        """The file of one version."""
        return self.folder(feature_service) / f"v{version:04d}.json"

    def current(self, feature_service: str) -> ReferenceProfile:
        """The newest profile of ``feature_service``.

        Raises:
            ReferenceProfileNotFoundError: None was built yet.
        """
        versions = self.versions(feature_service)
        if not versions:
            raise ReferenceProfileNotFoundError(
                f"No reference profile for feature service {feature_service!r} "
                f"(looked in {self.folder(feature_service)}); drift cannot be judged without one.",
                fix="build it from an accepted training set: "
                "`metarec features profile --training-set PATH`.",
            )
        return self.get(feature_service, versions[-1])

    def get(self, feature_service: str, version: int) -> ReferenceProfile:
        """One stored version."""
        return ReferenceProfile.model_validate_json(self.path(feature_service, version).read_text())

    def add(self, profile: ReferenceProfile) -> Path:
        """Store ``profile`` as a new version file, never replacing an existing one.

        Args:
            profile: The profile; its ``version`` must not exist yet.

        Returns:
            The written file.

        Raises:
            FileExistsError: That version exists (a concurrent run took it).
        """
        path = self.path(profile.feature_service, profile.version)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(profile.model_dump(mode="json"), indent=2)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        try:
            # A hard link fails when the target exists: an existing version is never replaced,
            # and readers never see a half-written file.
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:
            # File systems without hard links: exclusive creation still never replaces.
            with path.open("x") as handle:
                handle.write(text)
        finally:
            tmp.unlink()
        return path

    def next_version(self, feature_service: str) -> int:
        """The version number a new profile gets."""
        versions = self.versions(feature_service)
        return versions[-1] + 1 if versions else 1
