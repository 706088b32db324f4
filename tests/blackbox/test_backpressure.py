#!/usr/bin/env python3
"""Back-pressure on replies (issue 7, item 3): a client that pipelines
commands and never reads its replies must not grow the daemon's memory.

The daemon stops reading a session while more than a small bound of its
replies wait unsent; so the client's sends stall (in a thread with a send
timeout: the stall is what ends the flood), the daemon's VmRSS stays
within 20 MB of idle, and other sessions are served meanwhile.  Then:

  - a client that comes back and reads gets every reply, in order, and
    the rest of the session works (the decision for a client that reads
    late but within smtp_timeout);
  - a client that reads nothing for smtp_timeout is closed ("timeout ...
    replies not read" in the log), without a 421 it could not read;
  - the same under TLS (the TLS writes wait on the socket too).

The commands alternate NOOP and VRFY so that the order of the replies is
checked byte for byte."""

import os
import select
import socket
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, T, make_message  # noqa: E402

MB = 1024 * 1024
FLOOD = 100 * MB              # what the client would send if it were read
RSS_BOUND = 20 * MB           # growth allowed over idle
UNIT = b"NOOP\r\nVRFY postmaster\r\n"
UNIT_REPLY = b"250 2.0.0 Ok\r\n252 2.0.0 Send some mail, I'll try my best\r\n"
CHUNK = UNIT * (65536 // len(UNIT))
SANITIZED = os.environ.get("ASAN_OPTIONS") is not None
# NOOP and VRFY are junk commands: this test is about memory, not that limit
SETTINGS = {"junk_command_limit": 1000000000}


rss = petrel.rss


class Flood:
    """Sends CHUNKs on a plain socket from a thread until FLOOD bytes are
    out, stop() is called, or a send makes no progress within the send
    timeout (the daemon stopped reading)."""

    def __init__(self, sock, limit=FLOOD, send_timeout=2):
        self.sock = sock
        self.limit = limit
        self.sent = 0
        self.stalled = False
        self.error = None
        self._stop = False
        sock.settimeout(T(send_timeout))
        self.thread = petrel.start_thread(self._run)

    def _run(self):
        try:
            while self.sent < self.limit and not self._stop:
                pos = self.sent % len(CHUNK)
                self.sent += self.sock.send(CHUNK[pos:])
        except socket.timeout:
            self.stalled = True
        except OSError as e:
            self.error = e

    def stop(self):
        self._stop = True
        self.thread.join(T(30))


def watch_rss(pid, flood, idle):
    """While the flood runs: the peak VmRSS; a flood that grows memory past
    the bound is stopped at once (spares the machine, fails the test)."""
    peak = rss(pid)
    while flood.thread.is_alive():
        peak = max(peak, rss(pid))
        if peak - idle > RSS_BOUND:
            flood.stop()
            break
        time.sleep(0.05)
    return max(peak, rss(pid))


def assert_rss(peak, idle, what):
    petrel.diag("%s: VmRSS idle %d KiB, peak %d KiB (+%d KiB)"
                % (what, idle // 1024, peak // 1024, (peak - idle) // 1024))
    if SANITIZED:
        return     # redzones and quarantine: the bound is the normal build's
    assert peak - idle < RSS_BOUND, "%s: VmRSS grew by %d KiB" % (what, (peak - idle) // 1024)


def recv_exactly(sock, n, timeout):
    sock.settimeout(timeout)
    parts, got = [], 0
    while got < n:
        b = sock.recv(min(1 << 20, n - got))
        if not b:
            raise AssertionError("closed after %d of %d reply bytes" % (got, n))
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def other_session_works(d):
    qid = petrel.send_one(d.port, "other@localhost", "user@localhost",
                          make_message("served meanwhile"))
    return qid


def expect_replies(data, units):
    """data must be 'units' unit replies exactly (compared in pieces, so a
    mismatch says where)."""
    want = UNIT_REPLY * units
    if data == want:
        return
    for i in range(0, len(want), len(UNIT_REPLY)):
        if data[i:i + len(UNIT_REPLY)] != UNIT_REPLY:
            raise AssertionError("reply %d out of order or wrong: %r"
                                 % (2 * i // len(UNIT_REPLY), data[i:i + 200]))
    raise AssertionError("%d reply bytes, expected %d" % (len(data), len(want)))


def test_pipelining_without_reading_is_held_then_answered_in_order():
    with Daemon(settings=SETTINGS) as d:
        pid = d.proc.pid
        other_session_works(d)            # warm: a whole session, then idle
        idle = rss(pid)
        c = d.client()
        c.ehlo()
        flood = Flood(c.sock)
        peak = watch_rss(pid, flood, idle)
        flood.thread.join(T(60))
        assert flood.error is None, flood.error
        assert_rss(peak, idle, "%d MB pipelined, replies not read" % (flood.sent // MB))
        assert flood.stalled and flood.sent < FLOOD, \
            "the daemon read all %d bytes without the replies being read" % flood.sent
        petrel.diag("the daemon stopped reading after %d KiB of commands" % (flood.sent // 1024))
        # the daemon still serves everyone else
        other_session_works(d)
        assert rss(pid) - idle < RSS_BOUND or SANITIZED
        # the client reads: every reply, in order, then the session goes on
        units, rest = divmod(flood.sent, len(UNIT))
        data = recv_exactly(c.sock, units * len(UNIT_REPLY), T(120))
        expect_replies(data, units)
        c.sock.settimeout(T(10))
        c.send(UNIT[rest:] if rest else b"")
        if rest:
            assert recv_exactly(c.sock, len(UNIT_REPLY), T(10)) == UNIT_REPLY
        c.buf = b""
        c.sock.settimeout(c.timeout)
        qid = c.send_mail("late@localhost", ["user@localhost"], make_message("after the flood"))
        c.cmd("QUIT", 221)
        c.close()
        d.wait_delivered("user", 3)
        assert qid in d.log_text()


def test_client_that_never_reads_is_closed_by_the_timeout():
    with Daemon(settings=dict(SETTINGS, smtp_timeout=2)) as d:
        pid = d.proc.pid
        other_session_works(d)
        idle = rss(pid)
        c = d.client()
        c.ehlo()
        flood = Flood(c.sock, limit=20 * MB, send_timeout=1)
        peak = watch_rss(pid, flood, idle)
        flood.thread.join(T(60))
        assert_rss(peak, idle, "%d MB pipelined, never read" % (flood.sent // MB))
        d.wait_log(r"timeout after EHLO from \[127\.0\.0\.1\]:\d+: replies not read", timeout=20)
        d.wait_log(r"disconnect from \[127\.0\.0\.1\]:\d+ ehlo=1 noop=\d+ vrfy=\d+")
        # closed: what is read now are replies, then the end (or a reset),
        # never a 421 the client was not reading
        c.sock.settimeout(T(10))
        tail = b""
        try:
            while True:
                b = c.sock.recv(1 << 20)
                if not b:
                    break
                tail = (tail + b)[-200:]
        except ConnectionResetError:
            pass
        assert b"421" not in tail, tail
        c.close()
        other_session_works(d)


def test_pipelining_under_tls_without_reading():
    import tempfile
    import shutil
    keydir = tempfile.mkdtemp(prefix="petrel-bb-bp-tls-")
    try:
        cert, key = petrel.make_cert(keydir)
        with Daemon(settings=dict(SETTINGS, tls_cert_file=cert, tls_key_file=key),
                    listener={"tls": "implicit"}) as d:
            pid = d.proc.pid
            with d.client(tls=True) as w:
                w.ehlo()
            idle = rss(pid)
            c = d.client(tls=True)
            c.ehlo()
            s = c.sock
            s.setblocking(False)
            limit = 30 * MB
            sent, got, pending = 0, b"", None
            peak, last_progress = idle, time.monotonic()
            # 1. send without reading until the daemon takes no more
            while sent < limit and time.monotonic() - last_progress < T(1.5):
                if pending is None:
                    pending = CHUNK[sent % len(CHUNK):]
                try:
                    n = s.send(pending)      # a retry sends the same buffer
                    sent += n
                    pending = None if n == len(pending) else pending[n:]
                    last_progress = time.monotonic()
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    select.select([], [s], [], 0.05)
                peak = max(peak, rss(pid))
                if peak - idle > RSS_BOUND:
                    break
            peak = max(peak, rss(pid))
            assert_rss(peak, idle, "%d MB pipelined over TLS, replies not read" % (sent // MB))
            assert sent < limit, "the daemon read all %d bytes over TLS" % sent
            petrel.diag("over TLS the daemon stopped reading after %d KiB" % (sent // 1024))
            with d.client(tls=True) as w:    # served meanwhile
                w.ehlo()
                w.cmd("QUIT", 221)
            # 2. read everything, finishing the flood to 4 MB and QUIT
            total = max(sent + len(pending or b""), 4 * MB)
            total += (len(UNIT) - total % len(UNIT)) % len(UNIT)
            tail = b"QUIT\r\n"
            want = UNIT_REPLY * (total // len(UNIT)) + b"221 2.0.0 Bye\r\n"
            parts, nparts = [], 0
            deadline = time.monotonic() + T(120)
            while nparts < len(want) and time.monotonic() < deadline:
                if pending is None and sent < total + len(tail):
                    if sent < total:
                        pending = CHUNK[sent % len(CHUNK):][:total - sent]
                    else:
                        pending = tail[sent - total:]
                if pending is not None:
                    try:
                        n = s.send(pending)
                        sent += n
                        pending = None if n == len(pending) else pending[n:]
                    except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                        pass
                try:
                    b = s.recv(1 << 16)
                    if not b:
                        break
                    parts.append(b)
                    nparts += len(b)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    select.select([s], [s] if pending is not None else [], [], 0.05)
            got = b"".join(parts)
            expect_replies(got[:len(want) - 15], total // len(UNIT))
            assert got[len(want) - 15:] == b"221 2.0.0 Bye\r\n", got[-100:]
            c.close()
            assert "TLS read error" not in d.log_text()
    finally:
        shutil.rmtree(keydir, ignore_errors=True)


if __name__ == "__main__":
    petrel.main()
