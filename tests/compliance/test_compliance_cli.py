"""``patrol-cloud compliance``: plan a shift, score it, list scores, refuse bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from storetest import SHIFT_END, SHIFT_START, Depot, depot

from cloud_api.compliance.cli import main
from cloud_api.db import make_engine, session_scope
from cloud_api.models import CompliancePlan


@pytest.fixture
def site(db_url: str) -> Iterator[Depot]:
    yield from depot(db_url)


def test_shift_score_and_list_from_the_command_line(
    site: Depot, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    site.ingest(site.rounds(range(2)) + site.heartbeats())
    base = ["--database-url", db_url]
    assert (
        main(
            [
                *base,
                "shift-add",
                "--post",
                str(site.post_id),
                "--guard",
                str(site.guard_id),
                "--device",
                "0000a001",
                "--start",
                SHIFT_START.isoformat(),
                "--end",
                SHIFT_END.isoformat(),
            ]
        )
        == 0
    )
    shift_id = int(capsys.readouterr().out.split()[-1])
    assert main([*base, "score", str(shift_id)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:2] == [
        f"shift {shift_id} version 1 (changed)",
        "score 84.51 / 100",
    ]
    assert "-15.00 rounds/round_missed: 'night' round 3 (2026-11-25 00:00:00 CET) missed" in out
    assert main([*base, "score", str(shift_id)]) == 0
    assert f"shift {shift_id} version 1 (unchanged)" in capsys.readouterr().out
    assert (
        main(
            [
                *base,
                "scores",
                "--site",
                str(site.site_id),
                "--start",
                "2026-11-24T00:00:00Z",
                "--end",
                "2026-11-26T00:00:00Z",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("shift_id,post_id,guard_id")
    assert lines[1].split(",")[7] == "84.51"


def test_bad_input_exits_2_with_the_reason(
    site: Depot, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--database-url", db_url, "score", "999"]) == 2
    assert capsys.readouterr().err.strip() == "patrol-cloud compliance: no shift 999"
    assert (
        main(
            [
                "--database-url",
                db_url,
                "shift-add",
                "--post",
                str(site.post_id),
                "--guard",
                str(site.guard_id),
                "--device",
                "xyz",
                "--start",
                SHIFT_START.isoformat(),
                "--end",
                SHIFT_END.isoformat(),
            ]
        )
        == 2
    )
    assert "8 lowercase hex digits" in capsys.readouterr().err


def test_plan_add_from_a_json_file_is_stored_as_the_api_stores_it(
    site: Depot, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = {
        "name": "evening",
        "checkpoints": [site.checkpoints["C"], site.checkpoints["A"]],
        "schedule": "fixed",
        "fixed_times": ["22:30:00"],
        "round_duration_s": 1200,
        "windows": [{"weekdays": [4, 0, 0], "start": "18:00:00", "end": "23:59:00"}],
    }
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan), encoding="utf-8")
    base = ["--database-url", db_url]
    assert main([*base, "plan-add", str(site.post_id), str(path)]) == 0
    assert capsys.readouterr().out.strip().endswith(f"added to post {site.post_id}")
    assert main([*base, "targets", str(site.post_id)]) == 0
    stored = [p for p in json.loads(capsys.readouterr().out)["plans"] if p["name"] == "evening"]
    assert len(stored) == 1
    assert stored[0]["checkpoints"] == [site.checkpoints["C"], site.checkpoints["A"]]
    assert (stored[0]["schedule"], stored[0]["round_duration_s"]) == ("fixed", 1200)
    with session_scope(make_engine(db_url)) as session:
        row = session.scalars(select(CompliancePlan).where(CompliancePlan.name == "evening")).one()
        assert row.fixed_times == ["22:30:00"]
        assert row.windows == [{"weekdays": [0, 4], "start": "18:00:00", "end": "23:59:00"}]
