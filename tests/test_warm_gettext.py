"""The warm server remembers gettext's translation lookups (argparse's `_()` looks for four .mo files at every
call, and a miss is never cached): each answer is the one gettext itself gives, looked up again when the
arguments or the locale variables differ."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_a_remembered_lookup_answers_as_gettext_without_looking_again(tmp_path):
    mo = tmp_path / "fr" / "LC_MESSAGES" / "demo.mo"
    mo.parent.mkdir(parents=True)
    mo.write_bytes(b"")
    code = textwrap.dedent(f"""
        import gettext, os
        from batchsweep.task import warmserver

        real = gettext.find
        warmserver.remember_gettext_lookups()
        assert gettext.find is not real
        os.environ.pop("LANGUAGE", None)
        looked = []
        exists = os.path.exists
        os.path.exists = lambda p: looked.append(p) or exists(p)
        for args in [("argparse",), ("demo", {str(tmp_path)!r}, ["fr"]), ("demo", {str(tmp_path)!r}, ["de"])]:
            first = gettext.find(*args, all=True)
            assert first == real(*args, all=True), (args, first)
            looked.clear()
            again = gettext.find(*args, all=True)
            assert again == first and looked == [], (args, again, looked)
        assert gettext.find("demo", {str(tmp_path)!r}, ["fr"]) == {str(mo)!r}
        again = gettext.find("demo", {str(tmp_path)!r}, ["fr"], all=True)
        again.append("changed by its caller")
        assert gettext.find("demo", {str(tmp_path)!r}, ["fr"], all=True) == [{str(mo)!r}]
        os.environ["LANGUAGE"] = "fr"  # another locale: looked up again, and found
        looked.clear()
        assert gettext.find("demo", {str(tmp_path)!r}) == {str(mo)!r} and looked
        warmserver.remember_gettext_lookups()  # once: not wrapped twice
        assert gettext.find.__wrapped__ is real
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr
