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
        (
            "margins:\n  - {table: ranking, metric: ndcg@20, over: popularity, "
            "support_sizes: [10]}\n",
            r"a `table: ranking` rule selects its cells with `ranking_cells`",
        ),
        (
            "absolute:\n  - {metric: mae, max: 1, ranking_cells: [random@10]}\n",
            r"`ranking_cells` needs `table: ranking`",
        ),
        (
            "absolute:\n  - {table: ranking, metric: mrr, min: 0.1, ranking_cells: [random10]}\n",
            r"absolute.0.ranking_cells.*e.g. random@10 \(got random10\)",
        ),
        (
            "absolute:\n  - {table: ranking, metric: mrr, min: 0.1, ranking_cells: [newest@5]}\n",
            "order `time` or `random`",
        ),
        ("absolute:\n  - {table: rankings, metric: mrr, min: 0.1}\n", "absolute.0.table"),
        (
            "margins:\n  - {table: ranking, metric: popularity, over: item_knn}\n",
            r"margins.0.*`popularity`.*bound it with an absolute rule",
        ),
        (
            "regression:\n  - {table: ranking, metric: popularity, max_regression: 0.1}\n",
            r"regression.0.*cannot be a margin or a regression",
        ),
        ("ranking_method: ''\n", "ranking_method"),
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


def test_default_policy_judges_the_served_ranker():
    policy = load_policy()
    assert policy.ranking_method == "ranker"
    [margin] = [rule for rule in policy.margins if rule.table == "ranking"]
    assert (margin.metric, margin.over, margin.min_improvement) == ("ndcg@20", "popularity", 0.0)
    assert (margin.scenarios, margin.cells) == (["new_user"], "mean")
    [regression] = [rule for rule in policy.regression if rule.table == "ranking"]
    assert (regression.metric, regression.max_regression, regression.relative) == (
        "ndcg@20",
        0.02,
        False,
    )
    assert policy.compares_production("ranking") and policy.compares_production("rating")
    # Today's rating rules are kept.
    assert [rule.metric for rule in policy.absolute] == ["mae", "rmse"]
    assert all(rule.table == "rating" for rule in policy.absolute)


def test_ranking_rules_in_a_policy_file(tmp_path: Path):
    path = tmp_path / "policy.yaml"
    path.write_text(
        "ranking_method: meta_ranker\n"
        "absolute:\n  - {table: ranking, metric: popularity, max: 0.9}\n"
        "margins:\n  - {table: ranking, metric: recall@20, over: ease, "
        "ranking_cells: [random@10, time@20], cells: each}\n"
    )
    policy = load_policy(path)
    assert policy.ranking_method == "meta_ranker"
    assert policy.margins[0].ranking_cells == ["random@10", "time@20"]
    assert policy.margins[0].label() == (
        "margin: ranking recall@20 better than ease by ≥ 0 (each, random@10/time@20)"
    )
    assert policy.absolute[0].label() == "absolute: ranking popularity ≤ 0.9 (each)"
    assert not policy.compares_production("ranking")


def test_documented_policy_is_the_shipped_default():
    import yaml

    docs = Path(__file__).parents[3] / "docs" / "registry.md"
    section = docs.read_text().split("## Evaluation gate policy", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert GatePolicy.model_validate(yaml.safe_load(block)) == load_policy()
