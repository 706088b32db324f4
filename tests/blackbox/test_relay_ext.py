#!/usr/bin/env python3
"""The smtp transport's loop detection and its use of the server's SMTP
extensions (issue 8, item 3), against real peers on loopback:

- the MX of a domain is petreld's own listening address, or the peer
  greets (or answers EHLO) with petreld's own host name: the message
  bounces with "mail for DOMAIN loops back to myself" (Postfix's words)
  in the report to the sender, and petreld never talks to itself; as
  the best MX it does not hand the mail to a backup MX; as the backup
  MX it defers while the primary is down (RFC 5321 5.1);
- SIZE: a peer that offers SIZE 1000 gets no 5 KB message (5.3.4 bounce,
  no MAIL, no DATA); a smaller one goes with SIZE= on MAIL;
- SMTPUTF8: a UTF-8 envelope (or header) to a peer without SMTPUTF8
  bounces 5.6.7 without MAIL; to a peer with it, it arrives with
  SMTPUTF8 on MAIL; an all-ASCII message that asked for it goes without;
- 8BITMIME: an 8-bit body declared BODY=8BITMIME goes with BODY=8BITMIME
  to a peer that offers it; to a 7-bit peer petreld does not convert it
  (RFC 6152 3 allows conversion or return; Postfix converts by default)
  but returns it with 5.6.3 (modules/smtp/README.md); a declared message
  whose bytes are all 7-bit, and an undeclared 8-bit one (as the client
  sent it), go as they are.

Peers are test_relay_load.Sink (asyncio, recording each transaction) and
dnsmasq (relaypeers.Dns) for the MX case."""

import contextlib
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, diag  # noqa: E402
from relaypeers import Dns  # noqa: E402
from test_relay_load import Sink, route_to  # noqa: E402

SMTP = '  smtp = { tls = "none"; connect_timeout = 5; %s };'
RELAY = {"relay_networks": ["127.0.0.0/8"], "retry_initial": 3600, "retry_max": 3600}


def ext_daemon(sink, smtp_extra=""):
    return Daemon(settings=RELAY, modules_extra=SMTP % smtp_extra,
                  extra=route_to(sink.host, sink.port))


def send(d, rcpt, message, mail_params="", sender="a@localhost"):
    with d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<%s>%s" % (sender, (" " + mail_params) if mail_params else ""), 250)
        c.cmd("RCPT TO:<%s>" % rcpt, 250)
        c.cmd("DATA", 354)
        c.send(petrel.dot_stuff(message) + b".\r\n")
        return c.expect(250).qid


def report_for(d, qid, timeout=15):
    """The one report (DSN) in a@localhost's maildir, for qid."""
    msgs = d.wait_delivered("a", 1, timeout=timeout)
    assert len(msgs) == 1, "%d reports" % len(msgs)
    rep = msgs[0].decode("utf-8", "replace")
    assert "multipart/report" in rep, rep[:500]
    return rep


def message(subject="ext", body=b"hello\r\n", headers=b""):
    return (b"From: <a@localhost>\r\nTo: <u@remote.test>\r\nSubject: " + subject.encode()
            + b"\r\n" + headers + b"\r\n" + body)


# --- loops -----------------------------------------------------------------

def own_port_daemon(dns):
    """A daemon whose modules.smtp.port is its own listening port, so an
    MX at 127.0.0.1 is itself (peers on 127.0.0.2/3 share the number)."""
    d = Daemon(settings=dict(RELAY, resolver=dns.addr), start=False,
               modules_extra=SMTP % "port = @PORT@;")
    with open(d.conf) as f:
        text = f.read().replace("@PORT@", str(d.port))
    with open(d.conf, "w") as f:
        f.write(text)
    return d.start()


def connects_to_me(d):
    return re.findall(r"(?<!dis)connect from (\S+)", d.log_text())


def test_mx_is_my_own_address_loops_back():
    """loop.test's MX resolves to 127.0.0.1 and modules.smtp.port is
    petreld's own port: bounced at once, no connection to itself."""
    with Dns(mx={"loop.test": [(10, "mx.loop.test")]}, a={"mx.loop.test": ["127.0.0.1"]}) as dns, \
            own_port_daemon(dns) as d:
        qid = send(d, "u@loop.test", message("loop"))
        d.wait_log(r"%s: to=<u@loop.test>.*dsn=5\.4\.6, status=bounced" % qid)
        rep = report_for(d, qid)
        assert "mail for loop.test loops back to myself" in rep, rep
        bounced = re.findall(r"%s: to=<u@loop.test>.*status=(\w+)" % qid, d.log_text())
        assert bounced == ["bounced"], bounced
        # the test's own session is the only one petreld took: it never
        # connected to itself
        connects = connects_to_me(d)
        diag("connections petreld took: %s" % connects)
        assert len(connects) == 1, connects


@contextlib.contextmanager
def own_port_and_sink(port_dns):
    """dnsmasq with port_dns, petreld on its own port (own_port_daemon)
    and a Sink on 127.0.0.2 at that same port.  Yields (daemon, sink)."""
    with Dns(**port_dns) as dns:
        d = own_port_daemon(dns)
        with d, Sink(host="127.0.0.2", port=d.port) as sink:
            yield d, sink


def test_best_mx_is_me_backup_not_tried():
    """RFC 5321 5.1: finding itself among the MX hosts, a client drops
    itself and every MX of the same or a greater preference.  Here it is
    the best MX (10): the backup (20) must not get the mail (it would
    send it back); the message bounces as a loop."""
    port_dns = {"mx": {"loop2.test": [(10, "self.loop2.test"), (20, "backup.loop2.test")]},
                "a": {"self.loop2.test": ["127.0.0.1"], "backup.loop2.test": ["127.0.0.2"]}}
    with own_port_and_sink(port_dns) as (d, backup):
        qid = send(d, "u@loop2.test", message("best mx is me"))
        d.wait_log(r"%s: to=<u@loop2.test>.*dsn=5\.4\.6, status=bounced" % qid)
        assert "mail for loop2.test loops back to myself" in report_for(d, qid)
        assert backup.snapshot()["connections"] == 0, backup.snapshot()


def test_backup_mx_is_me_primary_down_deferred():
    """petreld is the backup MX (20) and the primary (10) refuses
    connections: the mail waits for the primary (deferred), it is not a
    loop and no report goes out."""
    port_dns = {"mx": {"loop3.test": [(10, "primary.loop3.test"), (20, "self.loop3.test")]},
                "a": {"primary.loop3.test": ["127.0.0.3"], "self.loop3.test": ["127.0.0.1"]}}
    with Dns(**port_dns) as dns, own_port_daemon(dns) as d:
        qid = send(d, "u@loop3.test", message("backup mx is me"))
        d.wait_log(r"%s: to=<u@loop3.test>.*status=deferred" % qid)
        log = d.log_text()
        assert "loops back" not in log and "status=bounced" not in log, log[-2000:]
        assert re.search(r"%s: to=<u@loop3.test>.*status=deferred.*primary.loop3.test.127\.0\.0\.3" % qid,
                         log)
        d.assert_nothing_more(0, grace=1.0)
        assert len(connects_to_me(d)) == 1


def test_backup_mx_is_me_primary_up_delivered():
    port_dns = {"mx": {"loop4.test": [(20, "self.loop4.test"), (10, "primary.loop4.test")]},
                "a": {"primary.loop4.test": ["127.0.0.2"], "self.loop4.test": ["127.0.0.1"]}}
    with own_port_and_sink(port_dns) as (d, primary):
        qid = send(d, "u@loop4.test", message("primary up"))
        d.wait_log(r"%s: to=<u@loop4.test>.*status=sent" % qid)
        assert primary.snapshot()["distinct"] == 0 and primary.snapshot()["mails"] == 1


def test_greeting_names_me_loops_back():
    """The peer greets with petreld's own host name (mx.test): bounced,
    nothing sent past the greeting."""
    with Sink(name=petrel.HOSTNAME) as sink, ext_daemon(sink) as d:
        qid = send(d, "u@remote.test", message("greeting loop"))
        d.wait_log(r"%s: to=<u@remote.test>.*dsn=5\.4\.6, status=bounced" % qid)
        assert "mail for 127.0.0.1 loops back to myself" in report_for(d, qid)
        assert sink.snapshot()["mails"] == 0


def test_ehlo_names_me_loops_back():
    """Another name in the greeting, petreld's own in the EHLO reply."""
    with Sink(name="other.test", ehlo_name=petrel.HOSTNAME) as sink, ext_daemon(sink) as d:
        qid = send(d, "u@remote.test", message("ehlo loop"))
        d.wait_log(r"%s: to=<u@remote.test>.*dsn=5\.4\.6, status=bounced" % qid)
        assert "loops back to myself" in report_for(d, qid)
        assert sink.snapshot()["mails"] == 0


# --- SIZE ------------------------------------------------------------------

def test_size_limit_bounces_without_data():
    with Sink(caps=["PIPELINING", "SIZE 1000"], keep=True) as sink, ext_daemon(sink) as d:
        big = send(d, "u@remote.test", message("big", (b"y" * 98 + b"\r\n") * 50))   # 5 KB
        d.wait_log(r"%s: to=<u@remote.test>.*dsn=5\.3\.4, status=bounced" % big)
        rep = report_for(d, big)
        assert "5.3.4" in rep and "exceeds the limit 1000" in rep, rep
        snap = sink.snapshot()
        assert snap["mails"] == 0 and snap["data_cmds"] == 0, snap
        # a message under the limit goes, and says its size
        small = send(d, "v@remote.test", message("small"))
        d.wait_log(r"%s: to=<v@remote.test>.*status=sent" % small)
        assert len(sink.txns) == 1, sink.txns
        m = re.search(rb" SIZE=(\d+)", sink.txns[0]["mail"])
        assert m and 0 < int(m.group(1)) < 1000, sink.txns[0]["mail"]


# --- SMTPUTF8 --------------------------------------------------------------

UTF8_RCPT = "j\u00f6rg@remote.test"


def test_smtputf8_to_peer_without_it_bounces():
    with Sink(caps=["PIPELINING", "8BITMIME"], keep=True) as sink, ext_daemon(sink) as d:
        qid = send(d, UTF8_RCPT, message("utf8"), mail_params="SMTPUTF8")
        d.wait_log(r"%s: to=<%s>.*dsn=5\.6\.7, status=bounced" % (qid, UTF8_RCPT))
        rep = report_for(d, qid)
        assert "5.6.7" in rep and "SMTPUTF8" in rep, rep
        assert sink.snapshot()["mails"] == 0


def test_smtputf8_to_peer_with_it_arrives():
    with Sink(caps=["PIPELINING", "8BITMIME", "SMTPUTF8"], keep=True) as sink, ext_daemon(sink) as d:
        qid = send(d, UTF8_RCPT, message("utf8"), mail_params="SMTPUTF8")
        d.wait_log(r"%s: to=<%s>.*status=sent" % (qid, UTF8_RCPT))
        t = sink.txns[0]
        assert b" SMTPUTF8" in t["mail"], t["mail"]
        assert t["rcpts"] == [("RCPT TO:<%s>" % UTF8_RCPT).encode()], t["rcpts"]


def test_smtputf8_header_only_bounces():
    """An ASCII envelope but a UTF-8 Subject: still needs SMTPUTF8."""
    with Sink(caps=["PIPELINING", "8BITMIME"], keep=True) as sink, ext_daemon(sink) as d:
        subj = "gr\u00fc\u00dfe".encode("utf-8")
        msg = b"From: <a@localhost>\r\nTo: <u@remote.test>\r\nSubject: " + subj + b"\r\n\r\nhi\r\n"
        qid = send(d, "u@remote.test", msg, mail_params="SMTPUTF8")
        d.wait_log(r"%s: to=<u@remote.test>.*dsn=5\.6\.7, status=bounced" % qid)
        report_for(d, qid)
        assert sink.snapshot()["mails"] == 0


def test_smtputf8_asked_but_ascii_goes_without():
    """RFC 6531 3.2 forbids UTF-8 addresses and headers without SMTPUTF8,
    nothing else: an all-ASCII message whose client asked for SMTPUTF8
    goes to a server without it, without the parameter (as Postfix)."""
    with Sink(caps=["PIPELINING", "8BITMIME"], keep=True) as sink, ext_daemon(sink) as d:
        qid = send(d, "u@remote.test", message("ascii", "caf\u00e9\r\n".encode("utf-8")),
                   mail_params="SMTPUTF8 BODY=8BITMIME")
        d.wait_log(r"%s: to=<u@remote.test>.*status=sent" % qid)
        t = sink.txns[0]
        assert b"SMTPUTF8" not in t["mail"] and b" BODY=8BITMIME" in t["mail"], t["mail"]


# --- 8BITMIME --------------------------------------------------------------

BODY8 = "caf\u00e9 na\u00efve \u00fcber\r\n".encode("utf-8")
CT8 = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"


def test_8bitmime_to_peer_with_it():
    with Sink(caps=["PIPELINING", "8BITMIME"], keep=True) as sink, ext_daemon(sink) as d:
        qid = send(d, "u@remote.test", message("8bit", BODY8, CT8), mail_params="BODY=8BITMIME")
        d.wait_log(r"%s: to=<u@remote.test>.*status=sent" % qid)
        t = sink.txns[0]
        assert b" BODY=8BITMIME" in t["mail"], t["mail"]
        assert t["data"].endswith(BODY8), t["data"][-100:]


def test_8bitmime_to_7bit_peer_is_returned():
    """RFC 6152 3: convert or return; petreld returns (5.6.3), sends nothing."""
    with Sink(caps=["PIPELINING"], keep=True) as sink, ext_daemon(sink) as d:
        qid = send(d, "u@remote.test", message("8bit", BODY8, CT8), mail_params="BODY=8BITMIME")
        d.wait_log(r"%s: to=<u@remote.test>.*dsn=5\.6\.3, status=bounced" % qid)
        rep = report_for(d, qid)
        assert "5.6.3" in rep and "8BITMIME" in rep, rep
        assert sink.snapshot()["mails"] == 0


def test_8bitmime_declared_but_7bit_goes_as_is():
    with Sink(caps=["PIPELINING"], keep=True) as sink, ext_daemon(sink) as d:
        qid = send(d, "u@remote.test", message("seven"), mail_params="BODY=8BITMIME")
        d.wait_log(r"%s: to=<u@remote.test>.*status=sent" % qid)
        t = sink.txns[0]
        assert b"BODY=" not in t["mail"], t["mail"]


def test_undeclared_8bit_goes_as_it_came():
    """No BODY=8BITMIME from the client: petreld does not guess; the bytes
    go unchanged (what Postfix does with undeclared 8-bit mail too)."""
    with Sink(caps=["PIPELINING"], keep=True) as sink, ext_daemon(sink) as d:
        qid = send(d, "u@remote.test", message("undeclared", BODY8))
        d.wait_log(r"%s: to=<u@remote.test>.*status=sent" % qid)
        t = sink.txns[0]
        assert b"BODY=" not in t["mail"], t["mail"]
        assert t["data"].endswith(BODY8), t["data"][-100:]


if __name__ == "__main__":
    petrel.main()
