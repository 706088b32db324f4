#!/usr/bin/env python3
"""etc/petrel.service: systemd-analyze verify finds nothing (with the
built petreld in place of /usr/sbin/petreld, and the man pages of the tree
on MANPATH for its Documentation= lines), and the unit has the promised
type and hardening.
"""

import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402

SRC = os.environ.get("PETREL_SRCDIR") or petrel.TOP
UNIT = os.path.join(SRC, "etc", "petrel.service")


def test_unit_settings():
    text = open(UNIT).read()
    for want in ("Type=notify", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "ReadWritePaths=/var/spool/petrel /var/mail", "PrivateTmp=yes",
                 "ProtectHome=yes", "ExecReload=", "CAP_NET_BIND_SERVICE", "CAP_SETUID"):
        assert want in text, want


def test_systemd_analyze_verify():
    if not shutil.which("systemd-analyze"):
        petrel.skip("systemd-analyze not installed")
    d = tempfile.mkdtemp(prefix="petrel-bbunit-")
    try:
        for sect in ("5", "8"):
            os.makedirs(os.path.join(d, "man", "man" + sect))
        for pg in ("petreld.8", "petrel.conf.5"):
            shutil.copy(os.path.join(SRC, "doc", "man", pg),
                        os.path.join(d, "man", "man" + pg[-1], pg))
        unit = os.path.join(d, "petrel.service")
        with open(unit, "w") as f:
            f.write(open(UNIT).read().replace("/usr/sbin/petreld",
                                              os.path.abspath(petrel.PETRELD)))
        p = subprocess.run(["systemd-analyze", "verify", unit], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True,
                           env=dict(os.environ, MANPATH=os.path.join(d, "man")),
                           timeout=petrel.T(60))
        assert p.returncode == 0 and not p.stdout.strip(), p.stdout
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    petrel.main()
