"""The reference profile: statistics of an accepted training set that later ones are held to.

Profiles are versioned per feature service under ``<home>/validation/profiles/<service>/``
(``v0001.json``, ``v0002.json`` …; on a cluster under
``<feast.offline_root>/validation/profiles/<service>/`` on the object store). A new profile is
always a new file, created exclusively: an existing version is never overwritten, and a failing
run writes nothing. The newest version is the current reference.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import fsspec
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from metarec.data.schema import RATING_MAX, RATING_MIN
from metarec.errors import ReferenceProfileNotFoundError
from metarec.features.declared import DeclaredFeature
from metarec.validation.declared import FeatureStatistics, feature_statistics
from metarec.validation.reference_checks import ReferenceStatistics, reference_statistics
from metarec.validation.suite import ReferenceCheckTolerances

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
    reference: ReferenceStatistics | None = Field(
        default=None,
        description="For the reference checks; None in profiles built before they existed.",
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
    reference_checks: ReferenceCheckTolerances | None = None,
) -> ProfileStatistics:
    """Compute the profile statistics of a training set (one that passed the integrity checks).

    Args:
        frame: The training set.
        quantiles: Quantiles of ratings per user to record.
        features: Features checked from their type (the manifest's ``declared_features``).
        reference_checks: The suite's reference-check margins; when given, the statistics
            those checks compare against are recorded too.

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
        reference=None
        if reference_checks is None
        else reference_statistics(frame, reference_checks),
        **rating_stats,
    )


class ProfileStore:
    """Versioned reference profiles, one folder per feature service.

    The root is a local folder (``<home>/validation/profiles``) or, on a cluster, a URI on the
    object store (``<feast.offline_root>/validation/profiles``), read and written through fsspec
    so that every pod (a fresh retrain pod included) holds its training sets to the same one.
    """

    def __init__(self, root: Path | str) -> None:
        """Open the store rooted at ``root`` (a folder, or a URI such as ``s3://b/profiles``)."""
        text = str(root)
        on_store = "://" in text and not text.startswith("file://")
        # A URI on a store stays a string; a path or ``file://`` URI is a local folder.
        self.root: Path | str = text.rstrip("/") if on_store else Path(text.removeprefix("file://"))

    def folder(self, feature_service: str) -> Path | str:
        """Where the profiles of ``feature_service`` live."""
        if isinstance(self.root, str):
            return f"{self.root}/{feature_service}"
        return self.root / feature_service

    def versions(self, feature_service: str) -> list[int]:
        """Stored versions, oldest first."""
        folder = self.folder(feature_service)
        if isinstance(folder, Path):
            names = [path.name for path in folder.iterdir()] if folder.is_dir() else []
        else:
            fs, base = fsspec.core.url_to_fs(folder)
            try:
                entries = fs.ls(base, detail=False, refresh=True)
            except FileNotFoundError:  # no profile was stored yet
                entries = []
            names = [entry.rsplit("/", 1)[-1] for entry in entries]
        found = (_VERSION_FILE.match(name) for name in names)
        return sorted(int(match.group(1)) for match in found if match)

    def path(self, feature_service: str, version: int) -> Path | str:
        """The file (or object) of one version."""
        folder = self.folder(feature_service)
        name = f"v{version:04d}.json"
        return folder / name if isinstance(folder, Path) else f"{folder}/{name}"

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
        path = self.path(feature_service, version)
        if isinstance(path, Path):
            return ReferenceProfile.model_validate_json(path.read_text())
        with fsspec.open(path, "rb") as handle:
            return ReferenceProfile.model_validate_json(handle.read())

    def add(self, profile: ReferenceProfile) -> Path | str:
        """Store ``profile`` as a new version file, never replacing an existing one.

        On an object store the version is checked for absence before the write (object stores
        have no exclusive create): two runs adding the same version at the same instant is the
        one case this cannot refuse.

        Args:
            profile: The profile; its ``version`` must not exist yet.

        Returns:
            The written file (or object URI).

        Raises:
            FileExistsError: That version exists (a concurrent run took it).
        """
        path = self.path(profile.feature_service, profile.version)
        text = json.dumps(profile.model_dump(mode="json"), indent=2)
        if not isinstance(path, Path):
            fs, key = fsspec.core.url_to_fs(path)
            fs.invalidate_cache(key)
            if fs.exists(key):
                raise FileExistsError(path)
            fs.pipe_file(key, text.encode())
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
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
