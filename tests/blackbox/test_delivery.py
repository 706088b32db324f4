#!/usr/bin/env python3
"""What lands in the maildir: trace headers, exact bytes, 8BITMIME,
SMTPUTF8, swaks as a client, and the delivery log lines."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, make_message, assert_delivery, crlf  # noqa: E402

SWAKS = "/usr/bin/swaks"

RFC5322_DATE = (rb"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?\d{1,2} "
                rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                rb"\d{4} \d\d:\d\d(?::\d\d)? [+-]\d{4}")


def test_maildir_bytes_exact():
    body = ("plain line\n"
            "\n"
            "  leading spaces\n"
            "\ttab line\n"
            ".dot first\n"
            "..two dots\n"
            ".\n"
            "trailing spaces   \n"
            + "x" * 990 + "\n"
            "From a line starting with From\n"
            "last line\n")
    msg = make_message("exact", body, headers=["X-Test: 1", "Message-ID: <m1@t>"])
    with Daemon() as d, d.client() as c:
        c.ehlo("client.test")
        qid = c.send_mail("sender@localhost", ["user@localhost"], msg)
        got = d.wait_delivered("user", 1)
        assert len(got) == 1
        content = got[0]
        assert content.startswith(b"Return-Path: <sender@localhost>\n"
                                  b"Delivered-To: user@localhost\n"
                                  b"Received: from "), content[:300]
        dl = assert_delivery(content, "sender@localhost", "user@localhost",
                             msg, qid)
        assert b"\r" not in content, "CR left in the delivered file"
        assert dl.received.startswith(b"Received: from client.test "), \
            dl.received


def test_maildir_layout():
    with Daemon() as d:
        petrel.send_one(d.port, "a@localhost", "user@localhost", make_message())
        d.wait_delivered("user", 1)
        md = d.maildir("user")
        for sub in ("new", "cur", "tmp"):
            assert os.path.isdir(os.path.join(md, sub)), "no %s/ in %s" % (sub, md)
        assert not os.listdir(os.path.join(md, "tmp")), "file left in tmp/"


def test_received_header_details():
    msg = make_message("details")
    with Daemon() as d:
        qid = petrel.send_one(d.port, "a@localhost", "user@localhost", msg,
                              ehlo="client.test")
        dl = petrel.Delivered(d.wait_delivered("user", 1)[0])
        rx = (rb"^Received: from client\.test \(\[127\.0\.0\.1\]\) "
              rb"by mx\.test \(petrel\) with ESMTP id " + qid.encode()
              + rb" for <user@localhost>; " + RFC5322_DATE + rb"$")
        assert re.match(rx, dl.received), dl.received
        # folded as the spec shows: "\n\tby ..." and "\n\tfor ..."
        assert dl.received_raw.startswith(
            b"Received: from client.test ([127.0.0.1])\n\tby mx.test (petrel)"
            b" with ESMTP id " + qid.encode() + b"\n\tfor <user@localhost>; "), \
            dl.received_raw


def test_received_no_for_clause_with_two_recipients():
    msg = make_message("two")
    with Daemon() as d, d.client() as c:
        c.ehlo("client.test")
        qid = c.send_mail("a@localhost", ["u1@localhost", "u2@localhost"], msg)
        for u in ("u1", "u2"):
            content = d.wait_delivered(u, 1)[0]
            dl = assert_delivery(content, "a@localhost", u + "@localhost",
                                 msg, qid)
            assert b" for " not in dl.received, dl.received
            assert re.search(b"id " + qid.encode() + rb"; " + RFC5322_DATE,
                             dl.received), dl.received


def test_each_recipient_own_delivered_to():
    msg = make_message("fanout")
    rcpts = ["u%d@localhost" % i for i in range(5)] + ["v@example.test"]
    with Daemon() as d, d.client() as c:
        c.ehlo()
        qid = c.send_mail("a@localhost", rcpts, msg)
        for r in rcpts:
            user, dom = r.split("@")
            got = d.wait_delivered(user, 1, domain=dom)
            assert len(got) == 1, (r, len(got))
            assert_delivery(got[0], "a@localhost", r, msg, qid)


def test_same_recipient_twice_delivered_once():
    msg = make_message("dup rcpt")
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<user@localhost>", 250)
        c.cmd("RCPT TO:<user@localhost>", 250)
        c.data(msg)
        d.wait_delivered("user", 1)
        d.assert_nothing_more(1, grace=0.5)


def test_large_message():
    body = "".join("%07d %s\n" % (i, "y" * 60) for i in range(30000))  # ~2 MB
    msg = make_message("large", body)
    with Daemon() as d:
        qid = petrel.send_one(d.port, "a@localhost", "user@localhost", msg)
        got = d.wait_delivered("user", 1, timeout=20)
        assert_delivery(got[0], "a@localhost", "user@localhost", msg, qid)
        # its 2 MB queue slot is not kept for reuse: small messages after
        # it get a slot of their own size, the spool does not stay 2 MB big
        d.wait_log(re.escape(qid) + r": removed")
        sizes = [os.path.getsize(p) for p in d.spool_files() if "/queue/" in p]
        assert all(sz < 1 << 20 for sz in sizes), sizes
        small = make_message("small after large")
        q2 = petrel.send_one(d.port, "a@localhost", "user@localhost", small)
        got = d.wait_delivered("user", 2, timeout=20)
        assert any(petrel.qid_of_file(g) == q2 for g in got)


def test_8bitmime_byte_exact():
    high = bytes(range(0x80, 0x100))
    body = (b"latin-1: caf\xe9\n" + b"utf-8: caf\xc3\xa9 \xe2\x82\xac\n"
            + b"all high octets: " + high + b"\n"
            + b"low controls: \x01\x02\x1b\x7f\tend\n")
    msg = crlf(b"From: <a@localhost>\nSubject: 8bit\n"
               b"Content-Type: text/plain; charset=latin1\n"
               b"Content-Transfer-Encoding: 8bit\n\n" + body)
    with Daemon() as d, d.client() as c:
        c.ehlo()
        qid = c.send_mail("a@localhost", ["user@localhost"], msg,
                          params="BODY=8BITMIME")
        got = d.wait_delivered("user", 1)
        assert_delivery(got[0], "a@localhost", "user@localhost", msg, qid)


def test_smtputf8_delivery():
    msg = crlf("From: <sénder@localhost>\nTo: <jösé@localhost>\n"
               "Subject: ünïcödé\n\nhéllo wörld\n")
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<sénder@localhost> SMTPUTF8 BODY=8BITMIME", 250)
        c.cmd("RCPT TO:<jösé@localhost>", 250)
        qid = c.data(msg)
        c.cmd("QUIT", 221)
        path = os.path.join(d.mail, "localhost", "jösé", "new")
        got = d.wait_delivered("jösé", 1)
        assert os.path.isdir(path), path
        assert_delivery(got[0], "sénder@localhost", "jösé@localhost", msg, qid)


def test_utf8_rcpt_without_smtputf8():
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<jösé@localhost>", 553, "5.6.7")
        c.cmd("RCPT TO:<jose@localhost>", 250)


def test_utf8_sender_without_smtputf8():
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<sénder@localhost>", 553, "5.6.7")
        c.cmd("MAIL FROM:<sender@localhost>", 250)


def _swaks(d, *extra):
    return petrel.run([SWAKS, "--server", "127.0.0.1", "--port", str(d.port),
                       "--helo", "swaks.test", "--from", "a@localhost",
                       "--to", "sw@localhost", "--header", "Subject: swaks",
                       "--body", "hello from swaks", "--timeout", "20"]
                      + list(extra))


def test_swaks_plain():
    petrel.need_tool(SWAKS)
    with Daemon() as d:
        p = _swaks(d)
        assert p.returncode == 0, (p.returncode, p.stdout[-2000:])
        got = d.wait_delivered("sw", 1)
        dl = petrel.Delivered(got[0])
        assert dl.return_path == b"Return-Path: <a@localhost>\n", dl.return_path
        assert b"hello from swaks" in dl.body
        m = re.search(rb"queued as ([0-9A-Za-z]+)", p.stdout)
        assert m and m.group(1).decode() == dl.qid, (m, dl.qid)


def test_swaks_pipelining():
    petrel.need_tool(SWAKS)
    with Daemon() as d:
        p = _swaks(d, "--pipeline")
        assert p.returncode == 0, (p.returncode, p.stdout[-2000:])
        d.wait_delivered("sw", 1)


def test_swaks_helo_protocol():
    petrel.need_tool(SWAKS)
    with Daemon() as d:
        p = _swaks(d, "--protocol", "SMTP")
        assert p.returncode == 0, (p.returncode, p.stdout[-2000:])
        dl = petrel.Delivered(d.wait_delivered("sw", 1)[0])
        assert b" with SMTP id " in dl.received, dl.received


def test_delivery_log_lines():
    msg = make_message("logged")
    with Daemon() as d:
        qid = petrel.send_one(d.port, "a@localhost", "user@localhost", msg)
        d.wait_delivered("user", 1)
        q = re.escape(qid)
        d.wait_log(q + r"\b.*\bfrom=<a@localhost>, size=\d+, nrcpt=1\b")
        d.wait_log(q + r"\b.*\bto=<user@localhost>, relay=maildir, "
                   r"delay=[0-9.]+\b.*\bstatus=sent\b")


def test_delivery_log_two_recipients():
    msg = make_message("logged2")
    with Daemon() as d, d.client() as c:
        c.ehlo()
        qid = c.send_mail("a@localhost", ["u1@localhost", "u2@localhost"], msg)
        d.wait_delivered("u1", 1)
        d.wait_delivered("u2", 1)
        q = re.escape(qid)
        d.wait_log(q + r"\b.*\bfrom=<a@localhost>, size=\d+, nrcpt=2\b")
        for u in ("u1", "u2"):
            d.wait_log(q + r"\b.*\bto=<%s@localhost>, relay=maildir, " % u
                       + r"delay=[0-9.]+\b.*\bstatus=sent\b")


if __name__ == "__main__":
    petrel.main()
