#!/usr/bin/env python3
"""Temporary delivery failures: the message stays queued, is retried, and
is delivered once the problem is gone; it survives a restart while
deferred; `petrelctl flush` retries at once; after queue_lifetime it
bounces.  A mailbox name that cannot be a maildir is refused at RCPT.

The failure is made the way a root-run test can: a plain file stands where
the recipient's maildir directory must be created (ENOTDIR)."""

import glob
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, block_mailbox, make_message  # noqa: E402

PETRELCTL = os.environ.get("PETRELCTL") or os.path.join(petrel.BUILDDIR, "src", "petrelctl")


def queued(d):
    return d.queued()


def bouncing_daemon(**kw):
    """A daemon where mail for remote.test goes to the asynctest transport
    (its bounce... local parts bounce) and 127.0.0.1 may relay: a
    permanent failure after 250, now that maildir refuses unusable names
    at RCPT."""
    return Daemon(settings={"relay_networks": ["127.0.0.0/8"]},
                  modules_extra="  asynctest = { delay_ms = 10; };",
                  extra='routes = ( { domain = "remote.test"; transport = "asynctest"; } );',
                  **kw)


def send(d, rcpt, subject):
    with d.client() as c:
        c.ehlo()
        return c.send_mail("a@localhost", [rcpt], make_message(subject=subject))


def test_deferred_then_delivered_on_retry():
    with Daemon(settings={"retry_initial": 1, "retry_max": 1}) as d:
        blocker = block_mailbox(d, "user")
        qid = send(d, "user@localhost", "retry me")
        d.wait_log(r"%s: to=<user@localhost>.*status=deferred" % qid)
        assert queued(d) == [qid], queued(d)
        os.unlink(blocker)
        files = d.wait_delivered("user", 1, timeout=15)
        assert qid.encode() in files[0]
        d.wait_log(r"%s: removed" % qid)
        assert queued(d) == []
        d.assert_nothing_more(1, grace=1.5)


def test_deferred_survives_restart():
    with Daemon(settings={"retry_initial": 3600}) as d:
        blocker = block_mailbox(d, "user")
        qid = send(d, "user@localhost", "survive")
        d.wait_log(r"%s: to=<user@localhost>.*status=deferred" % qid)
        d.stop()
        assert queued(d) == [qid]
        os.unlink(blocker)
        d.start()                      # recovery keeps its retry time (an hour away)
        time.sleep(0.5)
        assert d.delivered("user") == []
        assert queued(d) == [qid]
        r = subprocess.run([PETRELCTL, "-c", d.conf, "flush"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        assert r.returncode == 0, r.stdout
        files = d.wait_delivered("user", 1, timeout=15)
        assert qid.encode() in files[0]


def test_restart_resumes_the_retry_schedule():
    # due while the daemon was down: tried as soon as it is back
    with Daemon(settings={"retry_initial": 1, "retry_max": 1}) as d:
        blocker = block_mailbox(d, "user")
        qid = send(d, "user@localhost", "resume")
        d.wait_log(r"%s: to=<user@localhost>.*status=deferred" % qid)
        d.stop()
        os.unlink(blocker)
        time.sleep(1.5)
        d.start()
        files = d.wait_delivered("user", 1, timeout=15)
        assert qid.encode() in files[0]


def test_petrelctl_flush_retries_now():
    with Daemon(settings={"retry_initial": 3600}) as d:
        blocker = block_mailbox(d, "user")
        qid = send(d, "user@localhost", "flush")
        d.wait_log(r"%s: to=<user@localhost>.*status=deferred" % qid)
        os.unlink(blocker)
        time.sleep(0.3)
        assert d.delivered("user") == []       # the retry is an hour away
        r = subprocess.run([PETRELCTL, "-c", d.conf, "queue", "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        # the deferred message, as the daemon holds it
        (m,) = [json.loads(x) for x in r.stdout.decode().splitlines()]
        assert (m["qid"], m["state"], m["sender"]) == (qid, "deferred", "a@localhost"), m
        assert [x["state"] for x in m["recipients"]] == ["deferred"], m
        r = subprocess.run([PETRELCTL, "-c", d.conf, "flush"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        assert r.returncode == 0, r.stdout
        files = d.wait_delivered("user", 1, timeout=15)
        assert qid.encode() in files[0]
        d.wait_log(r"queue rescan: 0 new, 1 deferred")


def test_expired_message_bounces():
    with Daemon(settings={"retry_initial": 1, "retry_max": 1, "queue_lifetime": 2}) as d:
        block_mailbox(d, "user")
        qid = send(d, "user@localhost", "expire")
        d.wait_log(r"%s: to=<user@localhost>.*status=bounced \(message expired" % qid,
                   timeout=20)
        d.wait_log(r"%s: removed" % qid)
        # the report to a@localhost may still be queued beside it: it is
        # queued before the expired message goes
        assert qid not in queued(d), queued(d)


def assert_dsn(raw, qid, rcpt, status, subject):
    """The report the sender finds in their mailbox (RFC 3464)."""
    import email
    from email import policy
    assert raw.startswith(b"Return-Path: <>\n"), raw[:80]
    msg = email.message_from_bytes(raw, policy=policy.compat32)
    assert msg["Subject"] == "Undelivered Mail Returned to Sender", msg["Subject"]
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert [p.get_content_type() for p in parts] == \
        ["text/plain", "message/delivery-status", "text/rfc822-headers"], parts
    report = raw.decode("utf-8", "replace")
    assert "X-Petrel-Queue-ID: %s" % qid in report
    assert "Final-Recipient: rfc822; %s" % rcpt in report
    assert "Action: failed" in report
    assert "Status: %s" % status in report
    assert "Subject: %s" % subject in report       # the original's headers


def test_bounce_reaches_the_sender():
    with bouncing_daemon() as d:
        qid = send(d, 'bounce1@remote.test', "will bounce")
        files = d.wait_delivered("a", 1, timeout=15)
        assert_dsn(files[0], qid, 'bounce1@remote.test', "5.1.1", "will bounce")
        d.wait_log(r"%s: sender non-delivery notification: \w+" % qid)
        d.assert_nothing_more(1, grace=0.5)      # nothing else arrived anywhere


def test_expired_message_bounce_says_4_4_7():
    with Daemon(settings={"retry_initial": 1, "retry_max": 1, "queue_lifetime": 2}) as d:
        block_mailbox(d, "user")
        qid = send(d, "user@localhost", "expiring")
        files = d.wait_delivered("a", 1, timeout=20)
        assert_dsn(files[0], qid, "user@localhost", "4.4.7", "expiring")


def test_bounce_of_a_message_with_nul_in_its_headers():
    """A NUL in a header does not hide the end of the header section: the
    report attaches the headers, not the body."""
    with Daemon(settings={"retry_initial": 1, "retry_max": 1, "queue_lifetime": 2}) as d:
        block_mailbox(d, "user")
        msg = (b"Subject: nul inside\r\nX-Nul: before\x00after\r\nX-Last: yes\r\n\r\n"
               b"BODY-MARKER first body line\r\n" + b"more body\r\n" * 50)
        with d.client() as c:
            c.ehlo()
            qid = c.send_mail("a@localhost", ["user@localhost"], msg)
        files = d.wait_delivered("a", 1, timeout=20)
        assert_dsn(files[0], qid, "user@localhost", "4.4.7", "nul inside")
        part = files[0].split(b"Content-Type: text/rfc822-headers\n\n", 1)[1]
        assert b"X-Nul: before\x00after\nX-Last: yes\n" in part, part
        assert b"BODY-MARKER" not in files[0], "the body went into the report: %r" % part
        assert b"more body" not in files[0]


def test_report_of_a_message_its_queue_file_lost():
    """The queue file of a deferred RET=FULL message is cut short under the
    daemon (a disk or an operator): the report still goes, with the
    header section alone instead of a cut message/rfc822, and the log says
    why with the queue id."""
    with Daemon(settings={"retry_initial": 1, "retry_max": 1, "queue_lifetime": 3}) as d:
        block_mailbox(d, "user")
        msg = make_message(subject="cut short", body="BODY-MARKER\n" + "B" * 100000 + "\n")
        with d.client() as c:
            c.ehlo()
            c.cmd("MAIL FROM:<a@localhost> RET=FULL", 250)
            c.cmd("RCPT TO:<user@localhost> NOTIFY=FAILURE", 250)
            qid = c.data(msg)
        d.wait_log(r"%s: to=<user@localhost>.*status=deferred" % qid)
        qdir = os.path.join(d.spool, "queue")
        cut = [p for p in (os.path.join(qdir, f) for f in os.listdir(qdir))
               if os.path.getsize(p) > 100000]
        assert len(cut) == 1, os.listdir(qdir)
        os.truncate(cut[0], os.path.getsize(cut[0]) - 60000)
        files = d.wait_delivered("a", 1, timeout=20)
        assert_dsn(files[0], qid, "user@localhost", "4.4.7", "cut short")
        assert b"BODY-MARKER" not in files[0], files[0][-500:]
        d.wait_log(r"warning: %s: queue file read error \(the file ends before the message\): "
                   r"the report returns the message's header section only" % qid)


def test_no_bounce_to_null_sender():
    with bouncing_daemon() as d:
        with d.client() as c:
            c.ehlo()
            qid = c.send_mail("", ['bounce2@remote.test'], make_message(subject="from <>"))
        d.wait_log(r"%s: no bounce: the sender is <>" % qid)
        time.sleep(0.5)
        assert d.all_delivered_files() == [], d.all_delivered_files()


def test_unsafe_mailbox_names_refused_at_rcpt():
    """maildir's check() refuses at RCPT a name that cannot be a maildir,
    so no bounce goes later to a sender who may be forged (issue 7.8)."""
    with Daemon() as d:
        with d.client() as c:
            c.ehlo()
            c.cmd("MAIL FROM:<forged@elsewhere.test>", 250)
            for rcpt in ['"../../escape"@localhost', '".hidden"@localhost',
                         '"a/b"@localhost', '".."@localhost']:
                r = c.cmd("RCPT TO:<%s>" % rcpt)
                assert r.code == 550 and r.enh == "5.1.1", (rcpt, r)
                assert "not usable as a maildir" in r.text, r
            c.cmd("RCPT TO:<user@localhost>", 250)
            c.cmd("RSET", 250)
        assert "status=bounced" not in d.log_text()
        assert glob.glob(os.path.join(d.dir, "escape*")) == []
        assert not os.path.exists(os.path.join(d.mail, "escape"))
        assert not os.path.exists(os.path.join(d.mail, "localhost", ".hidden"))
        assert not os.path.exists(os.path.join(d.mail, "localhost", "a"))


if __name__ == "__main__":
    petrel.main()
