"""The MovieLens Feast objects stay as registered before, plus the model-input tags (issue 18)."""

import json
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from metarec.features.definitions import build_definitions

GOLDEN = Path(__file__).with_name("movielens_protos.json")
_CLOCK = {"createdTimestamp", "lastUpdatedTimestamp"}


def _timeless(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _timeless(item) for key, item in value.items() if key not in _CLOCK}
    if isinstance(value, list):
        return [_timeless(item) for item in value]
    return value


def test_movielens_definitions_protos_are_unchanged():
    definitions = build_definitions("/snapshots/ml", snapshot_id="snap-1")
    protos = {
        f"{obj.name}:{type(obj).__name__}": _timeless(MessageToDict(obj.to_proto()))
        for obj in definitions.objects()
    }
    assert protos == _timeless(json.loads(GOLDEN.read_text()))
