"""Grafana's documented rules for turning a panel's InfluxQL into the query it sends.

Grafana itself cannot run here (no package registry has it), so the tests apply its
rules themselves, each from Grafana's documentation:

- ``$timeFilter`` is the dashboard's time range as an InfluxQL condition ("InfluxDB
  query editor", grafana.com/docs/grafana/latest/datasources/influxdb/query-editor/);
  its exact form for an absolute range, ``time >= <from>ms and time <= <to>ms``, is
  what the data source's backend renders (grafana/pkg/tsdb/influxdb/influxql,
  ``renderTimeFilter``), both ends included.
- ``${__from}`` / ``${__to}`` are the range's ends in epoch milliseconds
  ("Global variables", grafana.com/docs/grafana/latest/dashboards/variables/
  add-template-variables/#global-variables: "always interpolated as epoch
  milliseconds by default").
- ``$__interval``: "calculated using the time range and the width of the graph (the
  number of pixels)", i.e. range / max data points, rounded to a "nice" interval, and
  never below the panel's *Min interval* (same page, "$__interval"; the rounding
  table is @grafana/data's ``rangeutil.roundInterval``, the text its ``secondsToHms``).
  The panels set ``maxDataPoints`` so the result does not depend on a browser.
- Template variables with *Multi-value* or *Include All*: InfluxDB "uses regex
  expressions, so the same variable would be interpolated as (host1|host2|host3).
  Every value would also be regex escaped" ("Formatting multi-value variables",
  grafana.com/docs/grafana/latest/dashboards/variables/variable-syntax/); one
  selected value is that value, regex-escaped; "All" with a *Custom all value* is
  that value, inserted as is ("Custom all value", add-template-variables/).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_INTERVAL_STEPS_MS: tuple[tuple[int, int], ...] = (
    # (below this raw interval, use this one), in milliseconds
    (10, 1),
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1_500, 1_000),
    (3_500, 2_000),
    (7_500, 5_000),
    (12_500, 10_000),
    (17_500, 15_000),
    (25_000, 20_000),
    (45_000, 30_000),
    (90_000, 60_000),
    (210_000, 120_000),
    (450_000, 300_000),
    (750_000, 600_000),
    (1_050_000, 900_000),
    (1_500_000, 1_200_000),
    (2_700_000, 1_800_000),
    (5_400_000, 3_600_000),
    (9_000_000, 7_200_000),
    (16_200_000, 10_800_000),
    (32_400_000, 21_600_000),
    (86_400_000, 43_200_000),
    (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000),
    (3_628_800_000, 2_592_000_000),
)
_YEAR_MS = 31_536_000_000
_UNIT_MS = {
    "y": _YEAR_MS,
    "M": 2_592_000_000,
    "w": 604_800_000,
    "d": 86_400_000,
    "h": 3_600_000,
    "m": 60_000,
    "s": 1_000,
    "ms": 1,
}


def round_interval_ms(raw_ms: float) -> int:
    """Grafana's "nice" interval for a raw interval (range / max data points)."""
    for below, nice in _INTERVAL_STEPS_MS:
        if raw_ms < below:
            return nice
    return _YEAR_MS


def interval_to_ms(text: str) -> int:
    """``"1h"`` -> 3600000 (Grafana's interval strings: a count and one unit)."""
    match = re.fullmatch(r"(\d+)(ms|[yMwdhms])", text)
    if not match:
        raise ValueError(f"not an interval: {text!r}")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def interval_text(ms: int) -> str:
    """The largest whole unit, as Grafana writes ``$__interval`` (``3600000`` -> ``1h``)."""
    seconds = ms / 1000
    for unit, size_s in (("y", 31_536_000), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        count = int(seconds // size_s)
        if count:
            return f"{count}{unit}"
    return f"{ms}ms"


def calculate_interval(range_ms: int, max_data_points: int, min_interval: str | None) -> int:
    """``$__interval`` in ms: rounded range / points, at least the min interval."""
    interval = round_interval_ms(range_ms / max_data_points)
    low = interval_to_ms(min_interval) if min_interval else 1
    return max(interval, low)


def regex_escape(value: str) -> str:
    """Escape regex metacharacters as Grafana does before putting a value in ``/.../``."""
    return re.sub(r"[\\^$*+?.()|\[\]{}/]", lambda m: "\\" + m.group(0), value)


@dataclass(frozen=True)
class Variable:
    """A dashboard variable's selection: values, or "All" (``all_value`` used as is)."""

    name: str
    values: tuple[str, ...] = ()
    all_selected: bool = False
    all_value: str | None = None
    options: tuple[str, ...] = field(default=())

    def interpolate(self) -> str:
        if self.all_selected:
            if self.all_value is not None:
                return self.all_value
            chosen: tuple[str, ...] = self.options
        else:
            chosen = self.values
        escaped = [regex_escape(v) for v in chosen]
        if len(escaped) == 1:
            return escaped[0]
        return "(" + "|".join(escaped) + ")"


@dataclass(frozen=True)
class TimeRange:
    """An absolute dashboard range in epoch milliseconds (both ends included)."""

    from_ms: int
    to_ms: int


_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def interpolate(
    query: str,
    *,
    variables: dict[str, Variable],
    time_range: TimeRange,
    interval_ms: int,
) -> str:
    """The query Grafana sends to InfluxDB for this selection and range."""
    text = query.replace(
        "$timeFilter", f"time >= {time_range.from_ms}ms and time <= {time_range.to_ms}ms"
    )
    builtins = {
        "__from": str(time_range.from_ms),
        "__to": str(time_range.to_ms),
        "__interval_ms": str(interval_ms),
        "__interval": interval_text(interval_ms),
    }

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in builtins:
            return builtins[name]
        if name in variables:
            return variables[name].interpolate()
        raise KeyError(f"query uses ${name}, which the dashboard does not define: {query}")

    return _VARIABLE.sub(replace, text)
