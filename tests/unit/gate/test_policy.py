"""Gate policy files: the default loads; bad files fail naming the field."""

from pathlib import Path

import pytest
from metarec.errors import GatePolicyError
from metarec.gate.policy import GatePolicy, load_policy


def test_default_policy_loads_with_every_rule_kind():
    policy = load_policy()
    assert policy.name == "default"
    assert policy.absolute and policy.margins and policy.regression
    assert policy.require_same_users is True
    assert len(policy.digest()) == 64


def test_custom_policy_file(tmp_path: Path):
    path = tmp_path / "policy.yaml"
    path.write_text(
        "name: strict\nmethod: reptile\nabsolute:\n  - {metric: mae, max: 0.8}\n"
        "margins:\n  - {metric: ndcg@5, over: item_bias, min_improvement: 0.05, relative: true}\n"
        "regression:\n  - {metric: mae, max_regression: 0.0, support_sizes: [5, all]}\n"
    )
    policy = load_policy(path)
    assert policy.method == "reptile"
    assert policy.margins[0].relative is True
    assert policy.regression[0].support_sizes == [5, "all"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("absolute:\n  - {metric: mae}\n", "needs `max`, `min` or both"),
        ("absolute:\n  - {metric: mae, max: 1, typo: 2}\n", "absolute.0.typo"),
        ("regression:\n  - {metric: mae, max_regression: -1}\n", "max_regression"),
        ("margins: [\n", "not valid YAML"),
    ],
)
def test_invalid_policies_name_the_problem(tmp_path: Path, text: str, match: str):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(GatePolicyError, match=match):
        load_policy(path)


def test_missing_policy_file(tmp_path: Path):
    with pytest.raises(GatePolicyError, match="not found"):
        load_policy(tmp_path / "nope.yaml")


def test_empty_policy_is_valid_but_has_no_rules():
    assert GatePolicy().absolute == []
