"""`patrol report` and `patrol rectification` against a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from reporttest import build_november
from typer.testing import CliRunner
from workflowtest import depot_on

from patrol_cli.main import app


def test_report_rankings_and_escalation_commands(db_url: str, tmp_path: Path) -> None:
    with depot_on(db_url) as depot:
        build_november(depot)
    runner = CliRunner()
    db = ["--database-url", db_url]
    pdf, csv = tmp_path / "nov.pdf", tmp_path / "nov.csv"
    out = runner.invoke(
        app,
        [
            "report",
            "monthly",
            *db,
            "--site",
            "Kunming depot",
            "--month",
            "2026-11",
            "--pdf",
            str(pdf),
            "--csv",
            str(csv),
        ],
    )
    assert out.exit_code == 0, out.output
    assert pdf.read_bytes().startswith(b"%PDF-")
    assert "summary,,mean_score,90.00\r\n" in csv.read_bytes().decode()
    assert "Kunming depot, November 2026: 5 shifts, mean score 90.00, 4 deviations" in out.output

    ranked = runner.invoke(
        app, ["report", "rankings", *db, "--site", "Kunming depot", "--month", "2026-11", "--csv"]
    )
    assert ranked.exit_code == 0, ranked.output
    assert ranked.output.splitlines()[1].startswith(
        f"2026-11,1,{depot.guard_zhao},Zhao Wei,3,93.33"
    )

    # October's critical item (due 31 Oct 20:00Z) and two of November's are overdue today.
    escalated = runner.invoke(app, ["rectification", "escalate", *db])
    assert (escalated.exit_code, escalated.output) == (0, "escalated 3 items\n")
    again = runner.invoke(app, ["rectification", "escalate", *db])
    assert again.output == "escalated 0 items\n"  # the next step is 24 h later

    missing = runner.invoke(app, ["report", "monthly", *db, "--site", "nowhere", "--csv", str(csv)])
    assert missing.exit_code == 2
    bad_month = runner.invoke(
        app, ["report", "monthly", *db, "--site", "1", "--month", "2026-13", "--csv", str(csv)]
    )
    assert bad_month.exit_code == 2
