#!/usr/bin/env python3
"""Greeting, EHLO/HELO, simple commands, a plain DATA transaction."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, Client, make_message, assert_delivery  # noqa: E402


def test_greeting():
    with Daemon() as d, d.client() as c:
        g = c.greeting
        assert g.code == 220, g
        assert g.raw.startswith(b"220 mx.test ESMTP petrel"), g
        c.cmd("QUIT", 221)


def test_ehlo_capabilities():
    with Daemon() as d, d.client() as c:
        r = c.ehlo("client.test")
        assert r.lines[0].startswith("mx.test"), r
        caps = [l.upper() for l in r.lines[1:]]
        for cap in ("PIPELINING", "SIZE %d" % petrel.DEFAULT_SIZE_LIMIT,
                    "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
                    "CHUNKING"):
            assert cap in caps, "%s not in EHLO reply %r" % (cap, r.raw)


def test_ehlo_size_follows_config():
    with Daemon(settings={"message_size_limit": 12345}) as d, \
            d.client() as c:
        r = c.ehlo()
        assert "SIZE 12345" in [l.upper() for l in r.lines[1:]], r


def test_helo():
    with Daemon() as d, d.client() as c:
        r = c.cmd("HELO client.test", 250)
        assert r.lines[0].startswith("mx.test"), r


def test_simple_commands():
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.cmd("NOOP", 250)
        c.cmd("RSET", 250)
        c.cmd("VRFY someone", 252)
        c.cmd("HELP", 214)
        c.cmd("QUIT", 221)
        c.expect_closed()


def test_commands_case_insensitive():
    with Daemon() as d, d.client() as c:
        c.cmd("ehlo client.test", 250)
        c.cmd("mail from:<a@localhost>", 250)
        c.cmd("rcpt to:<user@localhost>", 250)
        c.cmd("rset", 250)
        c.cmd("noop", 250)
        c.cmd("quit", 221)


def test_simple_message():
    msg = make_message("simple", "hello world\n")
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<user@localhost>", 250)
        c.cmd("DATA", 354)
        c.send(msg + b".\r\n")
        r = c.expect(250, "2.0.0")
        assert r.text.startswith("2.0.0 Ok: queued as "), r
        assert r.qid, r
        c.cmd("QUIT", 221)
        got = d.wait_delivered("user", 1)
        assert_delivery(got[0], "a@localhost", "user@localhost", msg, r.qid)


def test_several_messages_one_session():
    with Daemon() as d, d.client() as c:
        c.ehlo()
        qids = []
        msgs = [make_message("m%d" % i, "body %d\n" % i) for i in range(5)]
        for m in msgs:
            qids.append(c.send_mail("a@localhost", ["user@localhost"], m))
        c.cmd("QUIT", 221)
        assert len(set(qids)) == 5, "queue ids not unique: %r" % qids
        got = d.wait_delivered("user", 5)
        by_qid = {petrel.qid_of_file(x): x for x in got}
        for q, m in zip(qids, msgs):
            assert q in by_qid, "QID %s not delivered" % q
            assert_delivery(by_qid[q], "a@localhost", "user@localhost", m, q)
        d.assert_nothing_more(5, grace=0.3)


def test_null_sender():
    msg = make_message("bounce-like")
    with Daemon() as d:
        qid = petrel.send_one(d.port, "", "user@localhost", msg)
        got = d.wait_delivered("user", 1)
        assert_delivery(got[0], "", "user@localhost", msg, qid)


def test_rset_clears_transaction():
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<user@localhost>", 250)
        c.cmd("RSET", 250)
        c.cmd("DATA", 503, "5.5.1")
        c.cmd("RCPT TO:<user@localhost>", 503, "5.5.1")
        # and a new transaction works after it
        c.send_mail("a@localhost", ["user@localhost"], make_message())
        d.wait_delivered("user", 1)


def test_quit_closes():
    with Daemon() as d, d.client() as c:
        c.cmd("QUIT", 221)
        c.expect_closed()


def test_helo_gives_smtp_ehlo_gives_esmtp():
    msg = make_message("proto")
    with Daemon() as d:
        with d.client() as c:
            c.cmd("HELO helo.test", 250)
            q1 = c.send_mail("a@localhost", ["h@localhost"], msg)
            c.cmd("QUIT", 221)
        q2 = petrel.send_one(d.port, "a@localhost", "e@localhost", msg,
                             ehlo="ehlo.test")
        h = petrel.Delivered(d.wait_delivered("h", 1)[0])
        e = petrel.Delivered(d.wait_delivered("e", 1)[0])
        assert h.received.startswith(b"Received: from helo.test "), h.received
        assert b" with SMTP id " + q1.encode() in h.received, h.received
        assert e.received.startswith(b"Received: from ehlo.test "), e.received
        assert b" with ESMTP id " + q2.encode() in e.received, e.received


if __name__ == "__main__":
    petrel.main()
