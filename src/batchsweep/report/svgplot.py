"""Small inline-SVG charts for the HTML report: plain Python lists in, an ``<svg>`` string out.

No plotting library: the report must be one light file that opens offline. Every chart is an
``<svg class="plot" data-plot=NAME>`` with a title, axis labels and ``<title>`` hover tooltips.
Colour always encodes *goodness* (blue = better, red = worse), whatever the metric's direction.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

# ColorBrewer RdYlBu: both ends stay visible on white, so the best lines stand out.
_RAMP = ["#d73027", "#f46d43", "#fdae61", "#fee090", "#ffffbf", "#e0f3f8", "#abd9e9", "#74add1", "#4575b4"]
STATUS_COLORS = {
    "succeeded": "#4c9a6a",
    "pruned": "#b5a642",
    "failed": "#d62728",
    "timeout": "#ff7f0e",
    "cancelled": "#8c8c8c",
    "lost": "#9467bd",
    "pending": "#c7c7c7",
    "running": "#1f77b4",
}
MAX_MARKS = 3000  # beyond this a chart samples its marks, so a 100k-task report stays a few MB


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def fmt(v: Any) -> str:
    if not finite(v):
        return "–" if v is None or isinstance(v, float) else str(v)
    f = float(v)
    if f == int(f) and abs(f) < 1e6:
        return str(int(f))
    return f"{f:.3g}" if abs(f) >= 1e5 or abs(f) < 1e-3 else f"{f:.4g}"


def label_of(v: Any) -> str:
    """A param value as text; lists and dicts (unhashable) become JSON."""
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, default=str)
    return "None" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _natural(s: str) -> list[Any]:
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", s) if t]


def color(goodness: float) -> str:
    if not math.isfinite(goodness):
        return "#bbbbbb"
    x = min(max(goodness, 0.0), 1.0) * (len(_RAMP) - 1)
    i = min(int(x), len(_RAMP) - 2)
    a, b = (tuple(int(c[k:k + 2], 16) for k in (1, 3, 5)) for c in (_RAMP[i], _RAMP[i + 1]))
    return "#" + "".join(f"{round(p + (q - p) * (x - i)):02x}" for p, q in zip(a, b, strict=True))


def goodness(v: float, lo: float, hi: float, maximize: bool) -> float:
    if not finite(v):
        return math.nan
    t = 0.5 if hi <= lo else (v - lo) / (hi - lo)
    return t if maximize else 1.0 - t


def _ink(fill: str) -> str:
    r, g, b = (int(fill[k:k + 2], 16) for k in (1, 3, 5))
    return "#111" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#fff"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9)
    return [
        round((first + i) * step, 12)
        for i in range(int((hi - lo) / step + 2))
        if (first + i) * step <= hi + 1e-9 * step
    ]


@dataclass
class Dim:
    """One plotted column: numeric (``categories`` is None) or categorical, in display order."""

    label: str
    values: list[Any]
    categories: list[str] | None = None
    log: bool = False

    def levels(self) -> list[Any]:
        if self.categories is not None:
            return self.categories
        return sorted({v for v in self.values if finite(v)})


def dim_from(label: str, raw: Sequence[Any]) -> Dim:
    """Numbers become a numeric axis (log if they span >= 100x); anything else evenly spaced categories."""
    raw = [v.item() if hasattr(v, "item") and not hasattr(v, "__len__") else v for v in raw]
    present = [v for v in raw if not (v is None or (isinstance(v, float) and math.isnan(v)))]
    if present and all(finite(v) for v in present):
        vals = [float(v) if finite(v) else math.nan for v in raw]
        lo, hi = min(map(float, present)), max(map(float, present))
        return Dim(label, vals, log=lo > 0 and hi / lo >= 100)
    labels = [label_of(v) for v in raw]
    return Dim(label, labels, categories=sorted(set(labels), key=_natural))


class Axis:
    """Maps values to pixels: ``a`` is where the low end goes, ``b`` the high end."""

    def __init__(self, a: float, b: float, *, lo: float = 0.0, hi: float = 1.0,
                 categories: Sequence[str] | None = None, log: bool = False, pad: float = 0.0) -> None:
        self.a, self.b, self.log, self.categories = a, b, log, categories
        self.index = {c: i for i, c in enumerate(categories or [])}
        f = math.log10 if log else float
        lo_f, hi_f = f(lo), f(hi)
        # one value: an axis around it (0.5 is nothing to 1e30, so relative to it when large)
        if hi_f <= lo_f:
            half = max(0.5, abs(lo_f) * 1e-6)
            lo_f, hi_f = lo_f - half, hi_f + half
        span = (hi_f - lo_f) * pad
        self.lo, self.hi = lo_f - span, hi_f + span

    @classmethod
    def of(cls, dim: Dim, a: float, b: float, pad: float = 0.05) -> Axis:
        if dim.categories is not None:
            return cls(a, b, categories=dim.categories)
        levels = dim.levels() or [0.0]
        return cls(a, b, lo=levels[0], hi=levels[-1], log=dim.log, pad=pad)

    def __call__(self, v: Any) -> float:
        if self.categories is not None:
            n = len(self.categories)
            return self.a + (self.b - self.a) * (self.index.get(str(v), 0) + 0.5) / max(n, 1)
        x = math.log10(v) if self.log else float(v)
        return self.a + (self.b - self.a) * (x - self.lo) / (self.hi - self.lo)

    def ticks(self) -> list[tuple[float, str]]:
        if self.categories is not None:
            step = max(1, math.ceil(len(self.categories) / 30))
            return [(self(c), c) for c in self.categories[::step]]
        if self.log:
            exps = range(math.ceil(self.lo), math.floor(self.hi) + 1)
            if len(exps) >= 2:
                return [(self(10.0 ** e), fmt(10.0 ** e)) for e in exps]
            return [(self(t), fmt(t)) for t in nice_ticks(10 ** self.lo, 10 ** self.hi) if t > 0]
        return [(self(t), fmt(t)) for t in nice_ticks(self.lo, self.hi)]


def _short(s: str, n: int = 16) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


class Chart:
    def __init__(self, name: str, title: str, width: float, height: float, **attrs: str) -> None:
        self.name, self.title, self.width, self.height = name, title, width, height
        self.attrs = attrs
        self.parts: list[str] = []

    def add(self, tag: str, tip: str | None = None, **attrs: Any) -> None:
        a = " ".join(f'{k.rstrip("_").replace("_", "-")}="{esc(round(v, 2) if isinstance(v, float) else v)}"'
                     for k, v in attrs.items())
        self.parts.append(f"<{tag} {a}><title>{esc(tip)}</title></{tag}>" if tip else f"<{tag} {a}/>")

    def text(self, x: float, y: float, s: str, *, cls: str = "tk", anchor: str = "middle",
             rotate: float = 0, tip: str | None = None) -> None:
        rot = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate else ""
        title = f"<title>{esc(tip)}</title>" if tip else ""
        self.parts.append(
            f'<text class="{cls}" x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{rot}>{title}{esc(s)}</text>'
        )

    def x_axis(self, ax: Axis, y: float, label: str) -> None:
        ticks = ax.ticks()
        slanted = ax.categories is not None and (len(ticks) > 8 or max(len(t) for _, t in ticks) > 10)
        self.add("line", x1=min(ax.a, ax.b), x2=max(ax.a, ax.b), y1=y, y2=y, class_="ax")
        for px, t in ticks:
            self.add("line", x1=px, x2=px, y1=y, y2=y + 4, class_="ax")
            if slanted:
                self.text(px, y + 14, _short(t), anchor="end", rotate=-35, tip=t)
            else:
                self.text(px, y + 16, _short(t), tip=t if len(t) > 16 else None)
        self.text((ax.a + ax.b) / 2, self.height - 6, label, cls="al")

    def y_axis(self, ax: Axis, x: float, label: str, grid_to: float | None = None) -> None:
        self.add("line", x1=x, x2=x, y1=min(ax.a, ax.b), y2=max(ax.a, ax.b), class_="ax")
        for py, t in ax.ticks():
            if grid_to is not None:
                self.add("line", x1=x, x2=grid_to, y1=py, y2=py, class_="grid")
            self.text(x - 6, py + 4, _short(t, 12), anchor="end", tip=t if len(t) > 12 else None)
        mid = (ax.a + ax.b) / 2
        self.text(14, mid, label, cls="al", rotate=-90)

    def note(self, msg: str) -> None:
        self.text(self.width / 2, self.height / 2, msg, cls="al")

    def colorbar(self, x: float, top: float, bottom: float, lo: float, hi: float, maximize: bool,
                 *, labels: bool = True, pad: float = 0.0) -> None:
        ax = Axis(bottom, top, lo=lo, hi=hi, pad=pad)
        n = 40
        for i in range(n):
            v0 = ax.lo + (ax.hi - ax.lo) * i / n
            y0, y1 = ax(v0), ax(v0 + (ax.hi - ax.lo) / n)
            self.add("rect", x=x, y=y1, width=12, height=abs(y0 - y1) + 0.6,
                     fill=color(goodness(v0 + (ax.hi - ax.lo) / (2 * n), lo, hi, maximize)))
        for py, t in ax.ticks() if labels else []:
            self.add("line", x1=x + 12, x2=x + 16, y1=py, y2=py, class_="ax")
            self.text(x + 19, py + 4, t, anchor="start")
        self.text(x + 6, top - 8, "higher is better" if maximize else "lower is better", cls="tk")

    def svg(self) -> str:
        extra = "".join(f' {k.replace("_", "-")}="{esc(v)}"' for k, v in self.attrs.items())
        head = (f'<svg class="plot" data-plot="{esc(self.name)}"{extra} xmlns="http://www.w3.org/2000/svg" '
                f'viewBox="0 0 {self.width:.0f} {self.height:.0f}" width="{self.width:.0f}" '
                f'height="{self.height:.0f}" role="img" aria-label="{esc(self.title)}">')
        title = f'<text class="title" x="8" y="18">{esc(self.title)}</text>'
        return head + title + "".join(self.parts) + "</svg>"


def _sample(idx: list[int]) -> list[int]:
    step = max(1, math.ceil(len(idx) / MAX_MARKS))
    return idx[::step]


def parallel_coordinates(
    dims: list[Dim],
    metric: Dim,
    *,
    maximize: bool,
    tip: Callable[[int], str],
    keys: Sequence[Any],
    highlight: set[int],
    width: float = 1160,
    height: float = 360,
) -> str:
    c = Chart("parallel", f"Parallel coordinates: params → {metric.label}", width, height)
    ml, mr, mt, mb = 70, 60, 52, 28
    cols = dims + [metric]
    xs = [ml + (width - ml - mr) * i / max(len(cols) - 1, 1) for i in range(len(cols))]
    axes = [Axis.of(d, height - mb, mt, pad=0.03) for d in cols]
    ok = [i for i, v in enumerate(metric.values) if finite(v)]
    lo, hi = min(metric.values[i] for i in ok), max(metric.values[i] for i in ok)
    order = sorted(_sample(ok) + [i for i in highlight if i not in _sample(ok)],
                   key=lambda i: goodness(metric.values[i], lo, hi, maximize))
    for i in order:
        pts = []
        for d, ax, x in zip(cols, axes, xs, strict=True):
            v = d.values[i]
            if d.categories is not None or finite(v) and (not ax.log or v > 0):
                pts.append(f"{x:.1f},{ax(v):.1f}")
        c.add(
            "polyline",
            tip=tip(i),
            points=" ".join(pts),
            stroke=color(goodness(metric.values[i], lo, hi, maximize)),
            class_="pl hi" if i in highlight else "pl",
            data_task=keys[i],
        )
    for d, ax, x in zip(cols, axes, xs, strict=True):
        c.add("line", x1=x, x2=x, y1=mt, y2=height - mb, class_="pax")
        for py, t in ax.ticks():
            if d is metric:  # right of the colour strip, clear of the converging lines
                c.text(x + 22, py + 4, t, anchor="start")
            else:
                c.text(x - 5, py + 4, _short(t, 14), anchor="end", cls="tk halo", tip=t)
        c.text(x, mt - 24 if d is metric else mt - 14, _short(d.label, 22), cls="al", tip=d.label)
    c.colorbar(xs[-1] + 6, mt, height - mb, lo, hi, maximize, labels=False, pad=0.03)
    return c.svg()


def by_param(dim: Dim, metric: Dim, *, maximize: bool, scatter: bool = False, width: float = 372,
             height: float = 250) -> str:
    """The metric against one param: the mean per value with its min–max spread, or (`scatter`, or more than
    30 values) one dot per task, for params drawn at random, where a line joining the samples would mean
    nothing."""
    c = Chart("by-param", f"{metric.label} by {dim.label}", width, height, data_param=dim.label,
              data_kind="scatter" if scatter or dim.categories is None and len(dim.levels()) > 30 else "mean")
    ml, mr, mt, mb = 58, 14, 30, 50
    cat = dim.categories is not None
    pts = [(x, y) for x, y in zip(dim.values, metric.values, strict=True) if finite(y) and (cat or finite(x))]
    if not pts:
        c.note(f"no finite {metric.label}")
        return c.svg()
    ys = [y for _, y in pts]
    yax = Axis(height - mb, mt, lo=min(ys), hi=max(ys), pad=0.08)
    present = {x for x, _ in pts}
    sub = Dim(
        dim.label,
        [x for x, _ in pts],
        [k for k in dim.categories or [] if k in present] if cat else None,
        dim.log,
    )
    xax = Axis.of(sub, ml, width - mr, pad=0.06)
    c.y_axis(yax, ml, metric.label, grid_to=width - mr)
    c.x_axis(xax, height - mb, dim.label)
    levels = sub.levels()
    if scatter and not cat or len(levels) > 30:
        lo, hi = min(ys), max(ys)
        for x, y in pts[:: max(1, math.ceil(len(pts) / MAX_MARKS))]:
            c.add("circle", tip=f"{dim.label}={fmt(x)}: {fmt(y)}", cx=xax(x), cy=yax(y), r=2.5,
                  fill=color(goodness(y, lo, hi, maximize)))
        return c.svg()
    groups: dict[Any, list[float]] = {}
    for x, y in pts:
        groups.setdefault(x, []).append(y)
    stats = [(k, sum(g) / len(g), min(g), max(g), len(g)) for k in levels for g in [groups[k]]]
    best = (max if maximize else min)(stats, key=lambda s: s[1])
    for x, y in pts[:: max(1, math.ceil(len(pts) / MAX_MARKS))]:
        c.add("circle", cx=xax(x), cy=yax(y), r=1.8, class_="pt")
    if cat:
        for k, _, lo, hi, _ in stats:
            c.add("line", x1=xax(k), x2=xax(k), y1=yax(lo), y2=yax(hi), class_="range")
    else:
        band = [(xax(k), yax(hi)) for k, _, _, hi, _ in stats] + [
            (xax(k), yax(lo)) for k, _, lo, _, _ in stats[::-1]
        ]
        c.add("polygon", points=" ".join(f"{x:.1f},{y:.1f}" for x, y in band), class_="band")
        c.add("polyline", points=" ".join(f"{xax(k):.1f},{yax(m):.1f}" for k, m, *_ in stats), class_="mean")
    for k, m, lo, hi, n in stats:
        tip = f"{dim.label}={fmt(k)}: mean {fmt(m)}, min {fmt(lo)}, max {fmt(hi)} (n={n})"
        c.add("circle", tip=tip, cx=xax(k), cy=yax(m), r=5 if k == best[0] else 3.5,
              class_="best" if k == best[0] else "mdot")
    return c.svg()


def heatmap(xdim: Dim, ydim: Dim, metric: Dim, *, maximize: bool, width: float = 572,
            states: Sequence[str] | None = None) -> str:
    """Mean metric per pair of values; a cell without a finite value is `pruned` (hatched, the stop rule's
    colour) when a task of it was pruned, else `empty` (missing: failed, not run, or no metric). `states`:
    each task's status."""
    xl, yl = xdim.levels(), ydim.levels()
    cells: dict[tuple[Any, Any], list[float]] = {}
    pruned: dict[tuple[Any, Any], int] = {}
    for n, (x, y, v) in enumerate(zip(xdim.values, ydim.values, metric.values, strict=True)):
        if finite(v):
            cells.setdefault((x, y), []).append(v)
        elif states is not None and states[n] == "pruned":
            pruned[(x, y)] = pruned.get((x, y), 0) + 1
    means = {k: sum(v) / len(v) for k, v in cells.items()}
    ml = 36 + min(110, 7 * max((len(_short(fmt(y))) for y in yl), default=4))
    mr, mt, mb = 130, 40, 56
    ch = min(max(240 / max(len(yl), 1), 16), 40)
    bottom = mt + ch * len(yl)
    c = Chart(
        "heatmap",
        f"Mean {metric.label}: {ydim.label} × {xdim.label}",
        width,
        mt + max(ch * len(yl), 110) + mb,
    )
    cw = (width - ml - mr) / max(len(xl), 1)
    xax = Axis(ml, width - mr, categories=[fmt(v) for v in xl])
    yax = Axis(mt, bottom, categories=[fmt(v) for v in yl])
    if not means:
        c.note(f"no finite {metric.label}")
        return c.svg()
    lo, hi = min(means.values()), max(means.values())
    best = (max if maximize else min)(means, key=lambda k: means[k])
    for x, y in ((x, y) for x in xl for y in yl if (x, y) not in means):
        stopped = pruned.get((x, y), 0)
        what = (
            f"{stopped} task{'s' if stopped != 1 else ''} pruned by the stop rule, no final {metric.label}"
            if stopped
            else f"no finite {metric.label}"
        )
        c.add("rect", tip=f"{xdim.label}={fmt(x)}, {ydim.label}={fmt(y)}: {what}",
              x=xax(fmt(x)) - cw / 2 + 1, y=yax(fmt(y)) - ch / 2 + 1, width=cw - 2, height=ch - 2,
              class_="cell pruned" if stopped else "cell empty")
    for (x, y), m in means.items():
        fill = color(goodness(m, lo, hi, maximize))
        px, py = xax(fmt(x)) - cw / 2, yax(fmt(y)) - ch / 2
        tip = f"{xdim.label}={fmt(x)}, {ydim.label}={fmt(y)}: mean {fmt(m)} (n={len(cells[(x, y)])})"
        c.add("rect", tip=tip, x=px + 1, y=py + 1, width=cw - 2, height=ch - 2, fill=fill,
              class_="cell top" if (x, y) == best else "cell")
        if cw >= 36 and ch >= 16:
            c.parts.append(
                f'<text class="cv" x="{px + cw / 2:.1f}" y="{py + ch / 2 + 4:.1f}" text-anchor="middle" '
                f'fill="{_ink(fill)}">{esc(fmt(m))}</text>'
            )
    c.x_axis(xax, bottom + 2, xdim.label)
    c.y_axis(yax, ml - 2, ydim.label)
    c.colorbar(width - mr + 24, mt, mt + max(ch * len(yl), 110), lo, hi, maximize)
    return c.svg()


def histogram(values: Sequence[float], *, label: str, width: float = 572, height: float = 260) -> str:
    c = Chart("durations", "Task durations", width, height)
    vals = [v for v in values if finite(v)]
    if not vals:
        c.note("no finished task")
        return c.svg()
    ml, mr, mt, mb = 58, 16, 30, 44
    lo, hi = min(vals), max(vals)
    n = max(1, min(30, math.ceil(math.sqrt(len(vals))))) if hi > lo else 1
    w = (hi - lo) / n if hi > lo else 1.0
    counts = [0] * n
    for v in vals:
        counts[min(int((v - lo) / w), n - 1)] += 1
    xax = Axis(ml, width - mr, lo=lo, hi=lo + w * n)
    yax = Axis(height - mb, mt, lo=0, hi=max(counts) * 1.08)
    c.y_axis(yax, ml, "tasks", grid_to=width - mr)
    for i, k in enumerate(counts):
        a, b = lo + i * w, lo + (i + 1) * w
        c.add("rect", tip=f"{fmt(a)}–{fmt(b)} s: {k} task(s)", x=xax(a) + 0.5, y=yax(k),
              width=max(xax(b) - xax(a) - 1, 1), height=yax(0) - yax(k), class_="bar")
    c.x_axis(xax, height - mb, label)
    return c.svg()


def timeline(lanes: list[str], bars: Sequence[tuple[int, float, float, str, str]], *, width: float = 1160,
             over: str = "workers") -> str:
    lh = min(max(320 / max(len(lanes), 1), 3), 22)
    ml, mr, mt, mb = (24 + min(120, 7 * max(len(_short(s)) for s in lanes)) if lh >= 10 else 60), 20, 44, 46
    height = mt + lh * len(lanes) + mb
    c = Chart("timeline", f"Timeline: tasks over {over}", width, height)
    end = max(b[2] for b in bars)
    xax = Axis(ml, width - mr, lo=0, hi=max(end, 1e-9))
    for py, _ in [(mt + lh * j, 0) for j in range(len(lanes) + 1)]:
        c.add("line", x1=ml, x2=width - mr, y1=py, y2=py, class_="grid")
    for lane, s, e, status, tip in bars[:: sample_every(len(bars))]:
        c.add("rect", tip=tip, x=xax(s), y=mt + lh * lane + lh * 0.12, width=max(xax(e) - xax(s), 1.2),
              height=lh * 0.76, fill=STATUS_COLORS.get(status, "#999"), class_="tb")
    if lh >= 10:
        for j, name in enumerate(lanes):
            c.text(ml - 6, mt + lh * (j + 0.5) + 4, _short(name), anchor="end", tip=name)
    else:
        c.text(14, mt + lh * len(lanes) / 2, f"{len(lanes)} {over}", cls="al", rotate=-90)
    c.x_axis(xax, mt + lh * len(lanes), "seconds since the first task started")
    shown = [s for s in STATUS_COLORS if s in {b[3] for b in bars}]
    x = width - mr - sum(30 + 6.2 * len(s) for s in shown)
    for status in shown:
        c.add("rect", x=x, y=8, width=11, height=11, rx=2, fill=STATUS_COLORS[status])
        c.text(x + 16, 18, status, anchor="start")
        x += 30 + 6.2 * len(status)
    return c.svg()


def history(trials: Sequence[float], values: Sequence[float], *, metric_label: str, maximize: bool,
            width: float = 1160, height: float = 280, rounds: Sequence[float] | None = None) -> str:
    """Each trial's value and the best so far; with `rounds` (each trial's round), a dashed line where each
    round after the first begins, labelled."""
    c = Chart("history", f"Optimisation history: best {metric_label} so far", width, height)
    pts = sorted((t, v) for t, v in zip(trials, values, strict=True) if finite(t) and finite(v))
    if not pts:
        c.note(f"no finite {metric_label}")
        return c.svg()
    ml, mr, mt, mb = 58, 16, 30, 44
    xax = Axis(ml, width - mr, lo=pts[0][0], hi=pts[-1][0], pad=0.02)
    yax = Axis(height - mb, mt, lo=min(v for _, v in pts), hi=max(v for _, v in pts), pad=0.06)
    c.y_axis(yax, ml, metric_label, grid_to=width - mr)
    c.x_axis(xax, height - mb, "trial")
    if rounds is not None:
        starts: dict[float, float] = {}  # round -> its first trial
        for t, r in zip(trials, rounds, strict=True):
            if finite(t) and finite(r):
                starts[r] = min(starts.get(r, t), t)
        first = min(starts, default=None)
        for r, t in sorted(starts.items()):
            if r == first or not pts[0][0] <= t <= pts[-1][0]:
                continue
            x = xax(t - 0.5)  # between the last trial of the round before and the first of this one
            c.add("line", tip=f"round {fmt(r)} begins at trial {fmt(t)}", x1=x, x2=x, y1=mt, y2=height - mb,
                  class_="round")
            c.text(x + 3, mt + 10, f"round {fmt(r)}", anchor="start", cls="tk round-label")
    best, steps = pts[0][1], []
    every = max(1, math.ceil(len(pts) / MAX_MARKS))
    for n, (t, v) in enumerate(pts):
        new = max(best, v) if maximize else min(best, v)
        if new != best or n == 0 or n == len(pts) - 1:
            steps.append(f"{xax(t):.1f},{yax(best):.1f}")
            steps.append(f"{xax(t):.1f},{yax(new):.1f}")
        best = new
        if n % every == 0:
            c.add("circle", tip=f"trial {fmt(t)}: {fmt(v)}", cx=xax(t), cy=yax(v), r=3, class_="pt")
    c.add("polyline", points=" ".join(steps), class_="mean")
    return c.svg()


def importance(scores: dict[str, float], *, method: str, width: float = 572) -> str:
    """Horizontal bars, largest first: how much each param moves the metric."""
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    ml = 24 + min(150, 7 * max((len(_short(k, 22)) for k, _ in ranked), default=4))
    mr, mt, bh = 60, 34, 22
    height = mt + bh * len(ranked) + 40
    c = Chart("importance", f"Parameter importance ({method})", width, height)
    top = max((v for _, v in ranked), default=0) or 1.0
    xax = Axis(ml, width - mr, lo=0, hi=top)
    for j, (name, v) in enumerate(ranked):
        y = mt + bh * j
        c.add(
            "rect",
            tip=f"{name}: {v:.3f}",
            x=ml,
            y=y + 3,
            width=max(xax(v) - ml, 1),
            height=bh - 6,
            class_="bar",
        )
        c.text(ml - 6, y + bh / 2 + 4, _short(name, 22), anchor="end", tip=name if len(name) > 22 else None)
        c.text(xax(v) + 4, y + bh / 2 + 4, f"{v:.2f}", anchor="start")
    c.x_axis(xax, mt + bh * len(ranked) + 2, "importance (sums to 1)")
    return c.svg()


def sample_every(n: int) -> int:
    """Draw every k-th mark so that a chart holds at most MAX_MARKS of n."""
    return max(1, math.ceil(n / MAX_MARKS))

