#!/usr/bin/env python3
"""SIGTERM while a filter hook is pending (issue 7, item 5).

sessions_shutdown() ends the transaction of every session and says 421;
a session whose hook is suspended (tests/modules/slow.c at RCPT) must be
given up too, so that the module's later resume() and the pending_timeout
find nothing.  Before the fix they reached rcpt_done() with no
transaction: a NULL dereference (a crash; a report in the sanitizer build).

The session must outlive the 421 for that: its client has not read its
replies, so the 421 waits behind them.  The client pipelines NOOPs in
batches without reading, until the daemon's socket is full (its send queue
in /proc/net/tcp stops growing) and some replies wait in the daemon, fewer
than the bound at which it would stop reading; then MAIL and RCPT, whose
hook suspends.  SIGTERM; the resume (or the timeout) comes while the
session still waits for its client; then the client reads everything: its
NOOP replies, 250 to MAIL, 421 4.3.2, the end.  The daemon exits 0."""

import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, T  # noqa: E402

TEST_MODULES = os.path.join(petrel.BUILDDIR, "tests", "modules")
if TEST_MODULES not in petrel.MODULE_PATH.split(":"):
    petrel.MODULE_PATH = petrel.MODULE_PATH + ":" + TEST_MODULES

NOOP_REPLY = b"250 2.0.0 Ok\r\n"
SETTINGS = {"junk_command_limit": 1000000000}


def slow_daemon(delay_ms, **settings):
    s = dict(SETTINGS)
    s.update(settings)
    return Daemon(settings=s, extra='filters = [ "slow" ];',
                  modules_extra="  slow = { at = \"rcpt\"; delay_ms = %d; };" % delay_ms)


def tcp_queues(local_port, remote_port):
    """(tx_queue, rx_queue) of the loopback TCP socket local_port ->
    remote_port, from /proc/net/tcp."""
    want = ("0100007F:%04X" % local_port, "0100007F:%04X" % remote_port)
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if (fields[1], fields[2]) == want:
                tx, rx = fields[4].split(":")
                return int(tx, 16), int(rx, 16)
    raise AssertionError("no socket %s -> %s in /proc/net/tcp" % want)


BATCH = 1000          # NOOPs: 14,000 bytes of replies, well under the 64 KiB bound


class RawClient:
    """A client socket with a small receive buffer and a small MSS: the
    daemon's send buffer for it stays small (it is sized from the MSS),
    so it fills up soon and for good once the client stops reading."""

    def __init__(self, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
        self.sock.settimeout(T(10))
        self.sock.connect((petrel.HOST, port))
        self.port = self.sock.getsockname()[1]
        self.expect(b"220 ")
        self.sock.sendall(b"EHLO client.test\r\n")
        self.expect(b"250 ")

    def expect(self, start):
        buf = b""
        while not re.search(b"(^|\r\n)" + re.escape(start) + b"[^\r\n]*\r\n$", buf):
            b = self.sock.recv(4096)
            assert b, "closed: %r" % buf
            buf += b

    def close(self):
        self.sock.close()


def pipeline_until_suspended(d):
    """The client of the story above, stopped with its RCPT pending: NOOPs
    in batches, never read, until a batch adds nothing to the replies in
    the sockets (the daemon's send queue and the client's receive queue):
    the socket is full for good, the rest of the replies wait in the
    daemon, fewer than the bound at which it would stop reading.  Then
    MAIL and RCPT."""
    c = RawClient(d.port)

    def in_flight():
        return tcp_queues(d.port, c.port)[0] + tcp_queues(c.port, d.port)[1]
    total = in_flight()
    for nbatches in range(1, 2000):
        c.sock.sendall(b"NOOP\r\n" * BATCH)
        want = total + BATCH * len(NOOP_REPLY)
        last, still = -1, time.monotonic()
        while True:          # all the batch's replies, or no change for a while
            now = in_flight()
            if now >= want:
                break
            if now != last:
                last, still = now, time.monotonic()
            elif time.monotonic() - still > T(0.3):
                break
            time.sleep(0.01)
        grew, total = now - total, now
        if grew == 0:
            break
    else:
        raise AssertionError("the daemon's socket never filled up")
    c.sock.sendall(b"MAIL FROM:<a@localhost>\r\nRCPT TO:<user@localhost>\r\n")
    d.wait_log(r"slow: suspend qid=\w+ at=rcpt")
    petrel.diag("RCPT suspended behind %d NOOPs, %d bytes of their replies in the sockets"
                % (nbatches * BATCH, total))
    return c, nbatches * BATCH


def assert_session_waits(d, c):
    """The story happened: the session outlived SIGTERM, waiting for its
    client to read (else this test proves nothing)."""
    port = c.port
    assert "disconnect from [127.0.0.1]:%d" % port not in d.log_text(), \
        "the session did not outlive SIGTERM: nothing was tested"


def read_to_the_end(d, c, noops):
    """Every reply, then the daemon closes."""
    want = noops * len(NOOP_REPLY)
    rest = bytearray()
    c.sock.settimeout(T(30))
    while True:
        b = c.sock.recv(1 << 20)
        if not b:
            break
        rest += b
    assert rest[:want].count(NOOP_REPLY) * len(NOOP_REPLY) == want, "NOOP replies missing"
    tail = bytes(rest[want:])
    lines = tail.split(b"\r\n")
    assert lines[0] == b"250 2.1.0 Ok", tail
    assert lines[1].startswith(b"421 4.3.2 "), tail
    assert lines[2:] == [b""], tail
    c.close()


def test_resume_after_shutdown_finds_no_session():
    with slow_daemon(4000) as d:
        c, noops = pipeline_until_suspended(d)
        d.proc.send_signal(15)
        d.wait_log(r"SIGTERM: stopping")
        d.wait_log(r"slow: resume qid=\w+ verdict=continue resume=-?\d+", timeout=15)
        assert d.running(), "petreld died (code %s)" % d.proc.returncode
        assert_session_waits(d, c)
        read_to_the_end(d, c, noops)
        assert d.proc.wait(T(20)) == 0
        assert "slow: resume qid=" in d.log_text() and "resume=-1" in d.log_text(), \
            d.log_tail(10)


def test_pending_timeout_after_shutdown_finds_no_session():
    with slow_daemon(600000, pending_timeout=2) as d:
        c, noops = pipeline_until_suspended(d)
        d.proc.send_signal(15)
        d.wait_log(r"SIGTERM: stopping")
        time.sleep(T(3))                 # pending_timeout (2 s) passes
        assert d.running(), "petreld died (code %s)" % d.proc.returncode
        assert "filter hook pending for more than" not in d.log_text()
        assert_session_waits(d, c)
        read_to_the_end(d, c, noops)
        assert d.proc.wait(T(20)) == 0


if __name__ == "__main__":
    petrel.main()
