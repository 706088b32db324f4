#!/usr/bin/env python3
"""AUTH throttled per client address across connections (issue 7, item 12).

  - after auth_client_failure_limit wrong passwords from one address, its
    AUTH gets 454 4.7.0 with no password checked (the log counts the
    checks), in new connections too and even with the right password;
  - meanwhile a good login from another address (127.0.0.2) works;
  - auth_client_concurrency: one address cannot have more password checks
    running at once (they run on the filter threads), another still can.

Clients connect from several loopback addresses (127.0.0.x) to the
daemon on 127.0.0.1."""

import os
import re
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, T, check  # noqa: E402

ALICE, ALICE_PW = "alice", "alice-secret"
CAROL, CAROL_PW = "carol", "carol-secret"     # a slow hash (~1 s)


def auth_daemon(settings, slow=False):
    d = Daemon(start=False, settings=dict(settings, auth_passwords="@PW@"),
               listener={"auth": True, "auth_cleartext": True})
    users = ["%s:%s" % (ALICE, petrel.crypt_hash(ALICE_PW, b"$6$"))]
    if slow:
        users.append("%s:%s" % (CAROL, petrel.crypt_hash_setting(
            CAROL_PW, b"$6$rounds=2000000$saltsaltsalt")))
    pw = petrel.write_passwd(d.dir, users)
    d.config_text = d.config_text.replace("@PW@", pw)
    with open(d.conf, "w") as f:
        f.write(d.config_text)
    return d.start()


def client_from(d, source):
    """A petrel.Client whose connection comes from the loopback address
    'source' (e.g. 127.0.0.2)."""
    c = petrel.Client.__new__(petrel.Client)
    c.timeout = T(15)
    c.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.sock.settimeout(c.timeout)
    c.sock.bind((source, 0))
    c.sock.connect((petrel.HOST, d.port))
    c.buf, c.eof = b"", False
    c.greeting = c.reply()
    check(c.greeting, 220)
    c.ehlo()
    return c


def checks_done(d):
    """Password checks that ended in a wrong password."""
    return len(re.findall(r"SASL PLAIN authentication failed\n", d.log_text()))


def test_bad_logins_from_one_address_are_throttled_others_log_in():
    s = {"auth_client_failure_limit": 5, "auth_client_failure_window": 600,
         "auth_failure_limit": 2}
    with auth_daemon(s) as d:
        for n in range(2):                      # 2 connections, 2 guesses each
            with client_from(d, "127.0.0.1") as c:
                c.cmd("AUTH PLAIN " + petrel.auth_plain(ALICE, "guess%da" % n), 535, "5.7.8")
                c.cmd("AUTH PLAIN " + petrel.auth_plain(ALICE, "guess%db" % n), 535, "5.7.8")
                c.expect(421, "4.7.0")
        with client_from(d, "127.0.0.1") as c:  # the 5th guess, then no more
            c.cmd("AUTH PLAIN " + petrel.auth_plain(ALICE, "guess5"), 535, "5.7.8")
            c.cmd("AUTH PLAIN " + petrel.auth_plain(ALICE, "guess6"), 454, "4.7.0")
            c.expect(421, "4.7.0")
        assert checks_done(d) == 5
        for _ in range(3):                      # new connections: refused at once
            with client_from(d, "127.0.0.1") as c:
                c.cmd("AUTH PLAIN " + petrel.auth_plain(ALICE, ALICE_PW), 454, "4.7.0")
                c.cmd("AUTH LOGIN", 454, "4.7.0")
                c.expect(421, "4.7.0")
        assert checks_done(d) == 5, "a password was checked for a throttled address"
        assert "sasl_username=alice" not in d.log_text()
        d.wait_log(r"AUTH refused: 5 failed logins from 127\.0\.0\.1 within 600 s")
        # another address logs in
        with client_from(d, "127.0.0.2") as c:
            c.cmd("AUTH PLAIN " + petrel.auth_plain(ALICE, ALICE_PW), 235, "2.7.0")
            c.send_mail("alice@localhost", ["user@localhost"], petrel.make_message("from .2"))
            c.cmd("QUIT", 221)
        d.wait_log(r"client=\[127\.0\.0\.2\]:\d+, sasl_method=PLAIN, sasl_username=alice")


def test_concurrent_checks_per_address_are_capped():
    s = {"auth_client_concurrency": 1, "filter_workers": 2}
    with auth_daemon(s, slow=True) as d:
        a = client_from(d, "127.0.0.3")
        b = client_from(d, "127.0.0.3")
        other = client_from(d, "127.0.0.4")
        try:
            line = ("AUTH PLAIN %s\r\n" % petrel.auth_plain(CAROL, CAROL_PW)).encode()
            a.send(line)
            b.send(line)
            other.send(line)
            got = sorted([a.reply(timeout=30).code, b.reply(timeout=30).code])
            assert got == [235, 454], got     # one check for .3 at a time
            check(other.reply(timeout=30), 235, "2.7.0")
        finally:
            for c in (a, b, other):
                c.close()
        d.wait_log(r"AUTH refused: 1 password checks from 127\.0\.0\.3 in progress")
        # the check over, .3 may try again
        with client_from(d, "127.0.0.3") as c:
            c.cmd("AUTH PLAIN " + petrel.auth_plain(ALICE, ALICE_PW), 235, "2.7.0")


if __name__ == "__main__":
    petrel.main()
