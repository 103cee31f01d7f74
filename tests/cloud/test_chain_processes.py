"""Two real ``patrol-cloud`` processes on one database keep one valid chain per site."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier
from typing import Any

import httpx
from cloudtest import frame_item, make_batch, make_frame, observation_item
from sqlalchemy.orm import Session
from test_processes import two_servers  # noqa: F401  (the fixture: two real processes)

from cloud_api import chain, sequences
from cloud_api.db import make_engine
from cloud_api.models import Site
from patrol_protocol.frames import Sos

BATCHES_PER_PROCESS = 6
FRAMES_PER_BATCH = 20


def _batches(process: int) -> list[dict[str, Any]]:
    """Disjoint seqs per process, interleaved so both extend the chain at once."""
    out = []
    for b in range(BATCHES_PER_PROCESS):
        first = (b * 2 + process) * FRAMES_PER_BATCH + 1
        items = [
            frame_item(seq, make_frame(Sos(trigger=1), seq=seq))
            for seq in range(first, first + FRAMES_PER_BATCH)
        ]
        items.append(observation_item(10_000 + b * 2 + process, {"kind": "health", "b": b}))
        out.append(make_batch(*items))
    return out


def test_two_processes_extend_one_valid_chain(
    two_servers: tuple[list[str], str],  # noqa: F811
    db_url: str,
    tmp_path: Path,
) -> None:
    urls, api_key = two_servers
    barrier = Barrier(2)

    def worker(index: int) -> list[str]:
        statuses = []
        with httpx.Client(
            base_url=urls[index], headers={"Authorization": f"Bearer {api_key}"}, timeout=60.0
        ) as client:
            barrier.wait()
            for batch in _batches(index):
                response = client.post("/api/v1/ingest", json=batch)
                assert response.status_code == 200, response.text
                statuses += [r["status"] for r in response.json()["results"]]
        return statuses

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(worker, [0, 1]))
    per_process = BATCHES_PER_PROCESS * (FRAMES_PER_BATCH + 1)
    assert [r.count("accepted") for r in results] == [per_process, per_process]

    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            site_id = session.query(Site.id).filter(Site.name == "Harbour depot").scalar()
            verification = chain.verify_chain(session, site_id)
            report = sequences.report(session, 0x0000A001)
    finally:
        engine.dispose()
    assert verification.broken is None
    assert (verification.head.length, verification.checked) == (2 * per_process, 2 * per_process)
    frames = 2 * BATCHES_PER_PROCESS * FRAMES_PER_BATCH
    assert report is not None
    assert (report.received, report.highest_seq, report.lost, report.evicted) == (
        frames,
        frames,
        [],
        [],
    )
