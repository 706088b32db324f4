#!/usr/bin/env python3
"""STARTTLS starts the session over (issue 7, item 4; RFC 3207 4.2): what
was said or decided in clear text does not reach the session under TLS.

  - a regex `helo ... discard` rule matched by a clear-text `EHLO injected`
    must not discard the mail sent under TLS after a fresh EHLO (the rule
    still works when that EHLO comes under TLS);
  - modules see the session end and a new connect after the handshake
    (tests/modules/hooks.c: session_end of sid 1, then connect of sid 2);
  - the error count starts again, the AUTH failure count does not (an
    AUTH failure limit must not be escapable by STARTTLS)."""

import atexit
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, make_message  # noqa: E402

TEST_MODULES = os.path.join(petrel.BUILDDIR, "tests", "modules")
if TEST_MODULES not in petrel.MODULE_PATH.split(":"):
    petrel.MODULE_PATH = petrel.MODULE_PATH + ":" + TEST_MODULES

_keys = {}


def keys():
    if not _keys:
        d = tempfile.mkdtemp(prefix="petrel-bb-tlsrestart-")
        atexit.register(shutil.rmtree, d, True)
        _keys["cert"], _keys["key"] = petrel.make_cert(d)
        _keys["passwd"] = petrel.write_passwd(
            d, ["alice:" + petrel.crypt_hash("alice-pw", b"$6$")])
    return _keys


def tls_settings(**more):
    s = {"tls_cert_file": keys()["cert"], "tls_key_file": keys()["key"]}
    s.update(more)
    return s


def regex_daemon(rules):
    d = Daemon(start=False, settings=tls_settings(), listener={"tls": "starttls"},
               extra='filters = [ "regex" ];',
               modules_extra='  regex = { rules = "@RULES@"; };')
    path = os.path.join(d.dir, "regex.rules")
    with open(path, "w") as f:
        f.write(rules)
    d.config_text = d.config_text.replace("@RULES@", path)
    with open(d.conf, "w") as f:
        f.write(d.config_text)
    return d.start()


def test_clear_text_helo_discard_does_not_reach_tls_mail():
    with regex_daemon("helo /^injected$/ discard\n") as d:
        with d.client() as c:
            c.ehlo("injected")             # e.g. injected by a man in the middle
            c.starttls()
            c.ehlo("honest.test")
            qid = c.send_mail("a@localhost", ["user@localhost"], make_message("under TLS"))
            c.cmd("QUIT", 221)
        got = d.wait_delivered("user", 1)
        assert petrel.qid_of_file(got[0]) == qid
        assert not re.search(qid + r": discard", d.log_text()), d.log_tail(10)
        # the rule itself works: the same EHLO under TLS discards
        with d.client() as c:
            c.ehlo("honest.test")
            c.starttls()
            c.ehlo("injected")
            qid2 = c.send_mail("a@localhost", ["user@localhost"], make_message("discarded"))
            c.cmd("QUIT", 221)
        d.wait_log(qid2 + r": discard: from")
        d.assert_nothing_more(1, grace=0.5)


HOOK_RE = re.compile(r"testhooks: hook=(\w+) sid=(\d+)")


def test_modules_see_the_session_end_and_a_new_connect():
    d = Daemon(settings=tls_settings(), listener={"tls": "starttls"},
               extra='filters = [ "testhooks" ];', modules_extra="  testhooks = { };")
    with d:
        with d.client() as c:
            c.ehlo("clear.test")
            c.starttls()
            c.ehlo("tls.test")
            c.send_mail("a@localhost", ["user@localhost"], make_message("hooks"))
            c.cmd("QUIT", 221)
        d.wait_log(r"hook=session_end sid=2")
        seen = [(m.group(1), int(m.group(2))) for m in HOOK_RE.finditer(d.log_text())]
        sess = [h for h in seen if h[0] in ("connect", "helo", "session_end")]
        assert sess == [("connect", 1), ("helo", 1), ("session_end", 1),
                        ("connect", 2), ("helo", 2), ("session_end", 2)], seen
        assert ("mail", 2) in seen and ("mail", 1) not in seen, seen
        # the module's session timer of sid 1 was cancelled at its end
        assert re.search(r"hook=session_end sid=1 txns=0 timer_cancel=0", d.log_text())
        assert re.search(r"hook=helo sid=2 helo=tls\.test session_helo=tls\.test", d.log_text())


def test_error_count_starts_again_auth_failures_do_not():
    s = tls_settings(hard_error_limit=4, soft_error_limit=100, auth_passwords=keys()["passwd"],
                     auth_failure_limit=3)
    with Daemon(settings=s, listener={"tls": "starttls", "auth": True,
                                      "auth_cleartext": True}) as d:
        with d.client() as c:
            c.ehlo()
            for _ in range(3):
                c.cmd("XYZZY", 500, "5.5.1")
            c.starttls()
            c.ehlo()
            for _ in range(3):                    # 3 more: the count started again
                c.cmd("XYZZY", 500, "5.5.1")
            c.cmd("NOOP", 250)
            c.cmd("XYZZY", 500, "5.5.1")          # the 4th under TLS
            c.expect(421, "4.7.0")
            c.expect_closed()
        with d.client() as c:
            c.ehlo()
            c.cmd("AUTH PLAIN " + petrel.auth_plain("alice", "wrong1"), 535, "5.7.8")
            c.cmd("AUTH PLAIN " + petrel.auth_plain("alice", "wrong2"), 535, "5.7.8")
            c.starttls()
            c.ehlo()
            c.cmd("AUTH PLAIN " + petrel.auth_plain("alice", "wrong3"), 535, "5.7.8")
            c.expect(421, "4.7.0")                # the 3rd of the connection
            c.expect_closed()


if __name__ == "__main__":
    petrel.main()
