"""A pydantic validation error as the one line a user reads: the field's dotted path, and for a misspelt key
a "did you mean" and the valid keys. Used for the spec and for each engine's settings block.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from batchsweep.text import did_you_mean


def first_error(e: ValidationError) -> dict[str, Any]:
    """The error to show: a misspelt key first (`sapce:` also makes `space` missing; the typo is the news)."""
    errors = [dict(err) for err in e.errors()]
    return next((err for err in errors if err["type"] == "extra_forbidden"), errors[0])


def suggest_keys(word: str, options: list[str]) -> str:
    return f"{did_you_mean(word, options)}valid keys: {', '.join(options)}"


def _model_for(loc: tuple[Any, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None or not isinstance(part, str):
            return model
        field = model.model_fields.get(part) or next(
            (f for f in model.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return None
        ann = field.annotation
        candidates = [
            a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        model = candidates[0] if candidates else None
    return model


def describe_error(e: ValidationError, *, root: type[BaseModel], prefix: str = "") -> str:
    """One line for a validation error of `root` (the spec, or an engine's settings model whose block is
    `prefix`): the field's dotted path, a misspelt key with "did you mean" and the valid keys."""
    return _format_error(first_error(e), root=root, prefix=prefix)


def _format_error(err: dict[str, Any], *, root: type[BaseModel], prefix: str) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
    path = ".".join(str(p) for p in loc if p not in ("list_",))
    where = ".".join(part for part in (prefix, path) if part)
    if err["type"] == "extra_forbidden":
        parent = _model_for(loc[:-1], root)
        options = (
            [f.alias or n for n, f in parent.model_fields.items() if n not in ("base_dir", "spec_file")]
            if parent
            else []
        )
        return f"{where}: unknown key; {suggest_keys(str(loc[-1]), options)}"
    if err["type"] == "missing":
        return f"{where or 'spec'}: required field is missing"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if not path:
        return f"{prefix}: {msg}" if prefix else msg
    value = err.get("input")
    if err["type"].endswith("_type") or err["type"].startswith(("int_", "float_", "bool_", "literal_")):
        return f"{where}: {msg} (got {value!r})"
    return f"{where}: {msg}"

