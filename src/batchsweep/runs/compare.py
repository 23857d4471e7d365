"""Several runs on one page (`batchsweep report RUN1 RUN2 …`, `batchsweep.compare`): each run's results and
`batchsweep diff` against the first, handed to the report's comparison page."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from batchsweep.errors import SpecError

if TYPE_CHECKING:
    from batchsweep.report.compare import Compared
    from batchsweep.runs.run import Run


def compared(run: Run) -> Compared:
    """One run as the comparison shows it: its results, what it is, its params and how they were drawn."""
    from batchsweep.report.compare import Compared
    from batchsweep.report.page import sampled_params
    from batchsweep.report.results import derived_params

    record = run.record
    spec = record.spec
    about = f"sweep {record.name} · {record.backend}"
    if spec.search:
        about += f" · {spec.search.sampler} search, {spec.search.trials} trials"
    elif spec.params and spec.params.random:
        about += f" · random, {spec.params.random.samples} samples"
    sampled, log_params = sampled_params(record)
    derived = set(derived_params(run))
    return Compared(run.id, about, run.results(), [p for p in record.param_names if p not in derived],
                    sampled=sampled, log_params=log_params, created=record.created)


def comparison(runs: Sequence[Run], *, metric: str | None = None,
               maximize: bool | None = None) -> tuple[list[str], str, bool]:
    """The comparison's sections for `runs` (the first is the one the others are diffed against), the metric
    and its direction."""
    from batchsweep.report.compare import compare_sections
    from batchsweep.report.results import metric_columns
    from batchsweep.runs.diff import diff

    items = [compared(r) for r in runs]
    metrics: list[str] = []
    for run, item in zip(runs, items):
        metrics += [m for m in metric_columns(run, item.df) if m not in metrics]
    diffs = [(runs[0].id, r.id, diff(runs[0], r)) for r in runs[1:]]
    return compare_sections(items, diffs=diffs, metrics=metrics, metric=metric, maximize=maximize)


def compare(runs: Sequence[Run], path: str | os.PathLike[str] | None = None, *, metric: str | None = None,
            maximize: bool | None = None) -> Any:
    """One HTML page overlaying `runs`: what differs between them (`batchsweep diff` of each against the
    first), each run's best, the best so far per run, the metric against each param coloured by run. Writes
    `path` and returns `(metric, maximize)`; without `path`, the page (in a notebook: shown inline)."""
    from batchsweep.report.compare import page
    from batchsweep.report.page import deliver

    ids = [r.id for r in runs]
    if len(runs) < 2:
        raise SpecError(
            f"compare: give two runs or more (got {len(runs)}); one run's report is `batchsweep report RUN`"
        )
    if len(set(ids)) < len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise SpecError(f"compare: run {', '.join(twice)} is named twice; give each run once")
    sections, chosen, maximize = comparison(runs, metric=metric, maximize=maximize)
    html = page(
        sections, title="batchsweep comparison: " + " vs ".join(ids), heading=f"Comparing {len(runs)} runs"
    )
    return deliver(html, path, (chosen, maximize))
