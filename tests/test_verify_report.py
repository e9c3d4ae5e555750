"""`psld verify` report: order, files written, exit status (including the failing path)."""

import json

import pytest

from verification import report
from verification.result import CHECKS, Check, CheckResult


def test_quick_subset_writes_reports_in_order(tmp_path, capsys):
    code = report.run_verify(
        quick=True, out=tmp_path, only=["t2-one-shot", "t9-phase-transition"], progress=False
    )
    assert code == 0
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["meta"]["level"] == "quick" and data["meta"]["passed"] == data["meta"]["total"] > 0
    assert {r["name"] for r in data["results"]} == {"t2-one-shot", "t9-phase-transition"}
    md = (tmp_path / "report.md").read_text()
    assert md.count("| pass |") == data["meta"]["total"]
    # the summary counts checks as the progress bar does (2 here), and the rows of the table separately
    total = data["meta"]["total"]
    assert f"\n2 checks, {total}/{total} predicted-vs-measured rows passed in " in capsys.readouterr().out


def test_full_order_is_t1_to_t13():
    report._load_checks()
    names = sorted(CHECKS, key=report._order)
    assert [int(n.split("-")[0][1:]) for n in names] == list(range(1, 14))


def test_failing_check_gives_nonzero_exit(tmp_path, monkeypatch):
    bad = CheckResult("t99-bad", "a false statement", 1.0, 2.0, "equal", False)
    monkeypatch.setitem(CHECKS, "t99-bad", Check("t99-bad", "bad", lambda **kw: [bad]))
    assert report.run_verify(out=tmp_path, only=["t99-bad"], progress=False) == 1
    assert "**FAIL**" in (tmp_path / "report.md").read_text()


def test_unknown_check_and_conflicting_levels(tmp_path):
    with pytest.raises(ValueError, match="unknown check"):
        report.run_verify(out=tmp_path, only=["nope"], progress=False)
    with pytest.raises(ValueError, match="at most one"):
        report.run_verify(quick=True, thorough=True, out=tmp_path, progress=False)


def _slow_check(seconds: float, rows: int):
    import time

    def fn(**kw):
        time.sleep(seconds)
        return [CheckResult(f"t98-slow-{i}", "s", 1.0, 1.0, "equal", True) for i in range(rows)]

    return Check("t98-slow", "slow", fn)


def test_seconds_column_is_the_checks_time_not_a_share(monkeypatch):
    monkeypatch.setitem(CHECKS, "t98-slow", _slow_check(0.3, 4))
    results = report.run_checks(only=["t98-slow"], progress=False)
    assert len(results) == 4
    assert all(r.seconds >= 0.3 for r in results), [r.seconds for r in results]  # a share would be 0.075


def test_default_out_folder_when_none(tmp_path, monkeypatch):
    monkeypatch.setitem(CHECKS, "t98-slow", _slow_check(0.0, 1))
    monkeypatch.chdir(tmp_path)
    assert report.run_verify(out=None, only=["t98-slow"], progress=False) == 0
    assert (tmp_path / "psld-verify" / "report.json").is_file()
    assert (tmp_path / "psld-verify" / "report.md").is_file()


def test_cli_verify_without_out_writes_default_folder(tmp_path, monkeypatch, capsys):
    from psld.cli import main

    monkeypatch.setitem(CHECKS, "t98-slow", _slow_check(0.0, 1))
    monkeypatch.chdir(tmp_path)
    assert main(["verify", "--only", "t98-slow"]) == 0
    assert json.loads((tmp_path / "psld-verify" / "report.json").read_text())["meta"]["passed"] == 1
