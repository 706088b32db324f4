#!/usr/bin/env python3
"""SMTP smuggling: only CRLF.CRLF ends DATA; bare CR/LF refuse the message.

Each fake terminator is sent inside a message, followed by a smuggled
MAIL FROM / RCPT TO / DATA / message, then the real CRLF.CRLF, all in one
packet.  The server must answer exactly one 554 5.5.2 (after the real dot),
run none of the smuggled commands, and deliver nothing.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, make_message, check  # noqa: E402

FAKE_TERMINATORS = [
    ("lf_dot_lf", b"\n.\n"),
    ("lf_dot_crlf", b"\n.\r\n"),
    ("crlf_dot_lf", b"\r\n.\n"),
    ("cr_dot_cr", b"\r.\r"),
    ("crlf_dot_cr", b"\r\n.\r"),
    ("cr_dot_crlf", b"\r.\r\n"),
    ("lf_dot_cr", b"\n.\r"),
    ("cr_dot_lf", b"\r.\n"),
    ("lf_dot_cr_lf_lf", b"\n.\r\n\n"),
    ("crlf_dot_crcrlf", b"\r\n.\r\r\n"),
]

SMUGGLED = (b"MAIL FROM:<evil@localhost>\r\n"
            b"RCPT TO:<smuggled@localhost>\r\n"
            b"DATA\r\n"
            b"Subject: smuggled\r\n"
            b"\r\n"
            b"smuggled body\r\n")


def smuggle(seq, split=False, prefix=b"Subject: innocent\r\n\r\nbody"):
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<victim@localhost>", 250)
        c.cmd("DATA", 354)
        if split:
            # packet boundary right before the fake terminator's dot
            i = seq.index(b".")
            c.send(prefix + seq[:i])
            time.sleep(0.1)
            c.send(seq[i:] + SMUGGLED + b".\r\n")
        else:
            c.send(prefix + seq + SMUGGLED + b".\r\n")
        r = c.reply()
        check(r, 554, "5.5.2", "end of DATA with fake terminator %r" % seq)
        # no further replies: the smuggled commands were never executed
        c.expect_silence(0.5)
        c.cmd("NOOP", 250)
        # the session is still usable and in the right state
        c.cmd("RCPT TO:<victim@localhost>", 503, "5.5.1")
        ctl = make_message("control")
        qid = c.send_mail("a@localhost", ["control@localhost"], ctl)
        c.cmd("QUIT", 221)
        petrel.assert_delivery(d.wait_delivered("control", 1)[0],
                               "a@localhost", "control@localhost", ctl, qid)
        d.assert_nothing_more(1, grace=0.5)
        assert not d.delivered("victim"), "victim message delivered"
        assert not d.delivered("smuggled"), "smuggled message delivered"


def _make(name, seq):
    def t():
        smuggle(seq)
    t.__name__ = "test_smuggle_" + name
    return t


for _name, _seq in FAKE_TERMINATORS:
    globals()["test_smuggle_" + _name] = _make(_name, _seq)


def test_smuggle_split_packets_crlf_dot_lf():
    smuggle(b"\r\n.\n", split=True)


def test_smuggle_split_packets_lf_dot_crlf():
    smuggle(b"\n.\r\n", split=True)


def test_smuggle_split_packets_crlf_dot_cr():
    smuggle(b"\r\n.\r", split=True)


def test_smuggle_at_start_of_data_dot_lf():
    # the start of the data counts as after a CRLF: ".\n" there is not an
    # end either
    smuggle(b".\n", prefix=b"")


def test_smuggle_at_start_of_data_dot_cr():
    smuggle(b".\r", prefix=b"")


def test_bare_lf_line_in_body_refused():
    # no smuggling attempt, just a bare LF inside the body
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<victim@localhost>", 250)
        c.cmd("DATA", 354)
        c.send(b"Subject: lf\r\n\r\nline\nother line\r\n.\r\n")
        c.expect(554, "5.5.2")
        c.cmd("NOOP", 250)
        d.assert_nothing_more(0, grace=0.5)


def test_dot_stuffing_is_undone():
    # legitimate dots: a stuffed ".." line, a line that is only ".", and a
    # line ending in "." are message content, not terminators
    msg = make_message("dots", ".leading dot\n.\n..two\nend.\n")
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<user@localhost>", 250)
        c.cmd("DATA", 354)
        stuffed = petrel.dot_stuff(msg)
        assert b"\r\n..\r\n" in stuffed and b"\r\n...two" in stuffed
        c.send(stuffed + b".\r\n")
        qid = c.expect(250, "2.0.0").qid
        petrel.assert_delivery(d.wait_delivered("user", 1)[0], "a@localhost",
                               "user@localhost", msg, qid)


def test_terminator_split_across_packets():
    # CRLF.CRLF split over several packets still ends DATA exactly once
    msg = make_message("split")
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<user@localhost>", 250)
        c.cmd("DATA", 354)
        c.send(msg[:-2])
        for piece in (b"\r", b"\n", b".", b"\r", b"\n"):
            time.sleep(0.05)
            c.send(piece)
        qid = c.expect(250, "2.0.0").qid
        petrel.assert_delivery(d.wait_delivered("user", 1)[0], "a@localhost",
                               "user@localhost", msg, qid)


if __name__ == "__main__":
    petrel.main()
