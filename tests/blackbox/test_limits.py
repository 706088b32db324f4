#!/usr/bin/env python3
"""Resource limits of a session (issue 7 item 10), each against the real
daemon on loopback:

- client_connection_limit: sessions per client address (127.0.0.x sources),
  the next one gets "421 4.7.0 ... too many connections from ADDR";
- max_connections: the next session gets "421 4.7.0 ... too many
  connections", with a rate-limited warning;
- the command deadline: bytes of an unfinished line do not extend
  smtp_timeout (a client dripping one byte at a time is cut off, and five
  of them no longer hold every slot);
- min_data_rate: a DATA transfer that dribbles is cut off with 421 4.4.2
  even though each read comes within smtp_timeout;
- greet_pause: a client that talks before the greeting gets 554 and is
  closed; one that waits is greeted.

No timing is asserted: the drips are counted in bytes sent before the
daemon hangs up, with generous margins."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon  # noqa: E402


def raw(port, src="127.0.0.1", timeout=10):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(petrel.T(timeout))
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_reply(s):
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            return data
        data += chunk
        for line in data.split(b"\r\n")[:-1]:
            if len(line) >= 4 and line[3:4] == b" ":
                return data


def closed(s, timeout=0.0):
    """True when the peer closed (after what it sent is read)."""
    s.settimeout(timeout)
    try:
        while True:
            d = s.recv(4096)
            if not d:
                return True
    except (socket.timeout, BlockingIOError):
        return False
    except ConnectionResetError:
        return True
    finally:
        s.settimeout(petrel.T(10))


def test_client_connection_limit():
    with Daemon({"client_connection_limit": 3}) as d:
        held = [raw(d.port, "127.0.0.2") for _ in range(3)]
        for s in held:
            assert read_reply(s).startswith(b"220 "), "within the limit: greeted"
        extra = raw(d.port, "127.0.0.2")
        r = read_reply(extra)
        assert r.startswith(b"421 4.7.0 ") and b"too many connections from 127.0.0.2" in r, r
        assert closed(extra, 5), "refused session not closed"
        # another address is not counted with it
        other = raw(d.port, "127.0.0.3")
        assert read_reply(other).startswith(b"220 ")
        d.wait_log(r"connection concurrency limit exceeded: 4 from \[127\.0\.0\.2\]")
        # a session that ends frees its place
        held.pop().close()
        for _ in range(50):
            s = raw(d.port, "127.0.0.2")
            r = read_reply(s)
            if r.startswith(b"220 "):
                break
            s.close()
            time.sleep(0.05)
        assert r.startswith(b"220 "), r
        for x in held + [s, other, extra]:
            x.close()


def test_max_connections():
    with Daemon({"max_connections": 4}) as d:
        held = [raw(d.port, "127.0.0.%d" % (10 + i)) for i in range(4)]
        for s in held:
            assert read_reply(s).startswith(b"220 ")
        for _ in range(5):
            extra = raw(d.port, "127.0.0.20")
            r = read_reply(extra)
            assert r.startswith(b"421 4.7.0 ") and b"too many connections" in r, r
            extra.close()
        d.wait_log(r"max_connections \(4\) reached")
        n = d.log_text().count("max_connections (4) reached")
        assert n == 1, "warning not rate-limited: %d lines" % n
        for s in held:
            s.close()


def drip(s, payload, every=0.25, limit=60):
    """Send payload one byte at a time; return how many went before the
    daemon closed (None: all of them, and still open)."""
    for i, b in enumerate(payload[:limit]):
        try:
            s.sendall(bytes([b]))
        except (BrokenPipeError, ConnectionResetError):
            return i
        if closed(s, every):
            return i + 1
    return None


def test_partial_line_does_not_extend_the_command_deadline():
    # smtp_timeout 2 s, one byte every 0.25 s: today each byte re-arms the
    # timer and the 60-byte line (15 s) goes through; with the deadline
    # the session is cut after about 8 bytes.
    with Daemon({"smtp_timeout": 2}) as d:
        s = raw(d.port)
        assert read_reply(s).startswith(b"220 ")
        line = b"EHLO " + b"x" * 53 + b"\r\n"
        n = drip(s, line)
        assert n is not None, "a dripping client kept its session for the whole line"
        assert n < 40, "cut off only after %d bytes" % n
        d.wait_log(r"timeout after command from \[127\.0\.0\.1\]:\d+ \(partial line\)")
        # whole commands each get their own smtp_timeout
        with d.client() as c:
            for _ in range(3):
                c.cmd("NOOP", 250)
                time.sleep(0.5)
            c.cmd("QUIT", 221)


def test_five_drippers_do_not_hold_every_slot():
    with Daemon({"smtp_timeout": 2, "max_connections": 5}) as d:
        drippers = [raw(d.port, "127.0.0.%d" % (30 + i)) for i in range(5)]
        for s in drippers:
            assert read_reply(s).startswith(b"220 ")
        # one byte each every 0.5 s, 40 rounds (20 s); stop when all are cut
        alive = list(drippers)
        for _ in range(40):
            for s in list(alive):
                try:
                    s.sendall(b"N")
                except OSError:
                    alive.remove(s)
                    continue
                if closed(s, 0.1):
                    alive.remove(s)
            if not alive:
                break
        assert not alive, "%d dripping clients still hold their slot" % len(alive)
        with d.client() as c:       # a real client gets in
            c.ehlo()
        for s in drippers:
            s.close()


def test_min_data_rate():
    # 10 octets every 0.1 s is 100 octets/s: each read comes well within
    # smtp_timeout (2 s), but min_data_rate 1000 gives the transfer
    # 2 s + 1 ms per octet: it is cut off after about 250 octets, while
    # today it would run the whole 3,000 (30 s).
    with Daemon({"smtp_timeout": 2, "min_data_rate": 1000}) as d:
        with d.client() as c:
            c.ehlo()
            c.mail_rcpt("a@example.test", ["user@localhost"])
            c.cmd("DATA", 354)
            sent = 0
            gone = False
            for _ in range(300):
                try:
                    c.sock.sendall(b"0123456789")
                except OSError:
                    gone = True
                    break
                sent += 10
                time.sleep(0.1)
                c.sock.settimeout(0)
                try:
                    data = c.sock.recv(4096)
                    c.buf += data
                    if not data or b"\r\n" in c.buf:
                        gone = True
                        break
                except BlockingIOError:
                    pass
                finally:
                    c.sock.settimeout(c.timeout)
            assert gone, "a DATA at 100 octets/s ran %d octets" % sent
            assert sent < 2000, "cut off only after %d octets" % sent
            if c.buf:
                assert c.buf.startswith(b"421 4.4.2 "), c.buf
        d.wait_log(r"timeout after DATA from .*min_data_rate 1000")
        assert not d.all_delivered_files(), "a cut transfer was delivered"
        # a normal transfer is unaffected
        petrel.send_one(d.port, "a@example.test", ["user@localhost"],
                        petrel.make_message(body="x" * 100000 + "\n"))
        d.wait_delivered("user", 1)


def test_early_talker_gets_554():
    with Daemon({"greet_pause": 1500}) as d:
        s = raw(d.port)
        s.sendall(b"EHLO early.test\r\n")   # before any greeting
        r = read_reply(s)
        assert r.startswith(b"554 5.5.0 ") and b"talking before the greeting" in r, r
        assert b"220" not in r.split(b"\r\n")[0]
        assert closed(s, 5)
        d.wait_log(r"pregreet: 17 octet\(s\) after \d+ ms from \[127\.0\.0\.1\]:\d+: EHLO early\.test")
        # a client that waits is greeted and served
        with d.client() as c:
            assert c.greeting.code == 220
            c.ehlo()
            c.cmd("QUIT", 221)


def test_relay_networks_are_not_paused():
    # trusted clients (relay_networks, as postscreen's permit lists) are
    # greeted at once: a local client or benchmark never waits
    with Daemon({"greet_pause": 60000, "relay_networks": ["127.0.0.0/8"]}) as d:
        s = raw(d.port)
        r = read_reply(s)
        assert r.startswith(b"220 "), r
        s.sendall(b"EHLO trusted.test\r\n")
        assert read_reply(s).startswith(b"250"), "trusted client refused"
        s.close()


def test_greet_pause_zero_greets_at_once():
    with Daemon({"greet_pause": 0}) as d:
        with d.client() as c:
            assert c.greeting.code == 220
            c.ehlo()


if __name__ == "__main__":
    petrel.main()
