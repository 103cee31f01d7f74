"""The monthly site report (return-visit mechanism), on SQLite and PostgreSQL.

The scenario and every expected figure are worked out by hand in reporttest.py.
The CSV is compared value by value; the PDF is read back with poppler's
``pdftotext`` (independent of reportlab) and rendered with ``pdftoppm``.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from reporttest import NOVEMBER, REPORT_AT, Scenario, build_november, expected_chain_head
from workflowtest import Depot, depot_on

from cloud_api.compliance.report.csv import render_csv
from cloud_api.compliance.report.data import ReportError, SiteMonthReport, collect
from cloud_api.compliance.report.pdf import render_pdf


@pytest.fixture
def november(db_url: str) -> Iterator[tuple[Depot, Scenario, SiteMonthReport]]:
    with depot_on(db_url) as depot:
        scenario = build_november(depot)
        with depot.sessions() as s:
            report = collect(s, site_id=depot.site, month=NOVEMBER, now=REPORT_AT)
        yield depot, scenario, report


def _rows(text: str) -> list[tuple[str, str, str, str]]:
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["section", "key", "field", "value"]
    return [(r[0], r[1], r[2], r[3]) for r in rows[1:]]


def test_csv_figures_match_the_hand_computed_month(
    november: tuple[Depot, Scenario, SiteMonthReport],
) -> None:
    depot, sc, report = november
    text = render_csv(report)
    assert text.endswith("\r\n")
    rows = _rows(text)
    site = str(depot.site)
    head = [r for r in rows if r[0] in ("site", "summary", "score_trend")]
    assert head == [
        ("site", site, "name", "Kunming depot"),
        ("site", site, "month", "2026-11"),
        ("site", site, "timezone", "Asia/Shanghai"),
        ("site", site, "period_start", "2026-11-01T00:00:00+08:00"),
        ("site", site, "period_end", "2026-12-01T00:00:00+08:00"),
        ("site", site, "generated_at", "2026-12-01T10:00:00+08:00"),
        ("summary", "", "shifts", "5"),
        ("summary", "", "mean_score", "90.00"),
        ("summary", "", "rounds_expected", "32"),
        ("summary", "", "rounds_completed", "28"),
        ("summary", "", "deviations_critical", "1"),
        ("summary", "", "deviations_major", "3"),
        ("summary", "", "deviations_minor", "0"),
        ("score_trend", "2026-11-01", "shifts", "2"),
        ("score_trend", "2026-11-01", "mean_score", "92.50"),
        ("score_trend", "2026-11-02", "shifts", "2"),
        ("score_trend", "2026-11-02", "mean_score", "87.50"),
        ("score_trend", "2026-11-30", "shifts", "1"),
        ("score_trend", "2026-11-30", "mean_score", "90.00"),
    ]
    posts = {(r[1], r[2]): r[3] for r in rows if r[0] in ("post", "equipment")}
    assert posts == {
        ("Car park", "shifts"): "2",
        ("Car park", "rounds_expected"): "12",
        ("Car park", "rounds_completed"): "10",
        ("Car park", "rounds_partial"): "1",
        ("Car park", "rounds_missed"): "1",
        ("Car park", "checkpoints_on_time"): "32",
        ("Car park", "checkpoints_late"): "1",
        ("Car park", "checkpoints_missed"): "3",
        ("Car park", "mean_score"): "85.00",
        ("Car park", "radio"): "0.7500",
        ("Car park", "torch"): "1.0000",
        ("Main gate", "shifts"): "3",
        ("Main gate", "rounds_expected"): "20",
        ("Main gate", "rounds_completed"): "18",
        ("Main gate", "rounds_partial"): "1",
        ("Main gate", "rounds_missed"): "1",
        ("Main gate", "checkpoints_on_time"): "55",
        ("Main gate", "checkpoints_late"): "1",
        ("Main gate", "checkpoints_missed"): "4",
        ("Main gate", "mean_score"): "93.33",
        ("Main gate", "radio"): "0.9167",
    }
    deviations = {(r[1], r[2]): r[3] for r in rows if r[0] == "deviation"}
    d1, d2 = str(sc.deviations["d1"]), str(sc.deviations["d2"])
    assert [r[1] for r in rows if r[0] == "deviation" and r[2] == "rule"] == [
        d2,
        d1,
        str(sc.deviations["d3"]),
        str(sc.deviations["d4"]),
    ]
    assert {k[1]: v for k, v in deviations.items() if k[0] == d1} == {
        "occurred_at": "2026-11-03T00:10:00+08:00",
        "post": "Main gate",
        "guard": "Zhao Wei",
        "rule": "too_fast",
        "severity": "critical",
        "detail": "too_fast seen",
        "status": "verified",
        "owner": "sup-li",
        "due_at": "2026-11-03T10:30:00+08:00",
        "resolved_at": "2026-11-03T09:30:00+08:00",
        "verified_at": "2026-11-03T13:00:00+08:00",
        "escalation_level": "0",
    }
    assert (deviations[(d2, "status")], deviations[(d2, "escalation_level")]) == ("resolved", "1")
    assert str(sc.deviations["october"]) not in {k[0] for k in deviations}
    tail = [r for r in rows if r[0] in ("rectification", "emergencies", "survey", "chain")]
    assert tail == [
        ("rectification", "", "opened", "4"),
        ("rectification", "", "resolved_on_time", "1"),
        ("rectification", "", "resolved_late", "1"),
        ("rectification", "", "verified", "1"),
        ("rectification", "", "unresolved", "2"),
        ("rectification", "", "overdue_now", "2"),
        ("rectification", "", "median_hours_to_resolve", "31.4"),
        ("emergencies", "", "sos_events", "1"),
        ("emergencies", "", "acknowledged", "0"),
        ("emergencies", "", "unacknowledged", "0"),
        ("emergencies", "", "untracked", "1"),
        ("emergencies", "", "median_response_s", ""),
        ("emergencies", "", "max_response_s", ""),
        ("survey", "", "responses", "3"),
        ("survey", "", "mean_rating", "4.00"),
        ("survey", "", "rated_1", "0"),
        ("survey", "", "rated_2", "0"),
        ("survey", "", "rated_3", "1"),
        ("survey", "", "rated_4", "1"),
        ("survey", "", "rated_5", "1"),
        ("chain", "", "length", "3"),
        ("chain", "", "head_sha256", expected_chain_head(depot.site)),
    ]
    assert sc.chain_head == expected_chain_head(depot.site)
    comments = [r[3] for r in rows if r[0] == "survey_comment" and r[2] == "text"]
    assert comments == ["Guards are punctual", "Gate guard was on the phone"]
    complaints = [(r[1], r[3]) for r in rows if r[0] == "complaint" and r[2] == "status"]
    assert complaints == [(str(sc.complaint), "upheld"), (str(sc.dismissed), "dismissed")]


def _pdftotext(pdf: bytes, tmp_path: Path) -> str:
    tool = shutil.which("pdftotext")
    assert tool, "pdftotext missing: scripts/test installs poppler-utils"
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    return subprocess.run(
        [tool, "-layout", str(path), "-"], check=True, capture_output=True, text=True
    ).stdout


def test_pdf_says_what_the_csv_says_and_renders(
    november: tuple[Depot, Scenario, SiteMonthReport], tmp_path: Path
) -> None:
    depot, _sc, report = november
    pdf = render_pdf(report)
    assert pdf.startswith(b"%PDF-") and pdf == render_pdf(report)  # reproducible
    text = _pdftotext(pdf, tmp_path)
    head = expected_chain_head(depot.site)
    for expected in (
        "Monthly service report",
        "Kunming depot · November 2026",
        "01\u201330 November 2026, local time Asia/Shanghai",
        "90.0",  # mean score
        "88 %",  # 28 of 32 rounds
        "Taps too fast to have walked",
        "Spot check failed",
        "Gate left open at night",
        "Visitor log shows greeting",
        "1 SOS alarm; 0 acknowledged; 1 without acknowledgement records.",
        "mean 4.00 / 5",
        "Guards are punctual",
        head[:32],
        head[32:],
        "page 1 of 2",
        "page 2 of 2",
    ):
        assert expected in text, expected
    for absent in ("October", "December", "Guard did greet"):
        assert absent not in text.replace("December 2026 10:00", ""), absent
    tool = shutil.which("pdftoppm")
    assert tool
    (tmp_path / "report.pdf").write_bytes(pdf)
    subprocess.run(
        [tool, "-r", "50", "-png", str(tmp_path / "report.pdf"), str(tmp_path / "p")], check=True
    )
    assert sorted(p.name for p in tmp_path.glob("p-*.png")) == ["p-1.png", "p-2.png"]


def test_an_empty_month_still_makes_a_report(db_url: str, tmp_path: Path) -> None:
    with depot_on(db_url) as depot, depot.sessions() as s:
        report = collect(s, site_id=depot.site, month=NOVEMBER, now=REPORT_AT)
    rows = _rows(render_csv(report))
    assert ("summary", "", "shifts", "0") in rows
    assert ("summary", "", "mean_score", "") in rows
    assert ("chain", "", "head_sha256", "0" * 64) in rows
    text = _pdftotext(render_pdf(report), tmp_path)
    assert "no scored shifts this month" in text
    assert "No survey answers were received this month." in text


def test_unknown_site_is_refused(db_url: str) -> None:
    with (
        depot_on(db_url) as depot,
        depot.sessions() as s,
        pytest.raises(ReportError, match="no site 999"),
    ):
        collect(s, site_id=999, month=NOVEMBER, now=REPORT_AT)
