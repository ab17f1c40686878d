"""Server-side inline SVG charts (no JavaScript, no CDN). Pure: points in, markup out."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape


def bar_chart(
    points: Sequence[tuple[str, float]], *, title: str, unit: str = "min", width: int = 640, height: int = 220
) -> Markup:
    """A labelled bar chart; each bar has a ``<title>`` tooltip with its exact value."""
    pad_left, pad_bottom, pad_top = 48, 40, 24
    inner_w = width - pad_left - 8
    inner_h = height - pad_bottom - pad_top
    peak = max((v for _, v in points), default=0.0) or 1.0
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{pad_left}" y="16" class="chart-title">{escape(title)}</text>',
        f'<line x1="{pad_left}" y1="{pad_top + inner_h}" x2="{width - 8}" y2="{pad_top + inner_h}" class="axis"/>',
        f'<text x="{pad_left - 4}" y="{pad_top + 10}" text-anchor="end" class="tick">{peak:g}</text>',
        f'<text x="{pad_left - 4}" y="{pad_top + inner_h}" text-anchor="end" class="tick">0</text>',
    ]
    if not points:
        parts.append(f'<text x="{pad_left + 8}" y="{pad_top + inner_h // 2}" class="tick">no usage</text>')
    step = inner_w / max(len(points), 1)
    label_every = max(1, len(points) // 12)
    for i, (label, value) in enumerate(points):
        bar_h = inner_h * value / peak
        x = pad_left + i * step + step * 0.1
        y = pad_top + inner_h - bar_h
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{step * 0.8:.1f}" height="{bar_h:.1f}">'
            f"<title>{escape(label)}: {value:g} {escape(unit)}</title></rect>"
        )
        if i % label_every == 0:
            parts.append(
                f'<text class="tick" x="{x + step * 0.4:.1f}" y="{height - pad_bottom + 14}" '
                f'text-anchor="middle">{escape(label[-5:] if len(label) == 10 else label[:10])}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))
