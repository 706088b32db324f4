#!/usr/bin/env python3
"""The man pages: petrel.conf(5) matches the settings tables (daemon and
every module), mandoc -T lint finds nothing at warning level or above in
any page, and make install DESTDIR=... installs them where man -l renders
each one.
"""

import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402

SRC = os.environ.get("PETREL_SRCDIR") or petrel.TOP
PAGES = ["petreld.8", "petrel.conf.5", "petrelctl.8", "petrel-module.3", "petrel-sendmail.1"]


def test_settings_page_matches_tables():
    e = dict(os.environ, PETRELD=petrel.PETRELD)
    p = subprocess.run([sys.executable, os.path.join(SRC, "tools", "man-settings.py"), SRC],
                       env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=petrel.T(60))
    assert p.returncode == 0, p.stdout
    page = open(os.path.join(SRC, "doc", "man", "petrel.conf.5")).read()
    code, out, _ = None, subprocess.run([petrel.PETRELD, "-h"], stdout=subprocess.PIPE,
                                        universal_newlines=True).stdout, None
    for line in out.split("settings:\n", 1)[1].splitlines():
        if line.strip():
            assert ".It Ic %s Pq" % line.split()[0] in page, line


def test_mandoc_lint():
    if not shutil.which("mandoc"):
        petrel.skip("mandoc not installed (tools/install-deps.sh installs it)")
    for pg in PAGES:
        p = subprocess.run(["mandoc", "-T", "lint", "-W", "warning",
                            os.path.join(SRC, "doc", "man", pg)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True)
        assert p.returncode == 0 and not p.stdout.strip(), "%s: %s" % (pg, p.stdout)


def test_install_and_render():
    if not shutil.which("man"):
        petrel.skip("man not installed")
    d = tempfile.mkdtemp(prefix="petrel-bbman-")
    try:
        p = subprocess.run(["make", "-s", "-C", petrel.BUILDDIR, "install-man",
                            "install-systemdsystemunitDATA", "DESTDIR=" + d],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=petrel.T(120))
        assert p.returncode == 0, p.stdout
        found = {}
        for root, _, files in os.walk(d):
            for f in files:
                found[f] = os.path.join(root, f)
        for pg in PAGES:
            assert pg in found, (pg, sorted(found))
            sect = pg.rsplit(".", 1)[1]
            assert found[pg].endswith("/man%s/%s" % (sect, pg)), found[pg]
            r = subprocess.run(["man", "-l", found[pg]], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=True,
                               env=dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="80"))
            assert r.returncode == 0 and "NAME" in r.stdout and not r.stderr.strip(), \
                (pg, r.stderr)
        if "petrel.service" in found:
            unit = open(found["petrel.service"]).read()
            assert "Type=notify" in unit
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    petrel.main()
