"""The console in headless Chromium against the real app (uvicorn, SQLite).

An SOS frame posted through the real ingest API (signed as the wearable signs it)
appears in an open alerts page without a reload, with a beep; the supervisor
acknowledges it there and the database records who. A rectification item is
closed with a note through the compliance workflow. A technician gets a refusal
page. Every page is saved at desktop and phone size into build/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from consoletest import (
    PASSWORD,
    SCREENSHOTS,
    Console,
    frame_item,
    make_batch,
    make_frame,
    sos_item,
)
from playwright.sync_api import Browser, Page, expect

from patrol_protocol.frames import Boot, Heartbeat

VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
WAIT_MS = 20_000
"""Generous: two cores shared by many test runs."""


@pytest.fixture(params=sorted(VIEWPORTS))
def page(request: pytest.FixtureRequest, browser: Browser) -> Iterator[Page]:
    context = browser.new_context(
        viewport=VIEWPORTS[request.param],  # type: ignore[arg-type]
        is_mobile=request.param == "phone",
        has_touch=request.param == "phone",
    )
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    opened.viewport_name = request.param  # type: ignore[attr-defined]
    yield opened
    context.close()  # closes the alert stream before the server stops


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}-{page.viewport_name}.png", full_page=True)  # type: ignore[attr-defined]


def log_in(page: Page, console: Console, username: str, *, path: str = "/console/alerts") -> None:
    page.goto(console.url + path)
    expect(page).to_have_url(f"{console.url}/console/login?next={path.replace('/', '%2F')}")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(console.url + path)


def post_sos(console: Console, seq: int) -> None:
    response = httpx.post(
        f"{console.url}/api/v1/ingest",
        json=make_batch(sos_item(seq)),
        headers={"Authorization": f"Bearer {console.api_key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["status"] == "accepted"


def test_sos_appears_live_and_is_acknowledged(page: Page, console: Console) -> None:
    page.goto(console.url + "/console/alerts")
    shot(page, "login")
    log_in(page, console, "sam")
    expect(page.locator("#stream-status")).to_have_text("live")
    expect(page.locator("#no-alerts")).to_be_visible()
    shot(page, "alerts-empty")
    page.evaluate("window.notReloaded = true")

    post_sos(console, 1)

    card = page.locator("#alert-1")
    expect(card).to_be_visible()
    expect(card.locator(".what")).to_have_text("SOS button · Harbour depot")
    expect(card.locator(".state")).to_have_text("open")
    # The alert's server time (04:01:00 UTC) on the site's clock (Europe/Berlin).
    expect(card).to_contain_text("since 25 Nov 05:01:00 CET · wearable 0000a001")
    assert page.evaluate("window.notReloaded") is True  # arrived over the stream
    assert page.evaluate("window.consoleBeeps") == 1
    expect(page.locator("#no-alerts")).to_be_hidden()
    shot(page, "alerts-sos")

    card.get_by_role("button", name="Acknowledge").click()
    expect(card.locator(".state")).to_have_text("acknowledged")
    expect(card).to_contain_text("acknowledged by sam at 25 Nov 05:01:00 CET")
    expect(card.get_by_role("button", name="Acknowledge")).to_have_count(0)
    shot(page, "alerts-acknowledged")
    assert console.rows("SELECT state, acknowledged_by FROM alerts") == [("acknowledged", "sam")]
    actions = console.rows("SELECT action, actor FROM alert_log ORDER BY id")
    assert actions == [("created", None), ("acknowledged", "sam")]

    # A reload shows the same state, rendered by the server.
    page.reload()
    expect(page.locator("#alert-1 .state")).to_have_text("acknowledged")


def test_close_a_rectification_item(page: Page, console: Console) -> None:
    log_in(page, console, "sam", path=f"/console/sites/{console.site_a}")
    item = page.locator(f"#item-{console.item_id}")
    expect(item).to_contain_text("Round 02:00 at Main gate missed")
    expect(item).to_contain_text("open")
    expect(item).to_contain_text("happened 25 Nov 05:01:00 CET")
    expect(item).to_contain_text("due 26 Nov 05:01:00 CET")
    shot(page, "site-items")

    # The note is required: the browser refuses an empty one (required), the server too.
    item.get_by_role("textbox").fill("Guard re-briefed; extra round walked 05:10.")
    item.get_by_role("button", name="Close item").click()
    expect(page.locator(".flash")).to_have_text(
        f"Item {console.item_id} closed. It now waits for verification."
    )
    expect(page.locator(f"#item-{console.item_id}")).to_have_count(0)
    expect(page.get_by_text("Nothing to work on at this site.")).to_be_visible()
    shot(page, "site-item-closed")
    assert console.rows(
        "SELECT status, resolution_note, resolved_by FROM rectification_items WHERE id = :i",
        i=console.item_id,
    ) == [("resolved", "Guard re-briefed; extra round walked 05:10.", console.user_ids["sam"])]
    history = console.rows(
        "SELECT action, to_status, actor_id FROM rectification_events WHERE item_id = :i "
        "ORDER BY id",
        i=console.item_id,
    )
    sam = console.user_ids["sam"]
    assert history == [
        ("create", "open", None),
        ("start", "in_progress", sam),
        ("resolve", "resolved", sam),
    ]


def test_user_without_the_role_gets_a_refusal_page(page: Page, console: Console) -> None:
    page.goto(console.url + "/console/alerts")
    page.fill("#username", "tia")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Not allowed")
    expect(page.locator(".refused")).to_contain_text(
        "This page is for admins and supervisors. Your account has the role technician."
    )
    shot(page, "refused-technician")
    # Technicians have their own page: device health.
    items = [
        frame_item(1, make_frame(Boot(1, 2, 3, 0), seq=1)),
        frame_item(2, make_frame(Heartbeat(14, 3500, 0, 0, ()), seq=2)),
    ]
    response = httpx.post(
        f"{console.url}/api/v1/ingest",
        json=make_batch(*items),
        headers={"Authorization": f"Bearer {console.api_key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    page.goto(f"{console.url}/console/sites/{console.site_a}/devices")
    expect(page.locator("#device-wearable-0000a001")).to_contain_text(
        "battery 14 % · firmware 1.2.3"
    )
    shot(page, "devices-technician")


def test_wrong_password_and_other_site(page: Page, console: Console) -> None:
    page.goto(console.url + "/console/alerts")
    page.fill("#username", "sam")
    page.fill("#password", "not the password")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_have_text("Wrong username or password.")
    expect(page.locator("#username")).to_have_value("sam")
    shot(page, "login-failed")
    page.fill("#username", "olga")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{console.url}/console/sites/{console.site_a}")
    expect(page.locator("h1")).to_have_text("Not found")
    expect(page.locator(".refused")).to_contain_text(f"no site {console.site_a}")


def test_post_page_shows_the_current_shift(page: Page, console: Console) -> None:
    log_in(page, console, "sam", path=f"/console/posts/{console.post_id}")
    expect(page.locator("h1")).to_have_text("Main gate")
    main = page.locator("main")
    expect(main).to_contain_text(
        "Night guard · wearable 0000a001 · shift 25 Nov 02:00:00 CET to 25 Nov 08:00:00 CET"
    )
    # 04:01 UTC: rounds 1-3 (02:00, 03:00, 04:00 CET) have closed untouched, 3 are to come.
    expect(page.locator(".counts div").nth(0)).to_have_text("0 / 3rounds done so far")
    expect(page.locator(".counts div").nth(1)).to_have_text("3rounds still to come")
    expect(page.locator("#next-due")).to_have_text(
        "night round 4: starts 25 Nov 05:00:00 CET, on time until 25 Nov 05:20:00 CET"
    )
    expect(page.locator(".round.missed")).to_have_count(3)
    latest = page.locator(".round").first
    expect(latest).to_contain_text("night round 3 · 25 Nov 04:00:00 CET · missed")
    expect(latest).to_contain_text("Missed: North door, Loading bay, Fence corner")
    shot(page, "post-shift")
    # The site page links its posts.
    page.goto(f"{console.url}/console/sites/{console.site_a}")
    page.get_by_role("link", name="Main gate").click()
    expect(page).to_have_url(f"{console.url}/console/posts/{console.post_id}")
