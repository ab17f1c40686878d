"""A subscriber's statement as PDF (``reportlab``): the same figures as the statement page and CSV."""

from __future__ import annotations

import io

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from bridge.billing.rating import format_money
from bridge.conference.accounts import Statement

_GRID = TableStyle([
    ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
    ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
    ("FONTSIZE", (0, 0), (-1, -1), 8),
])  # fmt: skip


def render(st: Statement) -> bytes:
    styles = getSampleStyleSheet()
    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4, title=f"Statement {st.name}")
    last = st.end.date().fromordinal(st.end.date().toordinal() - 1)
    story: list[Flowable] = [
        Paragraph(f"Statement: {st.name} ({st.mobile})", styles["Title"]),
        Paragraph(f"{st.start:%Y-%m-%d} to {last:%Y-%m-%d} (UTC)", styles["Normal"]),
        Paragraph(f"Opening balance {format_money(st.opening)}; closing balance {format_money(st.closing)}",
                  styles["Normal"]),  # fmt: skip
        Spacer(1, 12),
        Paragraph("Movements", styles["Heading2"]),
    ]
    moves = [["date", "kind", "reference", "amount"]]
    moves += [[f"{m.at:%Y-%m-%d %H:%M}", m.kind, m.reference, format_money(m.amount)] for m in st.movements]
    story += [Table(moves, style=_GRID), Spacer(1, 12), Paragraph("Conferences", styles["Heading2"])]
    legs = [["conference", "leg", "destination", "billed s", "price"]]
    for run in st.runs:
        for leg in run.legs:
            price = "" if leg.price is None else format_money(leg.price)
            legs.append([f"{run.run_id} {run.subject}", str(leg.leg_id or ""), leg.destination,
                         str(leg.billed_s or 0), price])  # fmt: skip
    story.append(Table(legs, style=_GRID))
    doc.build(story)
    return out.getvalue()
