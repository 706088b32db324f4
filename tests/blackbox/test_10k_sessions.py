#!/usr/bin/env python3
"""10,000 concurrent idle sessions (issue 7 item 10).

RLIMIT_NOFILE is raised for this script and the daemon (root may raise the
hard limit; without it, and a hard limit too low, the test is skipped).
The clients come from 127.0.0.2 .. 127.0.0.251 (40 each), so that
client_connection_limit (default 50) lets them all in.  Checked: every
session is greeted with 220, and while all 10,000 are held a new session
gets its greeting, EHLO and a delivered message.  Reported: the growth of
the daemon's VmRSS divided by 10,000 (memory per idle session).  No time
is asserted."""

import os
import resource
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon  # noqa: E402

N = 10000
NOFILE = N + 1000          # each process: the sessions and a margin
SOURCES = 250


rss = petrel.rss


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= NOFILE:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, max(hard, NOFILE)))
    except (ValueError, OSError):
        petrel.skip("RLIMIT_NOFILE hard limit %d < %d and not root" % (hard, NOFILE))


def greeting(s):
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = s.recv(512)
        if not chunk:
            break
        data += chunk
    return data


def test_10000_idle_sessions():
    raise_nofile()
    with Daemon({"max_connections": N + 100}) as d:
        pid = d.proc.pid
        with d.client() as c:      # warm up one-time allocations
            c.ehlo()
        before = rss(pid)
        socks = []
        greeted = 0
        try:
            batch = []
            for i in range(N):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.settimeout(petrel.T(30))
                s.bind(("127.0.0.%d" % (2 + i % SOURCES), 0))
                s.connect(("127.0.0.1", d.port))
                socks.append(s)
                batch.append(s)
                if len(batch) == 250:
                    for b in batch:
                        if greeting(b).startswith(b"220 "):
                            greeted += 1
                    batch = []
            for b in batch:
                if greeting(b).startswith(b"220 "):
                    greeted += 1
            after = rss(pid)
            assert greeted == N, "%d of %d sessions greeted" % (greeted, N)
            # still serving beside them
            petrel.send_one(d.port, "a@example.test", ["user@localhost"],
                            petrel.make_message(subject="beside 10k"))
            d.wait_delivered("user", 1, timeout=30)
        finally:
            for s in socks:
                s.close()
        grew = after - before
        petrel.diag("%d idle sessions: VmRSS %d -> %d KiB, +%d KiB, %.0f bytes per session"
                    % (N, before // 1024, after // 1024, grew // 1024, grew / N))
        assert "too many connections" not in d.log_text()


if __name__ == "__main__":
    petrel.main()
