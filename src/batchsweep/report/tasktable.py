"""The report's table of every task (best first, sortable, filtered by typing; where a reused row came from)
and its provenance section (what produced the run and each run a row came from).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from batchsweep.report import svgplot
from batchsweep.report.svgplot import esc, finite, fmt


def _cell(v: Any, cls: str = "") -> str:
    v = None if v is pd.NA else v
    sort = v if finite(v) else ("" if v is None or isinstance(v, float) else svgplot.label_of(v))
    klass = f' class="{cls}"' if cls else ""
    return (
        f"<td{klass} "
        f'data-v="{esc(sort)}">{esc(fmt(v) if finite(v) or v is None else svgplot.label_of(v))}</td>'
    )


def all_tasks_section(
    df: pd.DataFrame,
    varying: list[str],
    structure: Sequence[str],
    metrics: list[str],
    chosen: str,
    maximize: bool,
    values: list[float],
    top_k: int,
) -> str:
    """Every task, best first, the top k highlighted; sortable by any column and filtered by typing."""
    ranked = sorted(
        (i for i, v in enumerate(values) if math.isfinite(v)), key=lambda i: values[i], reverse=maximize
    )
    rest = [i for i in range(len(df)) if not math.isfinite(values[i])]
    others = [m for m in metrics if m != chosen]
    # Where each row came from: a sweep's table names the run it was computed in; a reused row its source
    # task.
    origin = [c for c in ("run",) if c in df.columns]
    reused = reused_from(df)
    show_reused = bool(reused.astype(bool).any())
    show_key = "key" in df.columns and bool(origin or show_reused)
    tail = [*(["reused from"] if show_reused else []), *(["key"] if show_key else [])]
    # why a task stopped without succeeding (a pruned task's step and rule, a failure's error), beside its
    # status
    whys = _whys(df)
    show_why = any(whys)
    head = ["rank", *origin, "task", *structure, *varying, *([chosen] if chosen else []), *others, "status",
            *(["why"] if show_why else []), "duration_s", *tail]
    rank_of = {i: r for r, i in enumerate(ranked, 1)}
    has = set(df.columns)
    cols = {
        c: df[c].tolist()
        for c in ["task", *origin, *structure, *varying, *others, "status", "duration_s", "key"]
        if c in has
    }
    sources = reused.tolist()
    rows = []
    for i in ranked + rest:
        task = cols["task"][i] if "task" in cols else i
        cells = [_cell(rank_of.get(i)), *(_cell(cols[c][i]) for c in origin), _cell(task),
                 *(_cell(cols[p][i]) for p in [*structure, *varying]),
                 *([_cell(values[i], "m")] if chosen else []), *(_cell(cols[m][i]) for m in others),
                 _cell(cols["status"][i] if "status" in cols else None),
                 *([_cell(whys[i] or None, "why")] if show_why else []),
                 _cell(cols["duration_s"][i] if "duration_s" in cols else None)]
        if show_reused:
            cells.append(_source_cell(sources[i]))
        if show_key:
            cells.append(_key_cell(cols["key"][i]))
        top = ' class="top"' if rank_of.get(i, top_k + 1) <= top_k else ""
        mark = f' data-reused="{esc(sources[i])}"' if sources[i] else ""
        rows.append(f'<tr data-task="{esc(task)}"{mark}{top}>{"".join(cells)}</tr>')
    del cols, sources, whys  # the table's values as Python objects, no longer needed: before the join
    ths = "".join(f'<th class="{"m" if h == chosen else ""}">{esc(h)}</th>' for h in head)
    by = f", best {esc(chosen)} first; the top {min(top_k, len(ranked))} highlighted" if ranked else ""
    whence = (
        " <i>reused from</i> names the earlier run and task a row's result was copied from (same content "
        "key, not run again)."
        if show_reused
        else ""
    )
    head_html = (
        f"<h2>All {len(df)} tasks</h2>"
        f'<p class="cap">Every task{by}. Click a header to sort; type to keep the rows that contain every '
        f'word (values, or a status such as <code>failed</code>).{whence} <input id="filter" type="search" '
        f'placeholder="filter rows…" aria-label="filter rows"> <span id="shown">{len(df)} shown</span></p>'
        f"<div class='scroll tall'>"
        '<table class="sortable" '
        f'id="tasks"><thead><tr>{ths}</tr></thead><tbody>'
    )
    rows.insert(0, head_html)  # one join: 100,000 rows make tens of MB, copied once
    rows.append("</tbody></table></div>")
    return "".join(rows)


def _whys(df: pd.DataFrame) -> list[str]:
    """Each row's reason for not succeeding (the `error` column: `pruned at step 3 by the median rule ...`),
    "" for a row that succeeded or has none."""
    if "error" not in df.columns:
        return [""] * len(df)
    status = df["status"].astype(str).tolist() if "status" in df.columns else [""] * len(df)
    return [
        e if isinstance(e, str) and s != "succeeded" else "" for e, s in zip(df["error"].tolist(), status)
    ]


def reused_from(df: pd.DataFrame) -> pd.Series:
    """Each row's `reused_from` ("RUN_ID/TASK"), "" when it was computed in its own run."""
    if "reused_from" not in df.columns:
        return pd.Series("", index=df.index)
    return df["reused_from"].map(lambda v: v if isinstance(v, str) else "")


def _source_cell(source: str) -> str:
    if not source:
        return '<td class="src" data-v="">–</td>'
    run_id, _, task = source.rpartition("/")
    return (
        f'<td class="src" data-v="{esc(source)}"><a '
        f'href="#prov-{esc(run_id)}"><code>{esc(run_id)}</code></a> '
        f"task {esc(task)}</td>"
    )


def _key_cell(key: Any) -> str:
    key = key if isinstance(key, str) else ""
    return (
        f'<td class="key" data-v="{esc(key)}" title="{esc(key)}"><code>{esc(short_digest(key))}</code></td>'
    )


def short_digest(digest: Any, n: int = 12) -> str:
    return str(digest)[:n] if digest else "–"


def git_state(prov: dict[str, Any] | None) -> str:
    git = (prov or {}).get("git")
    if not prov:
        return "not recorded"
    if not git:
        return "not in a git repository"
    text = f"git <code>{esc(str(git.get('commit', '?'))[:10])}</code>"
    if git.get("dirty"):
        return (
            text
            + f" + uncommitted changes (diff <code>{esc(short_digest(git.get('diff_sha256'), 10))}</code>)"
        )
    return text + " (clean)"


def provenance_section(df: pd.DataFrame, sources: Sequence[dict[str, Any]]) -> str:
    """What produced the rows: for this run and each run a row came from, its code hash, git state,
    interpreter, platform, batchsweep version, installed packages and environment."""
    if not sources:
        return ""
    reused = reused_from(df)
    rows_from = reused.map(lambda s: s.rpartition("/")[0] if s else "")
    if "run" in df.columns:  # a sweep's table: the run each row was computed in
        rows_from = pd.Series([str(r) for r in df["run"]], index=df.index)
    counts = rows_from.value_counts()
    own = int((rows_from == "").sum())
    body = []
    for src in sources:
        rid = str(src.get("run_id", "?"))
        n = int(counts.get(rid, 0)) + (own if src.get("role") == "this run" else 0)
        prov = src.get("provenance") or {}
        if not src.get("found", True):
            cells = (
                '<td colspan="8" class="err">not in the store any more (deleted); its copied results '
                "remain</td>"
            )
        else:
            env = dict(src.get("env") or {})
            extra = [
                f"image {prov['image']}" if prov.get("image") else "",
                f"requirements {short_digest(prov.get('requirements'), 10)}"
                if prov.get("requirements")
                else "",
            ]
            env_text = (
                ", ".join([*(f"{k}={v}" for k, v in sorted(env.items())), *(e for e in extra if e)]) or "–"
            )
            packages = (f"{prov.get('packages', '?')} ({short_digest(prov.get('packages_sha256'), 10)})"
                        if prov.get("packages_sha256") else "–")
            cells = "".join(
                [
                    f'<td data-k="code" title="{esc(src.get("code_hash") or "")}">'
                    f"<code>{esc(short_digest(src.get('code_hash')))}"
                    "</code></td>",
                    f'<td data-k="git">{git_state(prov or None)}</td>',
                    f'<td data-k="python">{esc(prov.get("python", "–"))}</td>',
                    f'<td data-k="platform">{esc(prov.get("platform", "–"))}</td>',
                    f'<td data-k="batchsweep">{esc(prov.get("batchsweep", "–"))}</td>',
                    f'<td data-k="packages">{esc(packages)}</td>',
                    f'<td data-k="env">{esc(env_text)}</td>',
                    f'<td data-k="created">{esc(src.get("created") or "–")}</td>',
                ]
            )
        body.append(f'<tr id="prov-{esc(rid)}" data-run="{esc(rid)}"><td><code>{esc(rid)}</code></td>'
                    f"<td>{esc(src.get('role', ''))}</td><td>{n}</td>{cells}</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("run", "role", "rows", "code", "git", "python", "platform",
                                              "batchsweep", "installed packages", "environment", "created"))
    others = len(sources) - 1
    cap = ("The code hash is the code package's content (what the content key covers); git, the interpreter, "
           "platform, batchsweep version and a hash of the installed packages say what produced it."
           + (f" {others} other run{'s' if others != 1 else ''} computed rows shown here: a reused row is an "
              "earlier result with the same content key, copied and not run again." if others > 0 else ""))
    return (f'<h2 id="provenance">Provenance</h2><p class="cap">{esc(cap)}</p>'
            f'<div class="scroll"><table class="prov" id="prov"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")
