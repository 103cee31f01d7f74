"""Supervision, return-visit and incentive routes through the real app (SQLite, PostgreSQL).

People log in with real access tokens; each route checks the role and the site.
The November month of reporttest.py is the data.
"""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from reporttest import build_november
from workflowtest import Depot, depot_on

from cloud_api.app import create_app
from cloud_api.auth.tokens import issue_token, signing_key
from cloud_api.settings import Settings

SERVER_KEY = bytes(range(64, 96))
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 10:00 on 1 December in Kunming
PROBLEM = "application/problem+json"


@dataclass
class Api:
    depot: Depot
    client: TestClient
    tokens: dict[str, str]

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture
def api(db_url: str) -> Iterator[Api]:
    with depot_on(db_url) as depot:
        build_november(depot)
        settings = Settings(
            database_url=db_url,
            server_key=base64.b64encode(SERVER_KEY).decode(),
            admin_token="admin-token-for-workflow-tests",
        )
        app = create_app(settings, clock=lambda: NOW)
        key = signing_key(SERVER_KEY)
        people = {
            "supervisor": (depot.sup_li, "sup-li", "supervisor"),
            "customer": (depot.customer, "cust-chen", "customer"),
            "other_customer": (depot.other_customer, "cust-other", "customer"),
            "guard": (depot.user_zhao, "guard-zhao", "guard"),
        }
        tokens = {
            who: issue_token(key, user_id=uid, username=name, role=role, now=NOW, ttl_s=900)[0]
            for who, (uid, name, role) in people.items()
        }
        with TestClient(app) as client:
            yield Api(depot, client, tokens)


def test_inspection_to_verified_rectification(api: Api) -> None:
    d, c = api.depot, api.client
    site = d.site
    made = c.post(
        f"/api/v1/sites/{site}/inspections",
        json={
            "post_id": d.gate,
            "guard_id": d.guard_zhao,
            "inspected_at": "2026-11-30T14:30:00Z",
            "result": "fail",
            "notes": "Guard asleep in the gatehouse",
        },
        headers=api.as_("supervisor"),
    )
    assert made.status_code == 201, made.text
    deviation_id = made.json()["deviation_id"]
    items = c.get(
        f"/api/v1/sites/{site}/rectification-items",
        params={"status": "open", "month": "2026-11"},
        headers=api.as_("customer"),
    ).json()
    (item,) = [i for i in items if i["deviation_id"] == deviation_id]
    assert (item["rule"], item["severity"], item["owner_id"]) == (
        "inspection_fail",
        "major",
        d.sup_wang,  # fewest unresolved: li owns October's and the complaint's, wang one
    )
    url = f"/api/v1/rectification-items/{item['id']}/transitions"
    refused = c.post(url, json={"action": "verify"}, headers=api.as_("supervisor"))
    assert refused.status_code == 409
    assert refused.headers["content-type"] == PROBLEM
    assert refused.json()["detail"] == (
        f"rectification item {item['id']} is open: it cannot verify (allowed from open: start)"
    )
    assert c.post(url, json={"action": "start"}, headers=api.as_("customer")).status_code == 403
    assert c.post(url, json={"action": "start"}, headers=api.as_("supervisor")).status_code == 200
    no_note = c.post(url, json={"action": "resolve"}, headers=api.as_("supervisor"))
    assert (no_note.status_code, no_note.json()["detail"]) == (
        422,
        "resolve needs a note saying what was done",
    )
    done = c.post(
        url,
        json={"action": "resolve", "note": "Guard moved to day shifts"},
        headers=api.as_("supervisor"),
    )
    assert done.json()["status"] == "resolved"
    final = c.post(url, json={"action": "verify"}, headers=api.as_("supervisor")).json()
    assert [h["action"] for h in final["history"]] == ["create", "start", "resolve", "verify"]
    other = c.get(f"/api/v1/rectification-items/{item['id']}", headers=api.as_("other_customer"))
    assert (other.status_code, other.json()["detail"]) == (
        404,
        f"no rectification item {item['id']}",
    )
    counts = c.get(
        f"/api/v1/sites/{site}/rectification-counts", headers=api.as_("supervisor")
    ).json()
    assert counts == {
        "open": 3,  # October's too_fast, November's failed spot check and upheld complaint
        "in_progress": 0,
        "resolved": 1,
        "verified": 2,
        "withdrawn": 0,
        "overdue": 3,
        "escalated": 1,  # October's, escalated with absent_from_zone on 3 November
    }


def test_customer_complaint_and_verdict(api: Api) -> None:
    d, c = api.depot, api.client
    filed = c.post(
        f"/api/v1/sites/{d.site}/complaints",
        json={"post_id": d.car_park, "channel": "phone", "description": "Barrier left up"},
        headers=api.as_("customer"),
    )
    assert filed.status_code == 201, filed.text
    body = filed.json()
    assert (body["status"], body["received_at"], body["filed_by"]) == (
        "received",
        "2026-12-01T02:00:00Z",
        d.customer,
    )
    url = f"/api/v1/complaints/{body['id']}/status"
    early = c.post(url, json={"status": "upheld", "resolution": "x"}, headers=api.as_("supervisor"))
    assert early.status_code == 409
    assert (
        c.post(url, json={"status": "investigating"}, headers=api.as_("customer")).status_code
        == 403
    )
    c.post(url, json={"status": "investigating"}, headers=api.as_("supervisor"))
    upheld = c.post(
        url, json={"status": "upheld", "resolution": "CCTV confirms"}, headers=api.as_("supervisor")
    ).json()
    assert upheld["deviation_id"] is not None
    listed = c.get(f"/api/v1/sites/{d.site}/complaints", headers=api.as_("customer")).json()
    assert [x["id"] for x in listed] == [body["id"]]  # December only
    assert c.get(f"/api/v1/sites/{d.site}/complaints", headers=api.as_("guard")).status_code == 403
    foreign = c.post(
        f"/api/v1/sites/{d.site}/complaints",
        json={"channel": "web", "description": "x"},
        headers=api.as_("other_customer"),
    )
    assert (foreign.status_code, foreign.json()["detail"]) == (404, f"no site {d.site}")


def test_survey_entry_and_summary(api: Api) -> None:
    d, c = api.depot, api.client
    ok = c.post(
        f"/api/v1/sites/{d.site}/surveys",
        json={"rating": 5, "comments": "Quick response to the alarm"},
        headers=api.as_("customer"),
    )
    assert ok.status_code == 201, ok.text
    bad = c.post(f"/api/v1/sites/{d.site}/surveys", json={"rating": 6}, headers=api.as_("customer"))
    assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM
    assert (
        c.post(
            f"/api/v1/sites/{d.site}/surveys", json={"rating": 3}, headers=api.as_("supervisor")
        ).status_code
        == 403
    )
    november = c.get(
        f"/api/v1/sites/{d.site}/surveys",
        params={"month": "2026-11"},
        headers=api.as_("supervisor"),
    ).json()
    assert (november["responses"], november["mean"], november["distribution"]) == (
        3,
        4.0,
        [0, 0, 1, 1, 1],
    )
    december = c.get(f"/api/v1/sites/{d.site}/surveys", headers=api.as_("customer")).json()
    assert (december["month"], december["responses"]) == ("2026-12", 2)  # 30 Nov 16:00Z + today


def test_monthly_report_downloads(api: Api) -> None:
    d, c = api.depot, api.client
    pdf = c.get(f"/api/v1/sites/{d.site}/reports/2026-11.pdf", headers=api.as_("customer"))
    assert pdf.status_code == 200, pdf.text
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    assert pdf.headers["content-disposition"] == f'attachment; filename="site-{d.site}-2026-11.pdf"'
    got = c.get(f"/api/v1/sites/{d.site}/reports/2026-11.csv", headers=api.as_("supervisor"))
    rows = {(r[0], r[1], r[2]): r[3] for r in csv.reader(io.StringIO(got.text))}
    assert rows[("summary", "", "mean_score")] == "90.00"
    assert rows[("rectification", "", "opened")] == "4"
    for who, status in (("guard", 403), ("other_customer", 404)):
        assert (
            c.get(f"/api/v1/sites/{d.site}/reports/2026-11.pdf", headers=api.as_(who)).status_code
            == status
        )
    bad = c.get(f"/api/v1/sites/{d.site}/reports/2026-13.csv", headers=api.as_("customer"))
    assert bad.status_code == 422


def test_a_guard_sees_only_his_own_ranking(api: Api) -> None:
    d, c = api.depot, api.client
    url = f"/api/v1/sites/{d.site}/rankings/guards"
    everyone = c.get(url, params={"month": "2026-11"}, headers=api.as_("supervisor")).json()
    assert [(r["rank"], r["name"]) for r in everyone] == [(1, "Zhao Wei"), (2, "Qian Lei")]
    own = c.get(url, params={"month": "2026-11"}, headers=api.as_("guard")).json()
    assert [(r["rank"], r["name"], r["mean_score"]) for r in own] == [(1, "Zhao Wei", 93.33)]
    as_csv = c.get(url, params={"month": "2026-11", "format": "csv"}, headers=api.as_("customer"))
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.text.splitlines()[2].startswith(f"2026-11,2,{d.guard_qian},Qian Lei,2,85.00")
    sites = c.get(
        "/api/v1/rankings/sites", params={"month": "2026-11"}, headers=api.as_("supervisor")
    )
    assert [(r["name"], r["mean_score"]) for r in sites.json()] == [("Kunming depot", 90.0)]
    assert c.get("/api/v1/rankings/sites", headers=api.as_("customer")).status_code == 403
