#!/usr/bin/env python3
"""Durability: load, kill -9 mid-load, SIGTERM mid-load, spool recovery.

The rule under test: a message acknowledged with 250 is delivered, whatever
happens to the daemon after the 250; a message that was never acknowledged
may be delivered only if it was in flight (its final dot sent, its reply not
read) when the daemon died.
"""

import os
import re
import smtplib
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, make_message, T, diag  # noqa: E402

SMTP_SOURCE = "/usr/sbin/smtp-source"
TOKEN_RE = re.compile(rb"^X-Token: (\S+)$", re.M)


def token_message(token):
    return make_message(token, "message %s\nsecond line\n.dot line\n" % token,
                        headers=["X-Token: " + token])


class Load:
    """Threads, each one SMTP session sending messages until told to stop."""

    def __init__(self, port, sessions, per_session, sender="a@localhost",
                 rcpt="user@localhost"):
        self.port = port
        self.sessions = sessions
        self.per_session = per_session
        self.sender, self.rcpt = sender, rcpt
        self.lock = threading.Lock()
        self.acked = {}          # qid -> token
        # token -> "no reply" / "refused CODE": messages whose DATA was under
        # way when the session ended (final dot maybe sent, no 250 read)
        self.in_flight = {}
        self.errors = []         # (worker, repr(exception)) not at the end
        self.ends = []           # how each session ended
        self.stop = threading.Event()
        self.threads = []

    def worker(self, w):
        stage, token = None, None
        try:
            s = smtplib.SMTP(petrel.HOST, self.port, local_hostname="load.test",
                             timeout=T(30))
            s.ehlo()
            for i in range(self.per_session):
                if self.stop.is_set():
                    break
                token = "w%02d-m%04d" % (w, i)
                stage = "envelope"
                code, resp = s.mail(self.sender)
                if code != 250:
                    raise smtplib.SMTPResponseException(code, resp)
                code, resp = s.rcpt(self.rcpt)
                if code != 250:
                    raise smtplib.SMTPResponseException(code, resp)
                stage = "data"
                try:
                    code, resp = s.data(token_message(token))
                except smtplib.SMTPDataError as e:
                    code, resp = e.smtp_code, e.smtp_error
                m = petrel.QID_RE.search(resp)
                if code != 250 or not m:
                    # the message was all sent; the reply was not an ack
                    stage = "refused %s" % code
                    raise smtplib.SMTPResponseException(code, resp)
                stage = None
                with self.lock:
                    self.acked[m.group(1).decode()] = token
            try:
                s.quit()
            except Exception:
                pass
            with self.lock:
                self.ends.append("done")
        except Exception as e:  # noqa: B902
            with self.lock:
                if stage == "data":
                    self.in_flight[token] = "no reply"
                elif stage and stage.startswith("refused"):
                    self.in_flight[token] = stage
                self.ends.append(type(e).__name__ + ":" + str(e)[:60])
                if not self.stop.is_set():
                    self.errors.append((w, repr(e)))

    def start(self):
        for w in range(self.sessions):
            self.threads.append(petrel.start_thread(self.worker, w))
        return self

    def wait_acked(self, n, timeout=60):
        deadline = time.monotonic() + T(timeout)
        while len(self.acked) < n:
            if time.monotonic() > deadline:
                raise AssertionError("only %d messages acked within %ss "
                                     "(errors: %s)" % (len(self.acked),
                                                       T(timeout),
                                                       self.errors[:3]))
            if not any(t.is_alive() for t in self.threads):
                raise AssertionError("load ended after %d acks: %s"
                                     % (len(self.acked), self.errors[:3]))
            time.sleep(0.01)

    def join(self, timeout=120):
        deadline = time.monotonic() + T(timeout)
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        alive = sum(t.is_alive() for t in self.threads)
        assert not alive, "%d load sessions still running" % alive


def delivered_index(d):
    """[(path, qid, token, content)] of every delivered file."""
    out = []
    for p in d.all_delivered_files():
        with open(p, "rb") as f:
            content = f.read()
        m = TOKEN_RE.search(content)
        out.append((p, petrel.qid_of_file(content),
                    m.group(1).decode() if m else None, content))
    return out


def wait_qids(d, qids, timeout=60):
    """Wait until every QID in qids is in some delivered file."""
    deadline = time.monotonic() + T(timeout)
    while True:
        have = {q for _, q, _, _ in delivered_index(d)}
        missing = set(qids) - have
        if not missing:
            return
        if time.monotonic() > deadline:
            raise AssertionError("%d acknowledged message(s) never delivered,"
                                 " e.g. %s" % (len(missing), sorted(missing)[:5]))
        time.sleep(0.1)


def wait_stable(d, quiet=1.0, timeout=30):
    """Wait until the number of delivered files stays the same for quiet s."""
    deadline = time.monotonic() + T(timeout)
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = len(d.all_delivered_files())
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return n
        time.sleep(0.05)
    return last


def audit(d, load, allow_in_flight=True):
    """Check deliveries against acks; return (dups, in_flight_delivered)."""
    idx = delivered_index(d)
    by_qid, by_token = {}, {}
    bad_body, unexpected, in_flight_delivered = [], [], []
    for path, qid, token, content in idx:
        by_qid.setdefault(qid, []).append(path)
        by_token.setdefault(token, []).append(path)
        if token is None or qid is None:
            bad_body.append(path)
            continue
        body = petrel.Delivered(content).body
        if body != petrel.to_lf(token_message(token)):
            bad_body.append(path)
        if qid not in load.acked:
            if allow_in_flight and token in load.in_flight:
                in_flight_delivered.append(load.in_flight[token])
            else:
                unexpected.append((qid, token))
        elif load.acked[qid] != token:
            unexpected.append((qid, token))
    missing = set(load.acked) - set(by_qid)
    dup_qids = {q: len(v) for q, v in by_qid.items() if len(v) > 1}
    dup_tokens = {t: len(v) for t, v in by_token.items() if len(v) > 1}
    diag("acked %d, delivered files %d, in flight at the end %d, "
         "in-flight delivered %d, duplicate QIDs %d, duplicate messages %d"
         % (len(load.acked), len(idx), len(load.in_flight),
            len(in_flight_delivered), len(dup_qids), len(dup_tokens)))
    if in_flight_delivered:
        kinds = {}
        for k in in_flight_delivered:
            kinds[k] = kinds.get(k, 0) + 1
        diag("in-flight messages delivered, by the reply the client got: %s"
             % kinds)
    if dup_qids:
        diag("duplicates (QID: copies): %s" % sorted(dup_qids.items())[:10])
    assert not missing, "%d acked message(s) lost, e.g. %s" % (
        len(missing), sorted(missing)[:5])
    assert not bad_body, "delivered file(s) with a wrong or truncated body: %s" \
        % bad_body[:5]
    assert not unexpected, ("delivered message(s) never acknowledged nor in "
                            "flight (qid, token): %s" % unexpected[:5])
    return dup_qids, in_flight_delivered


# ---------------------------------------------------------------------------

def test_load_20_sessions_500_messages():
    with Daemon() as d:
        load = Load(d.port, sessions=20, per_session=25).start()
        load.join(timeout=120)
        assert not load.errors, "session errors: %s" % load.errors[:5]
        assert len(load.acked) == 500, len(load.acked)
        d.wait_delivered("user", 500, timeout=60)
        n = wait_stable(d, quiet=0.5)
        assert n == 500, "%d files delivered, want 500" % n
        dups, _ = audit(d, load, allow_in_flight=False)
        assert not dups, "duplicates without any crash: %s" % dups


def test_smtp_source_500_messages():
    petrel.need_tool(SMTP_SOURCE)
    with Daemon() as d:
        p = petrel.run([SMTP_SOURCE, "-s", "20", "-m", "500", "-c", "-l",
                        "1024", "-f", "a@localhost", "-t", "user@localhost",
                        "127.0.0.1:%d" % d.port], timeout=120)
        assert p.returncode == 0, (p.returncode, p.stderr[-1000:])
        d.wait_delivered("user", 500, timeout=60)
        n = wait_stable(d, quiet=0.5)
        assert n == 500, "%d files delivered, want 500" % n


def test_kill9_mid_load():
    with Daemon() as d:
        load = Load(d.port, sessions=10, per_session=100000).start()
        load.wait_acked(100)
        d.kill9()
        load.stop.set()
        load.join(timeout=60)
        n_acked = len(load.acked)
        d.start()
        wait_qids(d, load.acked, timeout=60)
        wait_stable(d, quiet=1.0)
        audit(d, load)
        assert len(load.acked) == n_acked
        # and the restarted daemon works
        q = petrel.send_one(d.port, "a@localhost", "after@localhost",
                            make_message("after crash"))
        content = d.wait_delivered("after", 1)[0]
        assert petrel.qid_of_file(content) == q
        d.stop()


def test_kill9_mid_load_three_recipients():
    # per-recipient state survives a crash: every recipient of every acked
    # message gets it, whichever recipients were done at the kill
    rcpts = ["rcpt-one@localhost", "rcpt-two@localhost",
             "rcpt-three@example.test"]
    with Daemon() as d:
        load = Load(d.port, sessions=6, per_session=100000)
        load.rcpt = None

        def worker(w, load=load):
            stage, token = None, None
            try:
                s = smtplib.SMTP(petrel.HOST, d.port,
                                 local_hostname="load.test", timeout=T(30))
                s.ehlo()
                for i in range(100000):
                    if load.stop.is_set():
                        break
                    token = "m%02d-%04d" % (w, i)
                    stage = "data"
                    try:
                        code, resp = s.mail("a@localhost")
                        for r in rcpts:
                            code, resp = s.rcpt(r)
                        code, resp = s.data(token_message(token))
                    except smtplib.SMTPDataError as e:
                        code, resp = e.smtp_code, e.smtp_error
                    m = petrel.QID_RE.search(resp)
                    if code != 250 or not m:
                        raise smtplib.SMTPResponseException(code, resp)
                    stage = None
                    with load.lock:
                        load.acked[m.group(1).decode()] = token
            except Exception as e:  # noqa: B902
                with load.lock:
                    if stage:
                        load.in_flight[token] = "no reply"
                    if not load.stop.is_set():
                        load.errors.append((w, repr(e)))

        load.threads = [petrel.start_thread(worker, w) for w in range(6)]
        load.wait_acked(60)
        d.kill9()
        load.stop.set()
        load.join(timeout=60)
        d.start()
        deadline = time.monotonic() + T(60)
        while True:
            missing = []
            for r in rcpts:
                user, dom = r.split("@")
                have = {petrel.qid_of_file(x)
                        for x in d.delivered(user, dom)}
                missing += ["%s:%s" % (q, r) for q in load.acked
                            if q not in have]
            if not missing:
                break
            assert time.monotonic() < deadline, \
                "%d acked (message, recipient) pairs never delivered, e.g. %s" \
                % (len(missing), missing[:5])
            time.sleep(0.1)
        wait_stable(d, quiet=1.0)
        dups = 0
        for r in rcpts:
            user, dom = r.split("@")
            qids = [petrel.qid_of_file(x) for x in d.delivered(user, dom)]
            dups += len(qids) - len(set(qids))
            for q in set(qids) - set(load.acked):
                tok = None
                for x in d.delivered(user, dom):
                    if petrel.qid_of_file(x) == q:
                        m = TOKEN_RE.search(x)
                        tok = m.group(1).decode() if m else None
                assert tok in load.in_flight, \
                    "%s got %s (%s), never acked nor in flight" % (r, q, tok)
        diag("acked %d messages x %d recipients; duplicate deliveries %d"
             % (len(load.acked), len(rcpts), dups))
        d.stop()


def test_clean_restart_does_not_redeliver():
    with Daemon() as d:
        with d.client() as c:
            c.ehlo()
            for i in range(10):
                c.send_mail("a@localhost", ["user@localhost"],
                            token_message("r%02d" % i))
        d.wait_delivered("user", 10)
        for _ in range(2):
            d.restart()
            wait_stable(d, quiet=0.5)
        n = len(d.delivered("user"))
        assert n == 10, "%d files after two restarts, want 10" % n
        assert not d.queued(), (d.queued(), d.spool_files())


def test_kill9_right_after_ack():
    with Daemon() as d:
        acked = {}
        with d.client() as c:
            c.ehlo()
            for i in range(20):
                tok = "seq-%02d" % i
                acked[c.send_mail("a@localhost", ["user@localhost"],
                                  token_message(tok))] = tok
            d.kill9()
        load = Load(d.port, 0, 0)
        load.acked = acked
        d.start()
        wait_qids(d, acked, timeout=30)
        wait_stable(d, quiet=0.5)
        dups, _ = audit(d, load, allow_in_flight=False)
        d.stop()


def test_sigterm_mid_load():
    with Daemon() as d:
        load = Load(d.port, sessions=10, per_session=100000).start()
        load.wait_acked(50)
        d.stop()                       # asserts exit code 0
        load.stop.set()
        load.join(timeout=60)
        ends = {}
        for e in load.ends:
            k = e.split(":")[0]
            ends[k] = ends.get(k, 0) + 1
        diag("how the sessions ended: %s" % ends)
        d.start()
        wait_qids(d, load.acked, timeout=60)
        wait_stable(d, quiet=1.0)
        audit(d, load)
        d.stop()


def test_sigterm_right_after_ack():
    with Daemon() as d:
        acked = {}
        with d.client() as c:
            c.ehlo()
            for i in range(20):
                tok = "term-%02d" % i
                acked[c.send_mail("a@localhost", ["user@localhost"],
                                  token_message(tok))] = tok
            d.stop()
        load = Load(d.port, 0, 0)
        load.acked = acked
        d.start()
        wait_qids(d, acked, timeout=30)
        wait_stable(d, quiet=0.5)
        dups, _ = audit(d, load, allow_in_flight=False)
        assert not dups, "duplicates after a clean stop: %s" % dups


def test_sigterm_idle_session_gets_421():
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c2 = d.client()            # a second session, before EHLO
        try:
            d.stop()               # exit code 0 asserted
            c.expect(421, "4.3.2", what="session at SIGTERM")
            c2.expect(421, "4.3.2", what="second session at SIGTERM")
            c.expect_closed()
        finally:
            c2.close()


def test_sigterm_during_data():
    # a session in the middle of DATA gets 421 4.3.2 promptly (the daemon
    # does not wait for the data to end), and its message is not delivered
    with Daemon() as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<cut@localhost>", 250)
        c.cmd("DATA", 354)
        c.send(b"Subject: cut short\r\n\r\nsome text\r\n")
        d.stop()                   # exit code 0 within the stop timeout
        c.expect(421, "4.3.2", what="session in DATA at SIGTERM")
        d.start()
        wait_stable(d, quiet=0.5)
        assert not d.delivered("cut"), "interrupted message delivered"


def test_restart_keeps_mail():
    with Daemon() as d:
        q1 = petrel.send_one(d.port, "a@localhost", "user@localhost",
                             make_message("one"))
        d.wait_delivered("user", 1)
        d.restart()
        q2 = petrel.send_one(d.port, "a@localhost", "user@localhost",
                             make_message("two"))
        got = d.wait_delivered("user", 2)
        assert sorted(petrel.qid_of_file(x) for x in got) == sorted([q1, q2])
        wait_stable(d, quiet=0.5)
        assert len(d.delivered("user")) == 2
        assert q1 != q2


def holds(path, data):
    try:
        with open(path, "rb") as f:
            return data in f.read()
    except OSError:
        return False


def test_incomplete_message_cleaned_at_start():
    tok = b"PARTIAL-TOKEN-7e3f"
    with Daemon() as d:
        c = d.client()
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<partial@localhost>", 250)
        c.cmd("DATA", 354)
        c.send(b"Subject: partial\r\nX-Token: " + tok + b"\r\n\r\n"
               + (b"z" * 78 + b"\r\n") * 20000)          # 1.6 MB, no dot
        # wait until the partial message reaches the spool, if it ever does
        deadline = time.monotonic() + T(5)
        holding = []
        while time.monotonic() < deadline and not holding:
            for p in d.spool_files():
                try:
                    with open(p, "rb") as f:
                        if tok in f.read():
                            holding.append(p)
                except OSError:
                    pass
            time.sleep(0.05)
        d.kill9()
        c.close()
        before = d.spool_files()
        d.start()
        # a normal message after restart goes through
        q = petrel.send_one(d.port, "a@localhost", "after@localhost",
                            make_message("after"))
        assert petrel.qid_of_file(d.wait_delivered("after", 1)[0]) == q
        if not holding:
            diag("the partial message never reached the spool (kept in "
                 "memory?): cleanup at start not observable")
        deadline = time.monotonic() + T(10)
        while True:
            # a slot file stays (reused), but not the partial bytes
            left = [p for p in holding if holds(p, tok)]
            if not left:
                break
            assert time.monotonic() < deadline, \
                "incomplete spool file(s) not removed at start: %s" % left
            time.sleep(0.1)
        for p in d.spool_files():
            with open(p, "rb") as f:
                assert tok not in f.read(), "partial data left in %s" % p
        assert not d.delivered("partial"), "partial message delivered"
        wait_stable(d, quiet=0.5)
        assert not d.delivered("partial"), "partial message delivered"
        diag("spool files before restart: %d; holding the partial data: %d"
             % (len(before), len(holding)))
        d.stop()


if __name__ == "__main__":
    petrel.main()
