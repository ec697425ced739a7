"""`metarec pipelines compile` flags: image and tag, object-store root, Secret names, env."""

import yaml
from metarec.cli.main import run
from metarec.workflows.kfp_compute import image_reference


def _compiled(out):
    spec, platform = yaml.safe_load_all(out.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_compile_flags_set_image_root_secrets_and_env(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("METAREC_HOME", str(tmp_path / "home"))
    out = tmp_path / "retrain.yaml"
    code = run(
        [
            "pipelines",
            "compile",
            "--out",
            str(out),
            "--image",
            "registry.example/acme/metarec:0.1.0",
            "--tag",
            "0.7.1",
            "--object-store-root",
            "s3://acme-ml/metarec",
            "--database-secret",
            "acme-database",
            "--object-store-secret",
            "acme-s3",
            "--env",
            "AWS_ENDPOINT_URL=http://minio.storage:9000",
        ]
    )
    assert code == 0, capsys.readouterr()
    spec, k8s = _compiled(out)
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {
        "registry.example/acme/metarec:0.7.1"
    }
    assert spec["root"]["inputDefinitions"]["parameters"]["object_store_root"]["defaultValue"] == (
        "s3://acme-ml/metarec"
    )
    for name, executor in executors.items():
        secrets = {s["secretName"] for s in k8s[name]["secretAsEnv"]}
        assert secrets == {"acme-database", "metarec-redis", "acme-s3"}  # no API token
        env = {e["name"]: e["value"] for e in executor["container"]["env"]}
        assert env == {
            "METAREC_FEAST__ENVIRONMENT": "cluster",
            "METAREC_REGISTRY__MIGRATE_ON_OPEN": "false",  # the chart's hook Job migrates
            "AWS_ENDPOINT_URL": "http://minio.storage:9000",
        }


def test_compile_defaults_come_from_the_settings(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("METAREC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("METAREC_WORKFLOWS__IMAGE", "registry.example/team/metarec:5.0.0")
    monkeypatch.setenv("METAREC_REGISTRY__ARTIFACT_ROOT", "s3://team-bucket/artifacts")
    out = tmp_path / "retrain.yaml"
    assert run(["pipelines", "compile", "--out", str(out)]) == 0, capsys.readouterr()
    spec, _ = _compiled(out)
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example/team/metarec:5.0.0"}
    root = spec["root"]["inputDefinitions"]["parameters"]["object_store_root"]["defaultValue"]
    assert root == "s3://team-bucket/artifacts"


def test_a_malformed_env_flag_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("METAREC_HOME", str(tmp_path / "home"))
    out = tmp_path / "retrain.yaml"
    assert run(["pipelines", "compile", "--out", str(out), "--env", "NOVALUE"]) != 0
    assert "NAME=VALUE" in capsys.readouterr().err
    assert not out.exists()


def test_image_reference_follows_the_chart_helper():
    assert image_reference("ghcr.io/a/metarec:0.1.0") == "ghcr.io/a/metarec:0.1.0"
    assert image_reference("ghcr.io/a/metarec:0.1.0", tag="0.2.0") == "ghcr.io/a/metarec:0.2.0"
    assert image_reference("localhost:5000/metarec", tag="dev") == "localhost:5000/metarec:dev"
    digest = "sha256:" + "b" * 64
    assert (
        image_reference("ghcr.io/a/metarec:0.1.0", tag="0.2.0", digest=digest)
        == f"ghcr.io/a/metarec@{digest}"
    )
