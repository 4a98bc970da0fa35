"""One small SVG bar-chart writer for every benchmark report (standard library only)."""
import math

COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7"]




def fmt_ops(v):
    if v is None:
        return "failed"
    if v >= 1e6:
        return f"{v/1e6:.2f} M"
    if v >= 1e3:
        return f"{v/1e3:.1f} k"
    return f"{v:.0f}"


def bars_svg(path, title, unit, groups, series, values, ranges=None, log=False, note=""):
    """groups: x labels; series: names; values[(g, s)] -> number; ranges[(g, s)] -> (lo, hi)."""
    ranges = ranges or {}
    w = max(760, 90 + 170 * len(series))
    h, left, bottom, top = 380, 80, 70, 44
    vals = [v for v in values.values() if v]
    vals += [hi for (_, hi) in ranges.values() if hi]
    vmax = max(vals) * 1.15
    vmin = min(v for v in values.values() if v) / 2 if log else 0

    def y(v):
        if log:
            f = (math.log10(v) - math.log10(vmin)) / (math.log10(vmax) - math.log10(vmin))
        else:
            f = v / vmax
        return h - bottom - f * (h - bottom - top)

    gw = (w - left - 20) / len(groups)
    bw = gw * 0.8 / len(series)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w/2}" y="22" text-anchor="middle" font-size="15">{title}</text>',
           f'<line x1="{left}" y1="{h-bottom}" x2="{w-10}" y2="{h-bottom}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h-bottom}" stroke="black"/>',
           f'<text x="16" y="{(h-bottom+top)/2}" transform="rotate(-90 16 {(h-bottom+top)/2})" text-anchor="middle">{unit}{" (log)" if log else ""}</text>']
    if note:
        out.append(f'<text x="{w/2}" y="38" text-anchor="middle" font-size="10" fill="#555">{note}</text>')
    ticks = []
    if log:
        e = math.floor(math.log10(vmin))
        while 10 ** e <= vmax:
            if 10 ** e >= vmin:
                ticks.append(10 ** e)
            e += 1
    else:
        step = 10 ** math.floor(math.log10(vmax / 4))
        ticks = [i * step for i in range(0, int(vmax / step) + 1)][:: max(1, int(vmax / step) // 6)]
    for t in ticks:
        out.append(f'<line x1="{left-4}" y1="{y(t):.1f}" x2="{w-10}" y2="{y(t):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left-6}" y="{y(t)+4:.1f}" text-anchor="end">{fmt_ops(t)}</text>')
    for gi, g in enumerate(groups):
        x0 = left + gi * gw + gw * 0.1
        for si, s in enumerate(series):
            v = values.get((g, s))
            if not v:
                continue
            x = x0 + si * bw
            out.append(f'<rect x="{x:.1f}" y="{y(v):.1f}" width="{bw-2:.1f}" height="{h-bottom-y(v):.1f}" fill="{COLORS[si % len(COLORS)]}"/>')
            lo, hi = ranges.get((g, s), (None, None))
            label_y = y(v) - 4
            if lo and hi:
                cx = x + bw / 2 - 1
                out.append(f'<line x1="{cx:.1f}" y1="{y(lo):.1f}" x2="{cx:.1f}" y2="{y(hi):.1f}" stroke="black" stroke-width="1"/>')
                out.append(f'<line x1="{cx-4:.1f}" y1="{y(hi):.1f}" x2="{cx+4:.1f}" y2="{y(hi):.1f}" stroke="black"/>')
                out.append(f'<line x1="{cx-4:.1f}" y1="{y(lo):.1f}" x2="{cx+4:.1f}" y2="{y(lo):.1f}" stroke="black"/>')
                label_y = min(label_y, y(hi) - 4)
            out.append(f'<text x="{x+bw/2-1:.1f}" y="{label_y:.1f}" text-anchor="middle" font-size="10">{fmt_ops(v)}</text>')
        out.append(f'<text x="{left + gi*gw + gw/2:.1f}" y="{h-bottom+18}" text-anchor="middle">{g}</text>')
    for si, s in enumerate(series):
        out.append(f'<rect x="{left + si*170}" y="{h-26}" width="12" height="12" fill="{COLORS[si % len(COLORS)]}"/>')
        out.append(f'<text x="{left + si*170 + 16}" y="{h-16}">{s}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")
