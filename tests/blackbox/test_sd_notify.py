#!/usr/bin/env python3
"""systemd readiness: petreld sends READY=1 to $NOTIFY_SOCKET once it
accepts connections, and STOPPING=1 when SIGTERM begins the shutdown.

The socket is a real AF_UNIX datagram socket the test binds, once by path
and once in the abstract namespace ('@name'), as systemd does both.
"""

import os
import socket
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402


class NotifyDaemon(petrel.Daemon):
    notify = None

    def env(self):
        e = super().env()
        e["NOTIFY_SOCKET"] = self.notify
        return e


def recv(sock, timeout=10):
    sock.settimeout(petrel.T(timeout))
    return sock.recv(4096).decode()


def check(addr, bind_to):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.bind(bind_to)
        with NotifyDaemon(start=False) as d:
            d.notify = addr
            d.start()
            msg = recv(s)
            assert "READY=1" in msg.split("\n"), msg
            # ready means accepting: a session gets its greeting now
            with d.client() as c:
                c.cmd("QUIT")
            d.stop()
            msg = recv(s)
            assert msg == "STOPPING=1", msg
    finally:
        s.close()


def test_ready_path():
    with tempfile.TemporaryDirectory(prefix="petrel-bbnotify-") as t:
        path = os.path.join(t, "notify")
        check(path, path)


def test_ready_abstract():
    name = "petrel-bbnotify-%d" % os.getpid()
    check("@" + name, "\0" + name)


if __name__ == "__main__":
    petrel.main()
