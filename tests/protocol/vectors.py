"""Load the JSON vector files of tests/vectors/ (shared with the MicroPython tests)."""

import json
from pathlib import Path
from typing import Any

VECTORS_DIR = Path(__file__).resolve().parent.parent / "vectors"


def load(name: str) -> Any:
    """Parsed contents of ``tests/vectors/<name>``."""
    return json.loads((VECTORS_DIR / name).read_text(encoding="utf-8"))


def by_name(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Map for ``pytest.mark.parametrize(..., ids=...)``: name -> case."""
    return {case["name"]: case for case in cases}
