"""Feast definitions for `feast apply` run in this folder.

The objects come from `metarec.features.store.snapshot_definitions` over the current MetaRec
snapshot (MovieLens' own objects, a table snapshot's declared features, and the views of
`user_features.py` when it exists), so that `feast apply` here and `metarec features apply`
register exactly the same thing.
"""

from metarec.config import load_settings
from metarec.data.snapshots import SnapshotStore
from metarec.features.store import snapshot_definitions

_settings = load_settings()
_snapshot = SnapshotStore(_settings.paths.snapshots).get()
_definitions = snapshot_definitions(_settings, _snapshot)

# `feast apply` registers the Feast objects it finds among this module's names
# (entity_user, view_user_profile, service_meta_training, ...).
globals().update({f"entity_{obj.name}": obj for obj in _definitions.entities})
globals().update({f"view_{obj.name}": obj for obj in _definitions.views})
globals().update({f"service_{obj.name}": obj for obj in _definitions.services})
