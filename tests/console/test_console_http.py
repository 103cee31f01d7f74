"""The console's credentials and refusals over plain HTTP (no browser): the cookie's
attributes, CSRF on every cookie-authenticated form, no open redirect, 409 on a
second acknowledgement, problem+json for scripts."""

from __future__ import annotations

import re

import httpx
from consoletest import PASSWORD, Console, frame_item, make_batch, make_frame, sos_item

from cloud_api.api.problems import CONFLICT, UNAUTHENTICATED
from patrol_protocol.frames import Boot, Heartbeat

HTML = {"Accept": "text/html"}


def _login_form(client: httpx.Client) -> str:
    page = client.get("/console/login", headers=HTML)
    assert page.status_code == 200
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match is not None
    return match.group(1)


def _log_in(client: httpx.Client, username: str, *, next_url: str = "/console/alerts") -> str:
    csrf = _login_form(client)
    response = client.post(
        "/console/login",
        data={"username": username, "password": PASSWORD, "csrf": csrf, "next": next_url},
        headers=HTML,
    )
    assert response.status_code == 303, response.text
    return response.headers["location"]


def _page_csrf(client: httpx.Client, path: str) -> str:
    match = re.search(r'<meta name="csrf" content="([^"]+)"', client.get(path, headers=HTML).text)
    assert match is not None
    return match.group(1)


def test_login_cookie_attributes_and_logout(console: Console) -> None:
    with httpx.Client(base_url=console.url, timeout=30) as client:
        csrf = _login_form(client)
        response = client.post(
            "/console/login",
            data={"username": "sam", "password": PASSWORD, "csrf": csrf},
            headers=HTML,
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/console/alerts"
        cookie = next(
            c for c in response.headers.get_list("set-cookie") if c.startswith("patrol_access=")
        )
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite", "path", "max-age"} <= attributes
        assert "SameSite=strict" in cookie and "Path=/" in cookie
        assert "secure" not in attributes  # plain HTTP here; HTTPS adds Secure
        assert client.get("/console/alerts", headers=HTML).status_code == 200

        # Logging out needs the page's CSRF token (no forced logouts from other sites).
        refused = client.post("/console/logout", data={}, headers=HTML)
        assert refused.status_code == 400
        assert "CSRF token is missing or wrong" in refused.text
        token = _page_csrf(client, "/console/alerts")
        out = client.post("/console/logout", data={"csrf": token}, headers=HTML)
        assert (out.status_code, out.headers["location"]) == (303, "/console/login")
        gone = client.get("/console/alerts", headers=HTML)
        assert (gone.status_code, gone.headers["location"]) == (
            303,
            "/console/login?next=%2Fconsole%2Falerts",
        )


def test_login_form_needs_its_csrf_cookie_and_never_redirects_off_site(console: Console) -> None:
    with httpx.Client(base_url=console.url, timeout=30) as client:
        _login_form(client)
        forged = client.post(
            "/console/login",
            data={"username": "sam", "password": PASSWORD, "csrf": "guessed"},
            headers=HTML,
        )
        assert forged.status_code == 400
        assert "The login form expired; please try again." in forged.text
        assert "patrol_access" not in forged.headers.get("set-cookie", "")
        for target in ("https://evil.example/", "//evil.example/console/", "/api/v1/alerts"):
            assert _log_in(client, "sam", next_url=target) == "/console/alerts"
        assert _log_in(client, "sam", next_url="/console/sites/1") == "/console/sites/1"


def test_forms_need_the_csrf_token_and_a_second_ack_is_409(console: Console) -> None:
    gateway = {"Authorization": f"Bearer {console.api_key}"}
    with httpx.Client(base_url=console.url, timeout=30) as client:
        sos = client.post("/api/v1/ingest", json=make_batch(sos_item(1)), headers=gateway)
        assert sos.json()["results"][0]["status"] == "accepted"
        _log_in(client, "sam")
        forged = client.post("/console/alerts/1/acknowledge", data={"note": "x"}, headers=HTML)
        assert forged.status_code == 400
        assert "CSRF token is missing or wrong" in forged.text
        assert console.rows("SELECT state FROM alerts") == [("open",)]

        token = _page_csrf(client, "/console/alerts")
        as_json = {"Accept": "application/json"}
        ack = client.post("/console/alerts/1/acknowledge", data={"csrf": token}, headers=as_json)
        assert ack.status_code == 200
        assert (ack.json()["state"], ack.json()["acknowledged_by"]) == ("acknowledged", "sam")
        again = client.post("/console/alerts/1/acknowledge", data={"csrf": token}, headers=as_json)
        assert again.status_code == 409
        assert again.headers["content-type"] == "application/problem+json"
        assert again.json()["type"] == CONFLICT.uri
        assert again.json()["detail"].startswith("alert 1 was already acknowledged by sam at ")

        # Closing an item needs a note; the item stays open without one.
        empty = client.post(
            f"/console/items/{console.item_id}/close",
            data={"csrf": token, "note": "   "},
            headers=HTML,
        )
        assert empty.status_code == 422
        assert "closing an item needs a note saying what was done" in empty.text
        assert console.rows(
            "SELECT status FROM rectification_items WHERE id = :i", i=console.item_id
        ) == [("open",)]


def test_scripts_get_problem_json(console: Console) -> None:
    with httpx.Client(base_url=console.url, timeout=30) as client:
        anonymous = client.get("/console/alerts")
        assert anonymous.status_code == 401
        assert anonymous.json()["type"] == UNAUTHENTICATED.uri
        assert anonymous.json()["detail"] == "log in first (no access token)"
        forged = client.post("/console/login", data={"username": "a", "password": "b"})
        assert forged.status_code == 400  # no login CSRF cookie: the form again, with why
        assert "The login form expired; please try again." in forged.text
        ack = client.post("/console/alerts/1/acknowledge", headers={"Authorization": "Bearer x"})
        assert ack.status_code == 401
        assert ack.headers["content-type"] == "application/problem+json"


def test_monthly_report_download_with_the_cookie(console: Console) -> None:
    with httpx.Client(base_url=console.url, timeout=120) as client:
        _log_in(client, "sam")
        page = client.get(f"/console/sites/{console.site_a}", headers=HTML).text
        pdf_link = f"/console/sites/{console.site_a}/reports/2026-11.pdf"
        assert f'href="{pdf_link}"' in page
        pdf = client.get(pdf_link)
        assert pdf.status_code == 200
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.headers["content-disposition"] == (
            f'attachment; filename="site-{console.site_a}-2026-11.pdf"'
        )
        assert pdf.content.startswith(b"%PDF-")
        csv = client.get(f"/console/sites/{console.site_a}/reports/2026-11.csv")
        assert (csv.status_code, csv.headers["content-type"]) == (200, "text/csv; charset=utf-8")
        other = client.get(f"/console/sites/{console.site_b}/reports/2026-11.csv", headers=HTML)
        assert other.status_code == 404
        assert f"no site {console.site_b}" in other.text


def test_device_health_for_technicians(console: Console) -> None:
    gateway = {"Authorization": f"Bearer {console.api_key}"}
    items = [
        frame_item(1, make_frame(Boot(1, 2, 3, 0), seq=1)),
        frame_item(2, make_frame(Heartbeat(81, 3900, 0, 0, ()), seq=2)),
    ]
    with httpx.Client(base_url=console.url, timeout=30) as client:
        ingested = client.post("/api/v1/ingest", json=make_batch(*items), headers=gateway)
        assert [r["status"] for r in ingested.json()["results"]] == ["accepted", "accepted"]
        _log_in(client, "tia", next_url=f"/console/sites/{console.site_a}/devices")
        page = client.get(f"/console/sites/{console.site_a}/devices", headers=HTML)
        assert page.status_code == 200
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", page.text))
        assert "wearable 0000a001" in text
        assert "battery 81 % · firmware 1.2.3" in text
        assert "last heard 25 Nov 05:00:05 CET" in text
        # The technician may not open the supervisors' pages.
        assert client.get("/console/alerts", headers=HTML).status_code == 403
