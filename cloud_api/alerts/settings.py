"""Alert configuration (environment prefix ``PATROL_CLOUD_ALERTS_``).

Separate from :class:`cloud_api.settings.Settings` so the emergency path can be
configured (escalation chain, webhook timing) without touching the core settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_CHAIN = "site_supervisor:0,duty_manager:120,company_oncall:300"


@dataclass(frozen=True, slots=True)
class EscalationStep:
    """Level ``index`` of the chain: who, and seconds after creation when it is reached."""

    name: str
    after_s: int


class AlertSettings(BaseSettings):
    """Emergency path settings; every duration carries its unit."""

    model_config = SettingsConfigDict(env_prefix="PATROL_CLOUD_ALERTS_", extra="ignore")

    escalation_chain: str = Field(
        default=DEFAULT_CHAIN,
        description="comma-separated name:after_s steps; the first (after_s 0) is notified "
        "on creation, each later one when nobody acknowledged within after_s of creation",
    )
    run_worker: bool = Field(
        default=True, description="run the escalation/webhook worker thread in this process"
    )
    worker_poll_s: float = Field(default=1.0, gt=0, description="worker wake-up interval")
    webhook_timeout_s: float = Field(
        default=5.0, gt=0, description="one webhook attempt may take this long (then retried)"
    )
    webhook_retry_initial_s: float = Field(
        default=1.0, gt=0, description="first backoff after a failed attempt; doubles"
    )
    webhook_retry_max_s: float = Field(default=300.0, gt=0, description="backoff ceiling")
    webhook_lease_s: float = Field(
        default=60.0, gt=0, description="a claimed delivery returns to the pool after this"
    )
    sse_ping_s: float = Field(default=15.0, gt=0, description="SSE keep-alive comment interval")

    @field_validator("escalation_chain")
    @classmethod
    def _chain_parses(cls, value: str) -> str:
        parse_chain(value)
        return value

    def chain(self) -> tuple[EscalationStep, ...]:
        """The escalation chain, level 0 first."""
        return parse_chain(self.escalation_chain)


def parse_chain(text: str) -> tuple[EscalationStep, ...]:
    """``"a:0,b:120"`` -> steps; after_s must be 0 for the first and strictly rising."""
    steps: list[EscalationStep] = []
    for part in text.split(","):
        name, sep, after = part.strip().partition(":")
        if not sep or not name or not after.strip().isdigit():
            raise ValueError(f"escalation step {part.strip()!r} is not name:seconds")
        step = EscalationStep(name.strip(), int(after))
        if steps and step.after_s <= steps[-1].after_s:
            raise ValueError(f"escalation step {step.name!r} must come later than the one before")
        steps.append(step)
    if steps[0].after_s != 0:
        raise ValueError("the first escalation step must have after_s 0 (notified at once)")
    return tuple(steps)


@lru_cache(maxsize=1)
def get_alert_settings() -> AlertSettings:
    """Settings from the environment, read once."""
    return AlertSettings()
