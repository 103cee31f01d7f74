"""The queue's in-memory depth per priority (what /metrics and the heartbeat read instead of a
count(*) over the backlog) always equals the file, through every kind of write (hypothesis)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_priorities import advert, boot, heartbeat, scan, sos

from edge_agent.inbound import Rejected
from edge_agent.queue import EdgeQueue, observation

MAKERS = {"sos": sos, "scan": scan, "boot": boot, "heartbeat": heartbeat}

operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("append"),
            st.lists(st.tuples(st.sampled_from(sorted(MAKERS)), st.integers(1, 60)), max_size=12),
        ),
        st.tuples(st.just("adverts"), st.integers(1, 5)),
        st.tuples(
            st.just("observation"), st.sampled_from(["gateway_health", "ble_tag_away", "evicted"])
        ),
        st.tuples(st.just("forward"), st.integers(1, 10)),
        st.tuples(st.just("reject"), st.integers(1, 5)),
        st.tuples(st.just("park"), st.integers(1, 3)),
        st.tuples(st.just("retry"), st.integers(1, 3)),
        st.tuples(st.just("reopen"), st.just(0)),
    ),
    max_size=25,
)


def file_depth(path: Path) -> dict[int, int]:
    db = sqlite3.connect(path)
    try:
        depth = dict.fromkeys(range(4), 0)
        depth.update(dict(db.execute("SELECT priority, count(*) FROM items GROUP BY priority")))
        return depth
    finally:
        db.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=operations, budget=st.sampled_from([None, 4096]))
def test_depth_in_memory_equals_the_file(tmp_path_factory, ops, budget):
    path = tmp_path_factory.mktemp("depth") / "q.sqlite3"
    queue = EdgeQueue(path, budget_bytes=budget)
    counter = 0
    try:
        for op, arg in ops:
            if op == "append":
                queue.append_many([MAKERS[kind](seq) for kind, seq in arg])
                queue.append_many([Rejected("truncated", b"\x01", "t", 0)])
            elif op == "adverts":
                counter += arg
                queue.append_many([advert((counter + i) % 256) for i in range(arg)])
            elif op == "observation":
                queue.append_many([observation({"kind": arg, "n": counter}, 0)])
            elif op in ("forward", "reject", "park"):
                seqs = [item.gw_seq for item in queue.peek_batch(arg)]
                if op == "forward":
                    queue.delete(seqs)
                elif op == "reject":
                    queue.delete([], rejected={s: "bad_mac" for s in seqs})
                else:
                    queue.park(seqs, "cloud_http_413", "too large")
            elif op == "retry":
                cloud = [d.id for d in queue.dead_letters(limit=1000) if d.source == "cloud"]
                queue.retry_dead_letters(cloud[:arg])
            else:
                queue.close()
                queue = EdgeQueue(path, budget_bytes=budget)
            assert queue.depth_by_priority() == file_depth(path), op
    finally:
        queue.close()
