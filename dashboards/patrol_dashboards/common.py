"""What every dashboard shares: the provisioned data source, template variables,
filters, colours, thresholds and the links into the web console.

The console paths are a contract with the web console (issue 7), documented in
docs/dashboards.md: ``/console/sites/{site}``, ``/console/posts/{post}``,
``/console/alerts``.
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as dm

from patrol_dashboards.influxql import DATASOURCE_TYPE, InfluxQL

DATASOURCE_UID = "patrol-influxdb"
"""The uid the provisioning file gives the data source; every panel names it."""
DATASOURCE = dm.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)
DATASOURCE_JSON = {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}

ALL_VALUE = ".*"
"""Custom "All" value: inserted as is into ``/^$var$/`` it matches every value, and
also points without the tag (a deviation with no guard), which "(1|2|3)" would not."""

# Template-variable filters, used inside WHERE clauses (regex match: multi-value and
# "All" selections are regex-formatted by Grafana, docs/dashboards.md).
SITE = '"site" =~ /^$site$/'
POST = '"post" =~ /^$post$/'
GUARD = '"guard" =~ /^$guard$/'
GATEWAY = '"gateway" =~ /^$gateway$/'
SHIFTS = "\"period\" = 'shift'"
TO = "time <= ${__to}ms"
"""Everything up to the end of the chosen range (running totals such as open items)."""

CONSOLE_SITE = "/console/sites/{site}"
CONSOLE_POST = "/console/posts/{post}"
CONSOLE_ALERTS = "/console/alerts"

# Colours (Grafana's named palette) and the score bands the whole project uses.
RED, ORANGE, YELLOW, GREEN, BLUE, GREY = "red", "orange", "yellow", "green", "blue", "text"
SCORE_WARN = 80.0
"""Below this a shift score is poor (red)."""
SCORE_GOOD = 95.0
"""At or above this a shift earns the service-star level (green)."""

MIN_INTERVAL = "1h"
"""Panels' minimum ``$__interval``: rounds are hourly or longer, finer buckets are noise."""
MAX_DATA_POINTS = 200
"""Set on every panel so ``$__interval`` does not depend on the browser's width."""


def where(*conditions: str) -> str:
    """``WHERE a AND b ...`` (always with ``$timeFilter`` unless a condition replaces it)."""
    return "WHERE " + " AND ".join(conditions)


def query(
    text: str, ref_id: str = "A", *, table: bool = False, alias: str | None = None
) -> InfluxQL:
    """A raw InfluxQL target on the provisioned data source."""
    target = InfluxQL(text).ref_id(ref_id).datasource(DATASOURCE_JSON)
    if table:
        target = target.table()
    if alias is not None:
        target = target.alias(alias)
    return target


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    """Absolute thresholds; the first step's value is None (minus infinity)."""
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=color) for value, color in steps])
    )


SCORE_THRESHOLDS = thresholds((None, RED), (SCORE_WARN, ORANGE), (SCORE_GOOD, GREEN))
COUNT_BAD_THRESHOLDS = thresholds((None, GREEN), (1.0, RED))
"""Zero is good, anything else red (dead letters, escalations, overdue items)."""
COUNT_WARN_THRESHOLDS = thresholds((None, GREEN), (1.0, ORANGE))


def link(title: str, url: str) -> db.DashboardLink:
    """A link into the web console, same tab (the console is the same site's UI)."""
    return db.DashboardLink(title).type(dm.DashboardLinkType.LINK).url(url)


def site_link() -> db.DashboardLink:
    return link(
        "Open site ${__field.labels.site} in the console",
        CONSOLE_SITE.format(site="${__field.labels.site}"),
    )


def post_link() -> db.DashboardLink:
    return link(
        "Open post ${__field.labels.post} in the console",
        CONSOLE_POST.format(post="${__field.labels.post}"),
    )


def post_row_link() -> db.DashboardLink:
    """For table rows: the post is a column, not a series label."""
    return link(
        "Open post ${__data.fields.post} in the console",
        CONSOLE_POST.format(post="${__data.fields.post}"),
    )


def alerts_link() -> db.DashboardLink:
    return link("Open the alerts in the console", CONSOLE_ALERTS)


def _tag_variable(name: str, label: str, show_query: str) -> db.QueryVariable:
    return (
        db.QueryVariable(name)
        .label(label)
        .query(show_query)
        .datasource(DATASOURCE)
        .multi(True)
        .include_all(True)
        .all_value(ALL_VALUE)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.NUMERICAL_ASC)
        .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def site_variable() -> db.QueryVariable:
    return _tag_variable("site", "Site", 'SHOW TAG VALUES WITH KEY = "site"')


def post_variable() -> db.QueryVariable:
    return _tag_variable("post", "Post", f'SHOW TAG VALUES WITH KEY = "post" WHERE {SITE}')


def guard_variable() -> db.QueryVariable:
    return _tag_variable(
        "guard",
        "Guard",
        f'SHOW TAG VALUES FROM "compliance" WITH KEY = "guard" WHERE {SITE} AND {POST}',
    )


def gateway_variable() -> db.QueryVariable:
    return _tag_variable(
        "gateway",
        "Gateway",
        f'SHOW TAG VALUES FROM "gateway_health" WITH KEY = "gateway" WHERE {SITE}',
    )


class Layout:
    """Places panels left to right on Grafana's 24-column grid and numbers them.

    Explicit positions and ids keep the generated JSON stable and reviewable.
    """

    def __init__(self) -> None:
        self._x = 0
        self._y = 0
        self._row_h = 0
        self._next_id = 1

    def place(self, panel: cogbuilder.Builder[dm.Panel], *, w: int, h: int) -> dm.Panel:
        if self._x + w > 24:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        built = panel.build()
        built.id_val = self._next_id
        built.grid_pos = dm.GridPos(h=h, w=w, x=self._x, y=self._y)
        built.datasource = DATASOURCE
        built.max_data_points = MAX_DATA_POINTS
        self._next_id += 1
        self._x += w
        self._row_h = max(self._row_h, h)
        return built


def dashboard(
    *,
    uid: str,
    title: str,
    description: str,
    variables: Sequence[db.QueryVariable],
    panels: Sequence[tuple[cogbuilder.Builder[dm.Panel], int, int]],
    links: Sequence[db.DashboardLink] = (),
    time_from: str = "now-24h",
) -> dm.Dashboard:
    """A dashboard of ``panels`` given as ``(panel, width, height)``."""
    layout = Layout()
    built = (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["patrol"])
        .timezone("browser")
        .time(time_from, "now")
        .refresh("1m")
        .readonly()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .variables(list(variables))
        .links([*links])
        .build()
    )
    built.panels = [layout.place(panel, w=w, h=h) for panel, w, h in panels]
    return built
