"""Try (and test) the AWS path on one machine: moto's standalone server plus a "container player".

    python -m batchsweep.emulator serve [PORT]    # moto on 127.0.0.1 with the stack deployed; prints env
    python -m batchsweep.emulator play RUN_ID     # run each submitted child job's command locally
    python -m batchsweep.emulator play RUN_ID --image IMAGE   # ...inside the task image (buildah, chroot)
    python -m batchsweep.emulator push IMAGE      # the emulator's `image push` of an image built here

Moto accepts Batch jobs but (without Docker) never runs them, so `play` does what a container would: it reads
each submitted job back with DescribeJobs and runs its own command and environment here, once per array index,
and ships its output to CloudWatch Logs as the awslogs driver would (`batchsweep.emulator.player`). A child
that fails is reported with its exit code and its last stderr lines. With `--image`, each child runs in a
fresh container of the task image that `batchsweep image build` made, instead of with the host's Python.
Moto's ECR has no registry to push layers to, so `push` records the image's tag there and points the stack at
it, which is what `run` checks. Needs `moto[server]` (a test dependency, not a runtime one).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 120.0  # moto_server's imports take seconds, many more on a loaded machine
PORT_TRIES = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert.pem, key.pem), valid two days; needs `openssl`."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


class MotoServer:
    """`moto_server` on 127.0.0.1 in its own process group; Batch's Docker mode off.

    `tls_dir` serves HTTPS with a self-signed certificate made there (clients need `AWS_CA_BUNDLE`, see
    `env()`); `unchecked_calls` turns IAM enforcement on after that many AWS calls (use them to create an
    admin user); `program` runs another command that takes moto_server's arguments (a test harness's wrapper
    of moto)."""

    def __init__(self, port: int | None = None, *, tls_dir: Path | None = None,
                 unchecked_calls: int | None = None, program: list[str] | None = None) -> None:
        self.port = port or free_port()
        self._chose_port = port is None
        self.tls = make_certificate(tls_dir) if tls_dir is not None else None
        self.url = self._url()
        self.unchecked_calls = unchecked_calls
        self.program = program or [str(Path(sys.executable).parent / "moto_server")]
        self.process: subprocess.Popen[bytes] | None = None

    def _url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _open(self, request: str | urllib.request.Request, timeout: float) -> Any:
        context = ssl.create_default_context(cafile=str(self.tls[0])) if self.tls else None
        return urllib.request.urlopen(request, timeout=timeout, context=context)

    def start(self) -> MotoServer:
        for attempt in range(PORT_TRIES):
            if self._launch():
                break
            code = self.process.returncode if self.process else None
            if not self._chose_port or attempt == PORT_TRIES - 1:
                raise RuntimeError(f"moto_server exited early with code {code}")
            # The free port chosen here was free when chosen: another process can bind it in the seconds
            # moto_server imports before it binds, and then moto_server exits. Another free port.
            self.port = free_port()
            self.url = self._url()
        # Without a Docker daemon moto's Batch would fail every job; with Docker off they "succeed" at once.
        self.post("config", {"batch": {"use_docker": False}})
        return self

    def _launch(self) -> bool:
        """Start moto_server on self.port and wait until it answers (True), or until it exits (False)."""
        argv = [*self.program, "-H", "127.0.0.1", "-p", str(self.port)]
        if self.tls:
            argv += ["--ssl-cert", str(self.tls[0]), "--ssl-key", str(self.tls[1])]
        env = dict(os.environ)
        if self.unchecked_calls is not None:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(self.unchecked_calls)
        self.process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                return False
            try:
                with self._open(f"{self.url}/moto-api/config", timeout=1) as response:
                    response.read()
                return True
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto_server did not answer on {self.url}") from None
                time.sleep(0.05)

    def post(self, path: str, body: object) -> None:
        """POST to moto's own API (`/moto-api/PATH`), which IAM enforcement does not cover."""
        request = urllib.request.Request(f"{self.url}/moto-api/{path}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with self._open(request, timeout=10) as response:
            response.read()

    def reset(self) -> None:
        self.post("reset", {})

    def env(self) -> dict[str, str]:
        env = {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }
        if self.tls:
            env["AWS_CA_BUNDLE"] = str(self.tls[0])
        return env

    def stop(self) -> None:
        if self.process is None:
            return
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                return

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def deploy_stack(session: Any, stack: str = "batchsweep") -> dict[str, str]:
    """`infra up` on the emulator, plus a stand-in image in ECR (no Docker here to build a real one)."""
    from batchsweep.aws.clients import make_client
    from batchsweep.infra.stack import up

    outputs = up(stack, {}, session=session, echo=lambda *_: None, poll_s=0.05)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"digest": "sha256:" + "0" * 64, "size": 1,
                           "mediaType": "application/vnd.docker.container.image.v1+json"},
                "layers": []}
    make_client("ecr", session=session).put_image(repositoryName=outputs["EcrRepository"],
                                                  imageManifest=json.dumps(manifest), imageTag="latest")
    return outputs


def register_image(session: Any, ref: str, stack: str = "batchsweep") -> None:
    """What `batchsweep image push` does once the registry has the image, for the emulator (moto's ECR has no
    registry to push layers to): record the tag in the stack's repository and point the stack at it."""
    from batchsweep.aws.clients import make_client
    from batchsweep.infra.stack import describe_stack, stack_outputs
    from batchsweep.infra.template import template_body

    tag = ref.rsplit(":", 1)[1]
    outputs = stack_outputs(stack, session=session)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"digest": "sha256:" + hashlib.sha256(ref.encode()).hexdigest(), "size": 1,
                           "mediaType": "application/vnd.docker.container.image.v1+json"},
                "layers": []}
    make_client("ecr", session=session).put_image(repositoryName=outputs["EcrRepository"],
                                                  imageManifest=json.dumps(manifest), imageTag=tag)
    # UpdateStack rather than `infra up`'s change set: moto re-evaluates the outputs (ImageUri) only on
    # UpdateStack.
    cfn = make_client("cloudformation", session=session)
    current = describe_stack(stack, session=session) or {}
    params = [{"ParameterKey": p["ParameterKey"], "UsePreviousValue": True}
              for p in current.get("Parameters", []) if p["ParameterKey"] != "ImageTag"]
    cfn.update_stack(StackName=stack, TemplateBody=template_body(), Capabilities=["CAPABILITY_IAM"],
                     Parameters=[*params, {"ParameterKey": "ImageTag", "ParameterValue": tag}])


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if {"-h", "--help"} & set(args):
        print(__doc__)
        return 0
    if args[:1] == ["serve"]:
        server = MotoServer(int(args[1]) if len(args) > 1 else 5000).start()
        os.environ.update(server.env())
        from batchsweep.aws.clients import make_session

        deploy_stack(make_session(region="us-east-1"))
        print(
            "# moto is running with the batchsweep stack deployed (stand-in image); in another shell:",
            flush=True,
        )
        for key, value in server.env().items():
            print(f"export {key}={value}", flush=True)
        # SIGTERM (`kill`) stops moto too: it runs in its own session, so nothing else would.
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
        return 0
    if args[:1] == ["play"]:
        parser = argparse.ArgumentParser(prog="python -m batchsweep.emulator play")
        parser.add_argument("run", help="the run id (or a unique part of one)")
        parser.add_argument(
            "--image", help="play each child inside this locally built image (buildah, chroot)"
        )
        parser.add_argument("--parallel", type=int, default=4, help="children at once (default 4)")
        parser.add_argument(
            "--store", help="the local store that knows the run (default: BATCHSWEEP_STORE or ./.batchsweep)"
        )
        options = parser.parse_args(args[1:])
        from batchsweep.emulator.player import play
        from batchsweep.errors import SweepError
        from batchsweep.runs.catalog import load_run

        try:
            played = play(
                load_run(options.run, store=options.store), parallel=options.parallel, image=options.image
            )
        except SweepError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        where = f" inside {options.image}" if options.image else ""
        print(f"played {len(played)} child jobs{where}: {sum(p.exit_code == 0 for p in played)} exited 0")
        failed = [p for p in played if p.exit_code != 0]
        for child in failed:
            print(child.describe())
        if any(p.exit_code and not p.stderr_tail for p in failed):
            # the child's own stderr is empty when a task of it failed: the task's output is in the store
            run_id = played[0].child.env.get("BATCHSWEEP_RUN_ID", options.run) if played else options.run
            print(f"a child exits non-zero when a task of it failed: `batchsweep status {run_id}` says which "
                  f"and why, `batchsweep logs {run_id} TASK --stderr` shows what it printed")
        return 0
    if args[:1] == ["push"] and len(args) >= 2:
        parser = argparse.ArgumentParser(prog="python -m batchsweep.emulator push")
        parser.add_argument("image", help="URI:TAG printed by `batchsweep image build`")
        parser.add_argument("--stack", default="batchsweep", help="the stack (default batchsweep)")
        options = parser.parse_args(args[1:])
        from batchsweep.aws.clients import make_session

        register_image(make_session(), options.image, options.stack)
        print(f"stack {options.stack} points at {options.image} (its tag recorded in the emulator's ECR)")
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
