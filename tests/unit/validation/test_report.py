from datetime import UTC, datetime

from metarec.validation.report import render_report, write_report
from metarec.validation.result import (
    ValidationResult,
    new_result_id,
    read_result_json,
    write_result_json,
)
from metarec.validation.runner import run_suite

from .conftest import NOW, make_profile


def _result(frame, suite, tmp_path) -> ValidationResult:
    outcomes = run_suite(frame, suite, now=NOW, profile=make_profile(frame))
    created = datetime(2026, 1, 2, tzinfo=UTC)
    return ValidationResult(
        result_id=new_result_id(created),
        success=all(o.success for o in outcomes),
        created_at=created,
        suite_name=suite.name,
        suite_version=suite.version,
        feature_service="meta_training",
        feature_service_version="abc",
        dataset_fingerprint="sha256:x",
        snapshot_id="snap",
        training_set="/data/<b>set</b>.parquet",
        rows=len(frame),
        reference_profile="meta_training@v1",
        great_expectations_version="1.x",
        duration_seconds=0.5,
        report_html=str(tmp_path / "r.html"),
        result_json=str(tmp_path / "r.json"),
        expectations=outcomes,
    )


def test_result_lists_failures_and_round_trips(clean, suite, tmp_path):
    frame = clean.copy()
    frame.loc[0, "occupation"] = "astronaut"
    result = _result(frame, suite, tmp_path)
    assert result.result_id.startswith("val-20260102T000000Z-")
    assert not result.success
    assert result.failed_expectations == ["expect_column_values_to_be_in_set(occupation)"]
    assert result.statistics.failed == 1
    checks = [o for o in result.expectations if o.type.startswith("metarec_")]
    assert result.statistics.evaluated == len(suite.expectations) + len(checks)
    path = write_result_json(result, tmp_path / "r.json")
    assert read_result_json(path) == result


def test_report_names_every_expectation_and_escapes_values(clean, suite, tmp_path):
    frame = clean.copy()
    frame.loc[0, "occupation"] = "<script>alert(1)</script>"
    result = _result(frame, suite, tmp_path)
    html = render_report(result)
    assert "FAILED" in html
    for outcome in result.expectations:
        assert outcome.name.replace("'", "&#39;") in html or outcome.name in html
    assert "<script>alert(1)</script>" not in html
    assert "<b>set</b>" not in html
    path = write_report(result, tmp_path / "r.html")
    assert path.read_text(encoding="utf-8") == html
