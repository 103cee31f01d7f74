"""Render every dashboard to its JSON file, or check the committed files are current."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

from patrol_dashboards import edge_health, emergencies, equipment, overview, post_timeline

JSON_DIR = Path(__file__).resolve().parent.parent / "json"
"""Where the generated dashboards live (the file provider's path)."""

BUILDERS: tuple[Callable[[], dm.Dashboard], ...] = (
    overview.build,
    post_timeline.build,
    equipment.build,
    emergencies.build,
    edge_health.build,
)


def render(dashboard: dm.Dashboard) -> str:
    """Stable JSON text: sorted keys, two-space indent, final newline (diff-friendly)."""
    return (
        json.dumps(dashboard, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )


def rendered() -> dict[str, str]:
    """File name (``<uid>.json``) to JSON text, for every dashboard."""
    files: dict[str, str] = {}
    for build in BUILDERS:
        dashboard = build()
        if not dashboard.uid:
            raise ValueError(f"dashboard {dashboard.title!r} has no uid")
        name = f"{dashboard.uid}.json"
        if name in files:
            raise ValueError(f"two dashboards share the uid {dashboard.uid!r}")
        files[name] = render(dashboard)
    return files


def stale(json_dir: Path = JSON_DIR) -> list[str]:
    """Names of files that are missing, different or left over in ``json_dir``."""
    expected = rendered()
    problems = [
        name
        for name, text in expected.items()
        if not (json_dir / name).is_file() or (json_dir / name).read_text(encoding="utf-8") != text
    ]
    problems += sorted(p.name for p in json_dir.glob("*.json") if p.name not in expected)
    return sorted(problems)


def write(json_dir: Path = JSON_DIR) -> list[str]:
    """Write every dashboard, delete JSON files no dashboard produces; the names written."""
    json_dir.mkdir(parents=True, exist_ok=True)
    expected = rendered()
    for name, text in expected.items():
        (json_dir / name).write_text(text, encoding="utf-8")
    for leftover in json_dir.glob("*.json"):
        if leftover.name not in expected:
            leftover.unlink()
    return sorted(expected)
