"""What every command group shares."""

from __future__ import annotations


def out(text: str = "") -> None:
    """A line of the command's output (stdout), flushed so it interleaves with stderr as it happens."""
    print(text, flush=True)
