"""The `infra`, `image` and `doctor` commands as the main CLI wires them."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from batchsweep.cli.infra import parse_params, register
from batchsweep.errors import SweepError
from batchsweep.infra.template import template_text


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="batchsweep")
    register(main.add_subparsers(dest="command", required=True))
    return main


def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


def test_infra_up_takes_stack_params_and_aws_options() -> None:
    args = parser().parse_args(
        [
            "infra",
            "up",
            "--stack",
            "s1",
            "--param",
            "MaxVcpus=8",
            "--param",
            "ImageTag=x",
            "--profile",
            "p",
            "--region",
            "eu-west-1",
        ]
    )
    assert (args.stack, args.param, args.profile, args.region) == (
        "s1",
        ["MaxVcpus=8", "ImageTag=x"],
        "p",
        "eu-west-1",
    )


def test_defaults_name_the_batchsweep_stack() -> None:
    for argv in (["infra", "status"], ["infra", "down"], ["doctor"]):
        assert parser().parse_args(argv).stack == "batchsweep"


def test_infra_down_flags() -> None:
    args = parser().parse_args(["infra", "down", "--force", "--delete-data"])
    assert (args.force, args.delete_data) == (True, True)


def test_infra_template_prints_the_template(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["infra", "template"]) == 0
    assert capsys.readouterr().out == template_text()


def test_image_dockerfile_prints_the_requirements(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("scikit-learn==1.5\n")
    assert run(["image", "dockerfile", "--requirements", str(reqs)]) == 0
    assert "#   scikit-learn==1.5\n" in capsys.readouterr().out


def test_image_dockerfile_of_a_spec_installs_the_requirements_beside_its_script(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "train.py").write_text("print(1)\n")
    (tmp_path / "requirements.txt").write_text("# the script's own\nhumanize==4.9.0\n")
    spec = tmp_path / "sweep.yaml"
    spec.write_text("name: s\nscript: train.py\nparams: {grid: {a: [1]}}\n")
    assert run(["image", "dockerfile", str(spec)]) == 0
    assert "#   humanize==4.9.0\n" in capsys.readouterr().out
    with pytest.raises(SweepError, match="names its own requirements; give one or the other"):
        run(["image", "dockerfile", str(spec), "--requirements", str(tmp_path / "requirements.txt")])


@pytest.mark.parametrize("bad", ["MaxVcpus", "=8"])
def test_a_param_without_key_and_value_is_refused(bad: str) -> None:
    with pytest.raises(SweepError, match="expected KEY=VALUE"):
        parse_params([bad])


def test_a_param_value_may_contain_equals_and_commas() -> None:
    assert parse_params(["ExistingSubnetIds=subnet-1,subnet-2", "X=a=b"]) == {
        "ExistingSubnetIds": "subnet-1,subnet-2",
        "X": "a=b",
    }


def test_infra_up_refuses_an_unknown_param_before_touching_aws() -> None:
    with pytest.raises(SweepError, match="did you mean 'MaxVcpus'"):
        run(["infra", "up", "--param", "MaxVCPUs=8"])


def test_infra_up_end_to_end_prints_the_outputs(aws_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["infra", "up", "--stack", "bs-cli"]) == 0
    out = capsys.readouterr().out
    assert "stack bs-cli outputs:" in out
    assert "  JobQueue " in out and "arn:aws:batch:" in out
