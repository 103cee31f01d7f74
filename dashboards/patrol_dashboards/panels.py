"""Panel shapes used across the dashboards, built with grafana-foundation-sdk.

Each function takes the title, a description (shown as the panel's (i) tooltip and
repeated in docs/dashboards.md), the InfluxQL targets and the display settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from patrol_dashboards.common import MIN_INTERVAL
from patrol_dashboards.influxql import InfluxQL


def _reduce(calc: str) -> cb.ReduceDataOptions:
    return cb.ReduceDataOptions().calcs([calc]).values(False)


def time_series(
    title: str,
    description: str,
    targets: Sequence[InfluxQL],
    *,
    unit: str,
    bars: bool = False,
    points: bool = False,
    thresholds: db.ThresholdsConfig | None = None,
    min_value: float | None = None,
    max_value: float | None = None,
    links: Sequence[db.DashboardLink] = (),
) -> timeseries.Panel:
    """Values over time, grouped by ``$__interval`` (at least :data:`MIN_INTERVAL`)."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .targets(list(targets))
        .interval(MIN_INTERVAL)
        .unit(unit)
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC))
        .data_links(list(links))
        .legend(
            cb.VizLegendOptions()
            .show_legend(True)
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
        )
        .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.NONE))
    )
    if bars:
        panel = panel.draw_style(cm.GraphDrawStyle.BARS).fill_opacity(60)
    elif points:
        panel = panel.draw_style(cm.GraphDrawStyle.POINTS).point_size(8)
    if thresholds is not None:
        panel = panel.thresholds(thresholds).thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(cm.GraphTresholdsStyleMode.LINE_AND_AREA)
        )
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    return panel


def big_number(
    title: str,
    description: str,
    targets: Sequence[InfluxQL],
    *,
    unit: str,
    thresholds: db.ThresholdsConfig,
    calc: str = "lastNotNull",
    decimals: float | None = None,
    mappings: Sequence[dm.ValueMap | dm.RangeMap | dm.SpecialValueMap] = (),
    no_value: str | None = None,
    links: Sequence[db.DashboardLink] = (),
) -> stat.Panel:
    """One number per series, coloured by ``thresholds``."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .targets(list(targets))
        .unit(unit)
        .thresholds(thresholds)
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .reduce_options(_reduce(calc))
        .data_links(list(links))
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    if mappings:
        panel = panel.mappings(list(mappings))
    if no_value is not None:
        panel = panel.no_value(no_value)
    return panel


def bars(
    title: str,
    description: str,
    targets: Sequence[InfluxQL],
    *,
    unit: str,
    thresholds: db.ThresholdsConfig,
    links: Sequence[db.DashboardLink] = (),
) -> bargauge.Panel:
    """One horizontal bar per series (counts by a tag)."""
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .targets(list(targets))
        .unit(unit)
        .thresholds(thresholds)
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .display_mode(cm.BarGaugeDisplayMode.BASIC)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .reduce_options(_reduce("sum"))
        .data_links(list(links))
    )


def rows(
    title: str,
    description: str,
    targets: Sequence[InfluxQL],
    *,
    time_title: str | None,
    sort_by: str | None = None,
    descending: bool = True,
    units: Mapping[str, str] | None = None,
    coloured: Sequence[str] = (),
    thresholds: db.ThresholdsConfig | None = None,
    mappings: Sequence[dm.ValueMap | dm.RangeMap | dm.SpecialValueMap] = (),
    links: Sequence[db.DashboardLink] = (),
) -> table.Panel:
    """A table of the targets' rows (``resultFormat: table``).

    ``time_title`` names the time column ("Last heard"), or None to hide it where
    the query's time means nothing (an aggregate over the whole range). ``units``
    and ``coloured`` (cell background from ``thresholds`` or ``mappings``) apply to
    the named columns only, so a count next to a score does not get a "%".
    """
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .targets(list(targets))
        .show_header(True)
        .data_links(list(links))
    )
    if time_title is None:
        panel = panel.override_by_name("Time", [dm.DynamicConfigValue("custom.hidden", True)])
    else:
        panel = panel.override_by_name("Time", [dm.DynamicConfigValue("displayName", time_title)])
    for column, unit in (units or {}).items():
        panel = panel.override_by_name(column, [dm.DynamicConfigValue("unit", unit)])
    for column in coloured:
        panel = panel.override_by_name(
            column,
            [dm.DynamicConfigValue("custom.cellOptions", {"type": "color-background"})],
        )
    if sort_by is not None:
        panel = panel.sort_by([cb.TableSortByFieldState().display_name(sort_by).desc(descending)])
    if thresholds is not None:
        panel = panel.thresholds(thresholds).color_scheme(
            db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS)
        )
    if mappings:
        panel = panel.mappings(list(mappings))
    return panel


def text_map(*pairs: tuple[str, str, str]) -> dm.ValueMap:
    """Value mapping ``value -> (text, colour)``."""
    return dm.ValueMap(
        options={
            value: dm.ValueMappingResult(text=text, color=color, index=i)
            for i, (value, text, color) in enumerate(pairs)
        }
    )
