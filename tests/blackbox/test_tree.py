#!/usr/bin/env python3
"""The source tree stands alone: no file points outside it.

A user's clone has nothing beside it, so nothing in the tree may refer to
a sibling folder (../shared, the planning notes the project started from)
or to the paths of the machine it was written on.  And no leftover of an
interrupted configure (confdefs.h) is part of it.
"""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402

SRC = os.environ.get("PETREL_SRCDIR") or petrel.TOP

# References that only make sense on the machine the tree was written on.
OUTSIDE = [
    (re.compile(rb"\.\./shared\b"), "a sibling folder ../shared"),
    (re.compile(rb"(?<![\w.-])/work/"), "an absolute path under /work"),
    (re.compile(rb"(?<![\w.-])/root/"), "a path in root's home"),
    (re.compile(rb"(?<![\w.-])/home/[a-z]"), "a path in a user's home"),
]

# What the build makes or imports: not the project's own text.
SKIP_DIRS = {".git", "_build", "autom4te.cache", "build-aux", "m4", "__pycache__"}
SKIP_FILES = {"configure", "aclocal.m4", "config.status", "config.log", "libtool",
              "Makefile", "Makefile.in", "test_tree.py"}


def tracked_files():
    """The files of the tree: git's list in a checkout, else every file."""
    try:
        out = subprocess.run(["git", "-C", SRC, "ls-files", "-z"], capture_output=True,
                             check=True, timeout=30).stdout
        names = [n.decode() for n in out.split(b"\0") if n]
        if names:
            return names
    except (OSError, subprocess.SubprocessError):
        pass
    names = []
    for root, dirs, files in os.walk(SRC):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for f in files:
            names.append(os.path.relpath(os.path.join(root, f), SRC))
    return names


def test_no_reference_outside_the_tree():
    found = []
    n = 0
    for name in tracked_files():
        parts = name.split(os.sep)
        if set(parts[:-1]) & SKIP_DIRS or parts[-1] in SKIP_FILES:
            continue
        path = os.path.join(SRC, name)
        if not os.path.isfile(path) or os.path.islink(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        n += 1
        for lineno, line in enumerate(data.split(b"\n"), 1):
            for pat, what in OUTSIDE:
                if pat.search(line):
                    found.append("%s:%d: %s: %s" % (name, lineno, what,
                                                    line.strip()[:100].decode("utf-8", "replace")))
    petrel.diag("%d files read" % n)
    assert n > 50, "only %d files found under %s" % (n, SRC)
    assert not found, "references outside the tree:\n" + "\n".join(found)


def test_no_configure_leftovers():
    names = set(tracked_files())
    for leftover in ("confdefs.h", "conftest.c", "config.log"):
        assert leftover not in names, "%s is part of the tree" % leftover


if __name__ == "__main__":
    petrel.main()
