"""`metarec serve` exits non-zero with one line when the model cannot load (issue 20, item 6).

It used to verify only the registry's checksums, then hand over to BentoML, whose worker failed
to load the model and was restarted forever: the process never exited, the port stayed open and
nothing answered.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa
import torch
from metarec.cli.main import run
from metarec.config import Settings, load_settings
from metarec.digests import sha256_file
from metarec.gate.policy import load_policy
from metarec.gate.run import gate_artifact
from metarec.learning.model import MeLU
from metarec.registry import Registry, VersionInfo
from metarec.serving import startup
from metarec.serving.process import free_port
from metarec.testing.registry import fixture_card, fixture_metrics, fixture_ranking
from metarec.training.artifact import save_artifact
from metarec.training.encoding import EncodedField, FeatureEncoder
from safetensors.torch import save_file

pytestmark = [pytest.mark.integration]

EXIT_WITHIN_S = 90
# The worker fails after BentoML has started it (≈ 14 s here idle, 66 s at a load of 12).
WORKER_EXIT_WITHIN_S = 180


def _encoder() -> FeatureEncoder:
    return FeatureEncoder(
        fields=[
            EncodedField(
                name="gender",
                side="user",
                kind="categorical",
                view="user_profile",
                start=0,
                vocabulary=["F", "M"],
            ),
            EncodedField(
                name="item_id",
                side="item",
                kind="categorical",
                start=1,
                vocabulary=[str(i) for i in range(1, 9)],
            ),
        ]
    )


def _model(seed: int, *, hidden: tuple[int, ...] = (8,)) -> MeLU:
    torch.manual_seed(seed)
    config = _encoder().model_config_for(
        embedding_dim=4, hidden=hidden, output_bias=3.5, meta_sgd=False, inner_lr_init=0.01
    )
    return MeLU(config)


def _register_small_model(settings: Settings, tmp_path: Path) -> VersionInfo:
    """A real (small, untrained) rating model with a complete card, gated and registered."""
    base = fixture_card(
        seed=0,
        algorithm="fomaml",
        metrics=fixture_metrics(algorithm="fomaml"),
        test_users={"new_user": [1]},
        ranking=fixture_ranking(),
        weights_sha256="0" * 64,
    )
    card = base.model_dump(exclude={"model", "weights_sha256", "files", "format_version"})
    folder = tmp_path / "artifact"
    save_artifact(
        folder,
        model=_model(0),
        global_model=None,
        card={**card, "encoder": _encoder().model_dump()},
    )
    with Registry.open(settings) as registry:
        decision = gate_artifact(folder, policy=load_policy(), model="metarec", registry=registry)
        assert decision.accepted, decision.summary()
        return registry.register(folder, model="metarec", gate_decision=decision, actor="t")


def _swap_stored_weights(settings: Settings, info: VersionInfo, model: MeLU) -> None:
    """Replace the stored weights and their registered sha256: the card no longer matches
    (a version registered before registration checked the card's hashes)."""
    stored = Path(info.artifact_uri.removeprefix("file://")) / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(stored))
    files = {**info.files, "model.safetensors": sha256_file(stored)}
    with Registry.open(settings) as registry, registry.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE registry_versions SET files = :files"), {"files": json.dumps(files)}
        )


def _serve(
    home: Path, log: Path, *, within: float = EXIT_WITHIN_S, **extra_env: str
) -> subprocess.CompletedProcess[str] | None:
    """Run `metarec serve --version 1`; None when it did not exit ``within`` seconds (then
    killed)."""
    env = {**os.environ, "METAREC_HOME": str(home), "METAREC_REGISTRY__EXPORT_BENTOML": "false"}
    env.update(extra_env)
    port = str(free_port())
    argv = [sys.executable, "-c", "from metarec.cli.main import main; main()", "serve"]
    with log.open("w") as out:
        process = subprocess.Popen(
            [*argv, "--version", "1", "--host", "127.0.0.1", "--port", port],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            # BentoML's workers run in sessions of their own: kill the whole tree.
            tree = psutil.Process(process.pid).children(recursive=True)
            os.killpg(process.pid, signal.SIGKILL)
            for child in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
            process.wait(timeout=30)
            return None
    return subprocess.CompletedProcess(process.args, process.returncode, log.read_text(), "")


def test_serve_exits_with_one_line_when_the_weights_do_not_match_the_card(tmp_path):
    settings = load_settings(home=tmp_path / "home", registry={"export_bentoml": False})
    info = _register_small_model(settings, tmp_path)
    _swap_stored_weights(settings, info, _model(1))
    result = _serve(settings.paths.home, tmp_path / "serve.log")
    assert result is not None, "metarec serve did not exit (BentoML restarting its worker)"
    assert result.returncode != 0
    lines = [line for line in result.stdout.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stdout
    assert (
        "metarec:v1/model.safetensors" in lines[0] and "does not match the model card" in lines[0]
    )
    assert "Fix:" in lines[0] and "Traceback" not in result.stdout


def test_serve_refuses_weights_that_do_not_fit_the_card_before_starting_bentoml(
    tmp_path, monkeypatch, capsys
):
    """The registry's hashes and the card agree, but the weights are another architecture:
    `metarec serve` loads the model once before it hands over to BentoML."""
    settings = load_settings(home=tmp_path / "home", registry={"export_bentoml": False})
    info = _register_small_model(settings, tmp_path)
    stored = Path(info.artifact_uri.removeprefix("file://"))
    card = json.loads((stored / "model_card.json").read_text())
    other = _model(1, hidden=(5,))
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(stored / "x"))
    sha = sha256_file(stored / "x")
    (stored / "x").replace(stored / "model.safetensors")
    card["weights_sha256"] = card["files"]["model.safetensors"] = sha
    (stored / "model_card.json").write_text(json.dumps(card))
    files = {"model.safetensors": sha, "model_card.json": sha256_file(stored / "model_card.json")}
    with Registry.open(settings) as registry, registry.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE registry_versions SET files = :files"), {"files": json.dumps(files)}
        )
    monkeypatch.setenv("METAREC_HOME", str(settings.paths.home))
    monkeypatch.setenv("METAREC_REGISTRY__EXPORT_BENTOML", "false")

    def never_started(*_args: object, **_options: object) -> int:
        raise AssertionError("BentoML was started for a model that cannot load")

    monkeypatch.setattr(startup, "supervise", never_started)
    code = run(["serve", "--version", "1", "--port", str(free_port())])
    err = capsys.readouterr().err
    assert code != 0
    assert "weights do not fit the architecture in the card" in err and "Fix:" in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1


@pytest.mark.slow
def test_serve_exits_with_one_line_when_its_worker_cannot_start(tmp_path):
    """The version loads (the CLI's check passes), but the worker cannot build the service:
    the Feast repository it is pointed at does not exist (the check reads no features). BentoML
    alone would restart the worker forever; `metarec serve` stops the server, exits non-zero
    with one line."""
    settings = load_settings(home=tmp_path / "home", registry={"export_bentoml": False})
    _register_small_model(settings, tmp_path)
    missing = tmp_path / "no-feature-repo"
    result = _serve(
        settings.paths.home,
        tmp_path / "serve.log",
        within=WORKER_EXIT_WITHIN_S,
        METAREC_FEAST__REPO_PATH=str(missing),
    )
    assert result is not None, "metarec serve did not exit (BentoML restarting its worker)"
    assert result.returncode != 0
    lines = [line for line in result.stdout.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stdout
    assert "worker could not start" in lines[0] and "Fix:" in lines[0]
    assert f"{missing}/feature_store.yaml not found" in lines[0]
    assert "Traceback" not in result.stdout
