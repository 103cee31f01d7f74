#!/usr/bin/env python3
"""Generate the Grafana dashboards' JSON from code (grafana-foundation-sdk).

    .venv/bin/python dashboards/generate.py          rewrite dashboards/json/*.json
    .venv/bin/python dashboards/generate.py --check  exit 1 if they are out of date

The test suite runs the check (tests/dashboards/test_generated.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from patrol_dashboards.build import JSON_DIR, stale, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only report out-of-date files")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale()
        for name in problems:
            print(f"out of date: {JSON_DIR / name} (run dashboards/generate.py)", file=sys.stderr)
        return 1 if problems else 0
    for name in write():
        print(JSON_DIR / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
