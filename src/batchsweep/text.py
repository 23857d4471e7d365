"""How the package writes things for people, each written once: durations, "did you mean" hints, state
counts."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from batchsweep.model import STATE_NAMES


def duration(seconds: float | None) -> str:
    """`0.023 s`, `42.0 s`, `2m 05s`, `1h 02m`; `–` when unknown (None or NaN). Under a second to two
    significant digits, so a 20 ms task is not `0.0 s` beside a 0.4 s total."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    if seconds < 1:
        return "0 s" if seconds <= 0 else "< 0.001 s" if seconds < 0.001 else f"{seconds:.2g} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s"


def did_you_mean(word: str, options: Iterable[str], *, cutoff: float = 0.6) -> str:
    """`did you mean 'retries'? ` for the option closest to a misspelt word, or "" when none is close."""
    import difflib

    close = difflib.get_close_matches(word, list(options), n=1, cutoff=cutoff)
    return f"did you mean {close[0]!r}? " if close else ""


def state_counts(counts: Mapping[str, int]) -> str:
    """`3 succeeded, 1 failed, 2 running`: the states with tasks, in the order every table shows them."""
    return ", ".join(f"{counts[k]} {k}" for k in STATE_NAMES if counts.get(k))


def is_missing(value: Any) -> bool:
    return value is None or type(value).__name__ in ("NAType", "NaTType") or (
        isinstance(value, float) and math.isnan(value))


# C0 and C1 control characters and DEL as `\x..`: a task's text (an error, a metric, a name) shown in a
# terminal can then neither move the cursor, retitle the window nor write the clipboard (CSI, OSC escape
# sequences).
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}


def printable(text: str) -> str:
    """Text with every control character shown escaped (a newline too: one cell, one line), and what UTF-8
    cannot hold as `utf8` writes it."""
    return utf8(text).translate(_CONTROLS)


# bash's $'...' quoting of what a word holds that is not printable: C0 controls and DEL as bytes, C1 controls
# as the code points they are (a `\x85` there would be one byte, not U+0085).
_ANSI_C = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)},
    **{c: f"\\u{c:04x}" for c in range(0x80, 0xA0)},
    **{ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r", ord("\\"): "\\\\", ord("'"): "\\'"},
}


def shell_word(word: str) -> str:
    """A word quoted so a shell reads it back as it is, and the quoting never holds a control character raw:
    one with a control character (a newline) in bash's $'...' quoting, which bash, zsh and ksh read."""
    import shlex

    if any(ord(c) in _CONTROLS for c in word):
        return "$'" + utf8(word).translate(_ANSI_C) + "'"
    return shlex.quote(word)


def encodable(text: str) -> bool:
    """Whether UTF-8 can hold the text (a lone surrogate from a task's JSON or an undecodable file name
    cannot)."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class TerminalText:
    """A task's output as a terminal may show it, written piece by piece (`batchsweep logs` on a terminal):
    line breaks, tabs and colours (SGR sequences, `ESC [ ... m`) as they are, a carriage return as a line
    break (a progress bar's redraws each on a line of their own), every other control character and escape
    sequence escaped as `printable` escapes it (OSC, cursor moves, screen clears). An escape sequence cut
    between two pieces waits for the rest."""

    _SGR = re.compile(r"\x1b\[[0-9;:]*m")
    _PARTIAL = re.compile(r"\x1b(\[[0-9;:]*)?$")  # the start of a colour that the next piece may finish
    _KEPT = {ord("\n"): "\n", ord("\t"): "\t", ord("\r"): "\n"}

    def __init__(self) -> None:
        self._held = ""
        self._table = {**_CONTROLS, **self._KEPT}

    def __call__(self, text: str, *, final: bool = False) -> str:
        text = (self._held + text).replace("\r\n", "\n")
        self._held = ""
        if not final:
            cut = self._PARTIAL.search(text)
            if cut is not None and len(text) - cut.start() < 32:
                text, self._held = text[: cut.start()], text[cut.start():]
            if text.endswith("\r"):  # a CR LF cut in two is one line break
                text, self._held = text[:-1], "\r" + self._held
        out, at = [], 0
        for m in self._SGR.finditer(text):
            out += [utf8(text[at:m.start()]).translate(self._table), m.group()]
            at = m.end()
        out.append(utf8(text[at:]).translate(self._table))
        return "".join(out)


def utf8(text: str) -> str:
    """Text every UTF-8 file and terminal can hold: itself, unless it holds what UTF-8 cannot encode, each of
    which is then written as a Python escape: the byte a file name's undecodable byte stood for (`\\xff`), a
    lone surrogate (`\\ud800`)."""
    if encodable(text):
        return text
    try:  # a name read with os.fsdecode: its undecodable bytes come back as they were, then escaped
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()


# Box-drawing characters (U+2500-U+257F): rich, which click and typer use when it is installed, frames its
# error message in them, so the last line of such output is the box's bottom edge, not the message.
_BOX = "".join(map(chr, range(0x2500, 0x2580)))


def said(line: str) -> str:
    """What a line of output says: itself stripped, without a frame around it ("" for a frame's edge)."""
    return line.strip().strip(_BOX).strip()


def last_line(text: str, *, limit: int = 200) -> str:
    """The last line of a program's output that says something (a traceback's last line says what went
    wrong)."""
    for line in reversed(text.replace("\r", "\n").splitlines()):
        if line := said(line):
            return line[:limit]
    return ""


def cell(value: Any) -> str:
    """A value as a table cell: numbers to 4 significant digits (whole numbers whole), lists `;`-joined."""
    if hasattr(value, "item") and not hasattr(value, "__len__"):
        value = value.item()  # numpy scalars
    if is_missing(value):
        return ""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, list, tuple))
        and not hasattr(value, "tolist")
    ):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value) or value == 0:
            return f"{value:g}"
        if 1e4 <= abs(value) < 1e9:
            return f"{value:.0f}"
        return f"{value:.4g}"
    items = value.tolist() if hasattr(value, "tolist") else value
    # an inner list keeps its brackets: [[1, 1], [2, 3]] is not shown as the flat 1;1;2;3
    return ";".join(f"[{cell(v)}]" if isinstance(v, (list, tuple)) else cell(v) for v in items)
