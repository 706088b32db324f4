#!/usr/bin/env python3
"""Issue 7, item 1 end to end: the message that overflowed maildir's copy.

Before the fix (tree 43c3e2b) maildir.c copy_message() held a CR back at
the end of each 64 KiB block and, when the next block did not start with
LF, wrote n + 1 bytes into out[65536].  BDAT took content as it came, so

    BDAT n LAST   "Subject: t\\r\\n\\r\\n" + 70,000 CR + 70,000 "X" + CRLF

got 250, the sanitizer build aborted in copy_message at delivery, and the
durable message killed the daemon again at every start (a queue of death).

Now two defences stand, and this test holds the daemon to either:
  - BDAT takes DATA's line rule (src/smtp_data.c): the bare CRs refuse the
    message with 554 5.5.2, so it never reaches the spool; or, should a
    build accept it (250), it must be delivered byte-correct (CR LF -> LF,
    the bare CRs kept) or deferred with a log line -- never a crash.
Either way the daemon is restarted twice and must come up, stay up, keep
taking mail and leave no sanitizer report.

A second case sends a legal message of the same shape (CR LF pairs across
many 64 KiB blocks, at both alignments of the pair against the block end)
and checks the delivered bytes across the same two restarts: the copy's
held-back CR is exercised where the protocol still allows it.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, T, make_message  # noqa: E402

ITEM1 = b"Subject: t\r\n\r\n" + b"\r" * 70000 + b"X" * 70000 + b"\r\n"


def bdat_last(c, sender, rcpt, msg):
    c.mail_rcpt(sender, [rcpt])
    c.send(b"BDAT %d LAST\r\n" % len(msg) + msg)
    return c.reply(timeout=T(30))


def body_of(content):
    """The message as delivered, after Return-Path, Delivered-To, Received."""
    return petrel.Delivered(content).body


def stays_up(d, seconds=1.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert d.running(), "petreld died (code %s); log: %s" \
            % (d.proc.returncode, d.log_tail(15))
        time.sleep(0.05)


def restart_twice(d, check):
    """SIGTERM + start, twice; after each start the daemon must stay up and
    check() must hold (d.stop() itself fails if petreld died meanwhile)."""
    for _ in range(2):
        d.stop()
        d.start()
        stays_up(d)
        check()
    d.assert_no_sanitizer_report()


def test_item1_message_by_bdat_never_crashes():
    with Daemon(settings={"retry_initial": 1}) as d:
        with d.client() as c:
            c.ehlo()
            r = bdat_last(c, "s@localhost", "poison@localhost", ITEM1)
            assert r.code in (250, 554), r
            if r.code == 554:
                # the documented rule: a bare CR in BDAT refuses the message
                assert r.enh == "5.5.2", r
                assert d.queued() == [], d.queued()
            # the session goes on
            ok = c.send_mail("s@localhost", ["after@localhost"],
                             make_message(subject="after"))
        accepted = r.code == 250
        want = b"Subject: t\n\n" + b"\r" * 70000 + b"X" * 70000 + b"\n"

        def check():
            if accepted:
                # delivered byte-correct, or deferred with a log line
                got = d.delivered("poison")
                if got:
                    assert len(got) == 1, "delivered %d times" % len(got)
                    b = body_of(got[0])
                    assert b == want, "body differs at %d (%d vs %d octets)" % (
                        next((i for i in range(min(len(b), len(want))) if b[i] != want[i]),
                             min(len(b), len(want))), len(b), len(want))
                else:
                    assert r.qid in d.queued(), "neither delivered nor queued"
                    assert "%s: to=<poison@localhost>" % r.qid in d.log_text(), \
                        "deferred without a log line"
            else:
                assert d.delivered("poison") == []
            assert len(d.wait_delivered("after", 1)) == 1

        if accepted:
            deadline = time.monotonic() + T(10)
            while time.monotonic() < deadline and not d.delivered("poison") \
                    and "%s: to=<poison@localhost>" % r.qid not in d.log_text():
                stays_up(d, 0.1)
        stays_up(d)
        check()
        restart_twice(d, check)
        # and the daemon still takes and delivers mail after both restarts
        qid = petrel.send_one(d.port, "s@localhost", "later@localhost",
                              make_message(subject="later"))
        assert qid and len(d.wait_delivered("later", 1)) == 1
        assert ok, "the mail after the poison got no queue id"


def test_crlf_pairs_across_copy_blocks_byte_correct():
    # 70,000 CR LF pairs span several 64 KiB blocks; the two subjects shift
    # the content by one octet, so in one message or the other a CR is the
    # last byte of a block and its LF the first of the next.
    msgs = {}
    with Daemon() as d:
        with d.client() as c:
            c.ehlo()
            for user, subj in (("even", b"t"), ("odd", b"tt")):
                m = b"Subject: " + subj + b"\r\n\r\n" + b"\r\n" * 70000 + \
                    b"X" * 70000 + b"\r\n"
                r = bdat_last(c, "s@localhost", "%s@localhost" % user, m)
                assert r.code == 250, r
                msgs[user] = m.replace(b"\r\n", b"\n")

        def check():
            for user, want in msgs.items():
                got = d.wait_delivered(user, 1)
                assert len(got) == 1, "%s: delivered %d times" % (user, len(got))
                assert body_of(got[0]) == want, "%s: body differs" % user

        check()
        restart_twice(d, check)


if __name__ == "__main__":
    petrel.main()
