"""Each `bentoml serve` gets its own BentoML home, so services never wipe each other's metrics."""

from metarec.config import load_settings
from metarec.environment import MANAGED_MARKER, apply_process_environment
from metarec.serving.process import serve_command


def test_two_services_of_one_home_get_separate_bentoml_homes(tmp_path, monkeypatch):
    settings = load_settings(home=tmp_path / "home")
    monkeypatch.delenv("BENTOML_HOME", raising=False)
    monkeypatch.delenv(MANAGED_MARKER, raising=False)
    apply_process_environment(settings)  # what the CLI does: BENTOML_HOME is now "managed"
    _, production = serve_command(settings, version="1", host="127.0.0.1", port=3000)
    _, canary = serve_command(settings, version="2", host="127.0.0.1", port=3001)
    homes = {production["BENTOML_HOME"], canary["BENTOML_HOME"]}
    assert len(homes) == 2
    assert all(home.startswith(str(settings.paths.bentoml_home)) for home in homes)
    # The child's own settings must not move it back to the shared home.
    child = dict(canary)
    apply_process_environment(load_settings(home=tmp_path / "home"), environ=child)
    assert child["BENTOML_HOME"] == canary["BENTOML_HOME"]


def test_the_same_port_reuses_its_home(tmp_path):
    settings = load_settings(home=tmp_path / "home")
    first = serve_command(settings, version="1", host="127.0.0.1", port=3000)[1]["BENTOML_HOME"]
    again = serve_command(settings, version="3", host="127.0.0.1", port=3000)[1]["BENTOML_HOME"]
    assert first == again


def test_the_service_process_inherits_migrate_on_open_from_a_config_file(tmp_path, monkeypatch):
    monkeypatch.delenv("METAREC_REGISTRY__MIGRATE_ON_OPEN", raising=False)
    config = tmp_path / "metarec.yaml"
    config.write_text("registry:\n  migrate_on_open: false\n")
    settings = load_settings(config_file=config, home=tmp_path / "home")
    _, env = serve_command(settings, version="1", host="127.0.0.1", port=3000)
    assert env["METAREC_REGISTRY__MIGRATE_ON_OPEN"] == "false"
