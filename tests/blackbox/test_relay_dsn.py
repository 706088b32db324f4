#!/usr/bin/env python3
"""DSN (RFC 3461) through the smtp transport (issue 8, item 7): the
parameters a client gave petrel (RET, ENVID, NOTIFY, ORCPT) reach a next
hop that offers DSN exactly, xtext and all, and no "relayed" report is
made for them; through a next hop without DSN nothing of DSN is sent and
a NOTIFY=SUCCESS recipient gets an RFC 3464 "relayed" report in the local
sender's maildir.

test_relay_core.py checks the reports themselves through the test
transport (asyncdlv.c); here the transport is the real smtp module and
the peers are real servers: LinePeer (test_relay_tls.py, a raw-socket
SMTP server that records each command line as it arrived and offers
DSN) and aiosmtpd (relaypeers.Peer, which offers no DSN)."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, make_message  # noqa: E402
import relaypeers  # noqa: E402
from relaypeers import Peer  # noqa: E402
from test_relay_tls import LinePeer  # noqa: E402


def relay_daemon(port):
    routes = ('routes = ( { domain = "remote.test"; transport = "smtp"; '
              'nexthop = "[127.0.0.2]:%d"; } );' % port)
    return Daemon(settings={"relay_networks": ["127.0.0.0/8"], "domains": ["localhost"],
                            "retry_initial": 60, "retry_max": 60},
                  modules_extra='  smtp = { connect_timeout = 5; tls = "none"; };',
                  extra=routes)


def send(d, mail_params, rcpts, subject="dsn"):
    """rcpts: [(address, "RCPT parameters")]; returns the queue id."""
    with d.client() as c:
        r = c.ehlo()
        assert "DSN" in [l.split()[0] for l in r.lines[1:]], r
        c.cmd("MAIL FROM:<a@localhost>%s" % ((" " + mail_params) if mail_params else ""), 250)
        for a, p in rcpts:
            c.cmd("RCPT TO:<%s>%s" % (a, (" " + p) if p else ""), 250)
        qid = c.data(make_message(subject))
        c.cmd("QUIT", 221)
    return qid


def params_of(line):
    """'RCPT TO:<x> A=1 B=2' -> ('x', {'A': '1', 'B': '2'})."""
    m = re.match(r"(?:MAIL FROM|RCPT TO):<([^>]*)>(.*)$", line)
    assert m, line
    out = {}
    for w in m.group(2).split():
        k, _, v = w.partition("=")
        assert k.upper() not in out, "parameter %s twice in %r" % (k, line)
        out[k.upper()] = v
    return m.group(1), out


def test_dsn_parameters_reach_a_peer_that_offers_dsn():
    port = relaypeers.free_port("127.0.0.2")
    with LinePeer("127.0.0.2", port, ehlo=["PIPELINING", "8BITMIME", "DSN"]) as p, \
            relay_daemon(port) as d:
        # xtext in ENVID and ORCPT: "+2B" is '+', "+3D" is '=', "+20" a space
        envid = "QQ314159+2Bx+3Dy+20z"
        rcpts = [("s@remote.test", "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;s+2Bext@remote.test"),
                 ("n@remote.test", "NOTIFY=NEVER"),
                 ("d@remote.test", "NOTIFY=DELAY ORCPT=rfc822;Old+20Name+3D1@elsewhere.test"),
                 ("plain@remote.test", "")]
        qid = send(d, "RET=HDRS ENVID=" + envid, rcpts)
        msgs = p.wait_messages(1)
        assert len(msgs) == 1, msgs        # one transaction for the four
        sender, mp = params_of(msgs[0]["mail"])
        assert sender == "a@localhost", msgs[0]
        assert mp.get("RET") == "HDRS" and mp.get("ENVID") == envid, mp
        got = dict(params_of(l) for l in msgs[0]["rcpts"])
        assert got == {
            "s@remote.test": {"NOTIFY": "SUCCESS,FAILURE", "ORCPT": "rfc822;s+2Bext@remote.test"},
            "n@remote.test": {"NOTIFY": "NEVER"},
            "d@remote.test": {"NOTIFY": "DELAY",
                              "ORCPT": "rfc822;Old+20Name+3D1@elsewhere.test"},
            "plain@remote.test": {},
        }, got
        for a, _ in rcpts:
            d.wait_log(r"%s: to=<%s>, relay=127\.0\.0\.2\[127\.0\.0\.2\]:%d, .*status=sent"
                       % (qid, re.escape(a), port))
        d.wait_log(r"%s: removed" % qid)
        # the next hop took over DSN: no "relayed" report from us
        time.sleep(0.5)
        assert d.all_delivered_files() == [], d.all_delivered()
        assert "notification" not in d.log_text()
        # RET=FULL, no ENVID: RET only
        q2 = send(d, "RET=FULL", [("s@remote.test", "NOTIFY=SUCCESS")], subject="full")
        msgs = p.wait_messages(2)
        assert params_of(msgs[1]["mail"])[1] == {"RET": "FULL"}, msgs[1]
        d.wait_log(r"%s: removed" % q2)
        time.sleep(0.3)
        assert d.all_delivered_files() == []


def test_relayed_report_through_a_peer_without_dsn():
    port = relaypeers.free_port("127.0.0.2")
    with Peer("127.0.0.2", port) as p, relay_daemon(port) as d:
        qid = send(d, "RET=HDRS ENVID=env+2B1",
                   [("s@remote.test", "NOTIFY=SUCCESS ORCPT=rfc822;orig+2Bs@remote.test"),
                    ("f@remote.test", "NOTIFY=FAILURE"),
                    ("plain@remote.test", "")], subject="no dsn here")
        msgs = p.wait_messages(1)
        mail_from, rcpt_tos, mail_options, rcpt_options, _ = msgs[0]
        assert sorted(rcpt_tos) == ["f@remote.test", "plain@remote.test", "s@remote.test"], msgs
        # nothing of DSN goes to a server that does not offer it
        assert not any(o.split("=")[0] in ("RET", "ENVID") for o in mail_options), mail_options
        assert rcpt_options == [], rcpt_options
        files = d.wait_delivered("a", 1, timeout=20)
        d.wait_log(r"%s: removed" % qid)
        time.sleep(0.5)
        files = d.delivered("a")
        assert len(files) == 1, files            # one report, for s@ only
        text = files[0].decode("utf-8", "replace")
        assert "Content-Type: multipart/report; report-type=delivery-status" in text, text
        status = text.split("message/delivery-status")[1].split("text/rfc822-headers")[0]
        # the report carries ENVID and ORCPT with xtext undone (bounce.c)
        assert re.search(r"^Original-Envelope-Id: env\+1\r?$", status, re.M), status
        assert "Final-Recipient: rfc822; s@remote.test" in status, status
        assert re.search(r"^Original-Recipient: rfc822;orig\+s@remote\.test\r?$", status, re.M), status
        assert "Action: relayed" in status and "Status: 2.0.0" in status, status
        assert "Remote-MTA: dns; 127.0.0.2" in status, status
        assert "f@remote.test" not in status and "plain@remote.test" not in status, status
        # RET=HDRS: the headers, not the body
        assert "Subject: no dsn here" in text and "hello" not in text.split(
            "text/rfc822-headers")[1], text
        d.wait_log(r"%s: to=<s@remote.test>, relay=127\.0\.0\.2\[127\.0\.0\.2\]:%d, .*status=sent"
                   % (qid, port))


def _status_parts(text):
    """The per-recipient groups of a report's message/delivery-status part."""
    part = text.split("message/delivery-status", 1)[1]
    part = re.split(r"\n--", part, 1)[0]
    return [g for g in re.split(r"\r?\n\r?\n", part) if "Final-Recipient:" in g]


def test_relayed_and_bounced_in_one_message():
    # one recipient relayed with NOTIFY=SUCCESS, one refused (550) by the
    # same peer without DSN: each is reported once, with its own action,
    # and nothing is reported for a third that asked for nothing
    port = relaypeers.free_port("127.0.0.2")
    with Peer("127.0.0.2", port, script={"RCPT": {"f@remote.test": "550 5.1.1 no such user"}}) as p, \
            relay_daemon(port) as d:
        qid = send(d, "", [("s@remote.test", "NOTIFY=SUCCESS"), ("f@remote.test", ""),
                           ("plain@remote.test", "")], subject="mixed")
        msgs = p.wait_messages(1)
        assert sorted(msgs[0][1]) == ["plain@remote.test", "s@remote.test"], msgs
        d.wait_log(r"%s: removed" % qid, timeout=20)
        d.wait_delivered("a", 1, timeout=20)
        time.sleep(1)
        groups = []
        for f in d.delivered("a"):
            groups += _status_parts(f.decode("utf-8", "replace"))
        seen = sorted((re.search(r"Final-Recipient: rfc822; (\S+)", g).group(1),
                       re.search(r"Action: (\S+)", g).group(1)) for g in groups)
        assert seen == [("f@remote.test", "failed"), ("s@remote.test", "relayed")], (seen, groups)
        assert any("Diagnostic-Code: smtp; 550 5.1.1 no such user" in g for g in groups), groups


if __name__ == "__main__":
    petrel.main()
