"""Values: the schema rejects typos naming the key, `required` errors name the values path,
every value is documented, and the chart README's values table is generated from values.yaml.

Regenerate the README table after changing values.yaml:
    UPDATE_CHART_README=1 .venv/bin/python -m pytest tests/helm/test_values.py
"""

from __future__ import annotations

import json
import os
import re

import pytest
import yaml

BEGIN = "<!-- values-table:begin (generated from values.yaml by tests/helm/test_values.py) -->"
END = "<!-- values-table:end -->"
KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z][A-Za-z0-9_]*):(?P<rest>.*)$")


def documented_values(text: str) -> list[tuple[str, str]]:
    """(dotted values path, `# --` description) of every key in values.yaml, in file order.

    A key is documented by the `# --` comment block right above it (helm-docs convention);
    keys under a documented map (e.g. podSecurityContext) are covered by their parent.
    """
    out: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    in_doc = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            comment, in_doc = [stripped[4:].strip()], True
            continue
        if stripped.startswith("#"):
            if in_doc:
                comment.append(stripped[1:].strip())
            continue
        if not stripped or stripped.startswith("-"):
            comment, in_doc = [], False
            continue
        match = KEY.match(line)
        if not match:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([*(k for _, k in stack), match["key"]])
        stack.append((indent, match["key"]))
        out.append((path, " ".join(comment) if in_doc else ""))
        comment, in_doc = [], False
    return out


def _leaf_paths(values: dict, prefix: str = "") -> list[str]:
    paths = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            paths += _leaf_paths(value, f"{path}.")
        else:
            paths.append(path)
    return paths


def _default(values: dict, path: str):
    node = values
    for part in path.split("."):
        node = node[part]
    return node


def values_table(chart) -> str:
    text = (chart.path / "values.yaml").read_text()
    values = yaml.safe_load(text)
    rows = ["| Key | Default | Description |", "| --- | --- | --- |"]
    for path, description in documented_values(text):
        if not description:
            continue
        default = json.dumps(_default(values, path))
        if len(default) > 80:
            default = "see values.yaml"
        cell = description.replace("|", "\\|")
        rows.append(f"| `{path}` | `{default}` | {cell} |")
    return "\n".join(rows)


def test_every_value_is_documented(chart):
    text = (chart.path / "values.yaml").read_text()
    documented = {path for path, desc in documented_values(text) if desc}
    undocumented = [
        leaf
        for leaf in _leaf_paths(yaml.safe_load(text))
        if not any(leaf == d or leaf.startswith(f"{d}.") for d in documented)
    ]
    assert not undocumented, f"add a `# --` comment above these keys in values.yaml: {undocumented}"


def test_chart_readme_values_table_is_generated_from_values(chart):
    readme = chart.path / "README.md"
    table = values_table(chart)
    text = readme.read_text()
    assert BEGIN in text and END in text, f"{readme} needs the {BEGIN} … {END} markers"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    expected = f"{head}{BEGIN}\n{table}\n{END}{tail}"
    if os.environ.get("UPDATE_CHART_README") and text != expected:
        readme.write_text(expected)
        text = expected
    assert text == expected, "README values table is stale: rerun with UPDATE_CHART_README=1"


def test_schema_covers_every_value_and_forbids_unknown_keys(chart):
    schema = json.loads((chart.path / "values.schema.json").read_text())
    values = yaml.safe_load((chart.path / "values.yaml").read_text())

    def walk(node: dict, value, path: str) -> None:
        if isinstance(value, dict) and node.get("type") == "object" and "properties" in node:
            where = path or "<root>"
            assert node.get("additionalProperties") is False, f"{where} allows unknown keys"
            for key, child in value.items():
                assert key in node["properties"], f"{path}.{key} missing from values.schema.json"
                walk(node["properties"][key], child, f"{path}.{key}".lstrip("."))

    walk(schema, values, "")


@pytest.mark.parametrize(
    ("sets", "key", "at"),
    [
        (["imagee.repository=x"], "imagee", "at ''"),
        (["image.tagg=1"], "tagg", "/image"),
        (["serving.canary.enabeld=true"], "enabeld", "/serving/canary"),
        (["training.compute.gpuCont=1"], "gpuCont", "/training/compute"),
        (["route.weights.canry=10"], "canry", "/route/weights"),
    ],
)
def test_a_values_typo_fails_with_a_schema_error_naming_it(chart, sets, key, at):
    with pytest.raises(chart.RenderError) as caught:
        chart.render(sets=sets)
    message = str(caught.value)
    assert key in message and "not allowed" in message.lower(), message
    if "additional properties" in message:  # Helm 4 (and 3.18+) also print where
        assert at in message, message


def test_a_wrongly_typed_value_fails_the_schema(chart):
    with pytest.raises(chart.RenderError, match="gpuCount"):
        chart.render(sets=["training.compute.gpuCount=-1"])
    with pytest.raises(chart.RenderError, match="readOnlyRootFilesystem"):
        chart.render(sets=["securityContext.readOnlyRootFilesystem=false"])


@pytest.mark.parametrize(
    ("sets", "path"),
    [
        (["image.repository="], "image.repository is required"),
        (["externalDatabase.existingSecret="], "externalDatabase.existingSecret is required"),
        (["externalRedis.existingSecret="], "externalRedis.existingSecret is required"),
        (["externalS3.artifactRoot="], "externalS3.artifactRoot is required"),
        (["controlPlane.api.tokenSecret="], "controlPlane.api.tokenSecret is required"),
        (["training.trainingSet="], "training.trainingSet is required"),
        (
            ["serving.canary.enabled=true", "retrain.deploy.enabled=false"],
            "serving.canary.version is required",
        ),
    ],
)
def test_missing_required_values_fail_naming_the_values_path(chart, sets, path):
    with pytest.raises(chart.RenderError, match=re.escape(path)):
        chart.render(sets=sets)
