"""When each online feature view was last materialised, read from the Feast registry.

Feast records every ``materialize`` run of a view as an interval in the registry
(``FeatureView.materialization_intervals``); the end of the latest one is how recent the
view's online values are. Only online views are read: an offline-only view (a training label)
is never materialised. The serving metrics turn these ends into
``metarec_feature_freshness_seconds`` (:mod:`metarec.serving.metrics`), through the callable
:class:`MaterializationReader` that the service builder injects.
"""

from __future__ import annotations

import threading
from datetime import datetime

from feast import FeatureStore

from metarec.clock import as_utc
from metarec.config import Settings
from metarec.errors import FeatureStoreError
from metarec.features.store import open_store

# View name → end of its latest materialisation (None: applied, never materialised).
MaterializationEnds = dict[str, datetime | None]


def last_materializations(store: FeatureStore) -> MaterializationEnds:
    """The end of the latest materialisation of every online view applied in ``store``.

    Args:
        store: The feature store (its registry is read, bypassing Feast's registry cache).

    Returns:
        View name → end of its latest materialisation interval (aware UTC), ``None`` for a
        view that has never been materialised.
    """
    return {
        view.name: as_utc(max((end for _, end in view.materialization_intervals), default=None))
        for view in store.list_feature_views(allow_cache=False)
        if view.online
    }


class MaterializationReader:
    """A callable that reads :func:`last_materializations` of the settings' feature store.

    The store is opened at the first call, not when the reader is built (so a service starts
    while Feast is unreachable), and opened again after a failed read. Thread-safe.
    """

    def __init__(self, settings: Settings) -> None:
        """Keep the settings; open nothing yet.

        Args:
            settings: MetaRec settings (the Feast configuration to open).
        """
        self._settings = settings
        self._store: FeatureStore | None = None
        self._lock = threading.Lock()

    def __call__(self) -> MaterializationEnds:
        """Read the registry now.

        Raises:
            FeatureStoreError: The store cannot be opened or its registry cannot be read (a
                registry database that is unreachable, say); the next call tries again.
        """
        with self._lock:
            try:
                if self._store is None:
                    self._store = open_store(self._settings)
                return last_materializations(self._store)
            except FeatureStoreError:
                self._store = None
                raise
            except Exception as exc:
                self._store = None
                raise FeatureStoreError(
                    f"Cannot read the materialisation times from the Feast registry ({exc}).",
                    fix="check that the Feast registry (feast.registry_url on a cluster, the "
                    "home's feast/registry.db on a laptop) is reachable.",
                ) from exc
