"""What the AWS Batch engine's tests share: specs written for the emulated stack, the played containers, the
submits the engine made (the `calls` fixture, tests/aws_fixtures.py, records them)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from batchsweep.aws import clients
from batchsweep.emulator import player

SCRIPTS = Path(__file__).parent.parent / "scripts"


def write_spec(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def spec_body(grid: str, **extra: str) -> str:
    """A spec whose keys are these defaults, each replaced by `extra`'s value of that key (a key is written
    once)."""
    keys = {"name": "cloud", "script": str(SCRIPTS / "writes_metrics.py"), "params": f"{{grid: {grid}}}",
            "backend": "aws-batch", "aws": "{stack: batchsweep, region: us-east-1}",
            "resources": "{vcpus: 0.5, memory_mib: 1024}", **extra}
    return "\n".join(f"{k}: {v}" for k, v in keys.items()) + "\n"


def play_containers(run: Any, *, only: set[int] | None = None, fork: bool | None = None) -> list[int]:
    """Run every child of every submitted job the way Batch would; returns their exit codes. The children fork
    from the player's zygote (tests/conftest.py sets BATCHSWEEP_PLAY_FORK=1); `fork=False`: fresh
    interpreters."""
    played = player.play(run, only=only, fork=fork)
    assert all(p.forked is (fork is not False) for p in played)
    return [p.exit_code for p in played]


def submits(calls: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [params for op, params in calls if op == "batch.SubmitJob"]


def update_stack(session: Any, **params: str) -> None:
    """Stack parameters changed the way `infra up --param` does (UpdateStack: moto's change sets keep the old
    values)."""
    from batchsweep.infra.stack import describe_stack
    from batchsweep.infra.template import template_text

    current = describe_stack("batchsweep", session=session) or {}
    kept = [{"ParameterKey": p["ParameterKey"], "UsePreviousValue": True}
            for p in current.get("Parameters", []) if p["ParameterKey"] not in params]
    clients.make_client("cloudformation", session=session).update_stack(
        StackName="batchsweep", TemplateBody=template_text(), Capabilities=["CAPABILITY_IAM"],
        Parameters=[*kept, *({"ParameterKey": k, "ParameterValue": v} for k, v in params.items())])
