"""A score's explanation as JSON-ready data and as text (pure).

The JSON form is what the store keeps (``compliance_scores.result``), what the
API returns and what the digest of a version is computed over, so it must be
canonical: keys sorted on dump, times as ISO 8601 UTC, lists in engine order.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from cloud_api.compliance.types import (
    Category,
    Deduction,
    RoundOutcome,
    RuleBreach,
    ShiftScore,
)


def _t(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def deduction_dict(d: Deduction) -> dict[str, Any]:
    return {
        "category": d.category.value,
        "code": d.code,
        "points": d.points,
        "reason": d.reason,
        "start": _t(d.start),
        "end": _t(d.end),
        "evidence": list(d.evidence),
        "ref": d.ref,
    }


def breach_dict(b: RuleBreach) -> dict[str, Any]:
    return {
        "key": b.key,
        "rule_id": b.rule_id.value,
        "severity": b.severity.value,
        "shift_id": b.shift_id,
        "post_id": b.post_id,
        "guard_id": b.guard_id,
        "start": _t(b.start),
        "end": _t(b.end),
        "detail": b.detail,
        "evidence": list(b.evidence),
        "other_shift_id": b.other_shift_id,
    }


def round_dict(r: RoundOutcome) -> dict[str, Any]:
    return {
        "plan_id": r.plan_id,
        "index": r.index,
        "status": r.status,
        "start": _t(r.start),
        "due": _t(r.due),
        "closes": _t(r.closes),
        "on_time": list(r.on_time),
        "late": list(r.late),
        "missed": list(r.missed),
        "order_violations": r.order_violations,
    }


def components(score: ShiftScore, weights: dict[Category, float]) -> dict[str, float]:
    """Per category 0..100: how much of the category's weight the shift kept."""
    lost: dict[Category, float] = {}
    for d in score.deductions:
        lost[d.category] = lost.get(d.category, 0.0) + d.points
    out = {}
    for category, weight in sorted(weights.items(), key=lambda kv: kv[0].value):
        if weight > 0:
            out[category.value] = round(max(0.0, 100.0 * (1 - lost.get(category, 0.0) / weight)), 2)
    return out


def score_dict(score: ShiftScore) -> dict[str, Any]:
    """Everything about a scored shift, JSON-ready and canonical."""
    return {
        "shift_id": score.shift_id,
        "score": score.score,
        "as_of": _t(score.as_of),
        "rounds_expected": score.rounds_expected,
        "rounds_completed": score.rounds_with("completed"),
        "rounds_partial": score.rounds_with("partial"),
        "rounds_missed": score.rounds_with("missed"),
        "pending_rounds": score.pending_rounds,
        "checkpoints_on_time": score.checkpoints_on_time,
        "checkpoints_late": score.checkpoints_late,
        "checkpoints_missed": score.checkpoints_missed,
        "order_violations": score.order_violations,
        "presence_share": score.presence_share,
        "equipment_readiness": dict(sorted(score.equipment_readiness.items())),
        "first_event_at": _t(score.first_event_at),
        "last_event_at": _t(score.last_event_at),
        "flagged_events": score.flagged_events,
        "sos_events": score.sos_events,
        "deductions": [deduction_dict(d) for d in score.deductions],
        "breaches": [breach_dict(b) for b in score.breaches],
        "rounds": [round_dict(r) for r in score.rounds],
        "notes": list(score.notes),
    }


def digest(result: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON: equal results, equal digests."""
    blob = json.dumps(result, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def explanation_text(result: dict[str, Any]) -> str:
    """The explanation for people: the score, then one line per deduction."""
    lines = [
        f"score {result['score']:.2f} / 100"
        + (f" (live, as of {result['as_of']})" if result.get("as_of") else ""),
        f"rounds: {result['rounds_expected']} expected, {result['rounds_completed']} completed, "
        f"{result['rounds_partial']} partial, {result['rounds_missed']} missed"
        + (f", {result['pending_rounds']} still open" if result.get("pending_rounds") else ""),
        f"checkpoints: {result['checkpoints_on_time']} on time, {result['checkpoints_late']} late, "
        f"{result['checkpoints_missed']} missed; order violations {result['order_violations']}",
        f"presence in the post zone {100 * result['presence_share']:.1f}%; equipment "
        + (
            ", ".join(f"{k} {100 * v:.1f}%" for k, v in result["equipment_readiness"].items())
            or "none required"
        ),
    ]
    if result["deductions"]:
        lines.append("deductions:")
        for d in result["deductions"]:
            evidence = f" [events {', '.join(map(str, d['evidence']))}]" if d["evidence"] else ""
            lines.append(
                f"  -{d['points']:.2f} {d['category']}/{d['code']}: {d['reason']}{evidence}"
            )
    else:
        lines.append("deductions: none")
    for note in result["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)
