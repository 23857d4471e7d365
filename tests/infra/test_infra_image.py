"""`image dockerfile|build|push` with a recording `docker` on PATH and ECR on moto."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fake_builder import install_fakes

from batchsweep.errors import SpecError, SweepError
from batchsweep.infra import image, registry
from batchsweep.infra import stack as infra

STACK = "bs-image"

@pytest.fixture(autouse=True)
def released(monkeypatch: pytest.MonkeyPatch) -> None:
    """Most tests play an installed release (batchsweep from PyPI); the checkout case has its own tests."""
    monkeypatch.setattr(image, "source_checkout", lambda: None)


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny project named batchsweep: what `pip install -e .` from a clone looks like to the image code."""
    root = tmp_path / "checkout"
    (root / "src" / "batchsweep").mkdir(parents=True)
    (root / "src" / "batchsweep" / "__init__.py").write_text("VERSION = 1\n")
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=77"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "batchsweep"\nversion = "0.1.0"\n')
    monkeypatch.setattr(image, "source_checkout", lambda: root)
    return root


def test_from_a_checkout_the_image_installs_a_wheel_of_the_source_and_the_tag_follows_the_code(
    checkout: Path,
) -> None:
    text = image.current_dockerfile(None)
    assert "COPY batchsweep-" in text and "batchsweep==" not in text
    before = image.image_tag(text)
    (checkout / "src" / "batchsweep" / "__init__.py").write_text("VERSION = 2\n")
    assert image.image_tag(image.current_dockerfile(None)) != before


def test_build_from_a_checkout_builds_the_wheel_into_the_context(
    checkout: Path, outputs: dict[str, str], docker_log: Path
) -> None:
    lines: list[str] = []
    image.build(None, outputs=outputs, echo=lines.append)
    assert any(line.startswith("building a batchsweep wheel from") for line in lines)
    assert [c["argv"][0] for c in calls(docker_log)] == ["image", "build"]


@pytest.fixture
def docker_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A recording docker whose daemon answers, alone on PATH (the machine's own builders are out of
    sight)."""
    install_fakes(tmp_path / "bin", "docker")
    log = tmp_path / "docker.log"
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    return log


def calls(log: Path) -> list[dict[str, Any]]:
    """What the builders were asked to do, without the `docker info` probes that choose one and the probes of
    the base's digest."""
    entries = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [e for e in entries if e["argv"] != ["info"] and e["argv"][:3] != ["image", "inspect", "--format"]
            and e["argv"][:1] != ["pull"]]


PINNED = f"{image.DEFAULT_BASE}@sha256:{'c' * 64}"  # the default base as the fake builders pull it


@pytest.fixture
def outputs(session: Any) -> dict[str, str]:
    return infra.up(STACK, {}, session=session, echo=lambda _: None, poll_s=0.01)


def test_dockerfile_installs_batchsweep_and_the_requirements_without_a_shell() -> None:
    reqs = ["numpy >= 2", "pandas==2.2 --no-binary pandas", 'tomli; python_version < "3.11"']
    text = image.dockerfile_text(reqs, base="python:3.11-slim", version="1.2.3")
    assert "ARG BASE=python:3.11-slim\nFROM ${BASE}\n" in text
    assert 'RUN ["pip", "install", "--no-cache-dir", "batchsweep==1.2.3"]' in text
    assert f'COPY {image.REQUIREMENTS_FILE} /tmp/{image.REQUIREMENTS_FILE}' in text
    assert f'RUN ["pip", "install", "--no-cache-dir", "-r", "/tmp/{image.REQUIREMENTS_FILE}"]' in text
    assert all(f"#   {line}\n" in text for line in reqs)
    assert image.requirements_text(reqs) == "".join(f"{line}\n" for line in reqs)
    assert text.rstrip().endswith('CMD ["python", "-m", "batchsweep.worker"]')


def test_the_tag_changes_with_base_requirements_and_version_only() -> None:
    tag = image.image_tag(image.dockerfile_text(["numpy"], base="b:1", version="1.0"))
    assert tag == image.image_tag(image.dockerfile_text(["numpy"], base="b:1", version="1.0"))
    others = {
        image.image_tag(image.dockerfile_text(r, base=b, version=v))
        for r, b, v in ((["numpy"], "b:2", "1.0"), (["scipy"], "b:1", "1.0"), (["numpy"], "b:1", "1.1"))
    }
    assert tag not in others and len(others) == 3


def test_read_requirements_drops_comments_and_blanks(tmp_path: Path) -> None:
    path = tmp_path / "requirements dir ü" / "reqs.txt"
    path.parent.mkdir()
    path.write_text("# pinned\nnumpy==2.0  # fast\n\npandas\n")
    assert image.read_requirements(path) == ["numpy==2.0", "pandas"]


def test_read_requirements_follows_includes_and_refuses_what_the_build_cannot_see(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("numpy>=2 \\\n  --no-binary numpy\n")
    (tmp_path / "reqs.txt").write_text("-r base.txt\nhumanize\n")
    assert image.read_requirements(tmp_path / "reqs.txt") == ["numpy>=2 --no-binary numpy", "humanize"]
    for local in ("-e .", "./libs/mine", "-c constraints.txt"):
        (tmp_path / "bad.txt").write_text(f"humanize\n{local}\n")
        with pytest.raises(SweepError, match=r"bad.txt line 2: .* names a local path"):
            image.read_requirements(tmp_path / "bad.txt")


def spec_in(tmp_path: Path, extra: str = "") -> Any:
    from batchsweep.spec.reader import load

    (tmp_path / "train.py").write_text("print(1)\n")
    path = tmp_path / "sweep.yaml"
    path.write_text(f"name: s\nscript: train.py\nparams: {{grid: {{a: [1]}}}}\n{extra}")
    return load(path)


def test_spec_requirements_come_from_the_field_or_a_requirements_txt_beside_the_script(
    tmp_path: Path,
) -> None:
    assert image.spec_requirements(spec_in(tmp_path)) == ([], "")
    (tmp_path / "requirements.txt").write_text("humanize\n")
    assert image.spec_requirements(spec_in(tmp_path)) == (["humanize"], str(tmp_path / "requirements.txt"))
    (tmp_path / "deps").mkdir()
    (tmp_path / "deps" / "cloud.txt").write_text("tabulate==0.9\n")
    assert image.spec_requirements(spec_in(tmp_path, "requirements: deps/cloud.txt\n"))[0] == [
        "tabulate==0.9"
    ]
    assert image.spec_requirements(spec_in(tmp_path, "requirements: [numpy>=2, humanize]\n")) == (
        ["numpy>=2", "humanize"], "requirements: in the spec")
    with pytest.raises(SweepError, match=r"requirements: .*nope.txt: cannot read it"):
        image.spec_requirements(spec_in(tmp_path, "requirements: nope.txt\n"))


def test_the_tag_carries_the_requirements_hash() -> None:
    text = image.dockerfile_text(["humanize"], version="1.0")
    tag = image.image_tag(text, ["humanize"])
    assert (
        image.tag_requirements_hash(tag)
        == image.requirements_hash(["humanize"])
        != image.requirements_hash(["numpy"])
    )
    plain = image.image_tag(image.dockerfile_text(None, version="1.0"))
    assert image.tag_requirements_hash(plain) is None and image.tag_requirements_hash("latest") is None


def test_missing_requirements_file_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="--requirements .*cannot read it"):
        image.read_requirements(tmp_path / "nope.txt")


def test_push_builds_logs_in_through_stdin_and_pushes(
    session: Any, outputs: dict[str, str], docker_log: Path
) -> None:
    ref = registry.push(["numpy"], session=session, outputs=outputs, echo=lambda _: None)
    tag = image.image_tag(image.dockerfile_text(['numpy'], base=PINNED), ['numpy'])
    assert ref == f"{image.repository_uri(outputs)}:{tag}"
    argvs = [c["argv"] for c in calls(docker_log)]
    assert [a[0] for a in argvs] == ["image", "build", "login", "push"]
    assert argvs[1][:3] == ["build", "--platform", "linux/amd64"]
    login = calls(docker_log)[2]
    assert login["argv"][:4] == ["login", "--username", "AWS", "--password-stdin"]
    assert login["stdin"] and login["stdin"] not in " ".join(login["argv"])
    assert argvs[3] == ["push", ref]
    assert registry.image_exists(session, outputs, tag=ref.rsplit(":", 1)[1])


def test_an_unchanged_image_is_neither_rebuilt_nor_pushed(
    session: Any, outputs: dict[str, str], docker_log: Path
) -> None:
    registry.push(["numpy"], session=session, outputs=outputs, echo=lambda _: None)
    before = len(calls(docker_log))
    lines: list[str] = []
    registry.push(["numpy"], session=session, outputs=outputs, echo=lines.append)
    assert len(calls(docker_log)) == before
    assert lines[-1].endswith("already in ECR; nothing to push")


def test_build_skips_an_image_docker_already_has(outputs: dict[str, str], docker_log: Path) -> None:
    image.build(None, outputs=outputs, echo=lambda _: None)
    image.build(None, outputs=outputs, echo=lambda _: None)
    assert [c["argv"][0] for c in calls(docker_log)] == ["image", "build", "image"]


@pytest.fixture
def fake_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty PATH directory (none of the machine's builders in sight) and a log for the fakes put in it."""
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(tmp_path / "docker.log"))
    return tmp_path / "bin"


@pytest.mark.parametrize(("installed", "daemon", "chosen"), [
    (("docker", "podman", "buildah"), "up", "docker"),
    (("docker", "podman", "buildah"), "down", "podman"),
    (("podman", "buildah"), "up", "podman"),
    (("docker", "buildah"), "down", "buildah"),
])
def test_the_builder_is_docker_when_its_daemon_answers_else_podman_else_buildah(
    fake_path: Path, monkeypatch: pytest.MonkeyPatch, installed: tuple[str, ...], daemon: str, chosen: str
) -> None:
    install_fakes(fake_path, *installed)
    monkeypatch.setenv("FAKE_DOCKER_DAEMON", daemon)
    assert image.choose_builder() == image.Builder(chosen, str(fake_path / chosen))
    assert image.choose_builder("buildah").name == "buildah"


def test_without_a_builder_one_line_names_what_to_install(
    fake_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SweepError) as info:
        image.choose_builder()
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(
        "no image builder found (no docker, no podman, no buildah); install podman"
    )
    install_fakes(fake_path, "docker")
    monkeypatch.setenv("FAKE_DOCKER_DAEMON", "down")
    with pytest.raises(
        SweepError, match=r"^no image builder found \(docker is installed but its daemon does not answer"
    ):
        image.choose_builder()
    with pytest.raises(SweepError, match=r"^--builder docker: the Docker daemon does not answer"):
        image.choose_builder("docker")
    with pytest.raises(SweepError, match=r"^--builder podman: podman not found on PATH; install podman"):
        image.choose_builder("podman")


@pytest.mark.parametrize("builder", ["podman", "buildah"])
def test_podman_and_buildah_build_on_the_base_given_and_push_to_ecr(
    session: Any, outputs: dict[str, str], fake_path: Path, builder: str
) -> None:
    install_fakes(fake_path, builder)
    base = "localhost/mybase:bookworm"
    ref = registry.push(["humanize"], session=session, outputs=outputs, echo=lambda _: None, base=base)
    assert ref == image.ref_of(["humanize"], outputs, base=base) != image.ref_of(["humanize"], outputs)
    argvs = [c["argv"] for c in calls(fake_path.parent / "docker.log")]
    verb = "bud" if builder == "buildah" else "build"
    assert [a[0] for a in argvs] == ["image" if builder == "podman" else "inspect", verb, "login", "push"]
    assert argvs[1][:6] == [verb, "--platform", "linux/amd64", "--format", "docker", "--build-arg"]
    assert argvs[1][6] == f"BASE={base}"
    assert (
        f"ARG BASE={base}\nFROM ${{BASE}}\n"
        in Path(f"{fake_path.parent / 'docker.log'}.Dockerfile").read_text()
    )
    assert argvs[3] == (["push", ref, f"docker://{ref}"] if builder == "buildah" else ["push", ref])
    assert registry.image_exists(session, outputs, tag=ref.rsplit(":", 1)[1])


def test_image_exists_is_false_before_the_first_push(session: Any, outputs: dict[str, str]) -> None:
    assert registry.image_exists(session, outputs) is False


def test_image_push_command_points_the_stack_at_the_pushed_tag(
    session: Any, outputs: dict[str, str], docker_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from batchsweep.cli.infra import register

    main = argparse.ArgumentParser()
    register(main.add_subparsers(dest="command", required=True))
    args = main.parse_args(["image", "push", "--stack", STACK])
    assert args.func(args) == 0
    tag = image.image_tag(image.dockerfile_text(None, base=PINNED))
    assert capsys.readouterr().out.splitlines()[-1] == f"{image.repository_uri(outputs)}:{tag}"
    found = infra.describe_stack(STACK, session=session)
    assert found is not None
    assert {p["ParameterKey"]: p["ParameterValue"] for p in found["Parameters"]}["ImageTag"] == tag


def test_image_push_of_a_spec_builds_its_requirements_into_the_stack_it_names(
    session: Any, tmp_path: Path, docker_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from batchsweep.cli.infra import register

    outputs = infra.up("other", {}, session=session, echo=lambda _: None, poll_s=0.01)
    spec = spec_in(tmp_path, "requirements: [humanize==4.9.0]\naws: {stack: other}\n")
    main = argparse.ArgumentParser()
    register(main.add_subparsers(dest="command", required=True))
    args = main.parse_args(["image", "push", str(spec.spec_file)])
    assert args.func(args) == 0
    tag = image.image_tag(image.dockerfile_text(["humanize==4.9.0"], base=PINNED), ["humanize==4.9.0"])
    assert capsys.readouterr().out.splitlines()[-1] == f"{image.repository_uri(outputs)}:{tag}"
    assert "#   humanize==4.9.0\n" in Path(f"{docker_log}.Dockerfile").read_text()
    assert Path(f"{docker_log}.requirements").read_text() == "humanize==4.9.0\n"


def test_a_build_on_an_unpinned_base_names_the_digest_that_pins_it(
    outputs: dict[str, str], docker_log: Path
) -> None:
    lines: list[str] = []
    image.build(None, outputs=outputs, echo=lines.append, base="python:3.12-slim")
    pinned = "python@sha256:" + "c" * 64
    assert lines[-1] == (f"built on python:3.12-slim, which is {pinned} today; `--base {pinned}` rebuilds on "
                         "exactly that base (the tag follows it)")
    lines.clear()
    ref = image.build(None, outputs=outputs, echo=lines.append, base=pinned)
    assert f"ARG BASE={pinned}\nFROM ${{BASE}}\n" in Path(f"{docker_log}.Dockerfile").read_text()
    assert ref != image.ref_of(None, outputs, base="python:3.12-slim") and not any(
        "built on" in x for x in lines
    )


HASHED = """\
--require-hashes
humanize==4.9.0 \\
    --hash=sha256:aaaa \\
    --hash=sha256:bbbb
    # via -r requirements.in
"""


def test_hash_locked_requirements_reach_pip_with_their_hashes(tmp_path: Path, outputs: dict[str, str],
                                                             docker_log: Path) -> None:
    (tmp_path / "requirements.txt").write_text(HASHED)
    spec = spec_in(tmp_path, "requirements: requirements.txt\n")
    requirements, _ = image.spec_requirements(spec)
    assert requirements == ["--require-hashes", "humanize==4.9.0 --hash=sha256:aaaa --hash=sha256:bbbb"]
    image.build(requirements, outputs=outputs, echo=lambda _: None)
    assert Path(f"{docker_log}.requirements").read_text() == (
        "--require-hashes\nhumanize==4.9.0 --hash=sha256:aaaa --hash=sha256:bbbb\n")
    assert 'RUN ["pip", "install", "--no-cache-dir", "-r", "/tmp/batchsweep-requirements.txt"]' in \
        Path(f"{docker_log}.Dockerfile").read_text()


def test_hash_locked_requirements_are_not_extended_behind_pips_back(tmp_path: Path) -> None:
    """`stop:` needs Optuna in the image: added to a hash-locked file, pip would refuse the whole install."""
    (tmp_path / "requirements.txt").write_text(HASHED)
    spec = spec_in(tmp_path, "requirements: requirements.txt\nstop: {metric: loss}\n")
    with pytest.raises(SpecError, match=r"is hash-locked \(--hash\), so pip would refuse the optuna>=3.5 "
                                        r"batchsweep adds for this spec; list optuna>=3.5 there"):
        image.spec_requirements(spec)


def test_the_default_base_is_pinned_by_digest_so_the_tag_follows_it(outputs: dict[str, str], docker_log: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`image build` pulls the default base and writes its digest into the Dockerfile (issue #29 item 8): when
    the tag's image changes upstream, the content-hash tag changes with it and the image is rebuilt. Before,
    the Dockerfile named the floating tag, and an image built on last month's python:3.x-slim kept its tag."""
    lines: list[str] = []
    ref = image.build(None, outputs=outputs, echo=lines.append)
    entries = [json.loads(line) for line in docker_log.read_text().splitlines()]
    assert ["pull", "--platform", "linux/amd64", image.DEFAULT_BASE] in [e["argv"] for e in entries]
    assert f"ARG BASE={PINNED}\nFROM ${{BASE}}\n" in Path(f"{docker_log}.Dockerfile").read_text()
    assert ref == image.ref_of(None, outputs, base=PINNED) != image.ref_of(None, outputs)
    monkeypatch.setenv("FAKE_DOCKER_OFFLINE", "1")  # a builder that cannot pull: built on the tag, said so
    lines.clear()
    assert image.build(None, outputs=outputs, echo=lines.append) == image.ref_of(None, outputs)
    assert lines[0].startswith(f"{image.DEFAULT_BASE} is not pinned by digest (docker could not pull it")
