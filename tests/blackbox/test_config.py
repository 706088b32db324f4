#!/usr/bin/env python3
"""petreld -t (config check), -V, and config errors with file:line."""

import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402


class ConfDir:
    """A temp dir with spool/ and mail/, and configs written into it."""

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="petrel-bbconf-")
        os.makedirs(os.path.join(self.dir, "spool"))
        os.makedirs(os.path.join(self.dir, "mail"))
        self.ok = False
        return self

    def __exit__(self, exc_type, *a):
        if exc_type is None and not os.environ.get("PETREL_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def lines(self, port=None, listen=None, stage="mta", extra=()):
        """A good config as a list of lines (no newline)."""
        listen = listen or "127.0.0.1:%d" % (port or 2525)
        return [
            'hostname = "mx.test";',                                   # 1
            'spool = "%s/spool";' % self.dir,                          # 2
            "listeners = (",                                           # 3
            "  {",                                                     # 4
            '    listen = "%s";' % listen,                             # 5
            '    stage = "%s";' % stage,                               # 6
            "  }",                                                     # 7
            ");",                                                      # 8
            'domains = [ "localhost", "example.test" ];',              # 9
            "relay_networks = [ ];",                                   # 10
            "message_size_limit = 10240000;",                          # 11
            "recipient_limit = 1000;",                                 # 12
            "smtp_timeout = 300;",                                     # 13
            "data_timeout = 600;",                                     # 14
            "modules = {",                                             # 15
            '  maildir = { root = "%s/mail/%%d/%%u"; };' % self.dir,   # 16
            "  router = { };",                                         # 17
            "};",                                                      # 18
        ] + list(extra)

    def write(self, lines, name="bad.conf"):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path


def check_conf(path):
    env = dict(os.environ)
    env["PETREL_MODULE_PATH"] = petrel.MODULE_PATH
    return petrel.run([petrel.PETRELD, "-t", "-c", path], timeout=15, env=env)


def expect_error_at(path, line, what):
    p = check_conf(path)
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 1, "%s: exit %s, want 1; stderr %r" % (
        what, p.returncode, err)
    m = re.search(r"bad\.conf:(\d+):", err)
    assert m, "%s: no 'bad.conf:LINE:' in stderr %r" % (what, err)
    lines = [int(x) for x in re.findall(r"bad\.conf:(\d+):", err)]
    assert line in lines, "%s: reported line(s) %s, want %d; stderr %r" % (
        what, lines, line, err)


def test_good_config():
    with ConfDir() as c:
        path = c.write(c.lines(), "good.conf")
        p = check_conf(path)
        assert p.returncode == 0, (p.returncode, p.stderr)


def test_harness_config_is_valid():
    d = petrel.Daemon(start=False)
    try:
        p = check_conf(d.conf)
        assert p.returncode == 0, (p.returncode, p.stderr, d.config_text)
    finally:
        shutil.rmtree(d.dir, ignore_errors=True)


def test_version():
    p = petrel.run([petrel.PETRELD, "-V"], timeout=10)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    assert p.returncode == 0, (p.returncode, out)
    assert re.search(r"\d+\.\d+", out), "no version number in %r" % out
    assert "petrel" in out.lower(), out


def test_syntax_error():
    with ConfDir() as c:
        lines = c.lines()
        lines[12] = "smtp_timeout = = 300;"                       # line 13
        expect_error_at(c.write(lines), 13, "syntax error")


def test_syntax_error_unterminated_string():
    with ConfDir() as c:
        lines = c.lines()
        lines[0] = 'hostname = "mx.test;'                         # line 1
        p = check_conf(c.write(lines))
        assert p.returncode == 1, (p.returncode, p.stderr)
        assert re.search(rb"bad\.conf:\d+:", p.stderr), p.stderr


def test_unknown_setting():
    with ConfDir() as c:
        lines = c.lines(extra=["", "no_such_setting = 1;"])      # line 20
        expect_error_at(c.write(lines), 20, "unknown setting")


def test_bad_type():
    with ConfDir() as c:
        lines = c.lines()
        lines[11] = 'recipient_limit = "x";'                      # line 12
        expect_error_at(c.write(lines), 12, "bad type")


def test_bad_type_list_for_string():
    with ConfDir() as c:
        lines = c.lines()
        lines[0] = 'hostname = [ "mx.test" ];'                    # line 1
        expect_error_at(c.write(lines), 1, "bad type (array for string)")


def test_bad_listen_address():
    with ConfDir() as c:
        path = c.write(c.lines(listen="127.0.0.1:99999"))         # line 5
        expect_error_at(path, 5, "bad listen port")


def test_bad_listen_address_garbage():
    with ConfDir() as c:
        path = c.write(c.lines(listen="127.0.0.1"))               # no port
        p = check_conf(path)
        # no port may be valid (a default port); if refused, say where
        if p.returncode != 0:
            assert p.returncode == 1, (p.returncode, p.stderr)
            assert re.search(rb"bad\.conf:5:", p.stderr), p.stderr
        path = c.write(c.lines(listen="127.0.0.256:25"))          # line 5
        expect_error_at(path, 5, "bad listen address")


def test_unknown_stage():
    with ConfDir() as c:
        path = c.write(c.lines(stage="nosuch"))                   # line 6
        expect_error_at(path, 6, "stage module not found")


def test_bad_cidr():
    with ConfDir() as c:
        lines = c.lines()
        lines[9] = 'relay_networks = [ "127.0.0.0/33" ];'        # line 10
        expect_error_at(c.write(lines), 10, "bad CIDR")


def test_missing_config_file():
    with ConfDir() as c:
        p = check_conf(os.path.join(c.dir, "bad.conf"))
        assert p.returncode == 1, (p.returncode, p.stderr)
        assert b"bad.conf" in p.stderr, p.stderr


def test_daemon_refuses_to_start_with_bad_config():
    with ConfDir() as c:
        lines = c.lines(port=petrel._free_port())
        lines[11] = 'recipient_limit = "x";'
        path = c.write(lines)
        env = dict(os.environ)
        env["PETREL_MODULE_PATH"] = petrel.MODULE_PATH
        p = petrel.run([petrel.PETRELD, "-f", "-c", path], timeout=15, env=env)
        assert p.returncode != 0, "petreld -f ran with a bad config"
        assert re.search(rb"bad\.conf:12:", p.stderr + p.stdout), \
            p.stderr + p.stdout


if __name__ == "__main__":
    petrel.main()
