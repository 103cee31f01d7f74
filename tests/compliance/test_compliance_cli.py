"""``patrol-cloud compliance``: plan a shift, score it, list scores, refuse bad input."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from storetest import SHIFT_END, SHIFT_START, Depot, depot

from cloud_api.compliance.cli import main


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
