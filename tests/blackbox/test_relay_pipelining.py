#!/usr/bin/env python3
"""The smtp transport against a peer that offers PIPELINING (RFC 2920).

aiosmtpd does not offer PIPELINING, so the other relay tests never take
the pipelined path; smtp-sink and Postfix do.  The peer here is a small
line-by-line SMTP server on 127.0.0.2 that offers it, answers each
command in order (as RFC 2920 requires of a server), records what each
read brought, and can refuse RSET once.

- A reused connection sends RSET between messages; with messages waiting
  the RSET goes in one group with the next MAIL, RCPT and DATA, and every
  message arrives once and intact.
- A peer that refuses that RSET: the message whose commands followed it
  is deferred and arrives later, once; none is lost.
- A 200 KiB body with dot lines everywhere arrives byte for byte (the
  transport dot-stuffs the queue file in 16 KiB chunks).
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, make_message  # noqa: E402
import relaypeers  # noqa: E402


class PipePeer(relaypeers.Listener):
    """SMTP on host:port offering PIPELINING.

    hold_first_dot: seconds to wait before answering the first final dot
                    (jobs pile up behind the one connection meanwhile).
    refuse_rset:    how many RSETs get 502 (the first ones)."""

    track_conns = False         # each _serve closes its own connection

    def __init__(self, host="127.0.0.2", hold_first_dot=0.0, refuse_rset=0):
        super().__init__(host)
        self.hold = hold_first_dot
        self.refuse_rset = refuse_rset
        self.messages = []          # raw content (dot-stuffing undone)
        self.connections = []       # per connection: list of reads, each a list of verbs
        self.dots = 0
        self.start()

    def _accepted(self, c):
        reads = []
        with self.lock:
            self.connections.append(reads)
        threading.Thread(target=self._serve, args=(c, reads), daemon=True).start()

    def _serve(self, c, reads):
        buf = b""
        data = None                 # lines of DATA content while reading it
        try:
            c.sendall(b"220 pipe.test ESMTP\r\n")
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    return
                buf += chunk
                verbs = []
                out = b""
                while True:
                    nl = buf.find(b"\r\n")
                    if nl < 0:
                        break
                    line, buf = buf[:nl], buf[nl + 2:]
                    if data is not None:
                        if line != b".":
                            data.append(line[1:] if line.startswith(b".") else line)
                            continue
                        with self.lock:
                            self.messages.append(b"\r\n".join(data) + b"\r\n")
                            self.dots += 1
                            first = self.dots == 1
                        verbs.append(".")
                        data = None
                        if first and self.hold:
                            c.sendall(out)
                            out = b""
                            time.sleep(self.hold)
                        out += b"250 2.0.0 Ok\r\n"
                        continue
                    verb = line.split(b" ", 1)[0].split(b":", 1)[0].upper().decode("ascii", "replace")
                    verbs.append(verb)
                    if verb == "EHLO":
                        out += b"250-pipe.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
                    elif verb == "RSET":
                        with self.lock:
                            refuse = self.refuse_rset > 0
                            self.refuse_rset -= refuse
                        out += b"502 5.5.1 not today\r\n" if refuse else b"250 2.0.0 Ok\r\n"
                    elif verb == "DATA":
                        out += b"354 go ahead\r\n"
                        data = []
                    elif verb == "QUIT":
                        out += b"221 2.0.0 Bye\r\n"
                        c.sendall(out)
                        reads.append(verbs)
                        return
                    else:
                        out += b"250 2.0.0 Ok\r\n"
                reads.append(verbs)
                if out:
                    c.sendall(out)
        except OSError:
            pass
        finally:
            c.close()

    def wait_messages(self, n, timeout=30):
        deadline = time.monotonic() + petrel.T(timeout)
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            time.sleep(0.05)
        raise AssertionError("peer got %d messages, wanted %d" % (len(self.messages), n))


def relay_daemon(peer, **settings):
    s = {"relay_networks": ["127.0.0.0/8"], "retry_initial": 1, "retry_max": 2,
         "relayhost": "[%s]:%d" % (peer.host, peer.port), "relayhost_tls": "none"}
    s.update(settings)
    return Daemon(settings=s, modules_extra="  smtp = { destination_concurrency = 1; tls = \"none\"; };")


def _send_all(d, n, tag):
    with d.client() as c:
        c.ehlo()
        for i in range(n):
            c.send_mail("a@localhost", ["u%d@remote.test" % i],
                        make_message("%s %d" % (tag, i), body="line %d\n.dot line\n" % i))


def _subjects(msgs):
    out = []
    for m in msgs:
        for line in m.split(b"\r\n"):
            if line.startswith(b"Subject: "):
                out.append(line[9:].decode())
    return sorted(out)


def test_rset_pipelined_with_next_mail():
    n = 20
    with PipePeer(hold_first_dot=1.0) as p, relay_daemon(p) as d:
        _send_all(d, n, "pipe")
        msgs = p.wait_messages(n)
        time.sleep(0.5)          # a duplicate would come now
        assert _subjects(p.messages) == sorted("pipe %d" % i for i in range(n)), _subjects(p.messages)
        for i, m in enumerate(msgs):
            assert b"\r\n.dot line\r\n" in m, m      # dot-stuffing undone by the peer
        # one connection (destination_concurrency = 1), RSET between messages
        assert len(p.connections) == 1, p.connections
        verbs = [v for r in p.connections[0] for v in r]
        txns = [i for i, v in enumerate(verbs) if v == "MAIL"]
        for a, b in zip(txns, txns[1:]):
            assert verbs[a:b].count("RSET") == 1, verbs[a:b + 1]
        grouped = sum(1 for r in p.connections[0]
                      for x, y in zip(r, r[1:]) if x == "RSET" and y == "MAIL")
        petrel.diag("%d messages, %d RSETs sent with the next MAIL" % (n, grouped))
        assert grouped >= 1, p.connections[0]


def test_refused_rset_defers_then_delivers():
    n = 5
    with PipePeer(hold_first_dot=1.0, refuse_rset=1) as p, relay_daemon(p) as d:
        _send_all(d, n, "refused")
        p.wait_messages(n, timeout=40)
        time.sleep(0.5)
        assert _subjects(p.messages) == sorted("refused %d" % i for i in range(n)), _subjects(p.messages)
        d.wait_log(r"refused RSET")
        d.wait_log(r"status=deferred \(451 4\.5\.0 .*refused RSET")
        assert len(p.connections) >= 2, p.connections


def test_large_body_dot_stuffed_across_chunks():
    # lines of every length from 1 to 300, every other one starting with
    # a dot, 200 KiB in all: the transport reads the queue file in 16 KiB
    # chunks, so line starts fall on chunk boundaries too
    lines, size, k = [], 0, 0
    while size < 200 * 1024:
        n = k % 300 + 1
        line = ("." if k % 2 else "x") + "y" * (n - 1)
        lines.append(line)
        size += n + 2
        k += 1
    body = "\n".join(lines) + "\n"
    with PipePeer() as p, relay_daemon(p) as d:
        with d.client() as c:
            c.ehlo()
            c.send_mail("a@localhost", ["big@remote.test"], make_message("big", body=body))
        m = p.wait_messages(1)[0]
        got = m.split(b"\r\n\r\n", 1)[1]
        assert got == body.replace("\n", "\r\n").encode(), (len(got), len(body))


if __name__ == "__main__":
    petrel.main()
