#!/usr/bin/env python3
"""A full disk: the right reply, a retry, and nothing lost or left behind.

Each test puts the maildirs or the spool on a small ext4 of its own (a
loop device) and fills it.  A full maildir filesystem defers deliveries
(the message stays queued and arrives once there is room); a full spool
gets "452 4.3.1" (RFC 3463: mail system full) at MAIL when there is not
room for a message of the largest size, and at the end of DATA when the
disk fills during the transfer.  Needs root and loop devices; skipped
otherwise.
"""

import errno
import itertools
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, make_message  # noqa: E402
from test_powerloss import Ext4, on_fs  # noqa: E402


_fillers = itertools.count()


def fill(directory):
    """Fill the filesystem holding directory; return the filler paths."""
    paths, chunk = [], b"\0" * (256 << 10)
    for size in (256 << 10, 4096, 512):
        while True:
            p = os.path.join(directory, "filler.%d" % next(_fillers))
            try:
                with open(p, "wb") as f:
                    f.write(chunk[:size])
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                try:
                    os.unlink(p)
                except OSError:
                    pass
                break
            paths.append(p)
    return paths


def unfill(paths, n=None):
    """Remove the first n fillers (the largest first), or all."""
    n = len(paths) if n is None else n
    for p in paths[:n]:
        os.unlink(p)
    del paths[:n]
    os.sync()


def test_full_maildir_defers_then_delivers():
    fs = Ext4(size_mb=16)
    try:
        with Daemon(settings={"retry_initial": 1, "retry_max": 1}, start=False) as d:
            on_fs(d, fs, ["mail"])
            d.start()
            fillers = fill(fs.mnt)
            body = "full disk test\n" + "x" * 70 + "\n" * 1 + ("y" * 76 + "\n") * 600
            msg = make_message("waits for room", body)
            qid = petrel.send_one(d.port, "a@localhost", "user@localhost", msg)
            d.wait_log(re.escape(qid) + r": to=<user@localhost>.*status=deferred "
                       r"\(.*No space left on device")
            assert qid in d.queued()
            unfill(fillers)
            got = d.wait_delivered("user", 1, timeout=20)
            assert petrel.Delivered(got[0]).body == petrel.to_lf(msg)
            d.wait_log(re.escape(qid) + r": removed")
            assert d.queued() == []
            d.stop()
    finally:
        fs.close()


def test_full_spool_gets_452_and_keeps_nothing():
    fs = Ext4(size_mb=16)
    try:
        limit = 100000
        with Daemon(settings={"message_size_limit": limit}, start=False) as d:
            on_fs(d, fs, ["spool"])
            d.start()
            fillers = fill(fs.mnt)
            # not room for a message of the largest size: refused at MAIL
            with d.client() as c:
                c.ehlo()
                c.cmd("MAIL FROM:<a@localhost>", 452, "4.3.1")
                c.cmd("MAIL FROM:<a@localhost> SIZE=1000", 452, "4.3.1")
            d.wait_log(r"less than \d+ bytes free")
            # room for about 2 MB: a small SIZE passes, too large a SIZE not
            unfill(fillers, 8)                # 8 x 256 KiB
            with d.client() as c:
                c.ehlo()
                c.cmd("MAIL FROM:<a@localhost> SIZE=%d" % (8 << 20), 552, "5.3.4")
                c.cmd("MAIL FROM:<a@localhost> SIZE=50000", 250)
                c.cmd("RCPT TO:<user@localhost>", 250)
                # the disk fills up while the client is at it
                fillers += fill(fs.mnt)
                c.cmd("DATA", 354)
                tok = b"SPOOL-FULL-TOKEN-51c2"
                c.send(b"Subject: big\r\nX-Token: " + tok + b"\r\n\r\n"
                       + (b"z" * 78 + b"\r\n") * 1000 + b".\r\n")
                r = c.expect(452, "4.3.1")
                assert "insufficient system storage" in r.text.lower(), r
                c.cmd("NOOP", 250)            # the session goes on
            d.wait_log(r"queue file write error: No space left on device")
            for p in d.spool_files():
                with open(p, "rb") as f:
                    assert tok not in f.read(), "refused message left in %s" % p
            assert d.queued() == []
            # room again: mail flows
            unfill(fillers)
            msg = make_message("after the disk was full")
            qid = petrel.send_one(d.port, "a@localhost", "user@localhost", msg)
            got = d.wait_delivered("user", 1)
            assert petrel.qid_of_file(got[0]) == qid
            assert petrel.Delivered(got[0]).body == petrel.to_lf(msg)
            d.stop()
    finally:
        fs.close()


def test_bounce_that_cannot_be_queued_is_tried_again():
    # The original leaves the queue only once its bounce is durable: here
    # the spool is full when the message expires, so the report cannot be
    # written.  The message stays, across a restart too, and its report is
    # tried again until there is room; then the sender gets it, once.
    fs = Ext4(size_mb=16)
    try:
        settings = {"retry_initial": 1, "retry_max": 1, "queue_lifetime": 3,
                    "message_size_limit": 100000}
        with Daemon(settings=settings, start=False) as d:
            on_fs(d, fs, ["spool"])
            os.makedirs(os.path.join(d.mail, "localhost"))
            with open(os.path.join(d.mail, "localhost", "user"), "w") as f:
                f.write("not a maildir: deliveries to user defer\n")
            d.start()
            with d.client() as c:
                c.ehlo()
                qid = c.send_mail("a@localhost", ["user@localhost"],
                                  make_message("expires on a full disk"))
            fillers = fill(fs.mnt)
            d.wait_log(re.escape(qid) + r": to=<user@localhost>.*status=bounced "
                       r"\(message expired", timeout=30)
            kept = re.escape(qid) + r": kept in the queue until its bounce can be queued"
            d.wait_log(kept)
            assert qid in d.queued(), d.queued()
            # across a restart, still without room: found, tried, kept
            d.stop()
            d.start()
            d.wait_log(re.escape(qid) + r": bounced destinations not reported yet")
            d.wait_log(r"(?s)start #2.*" + kept)
            assert not d.delivered("a")
            unfill(fillers)
            got = d.wait_delivered("a", 1, timeout=20)
            assert b"Undelivered Mail Returned to Sender" in got[0]
            assert qid.encode() in got[0] and b"expires on a full disk" in got[0]
            d.wait_log(re.escape(qid) + r": removed")
            assert qid not in d.queued()
            time.sleep(1.5)          # a retry more would report it twice
            assert len(d.delivered("a")) == 1, "more than one report"
            d.stop()
    finally:
        fs.close()


if __name__ == "__main__":
    petrel.main()
