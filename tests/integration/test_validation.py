"""The validation gate on real training sets from Feast: ml-100k, synthetic, and a corrupted corpus.

Each corrupted training set is written as Feast would have returned it (parquet plus a manifest
with its own fingerprint), then validated through the CLI. It must fail with the specific
expectation named in the output and in the JSON, get a failing record (so training refuses
it), and leave the accepted profile and the snapshot unchanged.
"""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from metarec.cli.main import run
from metarec.config import load_settings
from metarec.errors import ReferenceProfileNotFoundError, ValidationFailedError
from metarec.features.fingerprint import dataset_fingerprint
from metarec.features.training_set import manifest_path, read_manifest
from metarec.validation.gate import build_reference_profile, profile_store, validate_training_set
from metarec.validation.profile import compute_statistics
from metarec.validation.record import (
    TrainingSetNotValidatedError,
    read_validation_record,
    require_passed,
)
from metarec.validation.reference_checks import CHECKS, run_reference_checks
from metarec.validation.result import read_result_json
from metarec.validation.suite import load_suite

pytestmark = pytest.mark.integration


def _copy_training_set(source: Path, folder: Path, name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (name or source.name)
    shutil.copyfile(source, target)
    shutil.copyfile(manifest_path(source), manifest_path(target))
    return target


def _write_as_feast_would(frame: pd.DataFrame, like: Path, target: Path) -> Path:
    """Write a training set and a manifest whose fingerprint matches its content."""
    frame.to_parquet(target, index=False)
    written = pd.read_parquet(target)
    manifest = read_manifest(like).model_copy(
        update={
            "path": str(target),
            "fingerprint": dataset_fingerprint(written),
            "rows": len(written),
            "columns": list(written.columns),
        }
    )
    manifest_path(target).write_text(manifest.model_dump_json(indent=2))
    return target


def _tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _validate_cli(settings, training_set: Path, capsys) -> tuple[int, str]:
    code = run(["features", "validate", "--training-set", str(training_set)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture(scope="module")
def gate_home(ml100k_home, tmp_path_factory):
    """A copy of the shared ml-100k home (snapshot included), its profile built once."""
    home = tmp_path_factory.mktemp("gate") / "home"
    shutil.copytree(ml100k_home.paths.home, home)
    settings = load_settings(home=home)
    clean = settings.paths.training_sets / "ml-100k.parquet"
    build_reference_profile(settings, training_set=clean)
    return settings


@pytest.fixture
def use_home(monkeypatch):
    def use(settings):
        monkeypatch.setenv("METAREC_HOME", str(settings.paths.home))
        monkeypatch.delenv("METAREC_CONFIG", raising=False)
        return settings

    return use


@pytest.mark.slow
def test_clean_ml100k_passes_via_cli(gate_home, use_home, capsys):
    use_home(gate_home)
    clean = gate_home.paths.training_sets / "ml-100k.parquet"
    code, output = _validate_cli(gate_home, clean, capsys)
    assert code == 0, output
    assert "PASSED" in output
    record = read_validation_record(clean)
    assert record.success and record.failed_expectations == []
    assert f"Report: {record.report_html}" in output
    assert Path(record.report_html).is_file() and Path(record.result_json).is_file()
    # no Great Expectations progress bars (tqdm) in the output
    assert "Calculating Metrics" not in output and "it/s]" not in output
    # training accepts it: the record is for exactly this content
    manifest = read_manifest(clean)
    assert require_passed(clean, fingerprint=manifest.fingerprint).result_id == record.result_id

    result = read_result_json(Path(record.result_json))
    assert result.success
    assert result.suite_name == "meta_training" and result.suite_version
    assert result.dataset_fingerprint == manifest.fingerprint
    assert result.feature_service == "meta_training"
    assert result.feature_service_version == manifest.feature_service_version
    assert result.rows == 100_000
    assert result.reference_profile == "meta_training@v1"
    assert len(result.expectations) >= 40
    raw = json.loads(Path(record.result_json).read_text())
    assert raw["result_id"] == record.result_id and raw["failed_expectations"] == []
    assert all({"name", "success", "observed_value"} <= set(e) for e in raw["expectations"])
    html = Path(record.report_html).read_text()
    assert "PASSED" in html and "mean_rating_vs_reference" in html
    # MetaRec's reference checks ran on it (the profile has their statistics) and passed
    assert set(CHECKS) <= {e.name.split("(")[0] for e in result.expectations}
    assert not [e.name for e in result.expectations if e.skipped]


def test_synthetic_passes(synthetic_home, tmp_path):
    settings = load_settings(home=tmp_path / "home")
    training_set = _copy_training_set(
        synthetic_home.paths.training_sets / "synthetic.parquet", settings.paths.training_sets
    )
    build_reference_profile(settings, training_set=training_set)
    result = validate_training_set(settings, training_set=training_set)
    assert result.success, result.failed_expectations


def _corrupt_rows(column, value, step=997):
    def corrupt(frame):
        frame = frame.copy()
        frame.loc[frame.index[::step], column] = value
        return frame

    return corrupt


FUTURE = pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=30)
CORPUS = {
    "ratings_out_of_range": (_corrupt_rows("rating", 6), "rating_in_range"),
    "null_user_ids": (
        lambda f: f.assign(user_id=f["user_id"].astype("Int64").mask(f.index % 500 == 0)),
        "expect_column_values_to_not_be_null(user_id)",
    ),
    "duplicated_rows": (
        lambda f: pd.concat([f, f.sample(25, random_state=0)], ignore_index=True),
        "no_duplicate_ratings",
    ),
    "unknown_occupation": (
        _corrupt_rows("occupation", "astronaut"),
        "expect_column_values_to_be_in_set(occupation)",
    ),
    "missing_column": (lambda f: f.drop(columns=["gender"]), "columns_present"),
    "ratings_as_strings": (
        lambda f: f.assign(rating=f["rating"].astype(str)),
        "expect_column_type_to_be(rating)",
    ),
    "timestamps_in_future": (_corrupt_rows("event_timestamp", FUTURE), "no_future_events"),
    "distribution_shift_all_5": (lambda f: f.assign(rating=5), "mean_rating_vs_reference"),
    "empty_dataset": (lambda f: f.iloc[:0], "not_empty"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CORPUS))
def test_corrupted_training_set_fails_the_gate(case, gate_home, use_home, capsys, tmp_path):
    use_home(gate_home)
    corrupt, expectation = CORPUS[case]
    clean = gate_home.paths.training_sets / "ml-100k.parquet"
    profiles = profile_store(gate_home).folder("meta_training")
    profile_before = _tree_digest(profiles)
    snapshots_before = _tree_digest(gate_home.paths.snapshots)
    clean_record_before = (
        (clean.with_name("ml-100k.validation.json")).read_bytes()
        if (clean.with_name("ml-100k.validation.json").is_file())
        else None
    )

    bad = _write_as_feast_would(
        corrupt(pd.read_parquet(clean)), clean, tmp_path / f"{case}.parquet"
    )
    code, output = _validate_cli(gate_home, bad, capsys)

    assert code == 1, output
    assert expectation in output
    assert "failed validation" in output
    record = read_validation_record(bad)
    assert record is not None and not record.success
    assert expectation in record.failed_expectations
    result = json.loads(Path(record.result_json).read_text())
    assert result["success"] is False
    failing = {e["name"] for e in result["expectations"] if not e["success"]}
    assert expectation in failing and expectation in result["failed_expectations"]
    assert Path(record.report_html).is_file()
    # it never reaches training
    with pytest.raises(TrainingSetNotValidatedError, match="failed validation"):
        require_passed(bad, fingerprint=read_manifest(bad).fingerprint)
    # the accepted profile and the snapshot are unchanged; so is the clean set's record
    assert _tree_digest(profiles) == profile_before
    assert _tree_digest(gate_home.paths.snapshots) == snapshots_before
    clean_record = clean.with_name("ml-100k.validation.json")
    assert (clean_record.read_bytes() if clean_record.is_file() else None) == clean_record_before


@pytest.mark.slow
def test_a_file_changed_after_feast_fails_the_lineage_check(gate_home, tmp_path):
    clean = gate_home.paths.training_sets / "ml-100k.parquet"
    tampered = _copy_training_set(clean, tmp_path)
    frame = pd.read_parquet(tampered)
    frame.loc[0, "rating"] = 1 if frame.loc[0, "rating"] != 1 else 2
    frame.to_parquet(tampered, index=False)
    result = validate_training_set(gate_home, training_set=tampered)
    assert result.failed_expectations == ["training_set_matches_manifest"]


@pytest.mark.slow
def test_profile_refuses_a_corrupted_training_set(gate_home, tmp_path):
    clean = gate_home.paths.training_sets / "ml-100k.parquet"
    versions = profile_store(gate_home).versions("meta_training")
    bad = _write_as_feast_would(
        _corrupt_rows("occupation", "astronaut")(pd.read_parquet(clean)),
        clean,
        tmp_path / "bad.parquet",
    )
    with pytest.raises(ValidationFailedError) as error:
        build_reference_profile(gate_home, training_set=bad)
    assert "expect_column_values_to_be_in_set(occupation)" in error.value.failures
    assert profile_store(gate_home).versions("meta_training") == versions


def test_without_a_profile_validate_says_to_build_one(synthetic_home, tmp_path, use_home, capsys):
    settings = use_home(load_settings(home=tmp_path / "home"))
    training_set = _copy_training_set(
        synthetic_home.paths.training_sets / "synthetic.parquet", settings.paths.training_sets
    )
    with pytest.raises(ReferenceProfileNotFoundError):
        validate_training_set(settings, training_set=training_set)
    code = run(["features", "validate"])  # default: the newest training set
    captured = capsys.readouterr()
    assert code == 1
    assert "metarec features profile" in captured.err
    assert read_validation_record(training_set) is None
    assert not (settings.paths.home / "validation" / "results").exists()


def test_profile_then_validate_newest_by_default(synthetic_home, tmp_path, use_home, capsys):
    settings = use_home(load_settings(home=tmp_path / "home"))
    training_set = _copy_training_set(
        synthetic_home.paths.training_sets / "synthetic.parquet", settings.paths.training_sets
    )
    assert run(["features", "profile"]) == 0
    out = capsys.readouterr().out
    assert "meta_training@v1" in out
    assert run(["features", "profile"]) == 0  # a second accepted run adds a version
    assert profile_store(settings).versions("meta_training") == [1, 2]
    capsys.readouterr()
    assert run(["features", "validate"]) == 0
    out = capsys.readouterr().out
    assert "Report: " in out and "reference meta_training@v2" in out
    assert read_validation_record(training_set).success


def test_progress_bars_only_when_asked(synthetic_home, tmp_path, use_home, capsys):
    settings = use_home(load_settings(home=tmp_path / "home"))
    training_set = _copy_training_set(
        synthetic_home.paths.training_sets / "synthetic.parquet", settings.paths.training_sets
    )
    build_reference_profile(settings, training_set=training_set)
    capsys.readouterr()
    assert run(["features", "validate"]) == 0
    quiet = capsys.readouterr()
    assert "Calculating Metrics" not in quiet.out + quiet.err
    assert run(["features", "validate", "--progress"]) == 0
    loud = capsys.readouterr()
    assert "Calculating Metrics" in loud.out + loud.err


def _permuted(column):
    def corrupt(frame, rng):
        ids = frame[column].unique()
        return frame.assign(
            **{column: frame[column].map(dict(zip(ids, rng.permutation(ids), strict=True)))}
        )

    return corrupt


def _resent(frame, rows, **changes):
    """``rows`` appended again with ``changes`` and new interaction ids."""
    rows = rows.assign(**changes)
    rows["interaction_id"] = np.arange(1, len(rows) + 1) + frame["interaction_id"].max()
    return pd.concat([frame, rows], ignore_index=True)


def _flood(frame, rng):
    """The first user rates 5 % more rows, copied from others' (a normal rating mix)."""
    own = frame.iloc[0]
    copied = frame[frame["user_id"] != own["user_id"]].sample(frac=0.05, random_state=2)
    same = {
        c: pd.Series(own[c], index=copied.index, dtype=frame[c].dtype)
        for c in ("user_id", "age", "age_bucket", "gender", "occupation")
    }
    return _resent(
        frame, copied, **same, event_timestamp=copied["event_timestamp"] + pd.Timedelta(seconds=3)
    )


def _noisy(frame, rng):
    noisy = rng.random(len(frame)) < 0.3
    return frame.assign(rating=np.where(noisy, rng.integers(1, 6, len(frame)), frame["rating"]))


def _shifted(frame, rng):
    times = frame["event_timestamp"].copy()
    times.iloc[::20] -= pd.Timedelta(days=5 * 365)
    return frame.assign(event_timestamp=times)


VALID_LOOKING = {
    "user_ids_permuted": (_permuted("user_id"), "user_attributes_vs_reference"),
    "item_ids_permuted": (_permuted("item_id"), "item_popularity_rank_vs_reference"),
    "label_noise_30pct": (_noisy, "rating_agreement_vs_reference"),
    "label_leak": (
        lambda f, rng: f.assign(rating_mean=(f["rating"] + rng.normal(0, 0.5, len(f))).clip(0, 5)),
        "label_correlation_vs_reference(rating_mean)",
    ),
    "timestamps_5_years_back": (_shifted, "event_time_range_vs_reference"),
    "near_duplicates": (
        lambda f, rng: _resent(
            f,
            f.sample(frac=0.02, random_state=1),
            event_timestamp=lambda r: r["event_timestamp"] + pd.Timedelta(seconds=5),
        ),
        "near_duplicate_events_vs_reference",
    ),
    "one_user_flood": (_flood, "top_user_volume_vs_reference"),
}


@pytest.mark.slow
def test_a_later_period_of_ml100k_passes_the_reference_checks_and_its_corruptions_fail(
    ml100k_home,
):
    """Reference: the first 80 % of ml-100k by time; candidate: the next period (last 20 %)."""
    frame = pd.read_parquet(ml100k_home.paths.training_sets / "ml-100k.parquet")
    frame = frame.sort_values("event_timestamp", kind="stable").reset_index(drop=True)
    cut = int(len(frame) * 0.8)
    earlier, later = frame.iloc[:cut], frame.iloc[cut:].reset_index(drop=True)
    suite = load_suite("meta_training")
    tolerances = suite.reference_checks
    stats = compute_statistics(earlier, quantiles=(0.5,), reference_checks=tolerances).reference

    def failing(candidate):
        outcomes = run_reference_checks(candidate, tolerances, stats, profile_label="ml@v1")
        assert not [o.name for o in outcomes if o.skipped]
        return {o.name: o.observed for o in outcomes if not o.success}

    assert failing(later) == {}
    for case, (corrupt, check) in VALID_LOOKING.items():
        failed = failing(corrupt(later, np.random.default_rng(5)))
        assert check in failed, f"{case}: {failed}"
