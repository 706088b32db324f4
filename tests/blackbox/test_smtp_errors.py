#!/usr/bin/env python3
"""Sequence errors, syntax errors, limits, timeouts."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, make_message, check  # noqa: E402


def test_mail_before_helo():
    with Daemon() as d, d.client() as c:
        c.cmd("MAIL FROM:<a@localhost>", 503, "5.5.1")
        c.cmd("EHLO client.test", 250)
        c.cmd("MAIL FROM:<a@localhost>", 250)


def test_rcpt_before_mail():
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.cmd("RCPT TO:<user@localhost>", 503, "5.5.1")


def test_data_before_rcpt():
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.cmd("DATA", 503, "5.5.1")
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("DATA", 503, "5.5.1")
        # the session is not in DATA mode: a command still works
        c.cmd("NOOP", 250)


def test_nested_mail():
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("MAIL FROM:<b@localhost>", 503, "5.5.1")
        c.cmd("RCPT TO:<user@localhost>", 250)
        c.cmd("MAIL FROM:<b@localhost>", 503, "5.5.1")


def test_unknown_command():
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.cmd("FROBNICATE now", 500, "5.5.1")
        c.cmd("NOOP", 250)


def test_bad_syntax():
    with Daemon() as d, d.client() as c:
        c.ehlo()
        r = c.cmd("MAIL FROM:foo")
        assert r.code == 501 and r.enh in ("5.5.2", "5.1.7"), r
        r = c.cmd("MAIL FROM:<a@localhost")
        assert r.code == 501 and r.enh in ("5.5.2", "5.1.7"), r
        c.cmd("MAIL FROM:<a@localhost>", 250)
        r = c.cmd("RCPT TO:")
        assert r.code == 501 and r.enh in ("5.5.2", "5.1.3"), r
        r = c.cmd("RCPT TO:<not an address>")
        assert r.code == 501 and r.enh in ("5.5.2", "5.1.3"), r
        c.cmd("RCPT TO:<user@localhost>", 250)


def test_helo_ehlo_without_domain():
    with Daemon() as d, d.client() as c:
        r = c.cmd("EHLO")
        assert r.code == 501 and r.enh == "5.5.2", r
        r = c.cmd("HELO")
        assert r.code == 501 and r.enh == "5.5.2", r
        c.cmd("MAIL FROM:<a@localhost>", 503, "5.5.1")
        c.cmd("EHLO client.test", 250)


def test_unknown_mail_parameter():
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost> FOO=bar", 555, "5.5.4")
        c.cmd("MAIL FROM:<a@localhost>", 250)


def test_line_too_long():
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.send(b"NOOP " + b"x" * 3000 + b"\r\n")
        c.expect(500, "5.5.6")
        c.cmd("NOOP", 250)
        c.send(b"MAIL FROM:<" + b"a" * 2100 + b"@localhost>\r\n")
        c.expect(500, "5.5.6")
        msg = make_message("after long line")
        qid = c.send_mail("a@localhost", ["user@localhost"], msg)
        c.cmd("QUIT", 221)
        petrel.assert_delivery(d.wait_delivered("user", 1)[0], "a@localhost",
                               "user@localhost", msg, qid)


def test_line_of_2048_octets_is_not_too_long():
    # 2046 octets + CRLF = 2048: within the limit; NOOP ignores arguments
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.send(b"NOOP " + b"x" * 2041 + b"\r\n")
        r = c.reply()
        assert r.code != 500 or r.enh != "5.5.6", r


def test_bare_lf_in_command():
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.send(b"MAIL FROM:<a@localhost>\nRCPT TO:<user@localhost>\r\n")
        c.expect(500, "5.5.2")
        # one line (up to CRLF), one reply: the text after the bare LF
        # must not run as a command of its own
        c.expect_silence(0.3)
        c.cmd("NOOP", 250)
        c.expect_silence(0.3)
        c.send_mail("a@localhost", ["user@localhost"], make_message())


def test_bare_cr_in_command():
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.send(b"MAIL FROM:<a@localhost>\rRCPT TO:<user@localhost>\r\n")
        c.expect(500, "5.5.2")
        # one line (up to CRLF), one reply: the text after the bare CR
        # must not run as a command of its own
        c.expect_silence(0.3)
        c.cmd("NOOP", 250)
        c.expect_silence(0.3)
        c.send_mail("a@localhost", ["user@localhost"], make_message())


def test_too_many_recipients():
    with Daemon(settings={"recipient_limit": 100}) as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        rcpts = ["r%d@localhost" % i for i in range(101)]
        # pipelined: all RCPTs in one packet
        c.send("".join("RCPT TO:<%s>\r\n" % r for r in rcpts))
        rs = c.replies(101)
        for i, r in enumerate(rs[:100]):
            check(r, 250, what="RCPT %d" % (i + 1))
        check(rs[100], 452, "4.5.3", "RCPT 101")
        msg = make_message("hundred")
        c.data(msg)
        c.cmd("QUIT", 221)
        files = d.wait_all_delivered(100, timeout=20)
        assert len(files) == 100, len(files)
        assert not d.delivered("r100"), "101st recipient got the message"
        # the refusal is logged with the queue id and the address, as others are
        assert re.search(r"[0-9A-F]{16}: reject: RCPT from \S+: 452 4\.5\.3 .*to=<r100@localhost>",
                         d.log_text()), d.log_text()[-2000:]


def test_size_parameter_over_limit():
    with Daemon(settings={"message_size_limit": 20000}) as d, \
            d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost> SIZE=20001", 552, "5.3.4")
        c.cmd("MAIL FROM:<a@localhost> SIZE=20000", 250)
        c.cmd("RSET", 250)


def test_data_over_limit():
    with Daemon(settings={"message_size_limit": 20000}) as d, \
            d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<big@localhost>", 250)
        c.cmd("DATA", 354)
        big = make_message("big", ("x" * 70 + "\n") * 500)   # ~36 kB
        c.send(big + b".\r\n")
        c.expect(552, "5.3.4", what="end of oversized DATA")
        # session still usable
        small = make_message("small")
        qid = c.send_mail("a@localhost", ["small@localhost"], small)
        c.cmd("QUIT", 221)
        petrel.assert_delivery(d.wait_delivered("small", 1)[0], "a@localhost",
                               "small@localhost", small, qid)
        d.assert_nothing_more(1, grace=0.5)
        assert not d.delivered("big")


def test_bdat_over_limit():
    # the size limit holds for BDAT as for DATA (RFC 3030 section 4.1)
    with Daemon(settings={"message_size_limit": 20000}) as d, \
            d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<big@localhost>", 250)
        chunk = b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 200
        c.send(b"BDAT %d\r\n" % len(chunk) + chunk)
        r = c.reply()
        if r.code == 250:      # refused at the second chunk at the latest
            c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
            r = c.reply()
        check(r, 552, "5.3.4", "BDAT over the size limit")
        c.cmd("RSET", 250)
        small = make_message("small")
        qid = c.send_mail("a@localhost", ["small@localhost"], small)
        petrel.assert_delivery(d.wait_delivered("small", 1)[0], "a@localhost",
                               "small@localhost", small, qid)
        d.assert_nothing_more(1, grace=0.5)


def test_idle_timeout():
    with Daemon(settings={"smtp_timeout": 2}) as d, d.client() as c:
        c.ehlo()
        t0 = time.monotonic()
        r = c.reply(timeout=15)
        check(r, 421, "4.4.2", "idle timeout")
        c.expect_closed(timeout=5)
        waited = time.monotonic() - t0
        assert waited >= 1.5, "421 came after %.1fs, before the timeout" % waited


def test_idle_timeout_with_partial_line():
    # a command started but never ended with CRLF is idle all the same
    with Daemon(settings={"smtp_timeout": 2}) as d, d.client() as c:
        c.ehlo()
        c.send(b"NOOP")
        r = c.reply(timeout=15)
        check(r, 421, "4.4.2", "idle timeout in a partial line")
        c.expect_closed(timeout=5)


def test_data_phase_timeout():
    # data_timeout bounds the whole DATA phase, even if bytes keep coming
    with Daemon(settings={"data_timeout": 2}) as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<slow@localhost>", 250)
        c.cmd("DATA", 354)
        c.send(b"Subject: slow\r\n\r\n")
        deadline = time.monotonic() + petrel.T(15)
        r = None
        while time.monotonic() < deadline:
            try:
                c.send(b"x\r\n")
            except OSError:
                break
            try:
                r = c.reply(timeout=0.3)
                break
            except petrel.Closed:
                break
            except OSError:      # socket.timeout: nothing yet
                continue
        assert r is not None, "no reply before the connection ended or 15s"
        check(r, 421, what="DATA phase timeout")
        c.expect_closed()
        d.assert_nothing_more(0, grace=0.3)


def test_too_many_received_headers():
    hops = ["Received: from h%d.test by h%d.test; Thu, 1 Jan 2026 00:00:00"
            " +0000" % (i, i + 1) for i in range(101)]
    msg = make_message("loop", headers=hops)
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<loop@localhost>", 250)
        c.cmd("DATA", 354)
        c.send(msg + b".\r\n")
        c.expect(554, "5.4.6", what="101 Received headers")
        c.cmd("NOOP", 250)
        ok = make_message("ok")
        c.send_mail("a@localhost", ["ok@localhost"], ok)
        d.wait_delivered("ok", 1)
        d.assert_nothing_more(1, grace=0.3)


def test_received_lines_in_body_not_counted():
    # only Received: header fields count as hops, not body lines
    body = "".join("Received: from body%d.test by x; in the body\n" % i
                   for i in range(150))
    msg = make_message("quoted hops", body)
    with Daemon() as d:
        qid = petrel.send_one(d.port, "a@localhost", "hops@localhost", msg)
        petrel.assert_delivery(d.wait_delivered("hops", 1)[0], "a@localhost",
                               "hops@localhost", msg, qid)


def test_slow_client_does_not_block_others():
    with Daemon() as d, d.client() as slow:
        slow.ehlo()
        slow.cmd("MAIL FROM:<a@localhost>", 250)
        slow.cmd("RCPT TO:<slow@localhost>", 250)
        slow.cmd("DATA", 354)
        slow.send(b"Subject: slow\r\n\r\npart")
        with d.client() as half:          # a half-written command, too
            half.send(b"EHLO half")
            for i in range(3):
                petrel.send_one(d.port, "a@localhost", "fast@localhost",
                                make_message("fast %d" % i))
            d.wait_delivered("fast", 3)
        slow.send(b" two\r\n.\r\n")
        slow.expect(250, "2.0.0")
        d.wait_delivered("slow", 1)


def test_100_received_headers_accepted():
    hops = ["Received: from h%d.test by h%d.test; Thu, 1 Jan 2026 00:00:00"
            " +0000" % (i, i + 1) for i in range(100)]
    msg = make_message("hops", headers=hops)
    with Daemon() as d:
        qid = petrel.send_one(d.port, "a@localhost", "hops@localhost", msg)
        petrel.assert_delivery(d.wait_delivered("hops", 1)[0], "a@localhost",
                               "hops@localhost", msg, qid)


def test_binarymime_not_advertised_is_refused():
    # RFC 3030: BINARYMIME is not in our EHLO, so BODY=BINARYMIME is refused
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost> BODY=BINARYMIME", 555, "5.5.4")
        c.cmd("MAIL FROM:<a@localhost> BODY=8BITMIME", 250)


if __name__ == "__main__":
    petrel.main()
