"""Property-based tests run reproducibly: tests/conftest.py loads the "ci" profile."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings


@pytest.mark.skipif(
    "HYPOTHESIS_PROFILE" in os.environ, reason="a developer chose another profile on purpose"
)
def test_ci_profile_is_loaded() -> None:
    assert settings.default.derandomize is True
    assert settings.default.max_examples == 200
    assert settings.default.deadline is None
    assert settings.default.database is None
