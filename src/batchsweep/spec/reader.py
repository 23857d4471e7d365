"""Reading a spec file: its size, encoding and YAML checked, `--set` overrides applied, then validated into a
`Spec`; every problem is one `SpecError` line naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from batchsweep.errors import SpecError
from batchsweep.spec.blocks import BACKENDS
from batchsweep.spec.messages import describe_error
from batchsweep.spec.schema import Spec


def top_level_keys(overrides: Sequence[str] | None = None) -> set[str]:
    """The keys a spec may have at its top: its fields, and the blocks of engines registered from outside.
    Given the `--set` overrides to apply, the latter are looked up only when one of them sets something other
    than a field (a scan of every installed distribution's entry points, ~50 ms of CPU)."""
    from batchsweep.registry import available

    fields = {
        f.alias or n for n, f in Spec.model_fields.items() if n not in ("base_dir", "spec_file", "engines")
    }
    if overrides is not None and all(item.partition("=")[0].strip().split(".")[0] in fields
                                     for item in overrides):
        return fields
    return fields | {name for name in available() if name not in BACKENDS}


def validate(raw: Any, *, source: str, base_dir: Path, spec_file: Path | None = None) -> Spec:
    if not isinstance(raw, dict):
        got = "an empty file" if raw is None else f"{type(raw).__name__}"  # YAML reads an empty file as None
        raise SpecError(
            f"{source}: the spec must be a mapping of keys (name:, script:, params: ...), got {got}"
        )
    try:
        spec = Spec.model_validate({**raw, "base_dir": base_dir, "spec_file": spec_file})
    except ValidationError as e:
        raise SpecError(f"{source}: {describe_error(e, root=Spec)}") from None
    return spec


MAX_SPEC_BYTES = 8 << 20


def load(path: str | os.PathLike[str], *, overrides: Sequence[str] = ()) -> Spec:
    """Read a spec file, apply `--set key=value` overrides, validate."""
    import yaml

    from batchsweep.spec.overrides import apply_overrides
    from batchsweep.spec.yamlread import DuplicateKey, TooComplex, bounded_yaml

    p = Path(path)
    if not p.is_file():
        raise SpecError(
            f"{p}: spec file not found; pass the path to a sweep.yaml (see `batchsweep init SCRIPT`)"
        )
    if p.stat().st_size > MAX_SPEC_BYTES:
        raise SpecError(
            f"{p}: {p.stat().st_size >> 20} MiB is too large for a spec (limit {MAX_SPEC_BYTES >> 20} MiB); "
            "put long value lists in a file the script reads"
        )
    data = p.read_bytes()
    if b"\0" in data:
        raise SpecError(f"{p}: a binary file (it holds NUL bytes), not a YAML spec; pass the sweep.yaml")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{p}: not UTF-8 text (byte {e.start}); save the spec as UTF-8") from None
    try:
        raw = bounded_yaml(text)
    except (TooComplex, DuplicateKey) as e:
        raise SpecError(f"{p}: {e}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        line = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError(
            f"{p}: YAML syntax error at {line}{e.problem}; fix the indentation or quoting there"
        ) from None
    except yaml.YAMLError as e:
        raise SpecError(f"{p}: YAML error: {' '.join(str(e).split())}") from None
    if isinstance(raw, dict):
        raw = apply_overrides(raw, overrides, source=str(p), top_level=top_level_keys(overrides))
    return validate(raw, source=str(p), base_dir=p.resolve().parent, spec_file=p)
