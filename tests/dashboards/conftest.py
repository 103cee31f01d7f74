"""The dashboards' generator lives in dashboards/ (not an installed package): put it on
the path (and the sink and compliance tests' helpers), and teach the SDK's runtime to
decode InfluxDB targets."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "dashboards"))
sys.path.insert(0, str(REPO / "tests" / "cloud"))  # sinktest: private InfluxDB databases
sys.path.insert(0, str(REPO / "tests" / "compliance"))  # storetest: a depot with a shift

from patrol_dashboards.influxql import register  # noqa: E402

register()
