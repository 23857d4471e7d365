"""The CloudFormation template (template.yaml beside this module): its text as sent, its parameters and
their defaults, and the checks made on the parameters a user passes before anything reaches AWS."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from batchsweep.errors import SweepError
from batchsweep.text import did_you_mean


def template_text() -> str:
    return resources.files("batchsweep.infra").joinpath("template.yaml").read_text(encoding="utf-8")


def template_body() -> str:
    """The template as sent to CloudFormation: its comment lines left out, as CreateStack takes at most 51,200
    bytes inline (the comments are a fifth of the file). The template's one block scalar holds no `#` line."""
    return "".join(
        line for line in template_text().splitlines(keepends=True) if not line.lstrip().startswith("#")
    )


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (`!Ref X` becomes `{"Ref": "X"}`)."""


def _cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(text: str | None = None) -> dict[str, Any]:
    """The template as plain data, for checks that read it."""
    return dict(yaml.load(text if text is not None else template_text(), Loader=_CfnLoader))


@lru_cache(maxsize=1)
def template_defaults() -> dict[str, str]:
    return {name: str(spec.get("Default", "")) for name, spec in load_template()["Parameters"].items()}


def check_params(params: dict[str, str]) -> None:
    """Unknown parameter names fail before anything is sent to AWS."""
    known = template_defaults()
    for name in params:
        if name not in known:
            raise SweepError(f"--param {name}: no such stack parameter; {did_you_mean(name, known)}"
                             f"valid: {', '.join(known)}")


MAX_READABLE_PREFIXES = 8  # the template's ReadablePrefix0..7 policies


def readable_prefixes_param(value: str) -> str:
    """ReadableS3Prefixes as the template takes it: `s3://` and trailing slashes dropped (`bucket/a/` would
    grant `bucket/a//*`, which matches nothing), at most MAX_READABLE_PREFIXES entries."""
    entries = [e.strip().removeprefix("s3://").strip("/") for e in value.split(",") if e.strip().strip("/")]
    if len(entries) > MAX_READABLE_PREFIXES:
        raise SweepError(
            f"--param ReadableS3Prefixes: {len(entries)} entries, the stack takes at most "
            f"{MAX_READABLE_PREFIXES}; name a common parent prefix (BUCKET/PREFIX) or whole buckets"
        )
    return ",".join(entries)
