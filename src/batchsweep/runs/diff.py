"""`batchsweep diff RUN_A RUN_B`: what changed between two runs (code, spec, inputs, environment) and which
tasks' metrics moved. Tasks are matched by their params."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchsweep.runs.run import Run

_SPEC_SKIP = {"params", "script", "name"}


def _params_id(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def _flat(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict) and not value and not prefix:
        return {}
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    return {prefix: value}


def _changed(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    fa, fb = _flat("", a), _flat("", b)
    return [
        f"{k}: {fa.get(k)!r} -> {fb.get(k)!r}" for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)
    ]


def _yaml_value(value: Any) -> str:
    """A value as the spec's YAML writes it (`last`, `[1, 2]`, `{min: 0.1}`); unset as `(not set)`."""
    if value is None:
        return "(not set)"
    import yaml

    def written(v: Any) -> Any:  # unset keys are not written in a spec
        if isinstance(v, dict):
            return {k: written(x) for k, x in v.items() if x is not None}
        return [written(x) for x in v] if isinstance(v, list) else v

    text = yaml.safe_dump(written(value), default_flow_style=True, sort_keys=False, width=10**6).strip()
    return text[:-4].rstrip() if text.endswith("\n...") else text


def _spec_changes(a: dict[str, Any], b: dict[str, Any], depth: int = 1) -> list[str]:
    """The spec's changed keys nested as in its YAML (`metrics:` then `  match: first -> last`), each change
    `A's value -> B's value`; a key that is a mapping on one side only shows both values whole."""
    lines: list[str] = []
    for key in sorted(set(a) | set(b), key=str):
        x, y = a.get(key), b.get(key)
        if x == y:
            continue
        if isinstance(x, dict) and isinstance(y, dict):
            lines += ["  " * depth + f"{key}:", *_spec_changes(x, y, depth + 1)]
        else:
            lines.append("  " * depth + f"{key}: {_yaml_value(x)} -> {_yaml_value(y)}")
    return lines


def diff(a: Run, b: Run, *, tolerance: float = 1e-9) -> list[str]:
    ra_, rb_ = a.record, b.record
    lines = [f"A {a.id} ({ra_.created})", f"B {b.id} ({rb_.created})"]
    code = "same" if ra_.code_hash == rb_.code_hash else "changed"
    lines.append(f"code         {code} ({ra_.code_hash[:12]} -> {rb_.code_hash[:12]})"
                 if code == "changed" else "code         same")
    if code == "changed":
        from batchsweep.planning.keys import code_changes

        files, packages = code_changes(ra_.code_identity, rb_.code_identity)
        if ra_.code_identity is None or rb_.code_identity is None:
            lines.append("  files: not recorded by the older run (batchsweep before code identities)")
        lines += [f"  files: {', '.join(files[:20])}{', …' if len(files) > 20 else ''}"] if files else []
        lines += (
            [f"  packages: {', '.join(packages[:20])}{', …' if len(packages) > 20 else ''}"]
            if packages
            else []
        )
    pa, pb = ra_.provenance, rb_.provenance
    for line in _changed({"git": pa.get("git")}, {"git": pb.get("git")}):
        lines.append(f"  {line}")
    skip = ("git", "package_versions")
    env = _changed(
        {k: v for k, v in pa.items() if k not in skip}, {k: v for k, v in pb.items() if k not in skip}
    )
    from batchsweep.planning.keys import code_changes

    _, packages = (code_changes({"packages": pa["package_versions"]}, {"packages": pb["package_versions"]})
                   if pa.get("package_versions") and pb.get("package_versions") else ([], []))
    lines.append("environment  " + ("same" if not env and not packages else "changed"))
    lines += [f"  {line}" for line in env if not line.startswith(("packages:", "packages_sha256:"))]
    lines += (
        [f"  installed: {', '.join(packages[:20])}{', …' if len(packages) > 20 else ''}"] if packages else []
    )
    if not packages and any(line.startswith("packages") for line in env):
        lines += [f"  {line}" for line in env if line.startswith(("packages:", "packages_sha256:"))]
    sa, sb = ra_.spec_json(), rb_.spec_json()
    spec = _spec_changes({k: v for k, v in sa.items() if k not in _SPEC_SKIP},
                         {k: v for k, v in sb.items() if k not in _SPEC_SKIP})
    lines.append("spec         " + ("same" if not spec else "changed"))
    lines += spec

    ta = {_params_id(t.params): t for t in a.tasks()}
    tb = {_params_id(t.params): t for t in b.tasks()}
    only_a, only_b = [p for p in ta if p not in tb], [p for p in tb if p not in ta]
    both = [p for p in tb if p in ta]
    lines.append(f"params       {len(both)} tasks in both, {len(only_a)} only in A, {len(only_b)} only in B")
    lines += [f"  only in A: {p}" for p in only_a[:10]] + [f"  only in B: {p}" for p in only_b[:10]]
    rekeyed = [p for p in both if ta[p].cache_key != tb[p].cache_key]
    input_changed = [p for p in rekeyed if ta[p].inputs and code == "same" and not env and not spec]
    lines.append(
        f"keys         {len(both) - len(rekeyed)} tasks with the same content key, {len(rekeyed)} changed"
        + (f" ({len(input_changed)} by their inputs' content)" if input_changed else "")
    )

    ra, rb = a.results(), b.results()
    rows_a = {_params_id(ta_t.params): row for ta_t, row in zip(a.tasks(), ra.to_dict("records"))}
    rows_b = {_params_id(tb_t.params): row for tb_t, row in zip(b.tasks(), rb.to_dict("records"))}
    from batchsweep.report.results import metric_columns

    metrics = sorted(set(metric_columns(a, ra)) | set(metric_columns(b, rb)))
    moved = []
    for p in both:
        x, y = rows_a.get(p, {}), rows_b.get(p, {})
        changes = [
            f"{m} {_shown(x.get(m))} -> {_shown(y.get(m))}"
            for m in metrics
            if not _same(x.get(m), y.get(m), tolerance)
        ]
        if changes:
            moved.append(f"  task {tb[p].index} {p}: " + ", ".join(changes))
    lines.append(f"metrics      {len(moved)} of {len(both)} matched tasks moved")
    lines += moved[:50] + ([f"  ... {len(moved) - 50} more"] if len(moved) > 50 else [])
    return lines


def _shown(v: Any) -> str:
    return "(none)" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _same(x: Any, y: Any, tolerance: float) -> bool:
    def missing(v: Any) -> bool:
        return v is None or (isinstance(v, float) and math.isnan(v))

    if missing(x) and missing(y):
        return True
    if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
        return abs(float(x) - float(y)) <= tolerance * max(1.0, abs(float(x)), abs(float(y)))
    return bool(x == y)
