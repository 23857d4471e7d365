"""A search's views as the Optuna dashboard draws them: slice (the metric against each param, dots coloured by
trial), contour (the two most important params, the metric interpolated between trials) and the empirical
distribution function of the metric. The intermediate values (each trial's series, pruned ones marked) are the
report's curves.
"""

from __future__ import annotations

from collections.abc import Sequence

from batchsweep.report.svgplot import Axis, Chart, Dim, color, esc, finite, fmt, goodness, sample_every

GRID = 24  # contour cells per side


def _trial_colour(k: int, n: int) -> str:
    """Early trials light, late ones dark (Optuna's slice plot colours by trial number the same way)."""
    t = k / max(n - 1, 1)
    r, g, b = (round(a + (z - a) * t) for a, z in ((0xc6, 0x08), (0xdb, 0x30), (0xef, 0x6b)))
    return f"#{r:02x}{g:02x}{b:02x}"


def slice_plot(dim: Dim, trials: Sequence[float], values: Sequence[float], *, metric: str, width: float = 372,
               height: float = 250) -> str:
    c = Chart("slice", f"slice: {metric} by {dim.label}", width, height, data_param=dim.label)
    cat = dim.categories is not None
    pts = [(x, y, t) for x, y, t in zip(dim.values, values, trials, strict=True)
           if finite(y) and (cat or finite(x) and (not dim.log or x > 0))]
    if not pts:
        c.note(f"no finite {metric}")
        return c.svg()
    ml, mr, mt, mb = 58, 14, 30, 50
    ys = [y for _, y, _ in pts]
    yax = Axis(height - mb, mt, lo=min(ys), hi=max(ys), pad=0.08)
    xax = Axis.of(dim, ml, width - mr, pad=0.06)
    c.y_axis(yax, ml, metric, grid_to=width - mr)
    c.x_axis(xax, height - mb, dim.label + (" (log)" if dim.log else ""))
    order = sorted({t for _, _, t in pts if finite(t)})
    rank = {t: k for k, t in enumerate(order)}
    for x, y, t in pts[:: sample_every(len(pts))]:
        c.add(
            "circle",
            tip=f"trial {fmt(t)}: {dim.label}={fmt(x)} → {metric} {fmt(y)}",
            cx=xax(x),
            cy=yax(y),
            r=3,
            fill=_trial_colour(rank.get(t, 0), len(order)),
            class_="slice-pt",
        )
    return c.svg()


def contour(xdim: Dim, ydim: Dim, values: Sequence[float], *, metric: str, maximize: bool, width: float = 572,
            height: float = 400) -> str:
    """The metric over two numeric params: each cell the inverse-distance-weighted mean of the trials
    (distances on the axes as drawn, so log axes interpolate in log space), the trials as dots on top."""
    c = Chart("contour", f"contour: {metric} over {xdim.label} × {ydim.label}", width, height,
              data_x=xdim.label, data_y=ydim.label)
    pts = [(x, y, v) for x, y, v in zip(xdim.values, ydim.values, values, strict=True)
           if finite(x) and finite(y) and finite(v) and (not xdim.log or x > 0) and (not ydim.log or y > 0)]
    if len(pts) < 3:
        c.note("fewer than three trials with both params and the metric")
        return c.svg()
    ml, mr, mt, mb = 62, 70, 30, 48
    xax, yax = Axis.of(xdim, ml, width - mr, pad=0.0), Axis.of(ydim, height - mb, mt, pad=0.0)
    c.y_axis(yax, ml, ydim.label + (" (log)" if ydim.log else ""))
    c.x_axis(xax, height - mb, xdim.label + (" (log)" if xdim.log else ""))
    lo, hi = min(v for _, _, v in pts), max(v for _, _, v in pts)
    px = [(xax(x), yax(y), v) for x, y, v in pts]
    cw, ch = (width - mr - ml) / GRID, (height - mb - mt) / GRID
    for i in range(GRID):
        for j in range(GRID):
            cx, cy = ml + (i + 0.5) * cw, mt + (j + 0.5) * ch
            weights = [(1.0 / ((cx - a) ** 2 + (cy - b) ** 2 + 1e-6) ** 1.5, v) for a, b, v in px]
            total = sum(w for w, _ in weights)
            est = sum(w * v for w, v in weights) / total
            c.add("rect", x=ml + i * cw, y=mt + j * ch, width=cw + 0.5, height=ch + 0.5,
                  fill=color(goodness(est, lo, hi, maximize)), class_="ccell")
    for (a, b, v), (x, y, _) in zip(px, pts, strict=True):
        c.add(
            "circle",
            tip=f"{xdim.label}={fmt(x)}, {ydim.label}={fmt(y)} → {metric} {fmt(v)}",
            cx=a,
            cy=b,
            r=3.2,
            class_="contour-pt",
        )
    c.colorbar(width - mr + 14, mt, height - mb, lo, hi, maximize)
    return c.svg()


def edf(values: Sequence[float], *, metric: str, width: float = 572, height: float = 260) -> str:
    """The share of trials whose metric is at most x (Optuna's EDF plot), a step line."""
    c = Chart("edf", f"empirical distribution of {metric}", width, height)
    ok = sorted(v for v in values if finite(v))
    if not ok:
        c.note(f"no finite {metric}")
        return c.svg()
    ml, mr, mt, mb = 58, 16, 30, 44
    xax = Axis(ml, width - mr, lo=ok[0], hi=ok[-1], pad=0.04)
    yax = Axis(height - mb, mt, lo=0.0, hi=1.0)
    c.y_axis(yax, ml, "share of trials ≤ x", grid_to=width - mr)
    c.x_axis(xax, height - mb, metric)
    n = len(ok)
    pts = [f"{xax(ok[0]):.1f},{yax(0.0):.1f}"]
    for k, v in enumerate(ok, 1):
        pts += [f"{xax(v):.1f},{yax((k - 1) / n):.1f}", f"{xax(v):.1f},{yax(k / n):.1f}"]
    c.add(
        "polyline", tip=f"{n} trials: median {fmt(ok[(n - 1) // 2])}", points=" ".join(pts), class_="edf-line"
    )
    return c.svg()


def section(dims: dict[str, Dim], params: Sequence[str], trials: Sequence[float], values: Sequence[float], *,
            metric: str, maximize: bool, scores: dict[str, float]) -> str:
    """Slice, contour (the two most important numeric params, by `scores`) and EDF, with their captions."""
    if not metric or not any(finite(v) for v in values) or not params:
        return ""
    out = ['<h2 id="search-views">Slice, contour and distribution</h2><div class="grid3">']
    out += [slice_plot(dims[p], trials, values, metric=metric) for p in params]
    out.append("</div>")
    numeric = sorted((p for p in params if dims[p].categories is None),
                     key=lambda p: (-scores.get(p, 0.0), params.index(p)))
    pair = contour(dims[numeric[0]], dims[numeric[1]], values, metric=metric, maximize=maximize) \
        if len(numeric) >= 2 else ""
    out.append(f'<div class="grid2">{pair}{edf(values, metric=metric)}</div>')
    why = (
        f" The contour shows the two most important numeric params ({esc(numeric[0])}, {esc(numeric[1])}), "
        "the metric between trials interpolated from the nearest ones."
        if pair
        else ""
    )
    out.append(
        f'<p class="cap">Slice: one dot per trial, later trials darker. EDF: the share of trials whose '
        f"{esc(metric)} is at most each value (a curve further {'right' if maximize else 'left'} is a better "
        f"search).{why}</p>"
    )
    return "\n".join(out)
