#!/usr/bin/env python3
"""Relay through MX from a real dnsmasq to real aiosmtpd peers (issue 8).

Peers listen on 127.0.0.2 and 127.0.0.3 on one port (modules.smtp.port);
dnsmasq on 127.0.0.1 serves the MX/A records and petreld's `resolver`
points at it."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, make_message  # noqa: E402
import relaypeers  # noqa: E402
from relaypeers import Dns, Peer  # noqa: E402


def relay_daemon(dns, port, **settings):
    s = {"relay_networks": ["127.0.0.0/8"], "resolver": dns.addr,
         "retry_initial": 1, "retry_max": 2}
    s.update(settings)
    return Daemon(settings=s,
                  modules_extra="  smtp = { port = %d; connect_timeout = 5; tls = \"none\"; };" % port)


def _send(d, rcpts, sender="a@localhost", subject="relay"):
    return petrel.send_one(d.port, sender, rcpts, make_message(subject))


def test_mx_lowest_preference():
    port = relaypeers.free_port_on_all(["127.0.0.2", "127.0.0.3"])
    with Dns(mx={"remote.test": [(20, "mx2.remote.test"), (10, "mx1.remote.test")]},
             a={"mx1.remote.test": ["127.0.0.2"], "mx2.remote.test": ["127.0.0.3"]}) as dns, \
            Peer("127.0.0.2", port) as p1, Peer("127.0.0.3", port) as p2, \
            relay_daemon(dns, port) as d:
        _send(d, ["u@remote.test"])
        msgs = p1.wait_messages(1)
        assert msgs[0][1] == ["u@remote.test"], msgs
        assert not p2.messages
        d.wait_log(r"to=<u@remote.test>, relay=mx1.remote.test\[127.0.0.2\]:%d.*status=sent" % port)


def test_next_mx_when_first_refuses():
    port = relaypeers.free_port_on_all(["127.0.0.2", "127.0.0.3"])
    with Dns(mx={"remote.test": [(10, "mx1.remote.test"), (20, "mx2.remote.test")]},
             a={"mx1.remote.test": ["127.0.0.2"], "mx2.remote.test": ["127.0.0.3"]}) as dns, \
            Peer("127.0.0.3", port) as p2, relay_daemon(dns, port) as d:
        _send(d, ["u@remote.test"])
        p2.wait_messages(1)


def test_a_fallback_without_mx():
    port = relaypeers.free_port_on_all(["127.0.0.2"])
    with Dns(a={"plain.test": ["127.0.0.2"]}) as dns, \
            Peer("127.0.0.2", port) as p, relay_daemon(dns, port) as d:
        _send(d, ["u@plain.test"])
        p.wait_messages(1)


def test_connection_reuse_100_messages():
    port = relaypeers.free_port_on_all(["127.0.0.2"])
    with Dns(mx={"remote.test": [(10, "mx1.remote.test")]},
             a={"mx1.remote.test": ["127.0.0.2"]}) as dns, \
            Peer("127.0.0.2", port) as p, relay_daemon(dns, port) as d, \
            d.client() as c:
        c.ehlo()
        for i in range(100):
            c.send_mail("a@localhost", ["u%d@remote.test" % i],
                        make_message("reuse %d" % i))
        p.wait_messages(100, timeout=60)
        petrel.diag("100 messages over %d connections" % p.connections)
        assert p.connections < 10, p.connections


if __name__ == "__main__":
    petrel.main()
