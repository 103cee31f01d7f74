"""``patrol-cloud`` refuses bad settings with a readable message that never echoes a secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PATROL_CLOUD = Path(sys.executable).with_name("patrol-cloud")


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # Neither the suite's cloud settings nor its cheap-hash switch (which logs a warning).
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PATROL_CLOUD_") and k != "PATROL_TEST_CHEAP_PASSWORD_HASHES"
    }
    return subprocess.run(
        [str(PATROL_CLOUD), *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_server_key_names_the_variable() -> None:
    result = _run()
    assert result.returncode == 2
    assert result.stderr.strip() == "patrol-cloud: PATROL_CLOUD_SERVER_KEY: Field required"


def test_a_malformed_server_key_is_refused_without_echoing_it() -> None:
    result = _run(PATROL_CLOUD_SERVER_KEY="not base64 but a secret!")
    assert result.returncode == 2
    assert "PATROL_CLOUD_SERVER_KEY" in result.stderr
    assert "secret" not in result.stderr
    assert "Traceback" not in result.stderr


def test_help_needs_no_settings_and_unknown_commands_are_refused() -> None:
    shown = _run("--help")
    assert shown.returncode == 0
    assert "patrol-cloud db upgrade" in shown.stdout
    unknown = _run("serve-now")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "patrol-cloud: unknown command 'serve-now' (try --help)"
