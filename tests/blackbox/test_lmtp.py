#!/usr/bin/env python3
"""The lmtp transport: petrel hands local mail to an LMTP server (RFC 2033).

With Dovecot (root; Debian: dovecot-lmtpd): a message for three local
recipients goes over Dovecot's Unix socket; the one with a mailbox gets it
in Dovecot's maildir (with the Return-Path Dovecot writes), the one over
quota and the unknown one are bounced, and the bounce reaches the sender's
mailbox through Dovecot too.  Over TCP, a message waits in the queue while
Dovecot is down, is delivered after `petrelctl flush`, and a recipient
whose quota is full (Dovecot answering 452 after the dot) stays queued
alone.

With a scripted LMTP server on loopback (no root needed): LHLO is sent,
not EHLO; after the final dot each accepted recipient is decided by its
own reply (250 delivered, 452 deferred, 550 bounced) and only the
deferred one is sent again; a server that hangs up between those replies
leaves the answered recipient delivered and the others deferred; a server
that refuses LHLO defers the message; bad next hops are configuration
errors, and a missing one a clear deferral.
"""

import glob
import grp
import json
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, make_message, T  # noqa: E402

DOVECOT = petrel.DOVECOT
DOVECOT_LMTP = "/usr/lib/dovecot/lmtp"
PETRELCTL = os.environ.get("PETRELCTL") or os.path.join(petrel.BUILDDIR, "src", "petrelctl")
USER = "nobody"


def ctl(d, *args):
    r = subprocess.run([PETRELCTL, "-c", d.conf] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=T(20), universal_newlines=True)
    assert r.returncode == 0, (args, r.stdout)
    return r.stdout


def lmtp_daemon(nexthop, settings=None, lmtp_extra="", **kw):
    hop = "nexthop = %s; " % petrel.cfg_value(nexthop) if nexthop else ""
    lm = "  lmtp = { %s%s};" % (hop, lmtp_extra)
    return Daemon(settings=settings, router={"local_transport": "lmtp"}, modules_extra=lm, **kw)


def big_message(subject, size=4096):
    body = "".join("line %04d of a message larger than a 1 KiB quota\n" % i
                   for i in range(size // 48))
    return make_message(subject, body)


# --- Dovecot ---------------------------------------------------------------

class DovecotLMTP(petrel.PrivateDovecot):
    """Dovecot's LMTP service on a Unix socket (base_dir/lmtp) and on a
    loopback TCP port, delivering into mailroot/<user>/ as uid:gid.
    users: name -> quota in bytes (None: no quota)."""

    def __init__(self, top, mailroot, uid, gid, users, tempfail=False):
        super().__init__(os.path.join(top, "dovecot"))
        self.mail = mailroot
        self.port = petrel._free_port()
        self.socket = os.path.join(self.dir, "run", "lmtp")
        with open(os.path.join(self.dir, "users"), "w") as f:
            for name, quota in users.items():
                extra = "userdb_quota_rule=*:storage=%dB" % quota if quota else ""
                f.write("%s:::::::%s\n" % (name, extra))
        with open(self.conf, "w") as f:
            f.write("""# written by tests/blackbox/test_lmtp.py
protocols = lmtp
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {log}
ssl = no
auth_username_format = %Ln
mail_location = maildir:{mail}/%n
mail_plugins = quota
quota_full_tempfail = {tempfail}
lmtp_rcpt_check_quota = no
plugin {{
  quota = maildir:User quota
}}
passdb {{
  driver = passwd-file
  args = {d}/users
}}
userdb {{
  driver = passwd-file
  args = {d}/users
  default_fields = uid={uid} gid={gid} home={mail}/%n
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0666
  }}
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port}
  }}
}}
""".format(d=self.dir, log=self.log, mail=mailroot, uid=uid, gid=gid, port=self.port,
           tempfail="yes" if tempfail else "no"))

    def ready(self):
        socket.create_connection((petrel.HOST, self.port), timeout=2).close()
        return os.path.exists(self.socket)

    def messages(self, user):
        return sorted(glob.glob(os.path.join(self.mail, user, "new", "*"))
                      + glob.glob(os.path.join(self.mail, user, "cur", "*")))

    def wait_messages(self, user, n, timeout=10):
        deadline = time.monotonic() + T(timeout)
        while True:
            files = self.messages(user)
            if len(files) >= n:
                return [open(p, "rb").read() for p in files]
            assert time.monotonic() < deadline, \
                "%s has %d messages in Dovecot, wanted %d\n%s" % (user, len(files), n,
                                                                  self.log_text()[-2000:])
            time.sleep(0.1)


def dovecot_setup(d, **kw):
    if os.geteuid() != 0:
        petrel.skip("needs root (Dovecot's LMTP service)")
    if not (os.access(DOVECOT, os.X_OK) and os.access(DOVECOT_LMTP, os.X_OK)):
        petrel.skip("Dovecot's LMTP service is not installed (dovecot-lmtpd)")
    import pwd
    pw = pwd.getpwnam(USER)
    mailroot = os.path.join(d.dir, "dovecot-mail")
    os.makedirs(mailroot)
    os.chown(mailroot, pw.pw_uid, pw.pw_gid)
    os.chmod(d.dir, 0o755)
    return DovecotLMTP(d.dir, mailroot, pw.pw_uid, grp.getgrgid(pw.pw_gid).gr_gid,
                       {"user": None, "sender": None, "full": 1024}, **kw)


def test_dovecot_over_a_unix_socket():
    d = lmtp_daemon("unix:/dovecot-socket", start=False)
    dov = dovecot_setup(d)
    with d:
        # the daemon's lmtp block names Dovecot's socket, known only now
        with open(d.conf) as f:
            text = f.read()
        with open(d.conf, "w") as f:
            f.write(text.replace("unix:/dovecot-socket", "unix:" + dov.socket))
        try:
            dov.start()
            d.start()
            msg = big_message("to Dovecot")
            with d.client() as c:
                c.ehlo()
                qid = c.send_mail("sender@localhost",
                                  ["user@localhost", "full@localhost", "ghost@localhost"], msg)
            got = dov.wait_messages("user", 1)
            assert len(got) == 1, got
            # Dovecot wrote its Return-Path above what petrel stored
            assert got[0].startswith(b"Return-Path: <sender@localhost>\n"), got[0][:200]
            assert qid.encode() in got[0]
            assert petrel.to_lf(msg).split(b"\n\n", 1)[1] in got[0]
            d.wait_log(r"%s: to=<user@localhost>, relay=unix:%s.*status=sent"
                       % (qid, dov.socket))
            # over quota: answered after the dot, for that recipient alone
            d.wait_log(r"%s: to=<full@localhost>.*dsn=5\.2\.2, status=bounced" % qid)
            # unknown to Dovecot: refused at RCPT
            d.wait_log(r"%s: to=<ghost@localhost>.*dsn=5\.1\.1, status=bounced" % qid)
            assert dov.messages("full") == []
            # the report came back to the sender through Dovecot
            deadline = time.monotonic() + T(10)
            while True:
                reports = b"".join(open(p, "rb").read() for p in dov.messages("sender"))
                if b"full@localhost" in reports and b"ghost@localhost" in reports:
                    break
                assert time.monotonic() < deadline, (reports[:2000], d.log_tail())
                time.sleep(0.1)
            assert b"Action: failed" in reports, reports[:2000]
            assert b"Final-Recipient: rfc822; user@localhost" not in reports, reports[:2000]
            d.wait_log(r"%s: removed" % qid)
            d.stop()
        finally:
            dov.stop()


def test_dovecot_over_tcp_waits_while_it_is_down():
    d = lmtp_daemon("[127.0.0.1]:0", settings={"retry_initial": 3600}, start=False)
    dov = dovecot_setup(d, tempfail=True)
    with d:
        with open(d.conf) as f:
            text = f.read()
        with open(d.conf, "w") as f:
            f.write(text.replace('"[127.0.0.1]:0"', '"[127.0.0.1]:%d"' % dov.port))
        try:
            d.start()
            msg = big_message("while Dovecot is down")
            # (a flush revives the destination a refused connection made
            # dead, as Postfix's does: the retry below does not wait)
            with d.client() as c:
                c.ehlo()
                qid = c.send_mail("sender@localhost", ["user@localhost", "full@localhost"], msg)
            d.wait_log(r"%s: to=<user@localhost>.*status=deferred.*127\.0\.0\.1" % qid)
            assert d.queued() == [qid], d.queued()
            dov.start()
            ctl(d, "flush")
            got = dov.wait_messages("user", 1)
            assert qid.encode() in got[0]
            d.wait_log(r"%s: to=<user@localhost>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d.*status=sent"
                       % (qid, dov.port))
            # quota_full_tempfail: 452 after the dot, for full@ alone
            d.wait_log(r"%s: to=<full@localhost>.*dsn=4\.2\.2, status=deferred" % qid)
            msgs = [json.loads(x) for x in ctl(d, "queue", "--json").splitlines()]
            assert [m["qid"] for m in msgs] == [qid], msgs
            pending = [r for r in msgs[0]["recipients"] if r["state"] == "deferred"]
            assert [r["address"] for r in pending] == ["full@localhost"], msgs[0]
            assert "4.2.2" in pending[0]["last_error"], pending
            # flushed again: user@ is not delivered twice
            ctl(d, "flush")
            d.wait_log(r"%s: to=<full@localhost>.*status=deferred" % qid, timeout=10)
            time.sleep(0.5)
            assert len(dov.messages("user")) == 1
            d.stop()
        finally:
            dov.stop()


# --- a scripted LMTP server -------------------------------------------------

class ScriptedLMTP:
    """A small LMTP server on loopback, one thread per connection.
    dot: address -> the reply after the final dot (default 250);
    hangup_after: answer this many recipients after the dot, then close;
    lhlo: the reply to LHLO (None: a normal one)."""

    def __init__(self, dot=None, hangup_after=None, lhlo=None, dsn=False, delay=0):
        self.delay = delay        # seconds before each reply after the dot
        self.dot = dot or {}
        self.dsn = dsn
        self.commands = []        # every MAIL and RCPT line, as sent
        self.hangup_after = hangup_after
        self.lhlo = lhlo
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((petrel.HOST, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.greetings = []       # the first word of each hello command
        self.transactions = []    # (rcpts, body) for each message taken
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closing:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        f = c.makefile("rwb")

        def say(line):
            f.write(line.encode() + b"\r\n")
            f.flush()
        try:
            say("220 lmtp.test LMTP ready")
            rcpts = []
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.decode("latin-1").rstrip("\r\n")
                verb = cmd.split(" ", 1)[0].upper()
                if verb in ("LHLO", "EHLO", "HELO"):
                    with self.lock:
                        self.greetings.append(verb)
                    if verb != "LHLO":
                        say("500 5.5.1 this is LMTP")
                    elif self.lhlo:
                        say(self.lhlo)
                    else:
                        say("250-lmtp.test\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n"
                            + ("250-DSN\r\n" if self.dsn else "") + "250 8BITMIME")
                elif verb == "MAIL":
                    with self.lock:
                        self.commands.append(cmd)
                    rcpts = []
                    say("250 2.1.0 ok")
                elif verb == "RCPT":
                    with self.lock:
                        self.commands.append(cmd)
                    rcpts.append(cmd.split("<", 1)[1].split(">", 1)[0])
                    say("250 2.1.5 ok")
                elif verb == "DATA":
                    if not rcpts:
                        say("503 5.5.1 no recipients")
                        continue
                    say("354 go ahead")
                    body = []
                    while True:
                        b = f.readline()
                        if not b or b == b".\r\n":
                            break
                        body.append(b)
                    with self.lock:
                        self.transactions.append((list(rcpts), b"".join(body)))
                    for i, r in enumerate(rcpts):
                        if self.delay:
                            time.sleep(self.delay)
                        if self.hangup_after is not None and i >= self.hangup_after:
                            c.close()
                            return
                        v = self.dot.get(r, "250 2.0.0 <%s> saved" % r)
                        if isinstance(v, bytes):     # raw: a hostile reply
                            f.write(v)
                            f.flush()
                        else:
                            say(v)
                elif verb == "RSET":
                    rcpts = []
                    say("250 2.0.0 ok")
                elif verb == "QUIT":
                    say("221 2.0.0 bye")
                    return
                else:
                    say("500 5.5.2 unknown command")
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def wait_transactions(self, n, timeout=10):
        deadline = time.monotonic() + T(timeout)
        while True:
            with self.lock:
                if len(self.transactions) >= n:
                    return list(self.transactions)
            assert time.monotonic() < deadline, "%d transactions, wanted %d" % (
                len(self.transactions), n)
            time.sleep(0.05)

    def close(self):
        self.closing = True
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def send(d, rcpts, subject="lmtp"):
    with d.client() as c:
        c.ehlo()
        return c.send_mail("sender@example.test", rcpts, make_message(subject))


def test_each_recipient_is_decided_by_its_own_reply():
    with ScriptedLMTP(dot={"b@localhost": "452 4.2.2 b is over quota",
                           "c@localhost": "550 5.2.1 c is disabled"}) as srv, \
            lmtp_daemon("[127.0.0.1]:%d" % srv.port, settings={"retry_initial": 3600}) as d:
        qid = send(d, ["a@localhost", "b@localhost", "c@localhost"])
        d.wait_log(r"%s: to=<a@localhost>.*status=sent \(250 2\.0\.0 <a@localhost> saved\)" % qid)
        d.wait_log(r"%s: to=<b@localhost>.*dsn=4\.2\.2, status=deferred \(452 4\.2\.2 b is over" % qid)
        d.wait_log(r"%s: to=<c@localhost>.*dsn=5\.2\.1, status=bounced" % qid)
        t = srv.wait_transactions(1)
        assert t[0][0] == ["a@localhost", "b@localhost", "c@localhost"], t
        assert srv.greetings[0] == "LHLO", srv.greetings
        assert qid.encode() in t[0][1]
        # the retry carries the deferred recipient alone
        srv.dot = {}
        ctl(d, "flush")
        d.wait_log(r"%s: to=<b@localhost>.*status=sent" % qid)
        # (the bounce for c@ went to sender@example.test, local, over LMTP too)
        mine = [r for r, body in srv.transactions if qid.encode() in body.split(b"\r\n\r\n")[0]]
        assert mine == [["a@localhost", "b@localhost", "c@localhost"], ["b@localhost"]], mine
        d.wait_log(r"%s: removed" % qid)
        assert "EHLO" not in srv.greetings and "HELO" not in srv.greetings, srv.greetings


def test_notify_success_gets_a_delivered_report():
    # the LMTP server put it in the mailbox: the report is petrel's, and
    # says "delivered" (RFC 3464), whether or not the server offers DSN
    for dsn in (False, True):
        with ScriptedLMTP(dsn=dsn) as srv, lmtp_daemon("[127.0.0.1]:%d" % srv.port) as d:
            with d.client() as c:
                c.ehlo()
                c.cmd("MAIL FROM:<sender@example.test> RET=HDRS ENVID=e2", 250)
                c.cmd("RCPT TO:<b@localhost> NOTIFY=SUCCESS ORCPT=rfc822;orig-b@example.test", 250)
                q2 = c.data(make_message("notify success"))
            d.wait_log(r"%s: to=<b@localhost>.*status=sent" % q2)
            d.wait_log(r"%s: sender \w+ notification" % q2)
            deadline = time.monotonic() + T(10)
            while True:
                reps = [body for r_, body in srv.transactions
                        if r_ == ["sender@example.test"] and q2.encode() in body]
                if reps:
                    break
                assert time.monotonic() < deadline, (srv.transactions, d.log_tail())
                time.sleep(0.05)
            assert b"Action: delivered" in reps[0], reps[0][:1500]
            assert b"Action: relayed" not in reps[0]
            # no NOTIFY to the server (the report is ours); ORCPT when offered
            rcpt = [x for x in srv.commands if "<b@localhost>" in x]
            assert rcpt and "NOTIFY" not in rcpt[0], rcpt
            assert ("ORCPT=rfc822;orig-b@example.test" in rcpt[0]) == dsn, rcpt
            assert not any("ENVID" in x or "RET=" in x for x in srv.commands), srv.commands


def test_a_hangup_between_the_replies_defers_only_the_unanswered():
    with ScriptedLMTP(hangup_after=1) as srv, \
            lmtp_daemon("[127.0.0.1]:%d" % srv.port, settings={"retry_initial": 3600}) as d:
        qid = send(d, ["a@localhost", "b@localhost", "c@localhost"])
        d.wait_log(r"%s: to=<a@localhost>.*status=sent" % qid)
        d.wait_log(r"%s: to=<b@localhost>.*status=deferred" % qid)
        d.wait_log(r"%s: to=<c@localhost>.*status=deferred" % qid)
        srv.hangup_after = None
        ctl(d, "flush")
        d.wait_log(r"%s: removed" % qid)
        t = srv.wait_transactions(2)
        assert [r for r, _ in t] == [["a@localhost", "b@localhost", "c@localhost"],
                                     ["b@localhost", "c@localhost"]], t
        assert d.running()


def test_hostile_replies_after_the_dot_defer_cleanly():
    # what a broken or hostile LMTP server may send where a recipient's
    # reply belongs: the recipients answered before keep their result,
    # the rest are deferred with one clean log line, the daemon stays up
    # and its memory does not follow the peer's bytes
    cases = {
        "a 1 MB line": b"250 " + b"x" * (1 << 20) + b"\r\n",
        "10,000 continuation lines": b"250-more\r\n" * 10000 + b"250 ok\r\n",
        "a NUL byte": b"250 2.0.0 o\0k\r\n",
        "a bare LF": b"250 2.0.0 ok\n",
        "a line that never ends": b"250 2.0.0 and on" + b" and on" * 2000,
    }
    with ScriptedLMTP() as srv, \
            lmtp_daemon("[127.0.0.1]:%d" % srv.port,
                        settings={"retry_initial": 3600},
                        lmtp_extra="data_done_timeout = 2; ") as d:
        rss0 = petrel.rss(d.proc.pid)
        for name, raw in cases.items():
            srv.dot = {"b@localhost": raw}
            qid = send(d, ["a@localhost", "b@localhost", "c@localhost"], subject=name)
            d.wait_log(r"%s: to=<a@localhost>.*status=sent" % qid)
            d.wait_log(r"%s: to=<b@localhost>.*status=deferred" % qid, timeout=15)
            d.wait_log(r"%s: to=<c@localhost>.*status=deferred" % qid)
            assert d.running(), name
        log = d.log_text()
        assert "\0" not in log and "x" * 3000 not in log, "the peer's bytes reached the log"
        grew = petrel.rss(d.proc.pid) - rss0
        assert grew < 8 << 20, "RSS grew by %d bytes" % grew
        petrel.diag("RSS %d -> %d KiB after the hostile replies" % (rss0 >> 10, (rss0 + grew) >> 10))


def test_kill9_during_an_lmtp_load_loses_no_acknowledged_message():
    # kill -9 of petreld while LMTP transactions are open (the server
    # waits 5 ms before each recipient's reply): after the restart every
    # recipient of every message that got 250 is at the server, and a
    # recipient comes twice only if the server had it before the kill
    # (its reply was on the way or not yet recorded), reported
    import re
    rid = re.compile(rb"with ESMTP id ([0-9A-Za-z]+);")
    with ScriptedLMTP(delay=0.005) as srv, \
            lmtp_daemon("[127.0.0.1]:%d" % srv.port, settings={"retry_initial": 1, "retry_max": 1}) as d:
        acked, lock, stop = [], threading.Lock(), threading.Event()

        def sender(k):
            try:
                with d.client() as c:
                    c.ehlo()
                    for i in range(200):
                        if stop.is_set():
                            return
                        q = c.send_mail("sender@example.test", ["a@localhost", "b@localhost"],
                                        make_message("kill9 %d/%d" % (k, i)))
                        with lock:
                            acked.append(q)
            except (OSError, AssertionError, petrel.Closed):
                return          # the kill cut this session: its last message was not acked
        threads = [threading.Thread(target=sender, args=(k,), daemon=True) for k in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + T(60)
        while len(acked) < 150:
            assert time.monotonic() < deadline, "only %d acked" % len(acked)
            time.sleep(0.01)
        d.kill9()
        stop.set()
        for t in threads:
            t.join(T(20))
        time.sleep(0.3)           # a body the server was still reading ends now
        with srv.lock:
            before_kill = len(srv.transactions)
        with lock:
            acked_ids = set(acked)
        d.start()
        deadline = time.monotonic() + T(60)
        while d.queued():
            assert time.monotonic() < deadline, "queue not empty: %d" % len(d.queued())
            time.sleep(0.2)
        time.sleep(0.5)
        got, early = {}, set()
        with srv.lock:
            for k, (rcpts, body) in enumerate(srv.transactions):
                m = rid.search(body)
                if m:
                    for r in rcpts:
                        key = (m.group(1).decode(), r)
                        got[key] = got.get(key, 0) + 1
                        if k < before_kill:
                            early.add(key)
        missing = [(q, r) for q in acked_ids for r in ("a@localhost", "b@localhost")
                   if (q, r) not in got]
        assert not missing, "acknowledged but never at the LMTP server: %s" % missing[:10]
        twice = [k for k, n in got.items() if n > 1]
        assert all(got[k] == 2 for k in twice), [(k, got[k]) for k in twice if got[k] > 2]
        assert not [k for k in twice if k not in early], \
            "delivered twice though the server first had it after the restart"
        petrel.diag("acked %d messages x 2 recipients; %d transactions at the server before the "
                    "kill; %d recipients delivered twice after the restart"
                    % (len(acked_ids), before_kill, len(twice)))
        # only what was in flight may come twice: at most one transaction
        # per connection (destination_concurrency 20) with its two recipients
        assert len(twice) <= 40, len(twice)


def test_a_refused_lhlo_defers():
    with ScriptedLMTP(lhlo="554 5.3.0 not now") as srv, \
            lmtp_daemon("[127.0.0.1]:%d" % srv.port, settings={"retry_initial": 3600}) as d:
        qid = send(d, ["a@localhost"])
        d.wait_log(r"%s: to=<a@localhost>.*status=deferred \(.*refused LHLO: 554 5\.3\.0 not now"
                   % qid)
        assert srv.transactions == []
        assert d.queued() == [qid]


def test_no_nexthop_is_a_clear_deferral():
    with lmtp_daemon(None, settings={"retry_initial": 3600}) as d:
        qid = send(d, ["a@localhost"])
        d.wait_log(r"%s: to=<a@localhost>.*status=deferred \(451 4\.3\.5 no LMTP server: set "
                   r"modules\.lmtp\.nexthop" % qid)
        assert d.queued() == [qid]
        d.wait_log(r"lmtp: no nexthop is set")


def test_bad_nexthops_are_configuration_errors():
    for bad in ("unix:relative/path", "unix:/" + "x" * 120, "[127.0.0.1]:99999", "host:port",
                "[unclosed:24"):
        d = lmtp_daemon(bad, start=False)
        with d:
            r = subprocess.run([petrel.PETRELD, "-t", "-c", d.conf], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env=d.env(), timeout=T(20),
                               universal_newlines=True)
            assert r.returncode != 0, (bad, r.stdout)
            assert "nexthop" in r.stdout and "must be" in r.stdout, (bad, r.stdout)
    for good in ("unix:/run/dovecot/lmtp", "/run/dovecot/lmtp", "[127.0.0.1]:24", "[::1]:24",
                 "inet:localhost:24", "lmtp.example"):
        d = lmtp_daemon(good, start=False)
        with d:
            r = subprocess.run([petrel.PETRELD, "-t", "-c", d.conf], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env=d.env(), timeout=T(20),
                               universal_newlines=True)
            assert r.returncode == 0, (good, r.stdout)


if __name__ == "__main__":
    petrel.main()
