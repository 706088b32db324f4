#!/usr/bin/env python3
"""TLS and AUTH on the relay side (issue 8, items 3 and 5): the smtp
transport's STARTTLS policy (none/may/encrypt/verify, module default and
per route), certificate checks against a test CA (tls_ca_file) and the
host name, a smarthost that is a second real petreld with STARTTLS or
implicit TLS and AUTH, the credentials file's mode, a wrong password,
and a raw TLS peer that says one thing before STARTTLS and another
after it (RFC 3207 4.2: nothing from before the handshake is trusted).

Certificates are made here with the openssl command, in the test's temp
dir: a CA, server certificates signed by it with a subjectAltName, and
self-signed ones.  Host names resolve through a real dnsmasq (the
`resolver` setting); every peer listens on loopback.

LinePeer, a minimal SMTP server on a raw socket (with STARTTLS by
Python's ssl), records every command line exactly as it arrived; the
DSN tests (test_relay_dsn.py) use it too."""

import contextlib
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, make_message, T  # noqa: E402
import relaypeers  # noqa: E402
from relaypeers import Dns, Peer  # noqa: E402

USER, PASSWORD = "relayuser", "s3cret:with colon"


# ---------------------------------------------------------------------------
# certificates

def _openssl(*args):
    openssl = shutil.which("openssl")
    if not openssl:
        petrel.skip("openssl command not installed")
    p = subprocess.run([openssl] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise petrel.HarnessError("openssl %s failed: %s" % (args[0], p.stderr.decode()))


def make_ca(directory):
    """A test CA: (cert, key) paths."""
    cert, key = os.path.join(directory, "ca.pem"), os.path.join(directory, "ca.key")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", cert, "-days", "2",
             "-subj", "/CN=petrel test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def make_server_cert(directory, ca, name, tag="srv", more_names=()):
    """A server certificate for DNS name `name` (and more_names), signed
    by ca = (cert, key): (cert, key) paths."""
    key = os.path.join(directory, tag + ".key")
    csr = os.path.join(directory, tag + ".csr")
    cert = os.path.join(directory, tag + ".pem")
    ext = os.path.join(directory, tag + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                "subjectAltName=%s\n" % ",".join("DNS:" + n for n in [name] + list(more_names)))
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", csr, "-subj", "/CN=" + name)
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", ext)
    return cert, key


def server_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


class Secrets:
    """A temp dir with a CA, certificates and password files."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="petrel-bb-rtls-")
        os.chmod(self.dir, 0o755)

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def path(self, name):
        return os.path.join(self.dir, name)

    def credentials(self, user=USER, password=PASSWORD, mode=0o600, name="credentials"):
        p = self.path(name)
        with open(p, "w") as f:
            f.write("%s:%s\n" % (user, password))
        os.chmod(p, mode)
        return p


# ---------------------------------------------------------------------------
# a raw SMTP peer that records command lines

class _Lines:
    """Lines from a socket (plain or TLS) with our own buffer, so we can
    tell whether more input is already waiting (more())."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def readline(self, limit):
        while b"\n" not in self.buf and len(self.buf) < limit:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        i = self.buf.find(b"\n")
        n = i + 1 if 0 <= i < limit else min(limit, len(self.buf))
        line, self.buf = self.buf[:n], self.buf[n:]
        return line

    def more(self):
        if self.buf:
            return True
        self.sock.setblocking(False)
        try:
            chunk = self.sock.recv(65536)
        except (BlockingIOError, ssl.SSLWantReadError):
            chunk = None
        finally:
            self.sock.setblocking(True)
        if chunk:
            self.buf += chunk
            return True
        return False


class LinePeer(relaypeers.Listener):
    """A small SMTP server on host:port, one thread per connection.

    ehlo:      the EHLO keywords offered in clear ("STARTTLS" is added
               when tls_context is given)
    ehlo_tls:  the keywords offered after STARTTLS (default: ehlo)
    inject:    bytes sent right behind the 220 to STARTTLS, in the same
               write (a man in the middle's reply injection)
    Records commands as (under_tls, line) and messages as dicts
    {mail, rcpts, data, tls}; AUTH PLAIN and LOGIN are taken whatever the
    password, and the decoded (authzid, user, password) go to self.auths.
    Replies 250 to everything else it knows."""

    def __init__(self, host="127.0.0.1", port=None, ehlo=("PIPELINING", "8BITMIME"),
                 ehlo_tls=None, tls_context=None, name="linepeer.test", inject=b""):
        super().__init__(host, port)
        self.ehlo = list(ehlo)
        self.ehlo_tls = list(ehlo if ehlo_tls is None else ehlo_tls)
        self.ctx = tls_context
        self.name = name
        self.inject = inject
        self.mail_followed = []     # (under_tls, bytes were waiting behind MAIL)
        self.auths = []
        self.commands = []
        self.messages = []
        self.connections = 0
        self.start()

    def _accepted(self, c):
        with self.lock:
            self.connections += 1
        threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, sock):
        try:
            self._session(sock)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def _session(self, sock):
        rf = _Lines(sock)
        tls = False

        def say(text):
            sock.sendall(text.encode() + b"\r\n")

        say("220 %s ESMTP LinePeer" % self.name)
        mail, rcpts = None, []
        while not self.stopping:
            raw = rf.readline(4096)
            if not raw:
                return
            line = raw.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
            with self.lock:
                self.commands.append((tls, line))
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                words = list(self.ehlo_tls if tls else self.ehlo)
                if self.ctx and not tls:
                    words.append("STARTTLS")
                lines = [self.name] + words
                for w in lines[:-1]:
                    say("250-" + w)
                say("250 " + lines[-1])
            elif verb == "HELO":
                say("250 " + self.name)
            elif verb == "STARTTLS" and self.ctx and not tls:
                sock.sendall(b"220 2.0.0 go ahead\r\n" + self.inject)
                sock = self.ctx.wrap_socket(sock, server_side=True)
                rf = _Lines(sock)
                tls = True
                mail, rcpts = None, []
            elif verb == "AUTH":
                self._auth(line, rf, say, tls)
            elif verb == "MAIL":
                # was more sent behind MAIL before we replied?  (only a
                # client that pipelines does that)
                time.sleep(0.1)
                with self.lock:
                    self.mail_followed.append((tls, rf.more()))
                mail, rcpts = line, []
                say("250 2.1.0 Ok")
            elif verb == "RCPT":
                rcpts.append(line)
                say("250 2.1.5 Ok")
            elif verb == "DATA":
                say("354 go on")
                data = b""
                while True:
                    chunk = rf.readline(1 << 20)
                    if not chunk:
                        return
                    if chunk == b".\r\n":
                        break
                    data += chunk[1:] if chunk.startswith(b".") else chunk
                with self.lock:
                    self.messages.append({"mail": mail, "rcpts": rcpts, "data": data,
                                          "tls": tls})
                    n = len(self.messages)
                say("250 2.0.0 Ok: queued as LP%d" % n)
                mail, rcpts = None, []
            elif verb == "RSET":
                mail, rcpts = None, []
                say("250 2.0.0 Ok")
            elif verb == "NOOP":
                say("250 2.0.0 Ok")
            elif verb == "QUIT":
                say("221 2.0.0 Bye")
                return
            else:
                say("502 5.5.2 not here")

    def _auth(self, line, rf, say, tls):
        import base64
        words = line.split()
        mech = words[1].upper() if len(words) > 1 else ""

        def answer(prompt):
            say("334 " + prompt)
            raw = rf.readline(4096).rstrip(b"\r\n")
            with self.lock:
                self.commands.append((tls, raw.decode("ascii", "replace")))
            return base64.b64decode(raw).decode("utf-8", "replace")
        if mech == "PLAIN":
            resp = base64.b64decode(words[2]).decode() if len(words) > 2 else answer("")
            parts = resp.split("\0")
            got = (parts + ["", "", ""])[:3]
        elif mech == "LOGIN":
            got = ["", answer("VXNlcm5hbWU6"), answer("UGFzc3dvcmQ6")]
        else:
            say("504 5.5.4 unknown mechanism")
            return
        with self.lock:
            self.auths.append((mech, tuple(got)))
        say("235 2.7.0 Authentication successful")

    def wait_messages(self, n, timeout=20):
        deadline = time.monotonic() + T(timeout)
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            time.sleep(0.05)
        raise AssertionError("LinePeer got %d messages, wanted %d; commands %r"
                             % (len(self.messages), n, self.commands))


# ---------------------------------------------------------------------------
# daemons

def smtp_routes(*routes):
    """The routes setting sending each (domain, nexthop[, tls]) by the
    smtp transport, in that order; without tls the module's applies."""
    items = []
    for r in routes:
        tls = ' tls = "%s";' % r[2] if len(r) > 2 else ""
        items.append('{ domain = "%s"; transport = "smtp"; nexthop = "%s";%s }' % (r[0], r[1], tls))
    return "routes = ( %s );" % ",\n  ".join(items)


def smarthost_b(sec, more_listeners=()):
    """petreld B, the smarthost: STARTTLS and AUTH on its first listener
    (plus more_listeners), no relay_networks, so mail for remote.test
    (not local to B) needs AUTH; a route hands that domain to B's own
    maildir transport, so what B accepts lands in mail/remote.test/."""
    cert, key = petrel.make_cert(sec.dir, name="smarthost.test")
    passwd = petrel.write_passwd(sec.dir, ["%s:%s" % (USER, petrel.crypt_hash(PASSWORD))],
                                 name="b-passwd")
    return Daemon(settings={"hostname": "smarthost.test", "tls_cert_file": cert,
                            "tls_key_file": key, "auth_passwords": passwd,
                            "domains": ["localhost"], "relay_networks": []},
                  listener={"tls": "starttls", "auth": True},
                  more_listeners=more_listeners,
                  extra='routes = ( { domain = "remote.test"; transport = "maildir"; } );')


def client_a(settings=None, smtp="", extra="", start=True):
    """petreld A: 127.0.0.1 may relay; domains only localhost."""
    s = {"relay_networks": ["127.0.0.0/8"], "domains": ["localhost"],
         "retry_initial": 60, "retry_max": 60}
    s.update(settings or {})
    return Daemon(settings=s, extra=extra, start=start,
                  modules_extra="  smtp = { connect_timeout = 5; %s };" % smtp)


def send(d, rcpt, subject="relay", sender="a@localhost"):
    return petrel.send_one(d.port, sender, [rcpt], make_message(subject))


def status_line(d, qid, rcpt, status, timeout=20):
    return d.wait_log(r"%s: to=<%s>, relay=(\S+), delay=[\d.]+, delays=[\d./]+, "
                      r"dsn=(\d\.\d+\.\d+), status=%s \(([^\n]*)\)"
                      % (qid, re.escape(rcpt), status), timeout=timeout)


# ---------------------------------------------------------------------------
# smarthost: a second petreld

def test_smarthost_starttls_auth_to_second_petreld():
    with Secrets() as sec, smarthost_b(sec) as b:
        # without AUTH, B does not relay remote.test for us
        with b.client() as c:
            c.ehlo()
            c.starttls()
            c.ehlo()
            c.cmd("MAIL FROM:<a@localhost>", 250)
            c.cmd("RCPT TO:<u@remote.test>", 554, "5.7.1")
        creds = sec.credentials()
        with client_a({"relayhost": "[127.0.0.1]:%d" % b.port, "relayhost_tls": "starttls",
                       "relayhost_credentials": creds}) as a:
            qid = send(a, "u@remote.test", subject="via smarthost")
            got = b.wait_delivered("u", 1, domain="remote.test", timeout=20)
            assert b"Subject: via smarthost" in got[0], got[0][:500]
            m = status_line(a, qid, "u@remote.test", "sent")
            assert m.group(1) == "127.0.0.1[127.0.0.1]:%d" % b.port, m.group(0)
            assert m.group(2) == "2.0.0", m.group(0)
            bq = re.search(r"queued as (\S+)", m.group(3))
            assert bq, m.group(0)
            # B: a TLS session, AUTH as our user, and its queue id for it
            b.wait_log(r"TLS connection established from \[127\.0\.0\.1\]:\d+: TLSv1\.[23]")
            b.wait_log(r"client=\[?127\.0\.0\.1\]?\S*, sasl_method=PLAIN, sasl_username=%s"
                       % USER)
            b.wait_log(r"%s: " % bq.group(1).rstrip(")"))
            received = petrel.Delivered(got[0]).received
            assert b"ESMTPSA" in received, received
            # A: TLS to B, authenticated, never the password in a log
            a.wait_log(r"smtp: TLS with 127\.0\.0\.1\[127\.0\.0\.1\]:%d: TLSv1\.[23]" % b.port)
            a.wait_log(r"authenticated to 127\.0\.0\.1\[127\.0\.0\.1\]:%d as %s" % (b.port, USER))
            for d in (a, b):
                assert PASSWORD not in d.log_text()


def test_smarthost_session_reused_under_tls_with_a_large_message():
    # three messages one after the other go over one TLS session with one
    # AUTH (RSET between them, under TLS); the middle one is 3 MB, written
    # through SSL_write's partial writes, and arrives byte for byte
    with Secrets() as sec, smarthost_b(sec) as b:
        creds = sec.credentials()
        big = "".join("line %06d %s\n" % (i, "y" * 60) for i in range(45000))
        bodies = ["small one\n", big, "small two\n"]
        with client_a({"relayhost": "[127.0.0.1]:%d" % b.port, "relayhost_tls": "starttls",
                       "relayhost_credentials": creds},
                      smtp="connection_reuse_time = 60;") as a:
            for i, body in enumerate(bodies):
                qid = petrel.send_one(a.port, "a@localhost", ["u@remote.test"],
                                      make_message("part %d" % i, body=body))
                status_line(a, qid, "u@remote.test", "sent", timeout=60)
                b.wait_delivered("u", i + 1, domain="remote.test", timeout=60)
            got = b.delivered("u", domain="remote.test")
            by_subject = {re.search(rb"Subject: (part \d)", g).group(1): g for g in got}
            body = by_subject[b"part 1"].split(b"\n\n", 1)[1]
            assert body.replace(b"\r\n", b"\n") == big.encode(), (len(body), len(big))
            log = b.log_text()
            assert len(re.findall(r"TLS connection established from", log)) == 1, log
            assert len(re.findall(r"sasl_username=%s" % USER, log)) == 1, log
            assert len(re.findall(r"authenticated to ", a.log_text())) == 1


def test_smarthost_implicit_tls():
    with Secrets() as sec, smarthost_b(sec, more_listeners=[{"tls": "implicit",
                                                             "auth": True}]) as b:
        creds = sec.credentials()
        with client_a({"relayhost": "[127.0.0.1]:%d" % b.ports[1], "relayhost_tls": "implicit",
                       "relayhost_credentials": creds}) as a:
            qid = send(a, "u@remote.test", subject="implicit")
            b.wait_delivered("u", 1, domain="remote.test", timeout=20)
            m = status_line(a, qid, "u@remote.test", "sent")
            assert m.group(1) == "127.0.0.1[127.0.0.1]:%d" % b.ports[1], m.group(0)
            a.wait_log(r"smtp: TLS with 127\.0\.0\.1\[127\.0\.0\.1\]:%d: TLSv1\.[23]" % b.ports[1])
            b.wait_log(r"TLS connection established from \[127\.0\.0\.1\]:\d+: TLSv1\.[23]")
            b.wait_log(r"sasl_method=PLAIN, sasl_username=%s" % USER)


def test_credentials_file_readable_by_others_refused():
    with Secrets() as sec:
        for mode in (0o640, 0o604, 0o660):
            creds = sec.credentials(mode=mode)
            a = client_a({"relayhost": "[127.0.0.1]:2", "relayhost_credentials": creds},
                          start=False)
            p = subprocess.run([petrel.PETRELD, "-t", "-c", a.conf], env=a.env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
            out = p.stdout.decode("utf-8", "replace")
            assert p.returncode != 0, out
            assert re.search(r"relayhost_credentials.*%s: refused: group or others may read or "
                             r"write it \(mode %03o; chmod 600\)" % (re.escape(creds), mode),
                             out), out
            try:
                a.start(timeout=30)
                started = True
            except petrel.DaemonError:
                started = False
            assert not started, "petreld started with credentials mode %03o" % mode
            # a slow (sanitizer) build may still be on its way out: its
            # last word is in the log once it has exited
            a.proc.wait(timeout=petrel.T(30))
            assert "refused: group or others may read" in a.log_text(), a.log_text()
            shutil.rmtree(a.dir, ignore_errors=True)
        # credentials go only over TLS: with relayhost_tls = "none" they
        # never would, and the mail would wait until it expired
        creds = sec.credentials(name="clear")
        a = client_a({"relayhost": "[127.0.0.1]:2", "relayhost_credentials": creds,
                      "relayhost_tls": "none"}, start=False)
        p = subprocess.run([petrel.PETRELD, "-t", "-c", a.conf], env=a.env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        out = p.stdout.decode("utf-8", "replace")
        assert p.returncode != 0 and re.search(
            r"petrel\.conf:\d+: relayhost_credentials: credentials go only over TLS, and "
            r"relayhost_tls is \"none\"", out), out
        shutil.rmtree(a.dir, ignore_errors=True)
        # 0600 and 0400 are fine
        for mode in (0o600, 0o400):
            creds = sec.credentials(mode=mode, name="ok%o" % mode)
            a = client_a({"relayhost": "[127.0.0.1]:2", "relayhost_credentials": creds},
                         start=False)
            p = subprocess.run([petrel.PETRELD, "-t", "-c", a.conf], env=a.env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
            assert p.returncode == 0, p.stdout
            shutil.rmtree(a.dir, ignore_errors=True)


def test_wrong_password_deferred_with_the_smarthost_reply():
    # Postfix defers on a 535 (smtp_sasl_auth_soft_bounce = yes, its
    # default): a wrong password is the sender's operator's mistake, not
    # the recipient's, and bouncing would lose mail a fixed file delivers.
    with Secrets() as sec, smarthost_b(sec) as b:
        creds = sec.credentials(password="not the password")
        with client_a({"relayhost": "[127.0.0.1]:%d" % b.port, "relayhost_tls": "starttls",
                       "relayhost_credentials": creds}) as a:
            qid = send(a, "u@remote.test", subject="bad password")
            m = status_line(a, qid, "u@remote.test", "deferred")
            assert m.group(1) == "127.0.0.1[127.0.0.1]:%d" % b.port, m.group(0)
            assert m.group(2).startswith("4."), m.group(0)
            assert re.search(r"authentication to 127\.0\.0\.1\[127\.0\.0\.1\]:%d failed: 535 5\.7\.8"
                             % b.port, m.group(3)), m.group(0)
            b.wait_log(r"SASL PLAIN authentication failed")
            # A said QUIT before it left (it did not just drop the line)
            m = b.wait_log(r"disconnect from \[127\.0\.0\.1\]:\d+ (.*)")
            assert re.search(r"\bquit=1\b", m.group(1)) and "auth=" in m.group(1), m.group(0)
            assert "lost connection" not in b.log_text()
            time.sleep(0.5)
            assert qid in a.queued()
            assert "status=bounced" not in a.log_text()
            assert a.all_delivered_files() == []           # no report to the sender
            assert b.all_delivered_files() == []


# ---------------------------------------------------------------------------
# tls policy: verify, encrypt, may; route over module

def _dns(**names):
    return Dns(a={n: [ip] for n, ip in names.items()})


def test_verify_refuses_a_self_signed_certificate():
    with Secrets() as sec, _dns(**{"relay.test": "127.0.0.2"}) as dns:
        cert, key = petrel.make_cert(sec.dir, name="relay.test")
        port = relaypeers.free_port("127.0.0.2")
        with Peer("127.0.0.2", port, tls_context=server_context(cert, key)) as p, \
                client_a({"resolver": dns.addr}, smtp='tls = "verify";',
                         extra=smtp_routes(("remote.test", "[relay.test]:%d" % port))) as a:
            qid = send(a, "u@remote.test")
            m = status_line(a, qid, "u@remote.test", "deferred")
            assert m.group(1) == "relay.test[127.0.0.2]:%d" % port, m.group(0)
            assert m.group(2) == "4.7.5", m.group(0)
            assert re.search(r"TLS with relay\.test\[127\.0\.0\.2\]:%d: certificate verification "
                             r"failed: self[- ]signed certificate" % port, m.group(3)), m.group(0)
            time.sleep(0.3)
            assert p.messages == [], p.messages
            assert qid in a.queued()


def test_verify_accepts_a_certificate_from_the_configured_ca():
    # a bracketed next hop (the name checked is relay.test) and the MX of
    # viamx.test (the name checked is the MX host's), one peer for both
    port = relaypeers.free_port("127.0.0.2")
    with Secrets() as sec, Dns(mx={"viamx.test": [(10, "mx1.viamx.test")]},
                               a={"relay.test": ["127.0.0.2"],
                                  "mx1.viamx.test": ["127.0.0.2"]}) as dns:
        ca = make_ca(sec.dir)
        cert, key = make_server_cert(sec.dir, ca, "relay.test", more_names=["mx1.viamx.test"])
        with Peer("127.0.0.2", port, tls_context=server_context(cert, key)) as p, \
                client_a({"resolver": dns.addr},
                         smtp='tls = "verify"; tls_ca_file = "%s"; port = %d;' % (ca[0], port),
                         extra=smtp_routes(("remote.test", "[relay.test]:%d" % port))) as a:
            qid = send(a, "u@remote.test", subject="verified")
            p.wait_messages(1)
            m = status_line(a, qid, "u@remote.test", "sent")
            assert m.group(1) == "relay.test[127.0.0.2]:%d" % port, m.group(0)
            a.wait_log(r"smtp: TLS with relay\.test\[127\.0\.0\.2\]:%d: TLSv1\.[23] \S+, verified"
                       % port)
            q2 = send(a, "u@viamx.test", subject="verified by MX")
            p.wait_messages(2)
            m = status_line(a, q2, "u@viamx.test", "sent")
            assert m.group(1) == "mx1.viamx.test[127.0.0.2]:%d" % port, m.group(0)
            a.wait_log(r"smtp: TLS with mx1\.viamx\.test\[127\.0\.0\.2\]:%d: TLSv1\.[23] \S+, "
                       r"verified" % port)


def test_verify_without_tls_ca_file_uses_the_system_store():
    # the same certificate, but no tls_ca_file: the system's store does
    # not know the test CA, so the chain does not verify
    with Secrets() as sec, _dns(**{"relay.test": "127.0.0.2"}) as dns:
        ca = make_ca(sec.dir)
        cert, key = make_server_cert(sec.dir, ca, "relay.test")
        port = relaypeers.free_port("127.0.0.2")
        with Peer("127.0.0.2", port, tls_context=server_context(cert, key)) as p, \
                client_a({"resolver": dns.addr}, smtp='tls = "verify";',
                         extra=smtp_routes(("remote.test", "[relay.test]:%d" % port))) as a:
            qid = send(a, "u@remote.test")
            m = status_line(a, qid, "u@remote.test", "deferred")
            assert re.search(r"certificate verification failed: unable to get local issuer "
                             r"certificate", m.group(3)), m.group(0)
            time.sleep(0.3)
            assert p.messages == []


def test_verify_refuses_a_host_name_mismatch():
    # a certificate from the trusted CA, but for another name
    with Secrets() as sec, _dns(**{"relay.test": "127.0.0.2"}) as dns:
        ca = make_ca(sec.dir)
        cert, key = make_server_cert(sec.dir, ca, "other.test")
        port = relaypeers.free_port("127.0.0.2")
        with Peer("127.0.0.2", port, tls_context=server_context(cert, key)) as p, \
                client_a({"resolver": dns.addr},
                         smtp='tls = "verify"; tls_ca_file = "%s";' % ca[0],
                         extra=smtp_routes(("remote.test", "[relay.test]:%d" % port))) as a:
            qid = send(a, "u@remote.test")
            m = status_line(a, qid, "u@remote.test", "deferred")
            assert re.search(r"certificate verification failed: [Hh]ostname mismatch", m.group(3)), \
                m.group(0)
            time.sleep(0.3)
            assert p.messages == []


def test_encrypt_may_and_a_route_over_the_module_default():
    # one peer that offers no STARTTLS; the module says "encrypt", one
    # route says "may": mail for that route goes in clear, the rest waits.
    # The log names the server that failed (relay=), or relay=none when
    # no server was reached, as Postfix's does.
    port = relaypeers.free_port("127.0.0.2")
    closed = relaypeers.free_port("127.0.0.3")
    routes = smtp_routes(("clear.test", "[127.0.0.2]:%d" % port, "may"),
                         ("strict.test", "[127.0.0.2]:%d" % port),
                         ("closed.test", "[127.0.0.3]:%d" % closed))
    with Peer("127.0.0.2", port) as p, \
            client_a(smtp='tls = "encrypt";', extra=routes) as a:
        q1 = send(a, "u@strict.test", subject="strict")
        m = status_line(a, q1, "u@strict.test", "deferred")
        assert m.group(1) == "127.0.0.2[127.0.0.2]:%d" % port, m.group(0)
        assert m.group(2) == "4.7.4", m.group(0)
        assert "TLS is required but 127.0.0.2[127.0.0.2]:%d does not offer STARTTLS" % port \
            in m.group(3), m.group(0)
        q2 = send(a, "u@clear.test", subject="clear")
        msgs = p.wait_messages(1)
        assert msgs[0][1] == ["u@clear.test"], msgs
        status_line(a, q2, "u@clear.test", "sent")
        assert "smtp: TLS with" not in a.log_text()
        assert q1 in a.queued() and len(p.messages) == 1
        q3 = send(a, "u@closed.test", subject="refused")
        m = status_line(a, q3, "u@closed.test", "deferred")
        assert m.group(1) == "none" and "connect to 127.0.0.3[127.0.0.3]:%d" % closed \
            in m.group(3), m.group(0)
        # the destination is dead now: the next message is deferred at
        # once, with the same reason and relay
        q4 = send(a, "v@strict.test", subject="strict again")
        m = status_line(a, q4, "v@strict.test", "deferred")
        assert m.group(1) == "127.0.0.2[127.0.0.2]:%d" % port, m.group(0)


def test_route_verify_over_module_may():
    # the other way round: the module says "may" (which would take any
    # certificate), a route asks for "verify"
    with Secrets() as sec:
        cert, key = petrel.make_cert(sec.dir, name="127.0.0.2")
        port = relaypeers.free_port("127.0.0.2")
        routes = smtp_routes(("strict.test", "[127.0.0.2]:%d" % port, "verify"),
                             ("lax.test", "[127.0.0.2]:%d" % port))
        with Peer("127.0.0.2", port, tls_context=server_context(cert, key)) as p, \
                client_a(smtp='tls = "may";', extra=routes) as a:
            q1 = send(a, "u@strict.test")
            m = status_line(a, q1, "u@strict.test", "deferred")
            assert "certificate verification failed" in m.group(3), m.group(0)
            q2 = send(a, "u@lax.test")
            p.wait_messages(1)
            status_line(a, q2, "u@lax.test", "sent")
            a.wait_log(r"smtp: TLS with 127\.0\.0\.2\[127\.0\.0\.2\]:%d: TLSv1\.[23] \S+\n" % port)


def test_none_never_says_starttls():
    # tls = "none" in the module: no STARTTLS even when offered; a route
    # with tls = "may" to the same peer uses it
    with Secrets() as sec:
        cert, key = petrel.make_cert(sec.dir, name="127.0.0.2")
        port = relaypeers.free_port("127.0.0.2")
        routes = smtp_routes(("plain.test", "[127.0.0.2]:%d" % port),
                             ("tls.test", "[127.0.0.2]:%d" % port, "may"))
        with LinePeer("127.0.0.2", port, tls_context=server_context(cert, key)) as p, \
                client_a(smtp='tls = "none";', extra=routes) as a:
            q1 = send(a, "u@plain.test", subject="plain")
            msgs = p.wait_messages(1)
            status_line(a, q1, "u@plain.test", "sent")
            assert not msgs[0]["tls"] and not any(l.upper() == "STARTTLS" for _, l in p.commands), \
                p.commands
            q2 = send(a, "u@tls.test", subject="tls")
            msgs = p.wait_messages(2)
            status_line(a, q2, "u@tls.test", "sent")
            assert msgs[1]["tls"], msgs[1]


def test_may_retries_in_clear_after_a_failed_handshake():
    # The peer offers STARTTLS but its TLS stops at 1.1 (we ask for 1.2 or
    # later): the handshake fails.  "may" connects again and sends in
    # clear, as Postfix's "may" does; "encrypt" defers.
    with Secrets() as sec:
        cert, key = petrel.make_cert(sec.dir, name="127.0.0.2")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.minimum_version = ssl.TLSVersion.TLSv1
                ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        except (ValueError, ssl.SSLError) as e:
            petrel.skip("cannot make a TLS 1.1 server here: %s" % e)
        port = relaypeers.free_port("127.0.0.2")
        routes = smtp_routes(("lax.test", "[127.0.0.2]:%d" % port),
                             ("strict.test", "[127.0.0.2]:%d" % port, "encrypt"))
        with LinePeer("127.0.0.2", port, tls_context=ctx) as p, \
                client_a(smtp='tls = "may";', extra=routes) as a:
            q1 = send(a, "u@lax.test", subject="in clear")
            msgs = p.wait_messages(1)
            assert not msgs[0]["tls"], msgs
            status_line(a, q1, "u@lax.test", "sent")
            a.wait_log(r"smtp: TLS handshake with 127\.0\.0\.2\[127\.0\.0\.2\]:%d failed: .*; "
                       r"trying again without TLS" % port)
            # the retry did not say STARTTLS again
            starttls = [l for tls, l in p.commands if l.upper() == "STARTTLS"]
            assert len(starttls) == 1 and p.connections == 2, (p.connections, p.commands)
            q2 = send(a, "u@strict.test", subject="must be encrypted")
            m = status_line(a, q2, "u@strict.test", "deferred")
            assert m.group(2) == "4.7.5" and "TLS handshake with 127.0.0.2" in m.group(3), \
                m.group(0)
            time.sleep(0.3)
            assert len(p.messages) == 1


# ---------------------------------------------------------------------------
# nothing from before the handshake counts after it

@contextlib.contextmanager
def tls_peer_pair(first, second):
    """Two LinePeers with STARTTLS (one certificate, for 127.0.0.2) on
    127.0.0.2 and 127.0.0.3, and client A routing to them with
    tls = "encrypt".  first, second: (domain routed to that peer, EHLO
    keywords in clear, EHLO keywords under TLS).  Yields (p1, p2, a)."""
    (dom1, ehlo1, tls1), (dom2, ehlo2, tls2) = first, second
    with Secrets() as sec:
        cert, key = petrel.make_cert(sec.dir, name="127.0.0.2")
        ctx = server_context(cert, key)
        port = relaypeers.free_port("127.0.0.2")
        port2 = relaypeers.free_port("127.0.0.3")
        routes = smtp_routes((dom1, "[127.0.0.2]:%d" % port), (dom2, "[127.0.0.3]:%d" % port2))
        with LinePeer("127.0.0.2", port, ehlo=ehlo1, ehlo_tls=tls1, tls_context=ctx) as p1, \
                LinePeer("127.0.0.3", port2, ehlo=ehlo2, ehlo_tls=tls2, tls_context=ctx) as p2, \
                client_a(smtp='tls = "encrypt";', extra=routes) as a:
            yield p1, p2, a


def test_post_tls_ehlo_decides_size():
    # In clear the peer says SIZE 100 (our message is larger: it would
    # bounce with 5.3.4); under TLS it says SIZE 1000000.  Then the other
    # way round, where the post-TLS SIZE 100 must bounce it.
    with tls_peer_pair(("small-first.test", ["SIZE 100", "DSN"], ["SIZE 1000000"]),
                       ("small-later.test", ["SIZE 1000000"], ["SIZE 100"])) as (p1, p2, a):
        q1 = petrel.send_one(a.port, "a@localhost", ["u@small-first.test"],
                             make_message("big", body="x" * 400 + "\n"),
                             params="RET=HDRS")
        msgs = p1.wait_messages(1)
        assert msgs[0]["tls"], msgs
        status_line(a, q1, "u@small-first.test", "sent")
        # DSN was offered only in clear: no DSN parameter under TLS
        assert "RET=" not in msgs[0]["mail"] and "SIZE=" in msgs[0]["mail"], msgs[0]
        assert not any(tls is False and l.upper().startswith(("MAIL", "RCPT"))
                       for tls, l in p1.commands), p1.commands
        # EHLO again after the handshake, as RFC 3207 4.2 asks
        assert [l.split()[0] for tls, l in p1.commands if tls][:1] == ["EHLO"], p1.commands
        q2 = petrel.send_one(a.port, "a@localhost", ["u@small-later.test"],
                             make_message("big", body="x" * 400 + "\n"))
        m = status_line(a, q2, "u@small-later.test", "bounced")
        assert m.group(2) == "5.3.4", m.group(0)
        assert "exceeds the limit 100 of 127.0.0.3" in m.group(3), m.group(0)
        assert p2.messages == []


def test_bytes_after_the_starttls_reply_are_dropped():
    # A reply injected in clear behind the 220 (in the same segment) must
    # not be read as the answer to the EHLO we send under TLS.
    with Secrets() as sec:
        cert, key = petrel.make_cert(sec.dir, name="127.0.0.2")
        port = relaypeers.free_port("127.0.0.2")
        inject = b"250-evil.test\r\n250 SIZE 10\r\n"
        with LinePeer("127.0.0.2", port, ehlo=["PIPELINING"], tls_context=server_context(cert, key),
                      inject=inject) as p, \
                client_a(smtp='tls = "encrypt";',
                         extra=smtp_routes(("remote.test", "[127.0.0.2]:%d" % port))) as a:
            qid = send(a, "u@remote.test", subject="after injection")
            msgs = p.wait_messages(1)
            assert msgs[0]["tls"] and b"Subject: after injection" in msgs[0]["data"], msgs
            status_line(a, qid, "u@remote.test", "sent")
            a.wait_log(r"smtp: 127\.0\.0\.2\[127\.0\.0\.2\]:%d sent %d bytes after its STARTTLS "
                       r"reply; dropped" % (port, len(inject)))
            # the EHLO under TLS got the real reply: nothing went out of step
            tls_cmds = [l.split()[0].upper() for tls, l in p.commands if tls]
            assert tls_cmds[:2] == ["EHLO", "MAIL"], p.commands


def test_auth_mechanism_from_the_post_tls_ehlo():
    # In clear the peer offers AUTH PLAIN LOGIN (and no credentials may go
    # there); under TLS only AUTH LOGIN: the client must use LOGIN, the
    # password (with its colon) intact.
    with Secrets() as sec:
        cert, key = petrel.make_cert(sec.dir, name="127.0.0.2")
        port = relaypeers.free_port("127.0.0.2")
        creds = sec.credentials()
        with LinePeer("127.0.0.2", port, ehlo=["PIPELINING", "AUTH PLAIN LOGIN"],
                      ehlo_tls=["PIPELINING", "AUTH LOGIN"],
                      tls_context=server_context(cert, key)) as p, \
                client_a({"relayhost": "[127.0.0.2]:%d" % port, "relayhost_tls": "starttls",
                          "relayhost_credentials": creds}) as a:
            qid = send(a, "u@remote.test", subject="login")
            p.wait_messages(1)
            status_line(a, qid, "u@remote.test", "sent")
            assert p.auths == [("LOGIN", ("", USER, PASSWORD))], p.auths
            assert not any(l.upper().startswith("AUTH") for tls, l in p.commands if not tls), \
                p.commands
            assert PASSWORD not in a.log_text()


def test_post_tls_ehlo_decides_pipelining():
    # PIPELINING offered only in clear: under TLS the client must wait for
    # each reply.  The control peer offers it only under TLS, and there
    # RCPT and DATA must follow MAIL at once (which shows the peer can
    # tell).
    with tls_peer_pair(("clear-only.test", ["PIPELINING"], ["8BITMIME"]),
                       ("tls-only.test", ["8BITMIME"], ["PIPELINING"])) as (p1, p2, a):
        q1 = petrel.send_one(a.port, "a@localhost", ["u@clear-only.test", "v@clear-only.test"],
                             make_message("no pipelining"))
        q2 = petrel.send_one(a.port, "a@localhost", ["u@tls-only.test", "v@tls-only.test"],
                             make_message("pipelining"))
        p1.wait_messages(1)
        p2.wait_messages(1)
        status_line(a, q1, "u@clear-only.test", "sent")
        status_line(a, q2, "u@tls-only.test", "sent")
        assert p1.mail_followed == [(True, False)], p1.mail_followed
        assert p2.mail_followed == [(True, True)], p2.mail_followed


if __name__ == "__main__":
    petrel.main()
