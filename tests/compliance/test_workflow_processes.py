"""Two real processes escalate overdue items at once: every step is taken exactly once.

The escalation worker runs in every API process. On PostgreSQL the items are
claimed with ``FOR UPDATE SKIP LOCKED``; on SQLite writers queue on the one
write lock. Either way 120 overdue items give 120 escalations, never 121.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from workflowtest import depot_on

from cloud_api.compliance import workflow as wf
from cloud_api.compliance.types import Severity
from cloud_api.models import RectificationEvent, RectificationItem

ITEMS = 120
BATCH = 7  # small claims, so the two processes interleave many times
OCCURRED = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
START_TIMEOUT_S = 120.0

_WORKER = textwrap.dedent(
    """
    import json, sys, time
    from datetime import datetime
    from pathlib import Path
    from cloud_api.db import make_engine, make_sessionmaker
    from cloud_api.compliance.workflow import run_escalation
    url, go, now, batch = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with engine.connect():
        pass  # connected before the start signal
    Path(str(go) + ".ready." + sys.argv[5]).touch()
    while not go.exists():
        time.sleep(0.01)
    done = run_escalation(sessions, now=datetime.fromisoformat(now), batch=batch)
    print(json.dumps({"escalated": done}))
    """
)


def test_two_processes_escalate_each_overdue_item_once(db_url: str, tmp_path: Path) -> None:
    with depot_on(db_url) as depot:
        with depot.sessions() as s, s.begin():
            for n in range(ITEMS):
                wf.record_deviation(
                    s,
                    wf.DeviationInput(
                        source=wf.Source.RULE,
                        source_key=f"breach:inactive:{n}:0",
                        rule="inactive",
                        severity=Severity.MAJOR,
                        site_id=depot.site,
                        post_id=depot.gate,
                        guard_id=depot.guard_zhao,
                        occurred_at=OCCURRED + timedelta(minutes=n),
                        detail="no activity for 2 h",
                    ),
                    scope_key=f"shift:{n}",
                    now=OCCURRED + timedelta(minutes=n),
                )
        go = tmp_path / "go"
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _WORKER,
                    db_url,
                    str(go),
                    NOW.isoformat(),
                    str(BATCH),
                    str(i),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(Path(f"{go}.ready.{i}").exists() for i in range(2)):
            assert time.monotonic() < deadline, "the worker processes did not start"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.05)
        go.touch()
        outputs = [p.communicate(timeout=START_TIMEOUT_S) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
        counts = [json.loads(out)["escalated"] for out, _err in outputs]
        assert sum(counts) == ITEMS

        with depot.sessions() as s:
            levels = s.execute(
                select(RectificationItem.escalation_level, func.count()).group_by(
                    RectificationItem.escalation_level
                )
            ).all()
            per_item = s.execute(
                select(RectificationEvent.item_id, func.count())
                .where(RectificationEvent.action == "escalate")
                .group_by(RectificationEvent.item_id)
            ).all()
        assert [tuple(r) for r in levels] == [(1, ITEMS)]
        assert len(per_item) == ITEMS and {n for _, n in per_item} == {1}
