"""`--set key=value` overrides, applied to the raw spec before validation (Hydra-like).

- a dotted path sets that field: `--set params.grid.window=5,10,20`, `--set timeout=30m`, `--set
  aws.region=eu-west-1`
- a bare name that is not a spec field names a param: it replaces the param wherever it is defined;
  a comma list makes it a grid param, a single value a fixed one: `--set window=5,10`, `--set fee_bps=5`
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Sequence
from typing import Any

from batchsweep.errors import SpecError

_LIST_FIELDS = {"inputs", "outputs"}


def parse_value(text: str, *, as_list: bool = False) -> Any:
    import yaml

    parts = _split_commas(text)
    if len(parts) > 1 or as_list:
        return [_scalar(p, yaml) for p in parts if p != ""]
    return _scalar(text, yaml)


def _split_commas(text: str) -> list[str]:
    # A value in brackets or quotes is YAML, not a comma list.
    if text.strip().startswith(("[", "{", '"', "'")):
        return [text]
    return [p.strip() for p in text.split(",")]


def _scalar(text: str, yaml: Any) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str], *, source: str,
                    top_level: Collection[str]) -> dict[str, Any]:
    """The spec with each `--set key=value` applied. A key whose first part is one of the spec's `top_level`
    keys (its fields and the blocks of registered engines) sets that field; any other key is a param."""
    out = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpecError(
                f"--set {item!r}: expected key=value, e.g. --set timeout=30m or --set params.grid.window=5,10"
            )
        path = key.split(".")
        if path[0] in top_level:
            value = parse_value(text, as_list=path[-1] in _LIST_FIELDS or path[:2] == ["params", "grid"])
            _set_path(out, path, value, item=item)
        else:
            _check_not_a_typo(out, key, top_level)
            _set_param(out, key, parse_value(text))
    return out


def _defined_params(raw: dict[str, Any]) -> set[str]:
    found = raw.get("params")
    params: dict[str, Any] = found if isinstance(found, dict) else {}
    names: set[str] = set()
    for block in ("grid", "zip", "fixed"):
        if isinstance(params.get(block), dict):
            names |= set(params[block])
    for row in params.get("list") or []:
        if isinstance(row, dict):
            names |= set(row)
    random = params.get("random")
    if isinstance(random, dict) and isinstance(random.get("space"), dict):
        names |= set(random["space"])
    return names


def _check_not_a_typo(raw: dict[str, Any], name: str, top_level: Collection[str]) -> None:
    """`--set timout=1m` is a typo of a spec field, not a new param."""
    from batchsweep.text import did_you_mean

    if name in _defined_params(raw):
        return
    hint = did_you_mean(name, sorted(top_level), cutoff=0.8)
    if hint:
        raise SpecError(f"--set {name}: not a spec field nor a param of this sweep; {hint.rstrip()}")


def _set_path(d: dict[str, Any], path: list[str], value: Any, *, item: str) -> None:
    node = d
    for part in path[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise SpecError(
                f"--set {item!r}: {part!r} is not a mapping in the spec, so it has no key {path[-1]!r}"
            )
        node = nxt
    node[path[-1]] = value


def _set_param(raw: dict[str, Any], name: str, value: Any) -> None:
    params = raw.setdefault("params", {})
    if not isinstance(params, dict):
        return  # validation reports the bad `params` block
    block = "grid" if isinstance(value, list) else "fixed"
    if isinstance(params.get(block), dict) and name in params[block] and not _defined_elsewhere(params, name,
                                                                                                block):
        # in place: `--set var_a=1,2` keeps the grid's order, so task numbers and columns follow the spec
        params[block][name] = value
        return
    for block in ("grid", "zip", "fixed"):
        if isinstance(params.get(block), dict):
            params[block].pop(name, None)
    if isinstance(params.get("list"), list):
        params["list"] = [{k: v for k, v in row.items() if k != name} if isinstance(row, dict) else row
                          for row in params["list"]]
    if isinstance(params.get("random"), dict) and isinstance(params["random"].get("space"), dict):
        params["random"]["space"].pop(name, None)
    if isinstance(value, list):
        params.setdefault("grid", {})[name] = value
    else:
        params.setdefault("fixed", {})[name] = value


def _defined_elsewhere(params: dict[str, Any], name: str, block: str) -> bool:
    others = [params.get(b) for b in ("grid", "zip", "fixed") if b != block]
    random = params.get("random")
    space = random.get("space") if isinstance(random, dict) else None
    return (any(isinstance(o, dict) and name in o for o in (*others, space))
            or any(isinstance(row, dict) and name in row for row in params.get("list") or []))
