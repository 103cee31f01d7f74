"""The monthly site report as a PDF for the customer (reportlab platypus + reportlab.graphics).

Layout, A4 portrait: a title band and six key figures; the score trend (one
point per day with shifts); rounds per post (table and stacked bars); equipment
readiness (bars against the 90 % line); deviations and their rectification;
inspections and complaints; emergencies; the customer survey (distribution and
comments); and the head of the site's hash chain, which lets the customer check
later that the company did not rewrite the month's evidence. Every page has a
footer with the site, the month and "page n of m".

Rendering is pure and reproducible: the same :class:`SiteMonthReport` gives the
same bytes (reportlab's ``invariant`` mode fixes the document id and dates).
DejaVu fonts are embedded when the system has them (any Latin, Greek or Cyrillic
name renders); otherwise the PDF core fonts are used.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from reportlab.graphics.charts.barcharts import (  # type: ignore[import-untyped]
    HorizontalBarChart,
    VerticalBarChart,
)
from reportlab.graphics.charts.legends import Legend  # type: ignore[import-untyped]
from reportlab.graphics.charts.lineplots import LinePlot  # type: ignore[import-untyped]
from reportlab.graphics.shapes import Drawing, Line, String  # type: ignore[import-untyped]
from reportlab.graphics.widgets.markers import makeMarker  # type: ignore[import-untyped]
from reportlab.lib import colors  # type: ignore[import-untyped]
from reportlab.lib.enums import TA_LEFT  # type: ignore[import-untyped]
from reportlab.lib.pagesizes import A4  # type: ignore[import-untyped]
from reportlab.lib.styles import ParagraphStyle  # type: ignore[import-untyped]
from reportlab.lib.units import mm  # type: ignore[import-untyped]
from reportlab.pdfbase import pdfmetrics  # type: ignore[import-untyped]
from reportlab.pdfbase.ttfonts import TTFont  # type: ignore[import-untyped]
from reportlab.pdfgen.canvas import Canvas  # type: ignore[import-untyped]
from reportlab.platypus import (  # type: ignore[import-untyped]
    CondPageBreak,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from cloud_api.compliance.report.data import SiteMonthReport
from cloud_api.compliance.report.period import site_zone

PAGE_W, PAGE_H = A4
MARGIN = 16 * mm
CONTENT_W = PAGE_W - 2 * MARGIN
EQUIPMENT_TARGET = 0.9
"""The readiness line drawn on the equipment chart (the workflow's deviation threshold)."""
DASH = "\u2013"
"""En dash: printed where there is no value."""
MAX_COMMENTS = 12
"""Survey comments printed; the CSV carries all of them."""

_DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
INK = colors.HexColor("#1f2933")
MUTED = colors.HexColor("#616e7c")
ACCENT = colors.HexColor("#1d4e89")
GOOD = colors.HexColor("#2e7d32")
WARN = colors.HexColor("#f0a202")
BAD = colors.HexColor("#c62828")
RULE = colors.HexColor("#cbd2d9")
ZEBRA = colors.HexColor("#f5f7fa")

RULE_LABELS = {
    "too_fast": "Taps too fast to have walked",
    "absent_from_zone": "Absent from post zone",
    "inactive": "Inactive on duty",
    "two_posts": "On two posts at once",
    "round_missed": "Round missed",
    "round_partial": "Round partly done",
    "equipment_not_ready": "Equipment not ready",
    "inspection_fail": "Spot check failed",
    "inspection_partial": "Spot check: findings",
    "complaint_upheld": "Complaint upheld",
}
STATUS_LABELS = {
    "open": "open",
    "in_progress": "in progress",
    "resolved": "resolved",
    "verified": "verified",
    "withdrawn": "withdrawn",
}


def _fonts() -> tuple[str, str, str]:
    """(regular, bold, mono) font names, embedding DejaVu when present."""
    files = {
        "DejaVuSans": "DejaVuSans.ttf",
        "DejaVuSans-Bold": "DejaVuSans-Bold.ttf",
        "DejaVuSansMono": "DejaVuSansMono.ttf",
    }
    if all((_DEJAVU / f).is_file() for f in files.values()):
        for name, file in files.items():
            if name not in pdfmetrics.getRegisteredFontNames():
                pdfmetrics.registerFont(TTFont(name, str(_DEJAVU / file)))
        return "DejaVuSans", "DejaVuSans-Bold", "DejaVuSansMono"
    return "Helvetica", "Helvetica-Bold", "Courier"


class _Styles:
    def __init__(self) -> None:
        regular, bold, mono = _fonts()
        self.regular, self.bold, self.mono = regular, bold, mono
        self.title = ParagraphStyle(
            "title", fontName=bold, fontSize=19, leading=23, textColor=colors.white
        )
        self.subtitle = ParagraphStyle(
            "subtitle", fontName=regular, fontSize=10.5, leading=14, textColor=colors.white
        )
        self.h2 = ParagraphStyle(
            "h2",
            fontName=bold,
            fontSize=12.5,
            leading=16,
            textColor=ACCENT,
            spaceBefore=10,
            spaceAfter=4,
        )
        self.body = ParagraphStyle(
            "body", fontName=regular, fontSize=9, leading=12, textColor=INK, alignment=TA_LEFT
        )
        self.small = ParagraphStyle(
            "small", fontName=regular, fontSize=7.8, leading=9.6, textColor=INK
        )
        self.muted = ParagraphStyle(
            "muted", fontName=regular, fontSize=7.8, leading=10, textColor=MUTED
        )
        self.cell = ParagraphStyle("cell", fontName=regular, fontSize=7.6, leading=9.2)
        self.head = ParagraphStyle(
            "head", fontName=bold, fontSize=7.6, leading=9.2, textColor=colors.white
        )
        self.kpi_value = ParagraphStyle(
            "kpi", fontName=bold, fontSize=15, leading=18, textColor=INK, alignment=1
        )
        self.kpi_label = ParagraphStyle(
            "kpil", fontName=regular, fontSize=7.4, leading=9, textColor=MUTED, alignment=1
        )
        self.mono_style = ParagraphStyle("mono", fontName=mono, fontSize=8.6, leading=11)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _score(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f}"


def _pct(part: int, whole: int) -> str:
    return DASH if whole == 0 else f"{100 * part / whole:.0f} %"


class _Report:
    def __init__(self, report: SiteMonthReport) -> None:
        self.r = report
        self.s = _Styles()
        self.zone = site_zone(report.timezone)

    def local(self, moment: datetime | None, fmt: str = "%d %b %H:%M") -> str:
        return DASH if moment is None else moment.astimezone(self.zone).strftime(fmt)

    # ------------------------------------------------------------ building blocks

    def table(
        self,
        header: Sequence[str],
        rows: Sequence[Sequence[Any]],
        widths: Sequence[float],
        *,
        align_right: Sequence[int] = (),
    ) -> Table:
        s = self.s
        data: list[list[Any]] = [[Paragraph(_esc(h), s.head) for h in header]]
        for row in rows:
            data.append(
                [c if isinstance(c, Paragraph) else Paragraph(_esc(str(c)), s.cell) for c in row]
            )
        table = Table(data, colWidths=list(widths), repeatRows=1)
        style = [
            ("BACKGROUND", (0, 0), (-1, 0), ACCENT),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("TOPPADDING", (0, 0), (-1, -1), 2.5),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
            ("LEFTPADDING", (0, 0), (-1, -1), 3),
            ("RIGHTPADDING", (0, 0), (-1, -1), 3),
            ("LINEBELOW", (0, 0), (-1, -1), 0.25, RULE),
        ]
        style += [("BACKGROUND", (0, i), (-1, i), ZEBRA) for i in range(2, len(data), 2)]
        table.setStyle(TableStyle(style))
        for col in align_right:
            for row_cells in data[1:]:
                row_cells[col].style = ParagraphStyle(f"r{col}", parent=self.s.cell, alignment=2)
        return table

    def heading(self, text: str) -> list[Any]:
        return [CondPageBreak(40 * mm), Paragraph(_esc(text), self.s.h2)]

    # ------------------------------------------------------------ sections

    def title_band(self) -> Table:
        r, s = self.r, self.s
        last_day = r.month.days()[-1]
        period = (
            f"{r.month.first_day().strftime('%d')}{DASH}{last_day.strftime('%d %B %Y')}, "
            f"local time {r.timezone}"
        )
        rows = [
            [Paragraph("Monthly service report", s.title)],
            [Paragraph(f"{_esc(r.site_name)} · {r.month.label}", s.subtitle)],
            [Paragraph(_esc(period), s.subtitle)],
        ]
        band = Table(rows, colWidths=[CONTENT_W])
        band.setStyle(
            TableStyle(
                [
                    ("BACKGROUND", (0, 0), (-1, -1), ACCENT),
                    ("LEFTPADDING", (0, 0), (-1, -1), 10),
                    ("TOPPADDING", (0, 0), (0, 0), 10),
                    ("BOTTOMPADDING", (0, -1), (-1, -1), 10),
                ]
            )
        )
        return band

    def key_figures(self) -> Table:
        r, s = self.r, self.s
        sev = r.deviations_by_severity
        survey = DASH if r.surveys.mean is None else f"{r.surveys.mean:.1f} / 5"
        figures = [
            (_score(r.mean_score), f"mean score, {r.shifts} shifts"),
            (_pct(r.rounds_completed, r.rounds_expected), "rounds completed"),
            (str(len(r.deviations)), f"deviations ({sev['critical']} critical)"),
            (str(r.rectification.unresolved), "still unresolved"),
            (survey, f"survey, {r.surveys.responses} answers"),
            (str(r.emergencies.sos_events), "SOS alarms"),
        ]
        cells = [
            [Paragraph(_esc(v), s.kpi_value), Paragraph(_esc(label), s.kpi_label)]
            for v, label in figures
        ]
        width = CONTENT_W / len(cells)
        inner = [Table([[c[0]], [c[1]]], colWidths=[width - 6]) for c in cells]
        for t in inner:
            t.setStyle(TableStyle([("LEFTPADDING", (0, 0), (-1, -1), 0)]))
        table = Table([inner], colWidths=[width] * len(cells))
        table.setStyle(
            TableStyle(
                [
                    ("BOX", (0, 0), (-1, -1), 0.5, RULE),
                    ("INNERGRID", (0, 0), (-1, -1), 0.5, RULE),
                    ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                    ("TOPPADDING", (0, 0), (-1, -1), 6),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
                ]
            )
        )
        return table

    def trend_chart(self) -> Drawing:
        """Daily mean scores; a line joins consecutive days only, so gaps stay visible."""
        r, s = self.r, self.s
        height = 60 * mm
        drawing = Drawing(CONTENT_W, height)
        plot = LinePlot()
        plot.x, plot.y = 30, 30
        plot.width, plot.height = CONTENT_W - 45, height - 50
        runs: list[list[tuple[int, float]]] = []
        previous_day = -1
        for d in r.days:
            if d.mean_score is None:
                continue
            if d.day.day != previous_day + 1 or not runs:
                runs.append([])
            runs[-1].append((d.day.day, d.mean_score))
            previous_day = d.day.day
        n_days = len(r.days)
        plot.data = runs or [[(1, 0)]]
        for i in range(len(plot.data)):
            line = plot.lines[i]
            line.strokeColor = ACCENT if runs else colors.transparent
            line.strokeWidth = 1.4
            line.symbol = makeMarker("FilledCircle", size=3.4, fillColor=ACCENT)
            if not runs:
                line.symbol = None
        plot.xValueAxis.valueMin, plot.xValueAxis.valueMax = 0.5, n_days + 0.5
        plot.xValueAxis.valueSteps = [d for d in range(1, n_days + 1) if d == 1 or d % 5 == 0]
        plot.yValueAxis.valueMin, plot.yValueAxis.valueMax = 0, 100
        plot.yValueAxis.valueSteps = [0, 20, 40, 60, 80, 100]
        for axis in (plot.xValueAxis, plot.yValueAxis):
            axis.labels.fontName, axis.labels.fontSize = s.regular, 7
            axis.strokeColor = MUTED
        plot.yValueAxis.visibleGrid = True
        plot.yValueAxis.gridStrokeColor = RULE
        plot.yValueAxis.gridStrokeWidth = 0.3
        plot.xValueAxis.labelTextFormat = "%d"
        drawing.add(plot)
        drawing.add(
            String(
                plot.x,
                4,
                f"day of {r.month.label} (local)",
                fontName=s.regular,
                fontSize=7,
                fillColor=MUTED,
            )
        )
        drawing.add(
            String(
                plot.x - 22, height - 8, "score", fontName=s.regular, fontSize=7, fillColor=MUTED
            )
        )
        if not runs:
            drawing.add(
                String(
                    plot.x + plot.width / 2,
                    plot.y + plot.height / 2,
                    "no scored shifts this month",
                    fontName=s.regular,
                    fontSize=9,
                    fillColor=MUTED,
                    textAnchor="middle",
                )
            )
        return drawing

    def rounds_section(self) -> list[Any]:
        r = self.r
        rows = [
            (
                p.name,
                p.shifts,
                _score(p.mean_score),
                p.rounds_expected,
                p.rounds_completed,
                p.rounds_partial,
                p.rounds_missed,
                f"{p.checkpoints_on_time} / {p.checkpoints_late} / {p.checkpoints_missed}",
            )
            for p in r.posts
        ]
        header = (
            "Post",
            "Shifts",
            "Mean score",
            "Rounds due",
            "Complete",
            "Partial",
            "Missed",
            "Checkpoints on time / late / missed",
        )
        w = CONTENT_W
        widths = [0.22 * w, 0.08 * w, 0.1 * w, 0.1 * w, 0.1 * w, 0.09 * w, 0.09 * w, 0.22 * w]
        out: list[Any] = [
            self.table(header, rows, widths, align_right=(1, 2, 3, 4, 5, 6)),
            Spacer(1, 4 * mm),
        ]
        if any(p.rounds_expected for p in r.posts):
            out.append(self.rounds_chart())
        return out

    def rounds_chart(self) -> Drawing:
        posts = [p for p in self.r.posts if p.rounds_expected]
        s = self.s
        bar_h = 13
        height = max(46, len(posts) * (bar_h + 8) + 40)
        drawing = Drawing(CONTENT_W, height)
        chart = HorizontalBarChart()
        chart.x, chart.y = 90, 30
        chart.width, chart.height = CONTENT_W - 200, height - 38
        chart.data = [
            [p.rounds_completed for p in posts],
            [p.rounds_partial for p in posts],
            [p.rounds_missed for p in posts],
        ]
        chart.categoryAxis.style = "stacked"
        chart.categoryAxis.categoryNames = [p.name for p in posts]
        chart.categoryAxis.labels.fontName = s.regular
        chart.categoryAxis.labels.fontSize = 7.5
        chart.categoryAxis.labels.boxAnchor = "e"
        chart.categoryAxis.labels.dx = -4
        chart.categoryAxis.reverseDirection = True
        chart.valueAxis.valueMin = 0
        chart.valueAxis.labels.fontName, chart.valueAxis.labels.fontSize = s.regular, 7
        chart.valueAxis.visibleGrid = True
        chart.valueAxis.gridStrokeColor = RULE
        chart.valueAxis.gridStrokeWidth = 0.3
        chart.barWidth = bar_h
        for i, colour in enumerate((GOOD, WARN, BAD)):
            chart.bars[i].fillColor = colour
            chart.bars[i].strokeColor = None
        drawing.add(chart)
        legend = Legend()
        legend.x, legend.y = chart.x + chart.width + 18, height - 10
        legend.fontName, legend.fontSize = s.regular, 7.5
        legend.alignment = "right"
        legend.colorNamePairs = [(GOOD, "complete"), (WARN, "partial"), (BAD, "missed")]
        legend.deltay = 11
        drawing.add(legend)
        drawing.add(String(chart.x, 4, "rounds", fontName=s.regular, fontSize=7, fillColor=MUTED))
        return drawing

    def equipment_section(self) -> list[Any]:
        items = [(f"{p.name}: {item}", share) for p in self.r.posts for item, share in p.equipment]
        if not items:
            return [Paragraph("No required equipment was scored this month.", self.s.body)]
        s = self.s
        bar_h = 11
        height = len(items) * (bar_h + 6) + 44
        drawing = Drawing(CONTENT_W, height)
        chart = HorizontalBarChart()
        chart.x, chart.y = 130, 30
        chart.width, chart.height = CONTENT_W - 170, height - 40
        chart.data = [[round(100 * share, 1) for _, share in items]]
        chart.categoryAxis.categoryNames = [name for name, _ in items]
        chart.categoryAxis.labels.fontName = s.regular
        chart.categoryAxis.labels.fontSize = 7.5
        chart.categoryAxis.labels.boxAnchor = "e"
        chart.categoryAxis.labels.dx = -4
        chart.categoryAxis.reverseDirection = True
        chart.valueAxis.valueMin, chart.valueAxis.valueMax = 0, 100
        chart.valueAxis.valueSteps = [0, 20, 40, 60, 80, 100]
        chart.valueAxis.labels.fontName, chart.valueAxis.labels.fontSize = s.regular, 7
        chart.valueAxis.labelTextFormat = "%d %%"
        chart.barWidth = bar_h
        chart.bars[0].strokeColor = None
        for i, (_, share) in enumerate(items):
            chart.bars[(0, i)].fillColor = GOOD if share >= EQUIPMENT_TARGET else WARN
        chart.barLabelFormat = "%.0f %%"
        chart.barLabels.fontName, chart.barLabels.fontSize = s.regular, 7
        chart.barLabels.boxAnchor = "w"
        chart.barLabels.dx = 3
        drawing.add(chart)
        target_x = chart.x + chart.width * EQUIPMENT_TARGET
        drawing.add(
            Line(
                target_x,
                chart.y,
                target_x,
                chart.y + chart.height,
                strokeColor=BAD,
                strokeWidth=0.8,
                strokeDashArray=[3, 2],
            )
        )
        drawing.add(
            String(
                target_x,
                chart.y + chart.height + 3,
                "target 90 %",
                fontName=s.regular,
                fontSize=6.5,
                fillColor=BAD,
                textAnchor="middle",
            )
        )
        drawing.add(
            String(
                chart.x,
                4,
                "share of on-duty time carried and charged",
                fontName=s.regular,
                fontSize=7,
                fillColor=MUTED,
            )
        )
        return [drawing]

    def deviations_section(self) -> list[Any]:
        r, s = self.r, self.s
        rect = r.rectification
        sev = r.deviations_by_severity
        median_h = (
            DASH if rect.median_hours_to_resolve is None else f"{rect.median_hours_to_resolve} h"
        )
        summary = (
            f"{rect.opened} deviations ({sev['critical']} critical, {sev['major']} major, "
            f"{sev['minor']} minor). Resolved on time: {rect.resolved_on_time}; "
            f"resolved late: {rect.resolved_late}; verified: {rect.verified}; "
            f"still unresolved: {rect.unresolved} (overdue now: {rect.overdue_now}). "
            f"Median time to resolve: {median_h}."
        )
        out: list[Any] = [Paragraph(_esc(summary), s.body), Spacer(1, 2 * mm)]
        if not r.deviations:
            return out
        rows = []
        for d in r.deviations:
            what = RULE_LABELS.get(d.rule, d.rule.replace("_", " "))
            rows.append(
                (
                    self.local(d.occurred_at),
                    d.post,
                    d.guard or DASH,
                    Paragraph(f"<b>{_esc(what)}</b><br/>{_esc(d.detail)}", s.cell),
                    d.severity,
                    STATUS_LABELS.get(d.status, d.status)
                    + (f" (esc. {d.escalation_level})" if d.escalation_level else ""),
                    d.owner,
                    self.local(d.due_at),
                    self.local(d.resolved_at),
                )
            )
        w = CONTENT_W
        widths = [
            0.09 * w,
            0.09 * w,
            0.1 * w,
            0.235 * w,
            0.085 * w,
            0.1 * w,
            0.1 * w,
            0.095 * w,
            0.095 * w,
        ]
        header = ("When", "Post", "Guard", "What", "Severity", "Status", "Owner", "Due", "Resolved")
        out.append(self.table(header, rows, widths))
        return out

    def inspections_complaints(self) -> list[Any]:
        r, s = self.r, self.s
        out: list[Any] = []
        if r.inspections:
            w = CONTENT_W
            out.append(
                self.table(
                    ("Spot check", "Post", "Result", "Notes"),
                    [
                        (self.local(i.inspected_at), i.post, i.result, i.notes or DASH)
                        for i in r.inspections
                    ],
                    [0.14 * w, 0.16 * w, 0.1 * w, 0.6 * w],
                )
            )
        else:
            out.append(Paragraph("No supervisor spot checks were recorded.", s.body))
        out.append(Spacer(1, 3 * mm))
        if r.complaints:
            w = CONTENT_W
            out.append(
                self.table(
                    ("Received", "Channel", "Post", "Complaint", "Status", "Outcome"),
                    [
                        (
                            self.local(c.received_at),
                            c.channel.replace("_", " "),
                            c.post,
                            c.description,
                            c.status,
                            c.resolution or DASH,
                        )
                        for c in r.complaints
                    ],
                    [0.12 * w, 0.09 * w, 0.12 * w, 0.33 * w, 0.1 * w, 0.24 * w],
                )
            )
        else:
            out.append(Paragraph("No complaints were received.", s.body))
        return out

    def emergencies_section(self) -> list[Any]:
        e = self.r.emergencies
        if e.sos_events == 0:
            text = "No SOS alarm was raised this month."
        else:
            alarms = "1 SOS alarm" if e.sos_events == 1 else f"{e.sos_events} SOS alarms"
            parts = [f"{alarms}; {e.acknowledged} acknowledged"]
            if e.median_response_s is not None:
                parts.append(
                    f"median response {e.median_response_s:.0f} s, slowest {e.max_response_s:.0f} s"
                )
            if e.unacknowledged:
                parts.append(f"{e.unacknowledged} never acknowledged")
            if e.untracked:
                parts.append(f"{e.untracked} without acknowledgement records")
            text = "; ".join(parts) + "."
        return [Paragraph(_esc(text), self.s.body)]

    def survey_section(self) -> list[Any]:
        sv, s = self.r.surveys, self.s
        if sv.responses == 0:
            return [Paragraph("No survey answers were received this month.", s.body)]
        height = 46 * mm
        drawing = Drawing(CONTENT_W, height)
        chart = VerticalBarChart()
        chart.x, chart.y = 30, 30
        chart.width, chart.height = 80 * mm, height - 42
        chart.data = [list(sv.distribution)]
        chart.categoryAxis.categoryNames = ["1", "2", "3", "4", "5"]
        chart.categoryAxis.labels.fontName = s.regular
        chart.categoryAxis.labels.fontSize = 7.5
        chart.valueAxis.valueMin = 0
        top = max(sv.distribution)
        chart.valueAxis.valueMax = top + 1
        chart.valueAxis.valueStep = 1 if top < 8 else max(1, top // 5)
        chart.valueAxis.labels.fontName, chart.valueAxis.labels.fontSize = s.regular, 7
        chart.bars[0].fillColor = ACCENT
        chart.bars[0].strokeColor = None
        chart.barLabelFormat = "%d"
        chart.barLabels.fontName, chart.barLabels.fontSize = s.regular, 7
        chart.barLabels.nudge = 6
        drawing.add(chart)
        drawing.add(
            String(
                chart.x,
                4,
                "rating (1 poor, 5 excellent)",
                fontName=s.regular,
                fontSize=7,
                fillColor=MUTED,
            )
        )
        drawing.add(
            String(
                chart.x + chart.width + 30,
                chart.y + chart.height - 20,
                f"mean {sv.mean:.2f} / 5",
                fontName=s.bold,
                fontSize=13,
                fillColor=INK,
            )
        )
        drawing.add(
            String(
                chart.x + chart.width + 30,
                chart.y + chart.height - 36,
                f"{sv.responses} answers",
                fontName=s.regular,
                fontSize=8.5,
                fillColor=MUTED,
            )
        )
        out: list[Any] = [drawing, Spacer(1, 2 * mm)]
        if sv.comments:
            rows = [
                (self.local(c.submitted_at, "%d %b"), f"{c.rating} / 5", c.text)
                for c in sv.comments[:MAX_COMMENTS]
            ]
            w = CONTENT_W
            out.append(self.table(("Date", "Rating", "Comment"), rows, [0.1 * w, 0.1 * w, 0.8 * w]))
            if len(sv.comments) > MAX_COMMENTS:
                out.append(
                    Paragraph(
                        f"{len(sv.comments) - MAX_COMMENTS} more comments are in the CSV.",
                        s.muted,
                    )
                )
        return out

    def chain_section(self) -> list[Any]:
        r, s = self.r, self.s
        head = r.chain_head
        text = (
            "Every piece of evidence accepted for this site (taps, visits, heartbeats, "
            "alarms, gateway records) is linked into a SHA-256 hash chain. Keep this value: "
            "if the company ever altered or removed accepted evidence, the chain recomputed "
            "from the records would no longer end in it "
            f"(<font face='{s.mono}'>patrol chain verify</font>)."
        )
        rows = [
            [Paragraph("Chain length", s.cell), Paragraph(f"{r.chain_length:,} entries", s.cell)],
            [
                Paragraph("Head (SHA-256)", s.cell),
                Paragraph(f"{head[:32]}<br/>{head[32:]}", s.mono_style),
            ],
            [
                Paragraph("Read at", s.cell),
                Paragraph(
                    _esc(self.local(r.generated_at, "%d %B %Y %H:%M") + f" ({r.timezone})"),
                    s.cell,
                ),
            ],
        ]
        table = Table(rows, colWidths=[32 * mm, CONTENT_W - 32 * mm])
        table.setStyle(
            TableStyle(
                [
                    ("BOX", (0, 0), (-1, -1), 0.5, RULE),
                    ("LINEBELOW", (0, 0), (-1, -2), 0.25, RULE),
                    ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                    ("BACKGROUND", (0, 0), (0, -1), ZEBRA),
                ]
            )
        )
        return [Paragraph(text, s.body), Spacer(1, 2 * mm), table]

    # ------------------------------------------------------------ assembly

    def story(self) -> list[Any]:
        story: list[Any] = [self.title_band(), Spacer(1, 5 * mm), self.key_figures()]
        story += self.heading("Score trend")
        story.append(
            Paragraph(
                "Mean score (0 to 100) of the shifts that started each day; every deduction "
                "behind a score is listed in the shift's explanation.",
                self.s.muted,
            )
        )
        story.append(self.trend_chart())
        story += self.heading("Rounds per post")
        story += self.rounds_section()
        story += self.heading("Equipment readiness")
        story += self.equipment_section()
        story += self.heading("Deviations and rectification")
        story += self.deviations_section()
        story += self.heading("Inspections and complaints")
        story += self.inspections_complaints()
        story += self.heading("Emergencies")
        story += self.emergencies_section()
        story += self.heading("Customer survey")
        story += self.survey_section()
        story.append(KeepTogether(self.heading("Tamper evidence") + self.chain_section()))
        return story


def _numbered_canvas(site: str, month: str, font: str) -> type[Canvas]:
    class NumberedCanvas(Canvas):  # type: ignore[misc]
        """Two passes: 'page n of m' needs m, known only after the last page."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                self.setFont(font, 7.5)
                self.setFillColor(MUTED)
                self.setStrokeColor(RULE)
                self.line(MARGIN, 11 * mm, PAGE_W - MARGIN, 11 * mm)
                self.drawString(MARGIN, 7 * mm, f"{site} · monthly service report · {month}")
                self.drawRightString(PAGE_W - MARGIN, 7 * mm, f"page {self._pageNumber} of {total}")
                super().showPage()
            super().save()

    return NumberedCanvas


def render_pdf(report: SiteMonthReport) -> bytes:
    """The report as PDF bytes (reproducible for the same report)."""
    builder = _Report(report)
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=16 * mm,
        title=f"Monthly service report, {report.site_name}, {report.month.label}",
        author="patrol-verification",
        subject=f"site {report.site_id}, {report.month}",
        invariant=1,
    )
    doc.build(
        builder.story(),
        canvasmaker=_numbered_canvas(report.site_name, report.month.label, builder.s.regular),
    )
    return out.getvalue()
