"""Feast definitions for `feast apply` run in this folder.

The objects come from `metarec.features.definitions`, over the current MetaRec snapshot, so that
`feast apply` here and `metarec features apply` register exactly the same thing.
"""

from metarec.config import load_settings
from metarec.data.snapshots import SnapshotStore
from metarec.features.definitions import build_definitions
from metarec.features.store import source_root

_settings = load_settings()
_snapshot = SnapshotStore(_settings.paths.snapshots).get()
_definitions = build_definitions(
    source_root(_settings, _snapshot), snapshot_id=_snapshot.snapshot_id
)

user = _definitions.user
item = _definitions.item
interaction = _definitions.interaction
interaction_label = _definitions.interaction_label
user_profile = _definitions.user_profile
item_profile = _definitions.item_profile
user_history = _definitions.user_history
user_recent_ratings = _definitions.user_recent_ratings
meta_training = _definitions.meta_training
online_adaptation = _definitions.online_adaptation
