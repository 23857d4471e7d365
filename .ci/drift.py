"""One line on the newest-releases leg: how its suite ended and which packages moved since the lock.

Usage: python .ci/drift.py LOCK VENV LOG EXIT_CODE (any Python 3; reads the venv with `uv pip freeze`)."""
import re
import subprocess
import sys


def pins(lines):
    """name -> version of `name==version` lines, names normalised as pip does."""
    found = {}
    for line in lines:
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#]+)", line.strip())
        if m:
            found[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return found


def outcome(log_text, code):
    """The suite's own summary ("3 failed, 1077 passed"), or the make target that failed before it ran."""
    if code == 0:
        return "passed"
    counts = re.findall(r"(\d+) (failed|errors?)\b", log_text)
    if counts:
        return ", ".join(f"{n} {what}" for n, what in counts[-2:])
    targets = re.findall(r"\*\*\* \[Makefile:\d+: ([^\]]+)\]", log_text)
    return f"`make {targets[0]}` failed" if targets else f"failed (exit {code})"


def main():
    lock, venv, log, code = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with open(lock) as f:
        locked = pins(f)
    try:
        freeze = subprocess.run([f"{venv}/bin/uv", "pip", "freeze", "--python", f"{venv}/bin/python"],
                                capture_output=True, text=True).stdout
    except OSError:  # the leg failed before its venv was made
        freeze = ""
    # The venv's own tools are not part of the lock.
    newest = {name: v for name, v in pins(freeze.splitlines()).items() if name not in {"pip", "setuptools", "uv"}}
    moved = [f"{name} {locked[name]}->{version}" for name, version in sorted(newest.items())
             if name in locked and locked[name] != version]
    added = [f"+{name} {version}" for name, version in sorted(newest.items()) if name not in locked]
    try:
        with open(log, errors="replace") as f:
            text = f.read()
    except OSError:
        text = ""
    what = outcome(text, code)
    changes = ", ".join(moved + added) or "nothing"
    sep = " - " if code == 0 else " \u2014 see " + log + "; "
    print(f"newest releases: {what}{sep}moved since the lock: {changes}")


if __name__ == "__main__":
    main()
