"""November 2026 at the Kunming depot (Asia/Shanghai, UTC+8): a month to report on by hand.

Scored shifts (the scores are stored rows; the engine's own tests cover scoring):

shift guard post      local start   UTC start     score rounds e/c/p/m  cp on/late/miss  equipment
s5    zhao  gate      01 Nov 07:30  31 Oct 23:30  85    4/3/0/1         9/0/3            radio 0.80
s1    zhao  gate      01 Nov 22:00  01 Nov 14:00  100   8/8/0/0         24/0/0           radio 1.00
s3    qian  car park  02 Nov 08:00  02 Nov 00:00  80    6/4/1/1         14/1/3           radio 0.50,
                                                                                         torch 1.00
s2    zhao  gate      02 Nov 22:00  02 Nov 14:00  95    8/7/1/0         22/1/1           radio 0.95
s4    qian  car park  30 Nov 22:00  30 Nov 14:00  90    6/6/0/0         18/0/0           all 1.00
out1  zhao  gate      31 Oct 23:30  31 Oct 15:30  10    (October)
out2  qian  car park  01 Dec 00:00  30 Nov 16:00  20    (December)

Month: 5 shifts, mean (85+100+80+95+90)/5 = 90.00. Gate: 85, 100, 95 -> 93.33;
rounds 20/18/1/1; checkpoints 55/1/4; radio (0.80+1.00+0.95)/3 = 0.9167. Car park:
80, 90 -> 85.00; rounds 12/10/1/1; checkpoints 32/1/3; radio 0.7500, torch 1.0000.
Days (local): 1 Nov: s5 + s1 -> 92.50; 2 Nov: s3 + s2 -> 87.50; 30 Nov: s4 -> 90.00.

Deviations (withdrawn ones and October's are left out):
- d1 too_fast (critical), s2, 02 Nov 16:10Z, detected 22:30Z -> due 03 Nov 02:30Z;
  resolved 03 Nov 01:30Z (on time, 9 h 20 min after it happened), verified 05:00Z.
- d2 absent_from_zone (major), s3, 02 Nov 03:00Z, detected 08:30Z -> due 03 Nov 08:30Z;
  escalated at the due time; resolved 04 Nov 08:30Z (late, 53 h 30 min).
- d3 inspection_fail (major), car park, 10 Nov 02:00Z -> due 11 Nov 02:00Z, never resolved.
- d4 complaint_upheld (major), gate, received 12 Nov 12:00Z, upheld 13 Nov 04:00Z -> due 14 Nov
  04:00Z, never resolved.
- (October) too_fast at 31 Oct 15:50Z = 23:50 local: not in the report.
Rectification: 4 opened, 1 on time, 1 late, 1 verified, 2 unresolved, both overdue at
the report time (1 Dec 02:00Z); median hours to resolve (9.33 + 53.5) / 2 = 31.4.

Surveys: 05 Nov rating 5 "Guards are punctual"; 20 Nov rating 4 "Gate guard was on the
phone"; 30 Nov 23:59 local rating 3 (no comment); 31 Oct 23:00 local rating 1 and
01 Dec 00:00 local rating 2 fall outside -> 3 answers, mean 4.00, distribution 0/0/1/1/1.

Emergencies: one SOS at 15 Nov 03:00Z and one at 30 Nov 16:30Z (December locally):
1 in the month, no acknowledgement records. Chain: three gateway observations appended.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session
from workflowtest import Depot

from cloud_api import chain
from cloud_api.compliance import surveys
from cloud_api.compliance import workflow as wf
from cloud_api.compliance.report.period import Month
from cloud_api.compliance.types import RuleBreach, RuleId, Severity, ShiftRef
from cloud_api.models import ComplianceScore, ComplianceShift, Event, Site
from cloud_api.provisioning import create_gateway

NOVEMBER = Month(2026, 11)
REPORT_AT = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


def z(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Scenario:
    shifts: dict[str, int]
    deviations: dict[str, int]
    complaint: int
    dismissed: int
    chain_head: str


def _score(
    s: Session,
    depot: Depot,
    *,
    guard: int,
    post: int,
    start: datetime,
    score: float,
    rounds: tuple[int, int, int, int] = (0, 0, 0, 0),
    checkpoints: tuple[int, int, int] = (0, 0, 0),
    equipment: dict[str, float] | None = None,
) -> int:
    shift = ComplianceShift(
        site_id=depot.site,
        post_id=post,
        guard_id=guard,
        device_id=0xA001,
        start_at=start,
        end_at=start + timedelta(hours=8),
    )
    s.add(shift)
    s.flush()
    s.add(
        ComplianceScore(
            shift_id=shift.id,
            version=1,
            current=True,
            final=True,
            as_of=None,
            computed_at=start + timedelta(hours=9),
            digest="0" * 64,
            score=score,
            rounds_expected=rounds[0],
            rounds_completed=rounds[1],
            rounds_partial=rounds[2],
            rounds_missed=rounds[3],
            checkpoints_on_time=checkpoints[0],
            checkpoints_late=checkpoints[1],
            checkpoints_missed=checkpoints[2],
            order_violations=0,
            flagged_events=0,
            sos_events=0,
            breaches=0,
            presence_share=1.0,
            equipment_readiness=equipment or {},
            first_event_at=None,
            last_event_at=None,
            result={},
        )
    )
    s.flush()
    return shift.id


def _breach(
    rule: RuleId, severity: Severity, shift_id: int, post: int, guard: int, at: datetime
) -> RuleBreach:
    return RuleBreach(
        rule, severity, shift_id, post, guard, at, at + timedelta(minutes=20), f"{rule.value} seen"
    )


def build_november(depot: Depot) -> Scenario:
    d = depot
    sessions = d.sessions
    with sessions() as s, s.begin():
        sh = {
            "s5": _score(
                s,
                d,
                guard=d.guard_zhao,
                post=d.gate,
                start=z(31, 23, 30, month=10),
                score=85,
                rounds=(4, 3, 0, 1),
                checkpoints=(9, 0, 3),
                equipment={"radio": 0.8},
            ),
            "s1": _score(
                s,
                d,
                guard=d.guard_zhao,
                post=d.gate,
                start=z(1, 14),
                score=100,
                rounds=(8, 8, 0, 0),
                checkpoints=(24, 0, 0),
                equipment={"radio": 1.0},
            ),
            "s3": _score(
                s,
                d,
                guard=d.guard_qian,
                post=d.car_park,
                start=z(2, 0),
                score=80,
                rounds=(6, 4, 1, 1),
                checkpoints=(14, 1, 3),
                equipment={"radio": 0.5, "torch": 1.0},
            ),
            "s2": _score(
                s,
                d,
                guard=d.guard_zhao,
                post=d.gate,
                start=z(2, 14),
                score=95,
                rounds=(8, 7, 1, 0),
                checkpoints=(22, 1, 1),
                equipment={"radio": 0.95},
            ),
            "s4": _score(
                s,
                d,
                guard=d.guard_qian,
                post=d.car_park,
                start=z(30, 14),
                score=90,
                rounds=(6, 6, 0, 0),
                checkpoints=(18, 0, 0),
                equipment={"radio": 1.0, "torch": 1.0},
            ),
            "out1": _score(
                s, d, guard=d.guard_zhao, post=d.gate, start=z(31, 15, 30, month=10), score=10
            ),
            "out2": _score(s, d, guard=d.guard_qian, post=d.car_park, start=z(30, 16), score=20),
        }

    def ref(name: str, guard: int, post: int) -> ShiftRef:
        return ShiftRef(sh[name], d.site, post, guard, z(1, 0), z(1, 8))

    devs: dict[str, int] = {}
    with sessions() as s, s.begin():
        r = wf.DeviationSink(clock=lambda: z(2, 22, 30)).breaches_found(
            s,
            ref("s2", d.guard_zhao, d.gate),
            [
                _breach(
                    RuleId.TOO_FAST, Severity.CRITICAL, sh["s2"], d.gate, d.guard_zhao, z(2, 16, 10)
                )
            ],
        )
        devs["d1"] = r.created[0]
        r = wf.DeviationSink(clock=lambda: z(2, 8, 30)).breaches_found(
            s,
            ref("s3", d.guard_qian, d.car_park),
            [
                _breach(
                    RuleId.ABSENT_FROM_ZONE,
                    Severity.MAJOR,
                    sh["s3"],
                    d.car_park,
                    d.guard_qian,
                    z(2, 3),
                )
            ],
        )
        devs["d2"] = r.created[0]
        r = wf.DeviationSink(clock=lambda: z(31, 16, month=10)).breaches_found(
            s,
            ref("out1", d.guard_zhao, d.gate),
            [
                _breach(
                    RuleId.TOO_FAST,
                    Severity.CRITICAL,
                    sh["out1"],
                    d.gate,
                    d.guard_zhao,
                    z(31, 15, 50, month=10),
                )
            ],
        )
        devs["october"] = r.created[0]
    items = {}
    with sessions() as s:
        from sqlalchemy import select

        from cloud_api.models import RectificationItem

        for name in ("d1", "d2"):
            items[name] = s.scalars(
                select(RectificationItem.id).where(RectificationItem.deviation_id == devs[name])
            ).one()
    with sessions() as s, s.begin():
        wf.transition(s, items["d1"], wf.Action.START, actor_id=d.sup_li, now=z(2, 23))
        wf.transition(
            s,
            items["d1"],
            wf.Action.RESOLVE,
            actor_id=d.sup_li,
            now=z(3, 1, 30),
            note="Tags re-fixed with tamper seals; guard retrained",
        )
        wf.transition(s, items["d1"], wf.Action.VERIFY, actor_id=d.sup_wang, now=z(3, 5))
        wf.escalate_overdue(s, now=z(3, 8, 30))
        wf.transition(s, items["d2"], wf.Action.START, actor_id=d.sup_wang, now=z(3, 9))
        wf.transition(
            s,
            items["d2"],
            wf.Action.RESOLVE,
            actor_id=d.sup_wang,
            now=z(4, 8, 30),
            note="Relief guard scheduled for meal breaks",
        )
        insp = wf.record_inspection(
            s,
            site_id=d.site,
            post_id=d.car_park,
            guard_id=d.guard_qian,
            inspector_id=d.sup_li,
            inspected_at=z(10, 2),
            result=wf.InspectionResult.FAIL,
            notes="Barrier left up, no log",
            now=z(10, 2),
        )
        devs["d3"] = insp.deviation_id or 0
        wf.record_inspection(
            s,
            site_id=d.site,
            post_id=d.gate,
            guard_id=d.guard_zhao,
            inspector_id=d.sup_li,
            inspected_at=z(18, 13),
            result=wf.InspectionResult.PASS,
            notes="",
            now=z(18, 13),
        )
        complaint = wf.file_complaint(
            s,
            site_id=d.site,
            post_id=d.gate,
            channel=wf.ComplaintChannel.PHONE,
            description="Gate left open at night",
            filed_by=d.customer,
            received_at=z(12, 12),
        )
        wf.update_complaint(
            s, complaint.id, wf.ComplaintStatus.INVESTIGATING, resolution=None, now=z(12, 13)
        )
        wf.update_complaint(
            s, complaint.id, wf.ComplaintStatus.UPHELD, resolution="CCTV confirms", now=z(13, 4)
        )
        devs["d4"] = complaint.deviation_id or 0
        dismissed = wf.file_complaint(
            s,
            site_id=d.site,
            post_id=None,
            channel=wf.ComplaintChannel.WEB,
            description="Guard did not greet visitors",
            filed_by=None,
            received_at=z(20, 3),
        )
        wf.update_complaint(
            s, dismissed.id, wf.ComplaintStatus.INVESTIGATING, resolution=None, now=z(20, 4)
        )
        wf.update_complaint(
            s,
            dismissed.id,
            wf.ComplaintStatus.DISMISSED,
            resolution="Visitor log shows greeting",
            now=z(21, 4),
        )
        for at, rating, text in (
            (z(5, 2), 5, "Guards are punctual"),
            (z(20, 2), 4, "Gate guard was on the phone"),
            (z(30, 15, 59), 3, ""),
            (z(31, 15, month=10), 1, "October"),
            (z(30, 16), 2, "December"),
        ):
            surveys.record_response(
                s,
                site_id=d.site,
                respondent_id=d.customer,
                rating=rating,
                comments=text,
                submitted_at=at,
            )
        site = s.get(Site, d.site)
        assert site is not None
        gateway, _ = create_gateway(s, gateway_id="gw-kunming", site=site)
        from cloud_api.models import Device

        dev = Device(kind="wearable", device_id=0xA001, site_id=d.site)
        s.add(dev)
        s.flush()
        for seq, at in ((1, z(15, 3)), (2, z(30, 16, 30))):
            s.add(
                Event(
                    device_id=0xA001,
                    seq=seq,
                    device_pk=dev.id,
                    kind=4,
                    key_id=1,
                    frame_flags=0,
                    device_time=at,
                    gateway_pk=gateway.id,
                    gw_seq=seq,
                    received_at=at,
                    gateway_clock_synced=True,
                    raw=b"sos",
                    assurance="medium",
                    flags=[],
                    body={},
                )
            )
        records = [
            chain.ChainRecord(
                chain.RecordType.OBSERVATION,
                n,
                f"gw:gw-kunming:{n}",
                "gw-kunming",
                z(1, n),
                z(1, n),
                b'{"n":%d}' % n,
            )
            for n in (1, 2, 3)
        ]
        head = chain.append(s, d.site, records)
    return Scenario(sh, devs, complaint.id, dismissed.id, head.hash.hex())


def expected_chain_head(site_id: int) -> str:
    """The head recomputed by hand from the chain's published formula."""
    previous = bytes(32)
    for n in (1, 2, 3):
        record = chain.ChainRecord(
            chain.RecordType.OBSERVATION,
            n,
            f"gw:gw-kunming:{n}",
            "gw-kunming",
            z(1, n),
            z(1, n),
            b'{"n":%d}' % n,
        )
        previous = hashlib.sha256(previous + chain.canonical_entry(n, site_id, record)).digest()
    return previous.hex()
