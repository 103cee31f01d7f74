"""An SOS frame becomes one alert; acknowledge and resolve with a person and a note.

Real app, real database (SQLite and PostgreSQL), frames signed like the wearable's.
"""

from __future__ import annotations

from typing import Any

from alertstest import Site, ingest, rows, sos_item

from cloud_api.api import problems

PROBLEM = "application/problem+json"


def problem(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    detail: str = response.json()["detail"]
    return detail


def test_sos_becomes_one_alert_and_duplicates_never_make_another(site: Site) -> None:
    first = ingest(site.client, site.api_key, sos_item(1, trigger=1))
    assert [r["status"] for r in first] == ["accepted"]
    # The same frame again (a retry of the edge, another gateway relaying it): duplicate.
    again = ingest(site.client, site.api_key, sos_item(1, trigger=1, gw_seq=2))
    assert [r["status"] for r in again] == ["duplicate"]
    assert rows(site.engine, "SELECT id, state, trigger, repeats, level, seq FROM alerts") == [
        (1, "open", "button", 0, 0, 1)
    ]
    # The guard presses again while the alert is live: the same alert, counted.
    ingest(site.client, site.api_key, sos_item(2, trigger=1), sos_item(3, trigger=2))
    assert rows(site.engine, "SELECT id, repeats FROM alerts") == [(1, 2)]
    assert rows(site.engine, "SELECT alert_id, action, level FROM alert_log ORDER BY id") == [
        (1, "created", 0),
        (1, "repeated", 0),
        (1, "repeated", 0),
    ]
    listed = site.client.get("/api/v1/alerts", headers=site.people.auth("sam")).json()
    assert [(a["id"], a["device"], a["state"], a["action"]) for a in listed] == [
        (1, "0000a001", "open", "repeated")
    ]


def test_acknowledge_resolve_and_the_clear_refusals(site: Site) -> None:
    ingest(site.client, site.api_key, sos_item(1, trigger=2))
    sam, olga, tia = (site.people.auth(n) for n in ("sam", "olga", "tia"))
    site.clock.advance(42)
    ack = site.client.post(
        "/api/v1/alerts/1/acknowledge", json={"note": " on my way "}, headers=sam
    )
    assert ack.status_code == 200, ack.text
    body = ack.json()
    assert (body["state"], body["trigger"], body["acknowledged_by"], body["ack_note"]) == (
        "acknowledged",
        "man_down",
        "sam",
        "on my way",
    )
    assert body["acknowledged_at"] == "2026-11-25T04:01:42Z"
    assert problem(site.client.post("/api/v1/alerts/1/acknowledge", json={}, headers=sam), 409) == (
        "alert 1 was already acknowledged by sam at 2026-11-25T04:01:42+00:00"
    )
    site.clock.advance(60)
    done = site.client.post("/api/v1/alerts/1/resolve", json={"note": "guard fine"}, headers=sam)
    assert done.status_code == 200, done.text
    assert (done.json()["state"], done.json()["resolve_note"]) == ("resolved", "guard fine")
    # Acknowledging (or resolving) a resolved alert: 409 problem naming who and when.
    refused = site.client.post("/api/v1/alerts/1/acknowledge", json={"note": "x"}, headers=sam)
    assert problem(refused, 409) == (
        "alert 1 was already resolved by sam at 2026-11-25T04:02:42+00:00"
    )
    assert refused.json()["type"] == problems.CONFLICT.uri
    assert problem(site.client.post("/api/v1/alerts/1/resolve", json={}, headers=sam), 409) == (
        "alert 1 was already resolved by sam at 2026-11-25T04:02:42+00:00"
    )
    # People without the role or the site: 403 / 404; nobody: 401; a bad body: 422.
    assert problem(site.client.post("/api/v1/alerts/1/resolve", json={}, headers=tia), 403) == (
        "role technician may not do this (allowed: admin, supervisor)"
    )
    assert problem(site.client.get("/api/v1/alerts/1", headers=olga), 404) == "no alert 1"
    assert problem(site.client.post("/api/v1/alerts/99/acknowledge", json={}, headers=sam), 404)
    assert problem(site.client.get("/api/v1/alerts/1"), 401) == "missing bearer token"
    too_long = {"note": "x" * 2001}
    assert problem(site.client.post("/api/v1/alerts/1/resolve", json=too_long, headers=sam), 422)
    detail = site.client.get("/api/v1/alerts/1", headers=sam).json()
    assert [(s["action"], s["actor"], s["note"]) for s in detail["log"]] == [
        ("created", None, None),
        ("acknowledged", "sam", "on my way"),
        ("resolved", "sam", "guard fine"),
    ]
    # After resolution a new SOS of the same wearable is a new alert.
    ingest(site.client, site.api_key, sos_item(2, trigger=3))
    assert rows(site.engine, "SELECT id, state, trigger FROM alerts ORDER BY id") == [
        (1, "resolved", "man_down"),
        (2, "open", "test"),
    ]


def test_response_times_go_to_the_sink_outbox(make_site: Any) -> None:
    # Sink on (outbox filled), no worker draining it: the lines stay for inspection.
    site: Site = make_site(influx_url="http://127.0.0.1:9", sink_run_worker=False)
    ingest(site.client, site.api_key, sos_item(1, trigger=1))
    sam = site.people.auth("sam")
    site.clock.advance(30)
    assert site.client.post("/api/v1/alerts/1/acknowledge", json={}, headers=sam).is_success
    site.clock.advance(90)
    assert site.client.post("/api/v1/alerts/1/resolve", json={}, headers=sam).is_success
    lines = [
        line
        for (text,) in rows(site.engine, "SELECT lines FROM influx_outbox_lines ORDER BY outbox_id")
        for line in text.split("\n")
        if line.startswith("sos_response")
    ]
    site_a = site.people.site_a
    assert [line.rsplit(" ", 1)[0] for line in lines] == [
        f"sos_response,site={site_a},transition=acknowledged,trigger=button "
        'alert=1i,elapsed_s=30.0,device="0000a001",level=0i',
        f"sos_response,site={site_a},transition=resolved,trigger=button "
        'alert=1i,elapsed_s=120.0,device="0000a001",level=0i',
    ]
