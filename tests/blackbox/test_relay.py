#!/usr/bin/env python3
"""Relay control and the router's mailboxes/aliases."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, make_message  # noqa: E402

RELAY_TRICKS = [
    "user%other.test@localhost",
    '"user@other.test"@localhost',
    "@localhost:user@other.test",
    "other.test!user@localhost",
]


def test_relay_denied_to_other_domain():
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<user@other.test>", 554, "5.7.1")
        c.cmd("RCPT TO:<user@localhost>", 250)
        c.cmd("RCPT TO:<user@example.test>", 250)


def test_relay_tricks_denied():
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        bad = []
        for addr in RELAY_TRICKS:
            r = c.cmd("RCPT TO:<%s>" % addr)
            if r.code != 554 or r.enh != "5.7.1":
                bad.append("%s -> %s" % (addr, str(r)))
        c.cmd("RCPT TO:<user@localhost>", 250)
        assert not bad, "relay tricks not refused with 554 5.7.1: %s" % bad


def test_relay_tricks_denied_one_per_session():
    # the same, each in a fresh transaction, then DATA: nothing leaks out
    with Daemon() as d, d.client() as c:
        c.ehlo()
        for addr in RELAY_TRICKS:
            c.cmd("MAIL FROM:<a@localhost>", 250)
            r = c.cmd("RCPT TO:<%s>" % addr)
            petrel.check(r, 554, "5.7.1", addr)
            c.cmd("DATA", 554, "5.5.1")   # all recipients refused: "no valid recipients", as Postfix
            c.cmd("RSET", 250)
        d.assert_nothing_more(0, grace=0.3)


def test_relay_allowed_from_relay_network():
    with Daemon(settings={"relay_networks": ["127.0.0.0/8"]}) as d, \
            d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<user@other.test>", 250)
        c.cmd("RSET", 250)
        c.cmd("QUIT", 221)


def test_relay_network_not_matching():
    with Daemon(settings={"relay_networks": ["10.0.0.0/8", "192.168.0.0/16"]}) \
            as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<user@other.test>", 554, "5.7.1")


def test_domain_is_case_insensitive():
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<user@LocalHost>", 250)
        c.cmd("RCPT TO:<user@EXAMPLE.test>", 250)


ROUTER = {"mailboxes": ["alice@example.test"],
          "aliases": ["postmaster@localhost: alice@example.test"]}


def test_unknown_mailbox_refused():
    with Daemon(router=ROUTER) as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<bob@example.test>", 550, "5.1.1")
        c.cmd("RCPT TO:<bob@localhost>", 550, "5.1.1")
        c.cmd("RCPT TO:<alice@example.test>", 250)
        c.cmd("RCPT TO:<postmaster@localhost>", 250)


def test_mailbox_delivery():
    msg = make_message("to alice")
    with Daemon(router=ROUTER) as d:
        qid = petrel.send_one(d.port, "a@localhost", "alice@example.test", msg)
        got = d.wait_delivered("alice", 1, domain="example.test")
        petrel.assert_delivery(got[0], "a@localhost", "alice@example.test",
                               msg, qid)


def test_alias_delivery():
    msg = make_message("to postmaster")
    with Daemon(router=ROUTER) as d:
        qid = petrel.send_one(d.port, "a@localhost", "postmaster@localhost",
                              msg)
        got = d.wait_delivered("alice", 1, domain="example.test")
        dl = petrel.Delivered(got[0])
        assert dl.qid == qid, (dl.qid, qid)
        assert dl.body == petrel.to_lf(msg), dl.body
        assert not d.delivered("postmaster"), "alias delivered as a mailbox"
        d.assert_nothing_more(1, grace=0.3)


def test_unknown_mailbox_no_partial_delivery():
    msg = make_message("mixed")
    with Daemon(router=ROUTER) as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<nobody@example.test>", 550, "5.1.1")
        c.cmd("RCPT TO:<alice@example.test>", 250)
        c.data(msg)
        d.wait_delivered("alice", 1, domain="example.test")
        d.assert_nothing_more(1, grace=0.3)


def test_embedded_default_knows_its_recipients():
    """Issue 7 item 8: petreld with no configuration file (its embedded
    default, on 127.0.0.1:2525) does not make a maildir for any local part
    a stranger names: unknown ones get 550 5.1.1 at RCPT, user@ and
    postmaster@localhost are delivered."""
    import shutil
    import subprocess
    import tempfile
    import time
    if petrel._listening(2525):
        petrel.skip("127.0.0.1:2525 is in use")
    top = tempfile.mkdtemp(prefix="petrel-bb-")
    env = dict(os.environ)
    env["PETREL_MODULE_PATH"] = petrel.MODULE_PATH
    log = open(os.path.join(top, "petreld.log"), "wb")
    p = subprocess.Popen([petrel.PETRELD, "-f"], cwd=top, env=env, stdin=subprocess.DEVNULL,
                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + petrel.T(15)
        while not petrel._listening(2525):
            assert p.poll() is None, open(os.path.join(top, "petreld.log")).read()
            assert time.monotonic() < deadline, "petreld did not listen on 2525"
            time.sleep(0.05)
        with petrel.Client(2525) as c:
            c.ehlo()
            c.cmd("MAIL FROM:<stranger@elsewhere.test>", 250)
            for rcpt in ["random1@localhost", "x7f3q@localhost", "Admin@localhost"]:
                c.cmd("RCPT TO:<%s>" % rcpt, 550, "5.1.1")
            c.cmd("RCPT TO:<user@localhost>", 250)
            c.cmd("RCPT TO:<Postmaster>", 250)
            c.cmd("DATA", 354)
            c.send(make_message(subject="known") + b".\r\n")
            c.expect(250)
        mail = os.path.join(top, "petrel-data", "mail", "localhost")
        deadline = time.monotonic() + petrel.T(10)
        while not (os.path.isdir(os.path.join(mail, "user", "new")) and
                   os.listdir(os.path.join(mail, "user", "new"))):
            assert time.monotonic() < deadline, "user@localhost got nothing"
            time.sleep(0.05)
        assert sorted(os.listdir(mail)) in (["postmaster", "user"], ["user"]), os.listdir(mail)
    finally:
        p.terminate()
        p.wait(timeout=20)
        log.close()
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    petrel.main()
