"""The one user-facing error type.

    SweepError            bad input: the CLI prints its message on one line and exits 2
     ├── SpecError        the spec file (or an override) is wrong
     ├── RunNotFound      no such run in the store
     │    └── RunDamaged  the run's run.json cannot be read
     ├── RunStateError    the run is not in a state for this command (still running; driven by another
                          process)
     ├── EngineUnavailable  the backend's engine needs packages that are not installed
     ├── AwsSetupError    credentials, bucket, stack or queue missing or unreachable
     └── RunnerError      the process running a run's tasks stopped (disk full, read-only store): exit 1,
                          the run stays resumable

Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class SweepError(Exception):
    """Bad input. The message names the file, field or value and says what would fix it."""

    exit_code = 2


class SpecError(SweepError):
    pass


class RunNotFound(SweepError):
    pass


class RunDamaged(RunNotFound):
    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class RunStateError(SweepError):
    """The run exists but cannot take this command now: it is still running, or another process drives it."""


class EngineUnavailable(SweepError):
    """The backend is known but its engine cannot load here (a missing extra)."""


class AwsSetupError(SweepError):
    pass


class RunnerError(SweepError):
    """Not bad input: the machine or the store failed under the runner. The run can be resumed."""

    exit_code = 1
