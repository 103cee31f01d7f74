"""An InfluxQL target for grafana-foundation-sdk, which has no InfluxDB query builder.

The SDK's panels take any :class:`~grafana_foundation_sdk.cog.variants.Dataquery`;
this one emits the JSON Grafana's InfluxDB data source stores for a raw InfluxQL
query (``rawQuery: true``, the text in ``query``), the mode that works on
InfluxDB 1.x, on 2.x through a DBRP mapping and on 3.x's v1-compatible
``/query``. :func:`register` teaches the SDK's runtime to decode such targets,
so ``Dashboard.from_json`` gives back :class:`InfluxQLQuery` objects.
"""

from __future__ import annotations

import enum
from typing import Any, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants

DATASOURCE_TYPE = "influxdb"
"""Grafana's plugin id of the InfluxDB data source."""


class ResultFormat(enum.StrEnum):
    """How the data source turns InfluxDB series into Grafana frames."""

    TIME_SERIES = "time_series"
    TABLE = "table"


class InfluxQLQuery(cogvariants.Dataquery):
    """One raw InfluxQL target of a panel."""

    def __init__(
        self,
        *,
        ref_id: str = "A",
        query: str = "",
        result_format: ResultFormat = ResultFormat.TIME_SERIES,
        alias: str | None = None,
        datasource: dict[str, str] | None = None,
        hide: bool | None = None,
    ) -> None:
        self.ref_id = ref_id
        self.query = query
        self.result_format = result_format
        self.alias = alias
        self.datasource = datasource
        self.hide = hide

    def to_json(self) -> dict[str, object]:
        """The target as Grafana stores it (raw query mode)."""
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "query": self.query,
            "rawQuery": True,
            "resultFormat": str(self.result_format),
        }
        if self.alias is not None:
            payload["alias"] = self.alias
        if self.datasource is not None:
            payload["datasource"] = self.datasource
        if self.hide is not None:
            payload["hide"] = self.hide
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """Decode a target; refuses builder-mode targets (this project writes raw InfluxQL)."""
        if data.get("rawQuery") is not True or not isinstance(data.get("query"), str):
            raise ValueError(f"target {data.get('refId')!r} is not a raw InfluxQL query")
        return cls(
            ref_id=str(data.get("refId", "")),
            query=data["query"],
            result_format=ResultFormat(data.get("resultFormat", ResultFormat.TIME_SERIES)),
            alias=data.get("alias"),
            datasource=data.get("datasource"),
            hide=data.get("hide"),
        )


class InfluxQL(cogbuilder.Builder[InfluxQLQuery]):
    """Builder in the SDK's style: ``InfluxQL("SELECT ...").ref_id("B").table()``."""

    def __init__(self, query: str) -> None:
        self._internal = InfluxQLQuery(query=query)

    def build(self) -> InfluxQLQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def table(self) -> Self:
        """Rows and columns (tags of ``GROUP BY`` become columns) instead of series."""
        self._internal.result_format = ResultFormat.TABLE
        return self

    def alias(self, alias: str) -> Self:
        """Series name pattern (``$tag_post``, ``$col``), as the data source documents."""
        self._internal.alias = alias
        return self

    def datasource(self, ref: dict[str, str]) -> Self:
        self._internal.datasource = ref
        return self


def register() -> None:
    """Make ``Panel.from_json`` decode InfluxDB targets into :class:`InfluxQLQuery`."""
    cogruntime.Runtime().register_dataquery_variant(
        cogruntime.DataqueryConfig(
            identifier=DATASOURCE_TYPE, from_json_hook=InfluxQLQuery.from_json
        )
    )
