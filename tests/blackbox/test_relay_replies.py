#!/usr/bin/env python3
"""The smtp transport against scripted peers and hostile servers (issue 8):
null MX, SERVFAIL, 451 then 250, 550 for one of three, a close after the
final dot, and raw peers that misbehave.  Real dnsmasq, real aiosmtpd."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import make_message  # noqa: E402
import relaypeers  # noqa: E402
from relaypeers import Dns, Peer, Hostile, HOSTILE_PAYLOADS  # noqa: E402
from test_relay_mx import relay_daemon, _send  # noqa: E402

ONE = {"mx": {"remote.test": [(10, "mx1.remote.test")]},
       "a": {"mx1.remote.test": ["127.0.0.2"]}}


def test_null_mx_bounced_at_once():
    port = relaypeers.free_port_on_all(["127.0.0.2"])
    with Dns(mx={"nullmx.test": [(0, ".")]}) as dns, relay_daemon(dns, port) as d:
        _send(d, ["u@nullmx.test"])
        d.wait_log(r"to=<u@nullmx.test>.*dsn=5\.1\.10.*status=bounced")


def test_servfail_deferred():
    port = relaypeers.free_port_on_all(["127.0.0.2"])
    with Dns(servfail=["broken.test"], zone="other") as dns, relay_daemon(dns, port) as d:
        _send(d, ["u@broken.test"])
        d.wait_log(r"to=<u@broken.test>.*status=deferred", timeout=30)
        assert "status=bounced" not in d.log_text()


def test_451_twice_then_250():
    port = relaypeers.free_port_on_all(["127.0.0.2"])
    with Dns(**ONE) as dns, \
            Peer("127.0.0.2", port, script={"DATA": ["451 4.3.0 later", "451 4.3.0 later"]}) as p, \
            relay_daemon(dns, port) as d:
        _send(d, ["u@remote.test"])
        p.wait_messages(1, timeout=60)
        d.wait_log(r"to=<u@remote.test>.*status=sent")
        log = d.log_text()
        deferred = [l for l in log.splitlines()
                    if "to=<u@remote.test>" in l and "status=deferred" in l and "451" in l]
        assert len(deferred) == 2, deferred
        time.sleep(1)
        assert len(p.messages) == 1, p.messages


def test_550_for_one_of_three():
    port = relaypeers.free_port_on_all(["127.0.0.2"])
    with Dns(**ONE) as dns, \
            Peer("127.0.0.2", port, script={"RCPT": {"b@remote.test": "550 5.1.1 no such user"}}) as p, \
            relay_daemon(dns, port) as d:
        _send(d, ["a@remote.test", "b@remote.test", "c@remote.test"])
        msgs = p.wait_messages(1)
        assert sorted(msgs[0][1]) == ["a@remote.test", "c@remote.test"], msgs
        d.wait_log(r"to=<b@remote.test>.*dsn=5\.1\.1.*status=bounced")
        assert p.transactions == 1
        # the refused recipient, and only it, in one report in the local
        # sender's maildir, with the remote server's words
        (report,) = d.wait_delivered("a", 1)
        d.assert_nothing_more(1)
        text = report.decode("utf-8", "replace")
        assert "multipart/report" in text and "report-type=delivery-status" in text, text
        assert re.search(r"Final-Recipient: rfc822; ?b@remote\.test", text), text
        assert "Action: failed" in text and "Status: 5.1.1" in text, text
        assert re.search(r"Diagnostic-Code: smtp; ?550 5\.1\.1 no such user", text), text
        assert "Remote-MTA: dns; mx1.remote.test" in text, text
        assert "a@remote.test" not in text.split("Final-Recipient", 1)[1], text
        assert "c@remote.test" not in text.split("Final-Recipient", 1)[1], text


def test_close_after_dot_retried():
    port = relaypeers.free_port_on_all(["127.0.0.2"])
    with Dns(**ONE) as dns, Peer("127.0.0.2", port, close_after_dot=1) as p, \
            relay_daemon(dns, port) as d:
        _send(d, ["u@remote.test"])
        p.wait_messages(1, timeout=60)
        d.wait_log(r"to=<u@remote.test>.*status=deferred")
        d.wait_log(r"to=<u@remote.test>.*status=sent")


def _rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for l in f:
            if l.startswith("VmRSS:"):
                return int(l.split()[1])
    return 0


def test_hostile_peers_deferred():
    port = relaypeers.free_port_on_all(["127.0.0.2"])
    with Dns(**ONE) as dns:
        for name, payload in HOSTILE_PAYLOADS.items():
            with Hostile(payload, "127.0.0.2", port), relay_daemon(dns, port) as d:
                _send(d, ["u@remote.test"], subject=name)
                d.wait_log(r"to=<u@remote.test>.*status=deferred", timeout=40)
                assert d.running(), name
                rss = _rss_kib(d.proc.pid)
                assert rss < 64 * 1024, "%s: petreld RSS %d KiB" % (name, rss)
                petrel.diag("%s: deferred, RSS %d KiB" % (name, rss))


if __name__ == "__main__":
    petrel.main()
