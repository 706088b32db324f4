#!/usr/bin/env python3
"""petreld -n / -d / -p (postconf-style inspection).

Invariants checked: -p prints every top-level setting and each loaded
module's whole settings table; its output is a configuration that -t
accepts, and -p of that output is byte-identical (a fixed point); -n of a
config shows exactly the settings it changed from the defaults (the
shipped etc/petrel.conf and a test config); -d does not depend on the file.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402

SRC = os.environ.get("PETREL_SRCDIR") or petrel.TOP


def run(*args):
    e = dict(os.environ)
    e["PETREL_MODULE_PATH"] = petrel.MODULE_PATH
    p = subprocess.run([petrel.PETRELD] + list(args), env=e, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=petrel.T(30))
    return p.returncode, p.stdout, p.stderr


def names(text):
    """Top-level names of -n/-d/-p output (set or 'not set' comments)."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^(?:# )?([a-z_]+)(?: = | is not set)", line)
        if m:
            out.append(m.group(1))
    return out


def settings_from_help():
    code, out, _ = run("-h")
    assert code == 0
    body = out.split("settings:\n", 1)[1]
    return [l.split()[0] for l in body.splitlines() if l.strip()]


class Dir:
    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="petrel-bbshow-")
        os.makedirs(os.path.join(self.dir, "spool"))
        return self

    def __exit__(self, exc_type, *a):
        if exc_type is None and not os.environ.get("PETREL_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path


def write_config(d):
    return d.write("test.conf", "\n".join([
        'hostname = "mx.test";',
        'spool = "%s/spool";' % d.dir,
        'listeners = ( { listen = "127.0.0.1:2526"; stage = "mta"; } );',
        'domains = [ "example.test" ];',
        'recipient_limit = 200;',
        'smtp_timeout = 300;',           # the default: not a change
        'message_size_limit = 5000000000L;',
        'modules = { maildir = { root = "%s/mail/\\"q\\"/%%d/%%u"; }; router = { }; };' % d.dir,
    ]) + "\n")


def test_p_round_trip():
    with Dir() as d:
        conf = write_config(d)
        code, p1, err = run("-p", "-c", conf)
        assert code == 0, err
        assert names(p1) == settings_from_help(), names(p1)
        # every module loaded shows its whole table
        assert "maildir = {" in p1 and "root = " in p1, p1
        assert "# mailboxes is not set:" in p1, p1
        assert 'message_size_limit = 5000000000L;' in p1, p1
        again = d.write("p1.conf", p1)
        code, out, err = run("-t", "-c", again)
        assert code == 0, err + "\n" + p1
        code, p2, err = run("-p", "-c", again)
        assert code == 0, err
        assert p1 == p2, "-p is not a fixed point:\n%s\n---\n%s" % (p1, p2)


def test_n_test_config():
    with Dir() as d:
        conf = write_config(d)
        code, out, err = run("-n", "-c", conf)
        assert code == 0, err
        assert names(out) == ["hostname", "spool", "listeners", "domains",
                              "message_size_limit", "recipient_limit", "modules"], out
        assert "smtp_timeout" not in out
        # -n output is itself a config that -t accepts and -n gives back
        again = d.write("n1.conf", out)
        code, _, err = run("-t", "-c", again)
        assert code == 0, err
        code, out2, err = run("-n", "-c", again)
        assert out2 == out, out2


def test_n_shipped_config():
    shipped = os.path.join(SRC, "etc", "petrel.conf")
    code, out, err = run("-n", "-c", shipped)
    assert code == 0, err
    assert names(out) == ["hostname", "user", "listeners", "domains", "relay_networks",
                          "tls_cert_file", "tls_key_file", "auth_passwords",
                          # the relay block sets these four explicitly ("" = unset)
                          "resolver", "relayhost", "relayhost_tls", "relayhost_credentials",
                          # off, said explicitly ("" = unset)
                          "metrics_listen",
                          "modules"], out
    assert 'hostname = "mx.example.org";' in out


def test_d_defaults():
    with Dir() as d:
        code, d1, err = run("-d")
        assert code == 0, err
        code, d2, err = run("-d", "-c", write_config(d))
        assert code == 0, err
    assert names(d1) == settings_from_help()
    # the defaults do not depend on the file, except the modules it loads
    strip = lambda t: t.split("modules = {", 1)[0]  # noqa: E731
    assert strip(d1) == strip(d2)
    assert "recipient_limit = 1000;" in d1 and "# user is not set" in d1, d1


if __name__ == "__main__":
    petrel.main()
