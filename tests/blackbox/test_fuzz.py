#!/usr/bin/env python3
"""Random sessions: whatever a client sends, petreld answers and lives on.

Deterministic (fixed seeds) sessions built from SMTP pieces, valid and
broken: every verb, mutated commands, over-long lines, bare CR and LF, NUL
and 8-bit octets, DATA and BDAT with wrong sizes, STARTTLS followed by
garbage instead of a handshake, AUTH with bad base64, bursts of pipelined
commands, input split into single bytes, and connections dropped at any
point.  Four clients run at once.

What must hold: the daemon never dies (the harness also fails the test on
any sanitizer report in its log), every session ends with the connection
closed by one side, a well-formed message sent between the random ones is
delivered byte-exact, and a message acknowledged with 250 is never lost.
"""

import base64
import os
import random
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, make_message, T  # noqa: E402
from test_tls_auth import secrets_dir, ALICE, ALICE_PW  # noqa: E402

SESSIONS = 2000
CLIENTS = 4
WAIT_354 = object()                     # in a session: read until the 354 reply


def b64(b):
    return base64.b64encode(b).decode()


def mutate(rng, b):
    b = bytearray(b)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        at = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1:
            b[at:at] = bytes([rng.choice(b"<>\"\\@:,.= \r\n\0\x80\xff")])
        elif op == 2 and at < len(b):
            del b[at]
        else:
            b = b[:at]
    return bytes(b)


def pieces(rng):
    """The bytes of one random session, as a list of sends."""
    rcpt = rng.choice([b"user@localhost", b"other@example.test", b"x@remote.example",
                       b"\"q u\"@localhost", b"user%remote@localhost", b"<>",
                       b"@a,@b:user@localhost", "ü@localhost".encode()])
    body = rng.choice([b"Subject: f\r\n\r\nhello\r\n",
                       b"Subject: f\r\n\r\n..dot\r\n\r\n",
                       b"no header line\n.\n",
                       b"Subject: x\r\n\r\n" + rng.randbytes(rng.randrange(2000)),
                       b"Received: x\r\n" * rng.randrange(0, 120) + b"\r\nb\r\n"])
    valid = [
        b"EHLO fuzz.test\r\n", b"HELO fuzz.test\r\n", b"EHLO\r\n",
        b"MAIL FROM:<a@localhost>\r\n", b"MAIL FROM:<a@localhost> SIZE=100 BODY=8BITMIME\r\n",
        b"MAIL FROM:<> SMTPUTF8\r\n", b"RCPT TO:<" + rcpt + b">\r\n",
        b"DATA\r\n", body + b".\r\n", b"RSET\r\n", b"NOOP\r\n", b"VRFY user\r\n",
        b"HELP\r\n", b"QUIT\r\n", b"STARTTLS\r\n", b"AUTH PLAIN\r\n", b"*\r\n",
        b"AUTH PLAIN " + b64(b"\0" + ALICE.encode() + b"\0" + ALICE_PW.encode()).encode() + b"\r\n",
        b"AUTH PLAIN " + b64(rng.randbytes(rng.randrange(1, 40))).encode() + b"\r\n",
        b"AUTH LOGIN\r\n", b"AUTH LOGIN " + b64(ALICE.encode()).encode() + b"\r\n",
        b"BDAT %d\r\n" % rng.randrange(0, 300), b"BDAT %d LAST\r\n" % rng.randrange(0, 300),
        b"BDAT 0 LAST\r\n", b"EXPN list\r\n",
    ]
    out = []
    if rng.random() < 0.6:              # get past the envelope, to reach content
        out += [b"EHLO fuzz.test\r\n", b"MAIL FROM:<a@localhost>\r\n",
                b"RCPT TO:<user@localhost>\r\n"]
        if rng.random() < 0.5:
            out.append(b"DATA\r\n")
            if rng.random() < 0.8:
                out.append(WAIT_354)    # as a client should (RFC 2920)
            for _ in range(rng.randint(0, 8)):
                out.append(rng.choice([b"line\r\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r",
                                       b"..\r\n", b"\r\n", b"Received: x\r\n",
                                       rng.randbytes(rng.randrange(1, 200))]))
            if rng.random() < 0.7:
                out.append(b"\r\n.\r\n")
        elif rng.random() < 0.5:
            n = rng.randrange(0, 200)
            out.append(b"BDAT %d%s\r\n" % (n, rng.choice([b"", b" LAST"])))
            out.append(rng.randbytes(n + rng.choice([0, 0, 0, -1, 1, 5])))
    for _ in range(rng.randint(1, 25)):
        k = rng.randrange(100)
        if k < 55:
            out.append(rng.choice(valid))
        elif k < 75:
            out.append(mutate(rng, rng.choice(valid)))
        elif k < 80:
            out.append(b"A" * rng.choice([510, 511, 512, 600, 5000, 70000]) + b"\r\n")
        elif k < 85:
            out.append(rng.randbytes(rng.randrange(1, 300)))
        elif k < 90:                    # a handshake that is not one
            out.append(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rng.randbytes(60))
        elif k < 95:
            out.append(rng.choice([b"\n", b"\r", b"\r\r\n", b"\n.\n", b"\r\n.\n",
                                   b".\r\n", b"\0\r\n"]))
        else:
            out.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 50))))
    if WAIT_354 in out:
        return out
    if rng.random() < 0.3:              # all of it in one packet
        out = [b"".join(out)]
    elif rng.random() < 0.1:            # one byte at a time (short sessions only)
        joined = b"".join(out)[:400]
        out = [joined[i:i + 1] for i in range(len(joined))]
    return out


def wait_354(s):
    got = b""
    while b"\r\n354 " not in b"\r\n" + got:
        try:
            data = s.recv(65536)
        except (socket.timeout, OSError):
            return
        if not data:
            return
        got += data


def run_session(port, rng, use_tls_port=None):
    sends = pieces(rng)
    cut = rng.random() < 0.2            # drop the connection part way
    if cut:
        sends = sends[:rng.randrange(len(sends) + 1)]
    s = socket.create_connection((petrel.HOST, port), timeout=T(10))
    try:
        s.settimeout(T(10))
        for chunk in sends:
            if chunk is WAIT_354:
                wait_354(s)
                continue
            try:
                s.sendall(chunk)
            except OSError:
                return "closed by server while sending"
        if cut:
            return "dropped"
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            return "closed by server"
        # the daemon must end the session once the client has sent all
        while True:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                return "reset"
            except socket.timeout:
                raise AssertionError("session still open %ss after the client "
                                     "finished sending: %r" % (T(10), sends[:6]))
            if not data:
                return "closed"
    finally:
        s.close()


def check_alive(d):
    assert d.proc.poll() is None, "petreld died (exit %s)" % d.proc.returncode
    with d.client() as c:
        c.cmd("EHLO check.test", 250)
        c.cmd("QUIT", 221)


def test_random_sessions_never_hurt_the_daemon():
    sec = secrets_dir()
    with Daemon(settings={"tls_cert_file": sec["cert"], "tls_key_file": sec["key"],
                          "auth_passwords": sec["passwd"], "smtp_timeout": 30,
                          "message_size_limit": 100000,
                          # erring sessions are the point here: no tarpit
                          "error_sleep_time": 0},
                listener={"tls": "starttls", "auth": True}) as d:
        errors, ends, acked = [], {}, []
        lock = threading.Lock()

        def client(n):
            rng = random.Random(1000 + n)
            for i in range(SESSIONS // CLIENTS):
                try:
                    how = run_session(d.port, rng)
                    with lock:
                        ends[how] = ends.get(how, 0) + 1
                except Exception as e:  # noqa: B902
                    with lock:
                        errors.append(repr(e)[:300])
                if i % 25 == 0:         # a well-formed message between the random ones
                    tok = "fuzz-%d-%d" % (n, i)
                    try:
                        with d.client() as c:
                            c.ehlo()
                            q = c.send_mail("a@localhost", ["fuzzcheck@localhost"],
                                            make_message(tok))
                        with lock:
                            acked.append((q, tok))
                    except Exception as e:  # noqa: B902
                        with lock:
                            errors.append("valid message: " + repr(e)[:300])

        threads = [petrel.start_thread(client, n) for n in range(CLIENTS)]
        for t in threads:
            t.join(T(300))
        assert not any(t.is_alive() for t in threads), "clients still running"
        petrel.diag("session ends: %s" % sorted(ends.items()))
        assert not errors, "%d errors, e.g. %s" % (len(errors), errors[:3])
        check_alive(d)
        got = d.wait_delivered("fuzzcheck", len(acked), timeout=30)
        by_qid = {petrel.qid_of_file(g): g for g in got}
        for q, tok in acked:
            assert q in by_qid, "acknowledged %s (%s) not delivered" % (q, tok)
            assert petrel.Delivered(by_qid[q]).body == petrel.to_lf(make_message(tok))
        time.sleep(0.2)
        check_alive(d)


# ---------------------------------------------------------------------------
# random MIME through the filters

RULES = r"""# test_fuzz.py: a rule of every kind, so that random MIME reaches them all
header Subject /reject-me/ reject
header * /^x-hold: yes$/i hold
header X-Remove /./ remove
header Subject /add-one/ add X-Added: yes
body /needle/ reject 550 5.7.1 body needle
body /tempme/ tempfail
mime-type /^application\/x-msdownload$/ reject
filename /\.exe$/i reject 550 5.7.1 no exe
filename /\.(zip|rar)$/i log
sender /^drop@/ discard
recipient /^redir@/ redirect user@localhost
"""


def random_text(rng, n):
    words = [b"hello"] * 30 + [b"needle", b"tempme", b"=?utf-8?b?w7w=?=", b"=?x?q?bad", b"caf\xc3\xa9",
             b"\xff\xfe", b"=3D", b"=ZZ", b"=\r\n", b"..", b".", b"-- ", b"\t"]
    return b" ".join(rng.choice(words) for _ in range(n))


def random_part(rng, depth):
    kind = rng.randrange(6)
    if depth > 0 and kind == 0:
        bnd = rng.choice([b"b%d" % rng.randrange(1000), b"", b"x" * 80, b"a b", b"=_?"])
        inner = b""
        for _ in range(rng.randint(0, 4)):
            inner += b"--" + bnd + rng.choice([b"\r\n", b"  \r\n", b"--\r\n"]) + random_part(rng, depth - 1)
        if rng.random() < 0.7:
            inner += b"--" + bnd + b"--\r\n"
        ct = rng.choice([b"multipart/mixed", b"multipart/alternative", b"multipart/x-weird"])
        return (b"Content-Type: " + ct + b"; boundary=\"" + bnd + b"\"\r\n\r\n"
                + random_text(rng, rng.randrange(5)) + b"\r\n" + inner)
    cte = rng.choice([b"base64", b"quoted-printable", b"7bit", b"8bit", b"x-unknown", b""])
    ct = rng.choice([b"text/plain; charset=utf-8"] * 4 + [b"text/html", b"application/x-msdownload",
                     b"application/octet-stream", b"image/png", b"text/plain; charset=\"",
                     b"message/rfc822", b""])
    fn = rng.choice([b""] * 6 + [b'; filename="a.exe"', b"; filename*=utf-8''%E2%82%AC.zip",
                     b"; filename*0=\"part\"; filename*1=\".exe\"",
                     b'; filename="=?utf-8?b?YS5leGU=?="', b"; filename=\"unterminated"])
    head = b""
    if ct:
        head += b"Content-Type: " + ct + b"\r\n"
    if cte:
        head += b"Content-Transfer-Encoding: " + cte + b"\r\n"
    if fn:
        head += b"Content-Disposition: attachment" + fn + b"\r\n"
    body = random_text(rng, rng.randrange(40))
    if cte == b"base64" and rng.random() < 0.7:
        body = base64.encodebytes(body).replace(b"\n", b"\r\n")
        if rng.random() < 0.3:
            body = body[:len(body) // 2] + b"!!**" + body[len(body) // 2:]
    return head + b"\r\n" + body + b"\r\n"


def random_message(rng, n):
    subject = rng.choice([b"plain"] * 6 + [b"add-one"] * 3 + [
        b"reject-me", b"=?utf-8?q?reject-me?=", b"=?utf-8?b?cmVqZWN0LW1l?=", b"=?bad?",
        b"caf\xc3\xa9 add-one"])
    head = b"Subject: " + subject + b"\r\nX-Fuzz: %d\r\n" % n
    if rng.random() < 0.1:
        head += b"X-Hold: yes\r\n"
    if rng.random() < 0.2:
        head += b"X-Remove: this\r\n"
    if rng.random() < 0.1:
        head += b"X-Long: " + b"y" * 900 + b"\r\n"
    if rng.random() < 0.05:       # nested past any sane depth
        part = b"Content-Type: text/plain\r\n\r\ndeep\r\n"
        for i in range(70):
            part = (b"Content-Type: multipart/mixed; boundary=\"d%d\"\r\n\r\n--d%d\r\n" % (i, i)
                    + part + b"--d%d--\r\n" % i)
        return head + b"MIME-Version: 1.0\r\n" + part
    return head + b"MIME-Version: 1.0\r\n" + random_part(rng, rng.randint(0, 4))


def dot_stuff(data):
    return b"\r\n".join((b"." + l if l.startswith(b".") else l) for l in data.split(b"\r\n"))


def test_random_mime_through_the_filters():
    from test_regex import regex_daemon
    with regex_daemon(RULES) as d:
        outcomes, errors = [], []
        lock = threading.Lock()

        def client(k):
            rng = random.Random(500 + k)
            for i in range(150):
                n = k * 1000 + i
                sender = rng.choice(["a@localhost", "drop@localhost"])
                rcpt = rng.choice(["user@localhost", "redir@localhost"])
                data = random_message(rng, n)
                try:
                    with d.client() as c:
                        c.ehlo()
                        c.cmd("MAIL FROM:<%s>" % sender, 250)
                        c.cmd("RCPT TO:<%s>" % rcpt, 250)
                        c.cmd("DATA", 354)
                        c.send(dot_stuff(data) + b"\r\n.\r\n")
                        r = c.reply()
                        with lock:
                            outcomes.append((n, r.code, r.qid if r.code == 250 else None))
                except Exception as e:  # noqa: B902
                    with lock:
                        errors.append("%d: %r" % (n, e))

        threads = [petrel.start_thread(client, k) for k in range(2)]
        for t in threads:
            t.join(T(300))
        assert not errors, "%d errors, e.g. %s" % (len(errors), errors[:3])
        check_alive(d)
        codes = {}
        for _, code, _ in outcomes:
            codes[code] = codes.get(code, 0) + 1
        petrel.diag("replies: %s" % sorted(codes.items()))
        assert set(codes) <= {250, 451, 550}, codes
        # every 250 is either held, discarded, or delivered
        accepted = [q for _, code, q in outcomes if code == 250]
        log = d.log_text()
        kept = [q for q in accepted if (q + ": hold:") not in log and (q + ": discard:") not in log]
        deadline = time.monotonic() + T(30)
        while True:
            have = set()
            for f in d.all_delivered_files():
                with open(f, "rb") as fh:
                    have.add(petrel.qid_of_file(fh.read()))
            missing = [q for q in kept if q not in have]
            if not missing:
                break
            assert time.monotonic() < deadline, "accepted, not delivered: %s" % missing[:5]
            time.sleep(0.2)


if __name__ == "__main__":
    petrel.main()
