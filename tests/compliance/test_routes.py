"""The compliance API end to end: plans, targets, shifts, scores, and clear refusals."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from storetest import ADMIN_TOKEN, SHIFT_END, SHIFT_START, Depot, depot

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def site(db_url: str) -> Iterator[Depot]:
    yield from depot(db_url)


def plan_body(site: Depot, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "evening",
        "checkpoints": [site.checkpoints["A"], site.checkpoints["C"]],
        "ordered": True,
        "schedule": "fixed",
        "fixed_times": ["22:30", "23:30"],
        "round_duration_s": 900,
        "grace_s": 120,
        "windows": [{"weekdays": [1], "start": "22:00", "end": "01:00"}],
        "walk_s": [[site.checkpoints["A"], site.checkpoints["C"], 60]],
    }
    body.update(overrides)
    return body


def problem(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    detail: str = response.json()["detail"]
    return detail


def test_plan_targets_shift_and_score_through_the_api(site: Depot) -> None:
    client = site.client
    created = client.post(
        f"/api/v1/posts/{site.post_id}/plans", json=plan_body(site), headers=ADMIN
    )
    assert created.status_code == 201, created.text
    put = client.put(
        f"/api/v1/posts/{site.post_id}/targets",
        json={"max_absence_s": 600, "equipment": [], "weights": {"rounds": 60, "order": 5}},
        headers=ADMIN,
    )
    assert put.status_code == 200, put.text
    targets = client.get(f"/api/v1/posts/{site.post_id}/targets", headers=ADMIN).json()
    assert targets["timezone"] == "Europe/Berlin" and targets["max_absence_s"] == 600
    assert [p["name"] for p in targets["plans"]] == ["night", "evening"]
    assert targets["plans"][1]["fixed_times"] == ["22:30:00", "23:30:00"]

    site.ingest(site.rounds(range(3)) + site.heartbeats())
    shift = client.post(
        "/api/v1/shifts",
        json={
            "post_id": site.post_id,
            "guard_id": site.guard_id,
            "device_id": "0000a001",
            "start": SHIFT_START.isoformat(),
            "end": SHIFT_END.isoformat(),
        },
        headers=ADMIN,
    )
    assert shift.status_code == 201, shift.text
    shift_id = shift.json()["id"]
    scored = client.post(f"/api/v1/shifts/{shift_id}/score", headers=ADMIN)
    assert scored.status_code == 200, scored.text
    body = scored.json()
    # Tuesday 24 Nov 2026 (weekday 1): the evening plan expects A and C at 22:30 and
    # 23:30 Berlin; nothing was tapped then, so 4 of 13 expected visits are missed.
    # Weights 60 + 5 + 15 + 15 + 10 + 5 + 5 = 115: rounds weigh 60/115 x 100 =
    # 52.1739, a visit 4.0134, a missed round of two 8.0268; 100 - 16.0536 = 83.95.
    assert body["result"]["rounds_expected"] == 5
    assert body["result"]["rounds_missed"] == 2
    assert [d["points"] for d in body["result"]["deductions"]] == [8.0268, 8.0268]
    assert body["score"] == 83.95
    assert body["version"] == 1 and body["final"] is True
    assert "'evening' round 1 (2026-11-24 22:30:00 CET) missed" in body["explanation"]
    again = client.get(f"/api/v1/shifts/{shift_id}/score", headers=ADMIN).json()
    assert again["score"] == body["score"]
    listed = client.get(
        f"/api/v1/sites/{site.site_id}/scores",
        params={"start": "2026-11-24T00:00:00Z", "end": "2026-11-26T00:00:00Z"},
        headers=ADMIN,
    ).json()
    assert [(s["shift_id"], s["score"]) for s in listed] == [(shift_id, body["score"])]


@pytest.mark.parametrize(
    ("overrides", "status", "detail"),
    [
        ({"checkpoints": [999_999]}, 422, "checkpoints [999999] do not belong to post"),
        ({"schedule": "fixed", "fixed_times": []}, 422, "a fixed schedule needs at least one time"),
        ({"schedule": "interval", "interval_s": 5}, 422, "interval_s must be at least 10"),
        ({"windows": [{"weekdays": [7], "start": "22:00", "end": "06:00"}]}, 422, "weekdays"),
    ],
)
def test_bad_plans_are_refused_with_the_reason(
    site: Depot, overrides: dict[str, Any], status: int, detail: str
) -> None:
    response = site.client.post(
        f"/api/v1/posts/{site.post_id}/plans", json=plan_body(site, **overrides), headers=ADMIN
    )
    assert detail in problem(response, status)


def test_bad_shifts_and_unknown_things_are_refused(site: Depot) -> None:
    client = site.client
    base = {
        "post_id": site.post_id,
        "guard_id": site.guard_id,
        "device_id": "0000a001",
        "start": SHIFT_START.isoformat(),
        "end": SHIFT_END.isoformat(),
    }
    bad_device = client.post("/api/v1/shifts", json={**base, "device_id": "A001"}, headers=ADMIN)
    assert "8 lowercase hex digits" in problem(bad_device, 422)
    backwards = client.post(
        "/api/v1/shifts", json={**base, "end": SHIFT_START.isoformat()}, headers=ADMIN
    )
    assert problem(backwards, 422) == "a shift must end after it starts"
    no_guard = client.post("/api/v1/shifts", json={**base, "guard_id": 999}, headers=ADMIN)
    assert problem(no_guard, 422) == "no guard 999"
    assert problem(client.get("/api/v1/shifts/999/score", headers=ADMIN), 404) == "no shift 999"
    shift_id = site.shift()
    unscored = client.get(f"/api/v1/shifts/{shift_id}/score", headers=ADMIN)
    assert problem(unscored, 404) == f"shift {shift_id} has no score yet"
    heavy = client.put(
        f"/api/v1/posts/{site.post_id}/targets",
        json={"weights": {"order": 50, "rounds": 10}},
        headers=ADMIN,
    )
    assert "order weight" in problem(heavy, 422)
    too_long = client.get(
        f"/api/v1/sites/{site.site_id}/scores",
        params={"start": "2026-01-01T00:00:00Z", "end": "2026-06-01T00:00:00Z"},
        headers=ADMIN,
    )
    assert problem(too_long, 422) == "at most 62 days per request"
