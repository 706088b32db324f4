#!/usr/bin/env python3
"""TLS (STARTTLS, RFC 3207, and implicit TLS) and SMTP AUTH (RFC 4954,
PLAIN and LOGIN) against the real daemon, with real TLS: a self-signed
certificate made here with `openssl req`, clients from Python's ssl and
smtplib, raw sockets for what a polite client never does (commands
pipelined behind STARTTLS, garbage instead of a handshake), and swaks.

Every reply code of the issue is checked, with its enhanced code."""

import atexit
import base64
import os
import signal
import pwd
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, make_message, check, T  # noqa: E402

ALICE, ALICE_PW = "alice", "alice's secret"      # yescrypt hash
BOB, BOB_PW = "bob", "b0b-pa55word"              # SHA-512 hash

_shared = {}


def secrets_dir():
    """One temp dir per run: the certificate, its key and a password file."""
    if "dir" not in _shared:
        d = tempfile.mkdtemp(prefix="petrel-bb-tls-")
        atexit.register(shutil.rmtree, d, True)
        os.chmod(d, 0o755)
        _shared["dir"] = d
        _shared["cert"], _shared["key"] = petrel.make_cert(d)
        _shared["passwd"] = write_passwd(d, "passwd", [
            "# petrel test users",
            "",
            "%s:%s" % (ALICE, crypt_hash(ALICE_PW, b"$y$")),
            "  %s:%s  " % (BOB, crypt_hash(BOB_PW, b"$6$")),
        ])
    return _shared


def write_passwd(directory, name, lines):
    return petrel.write_passwd(directory, lines, name)


crypt_hash = petrel.crypt_hash


def tls_daemon(listener=None, settings=None, more_listeners=(), **kw):
    """A daemon with the test key pair and password file set globally."""
    sec = secrets_dir()
    s = {"tls_cert_file": sec["cert"], "tls_key_file": sec["key"],
         "auth_passwords": sec["passwd"]}
    s.update(settings or {})
    lst = {"tls": "starttls", "auth": True}
    lst.update(listener or {})
    return Daemon(settings=s, listener=lst, more_listeners=more_listeners, **kw)


def b64(text):
    if isinstance(text, str):
        text = text.encode()
    return base64.b64encode(text).decode()


plain = petrel.auth_plain


def ehlo_words(reply):
    return [line.split()[0].upper() for line in reply.lines[1:] if line]


def tls_client(d, port=None):
    """EHLO, STARTTLS, EHLO again: a session under TLS."""
    c = d.client(port)
    c.ehlo()
    c.starttls()
    c.ehlo()
    return c


def assert_password_not_logged(d):
    text = d.log_text()
    for pw in (ALICE_PW, BOB_PW, b64(ALICE_PW), b64(BOB_PW), plain(ALICE, ALICE_PW)):
        assert pw not in text, "password %r in the log" % pw


# ---------------------------------------------------------------------------
# STARTTLS

def test_ehlo_offers_starttls_then_auth():
    with tls_daemon() as d, d.client() as c:
        words = ehlo_words(c.ehlo())
        assert "STARTTLS" in words and "AUTH" not in words, words
        # AUTH only under TLS (no auth_cleartext)
        c.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW), 538, "5.7.11")
        c.starttls()
        r = c.ehlo()
        words = ehlo_words(r)
        assert "STARTTLS" not in words, words
        assert "AUTH PLAIN LOGIN" in r.lines, r.lines
        c.cmd("QUIT", 221)
        m = d.wait_log(r"TLS connection established from \[127\.0\.0\.1\]:\d+: "
                       r"(TLSv1\.[23]) with cipher (\S+) \((\d+)/(\d+) bits\)")
        assert int(m.group(3)) >= 128, m.group(0)


def test_starttls_forgets_the_session():
    # RFC 3207 4.2: after the handshake the client starts over with EHLO
    with tls_daemon() as d, d.client() as c:
        c.ehlo()
        c.starttls()
        c.cmd("MAIL FROM:<a@localhost>", 503, "5.5.1")
        c.ehlo()
        qid = c.send_mail("a@localhost", ["user@localhost"], make_message("tls"))
        got = d.wait_delivered("user", 1)[0]
        received = petrel.Delivered(got).received
        assert b"with ESMTPS id " + qid.encode() in received, received
        assert re.search(rb"\(using TLSv1\.[23] with cipher \S+ \(\d+/\d+ bits\)\)",
                         received), received


def test_starttls_command_injection_is_discarded():
    # CVE-2011-0411: a command in the same packet as STARTTLS was sent in
    # clear text; it must never run, not even after the handshake.
    with tls_daemon() as d, d.client() as c:
        c.ehlo()
        c.send(b"STARTTLS\r\nNOOP\r\nMAIL FROM:<evil@localhost>\r\n")
        r = c.reply()
        check(r, 220, "2.0.0", "STARTTLS")
        c.expect_silence(0.3)            # no clear-text reply to NOOP
        c.sock = petrel.tls_context().wrap_socket(c.sock)
        c.expect_silence(0.5)            # ... and none under TLS either
        r = c.cmd("EHLO again.test", 250)
        assert r.lines[0].startswith(petrel.HOSTNAME), r
        c.cmd("RCPT TO:<user@localhost>", 503, "5.5.1")   # no MAIL ran
        c.cmd("QUIT", 221)
        d.wait_log(r"\d+ bytes pipelined after STARTTLS discarded")
        m = d.wait_log(r"disconnect from \[127\.0\.0\.1\]:\d+( .*)")
        assert "noop" not in m.group(1) and "mail" not in m.group(1), m.group(0)
        assert "starttls=1" in m.group(1), m.group(0)


def test_starttls_reply_codes():
    with tls_daemon(more_listeners=[{}]) as d:
        with d.client() as c:
            c.ehlo()
            c.cmd("STARTTLS now", 501, "5.5.4")
            c.cmd("MAIL FROM:<a@localhost>", 250)
            c.cmd("STARTTLS", 503, "5.5.1")          # inside a transaction
            c.cmd("RSET", 250)
            c.starttls()
            c.ehlo()
            c.cmd("STARTTLS", 503, "5.5.1")          # twice
            c.cmd("NOOP", 250)
        # a listener without tls: not offered, not implemented
        with d.client(d.ports[1]) as c:
            assert "STARTTLS" not in ehlo_words(c.ehlo())
            c.cmd("STARTTLS", 502, "5.5.1")
            c.cmd("QUIT", 221)


def test_implicit_tls():
    with tls_daemon(more_listeners=[{"tls": "implicit", "auth": True}]) as d:
        with d.client(d.ports[1], tls=True) as c:
            check(c.greeting, 220)
            r = c.ehlo()
            assert "STARTTLS" not in ehlo_words(r) and "AUTH PLAIN LOGIN" in r.lines, r
            c.cmd("STARTTLS", 503, "5.5.1")
            c.cmd("AUTH PLAIN " + plain(BOB, BOB_PW), 235, "2.7.0")
            qid = c.send_mail("bob@localhost", ["user@localhost"], make_message("465"))
            c.cmd("QUIT", 221)
        got = petrel.Delivered(d.wait_delivered("user", 1)[0]).received
        assert b"with ESMTPSA id " + qid.encode() in got, got
        assert b"(using TLSv1." in got, got
        # a clear-text client on the implicit port gets no greeting
        with d.client(d.ports[1], greet=False) as c:
            c.send(b"EHLO plain.test\r\n")
            c.expect_closed(timeout=10)
        d.wait_log(r"TLS handshake failed from \[127\.0\.0\.1\]:\d+: ")


def test_implicit_tls_with_python_smtp_ssl():
    with tls_daemon(more_listeners=[{"tls": "implicit", "auth": True}]) as d:
        s = smtplib.SMTP_SSL(petrel.HOST, d.ports[1], timeout=T(10),
                             context=petrel.tls_context())
        try:
            s.ehlo("ssl.test")
            s.login(ALICE, ALICE_PW)
            s.sendmail("alice@localhost", ["user@localhost"], make_message("smtp_ssl"))
        finally:
            s.quit()
        got = petrel.Delivered(d.wait_delivered("user", 1)[0]).received
        assert b"with ESMTPSA" in got, got


def test_tls_versions():
    import ssl
    with tls_daemon() as d:
        # TLS 1.2 is accepted
        with d.client() as c:
            c.ehlo()
            c.cmd("STARTTLS", 220)
            ctx = petrel.tls_context()
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            c.sock = ctx.wrap_socket(c.sock)
            assert c.sock.version() == "TLSv1.2", c.sock.version()
            c.ehlo()
            c.cmd("QUIT", 221)
        d.wait_log(r"TLS connection established from \[127\.0\.0\.1\]:\d+: TLSv1\.2 with cipher")
        # TLS 1.1 is not
        with d.client() as c:
            c.ehlo()
            c.cmd("STARTTLS", 220)
            ctx = petrel.tls_context()
            try:
                ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    ctx.minimum_version = ssl.TLSVersion.TLSv1
                    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
            except (ValueError, ssl.SSLError) as e:
                petrel.skip("this client cannot speak TLS 1.1: %s" % e)
            try:
                ctx.wrap_socket(c.sock)
                raise AssertionError("a TLS 1.1 handshake succeeded")
            except (ssl.SSLError, OSError):
                pass
        m = d.wait_log(r"TLS handshake failed from \[127\.0\.0\.1\]:\d+: (.*)")
        petrel.diag("TLS 1.1 refused: " + m.group(1))


def s_client(d, version, script):
    """openssl s_client over STARTTLS; script: lines typed one by one (a
    line "K" asks for a TLS 1.3 key update, "R" for a renegotiation; a
    line starting with "Q" would quit s_client, so say "quit")."""
    openssl = shutil.which("openssl")
    if not openssl:
        petrel.skip("openssl command not installed")
    before = d.log_text().count("TLS connection established")
    p = subprocess.Popen([openssl, "s_client", "-crlf", "-starttls", "smtp",
                          version, "-connect", "%s:%d" % (petrel.HOST, d.port)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + T(10)
        while d.log_text().count("TLS connection established") == before:
            assert time.monotonic() < deadline, "s_client did not get TLS"
            time.sleep(0.05)
        for line in script:
            try:
                p.stdin.write(line.encode() + b"\n")
                p.stdin.flush()
            except BrokenPipeError:
                break                   # s_client gave up: its business
            time.sleep(T(0.4))
        try:
            p.stdin.close()
        except BrokenPipeError:
            pass
        out = p.stdout.read()
        p.wait(timeout=T(10))
        return out.decode("utf-8", "replace")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_key_update_and_renegotiation():
    with tls_daemon() as d:
        # TLS 1.3: a key update in the middle of the session is fine
        out = s_client(d, "-tls1_3", ["EHLO keyupdate.test", "K", "noop", "quit"])
        assert "KEYUPDATE" in out and "250 2.0.0 Ok" in out and "221 2.0.0" in out, out
        d.wait_log(r"disconnect from \S+ ehlo=2 noop=1 quit=1 starttls=1")
        # TLS 1.2: renegotiation is refused (no_renegotiation); s_client
        # then gives up, which ends only its own session
        s_client(d, "-tls1_2", ["EHLO reneg.test", "R", "noop", "quit"])
        d.wait_log(r"TLSv1\.2 with cipher")
        d.wait_log(r"(?s)disconnect from .*disconnect from \S+ ehlo=\d")
        with tls_client(d) as c:
            c.cmd("NOOP", 250)
            c.cmd("QUIT", 221)


def test_broken_handshakes_are_log_lines():
    with tls_daemon(more_listeners=[{"tls": "implicit"}]) as d:
        # garbage after STARTTLS
        with d.client() as c:
            c.ehlo()
            c.cmd("STARTTLS", 220)
            c.send(b"this is not a TLS ClientHello\r\n" * 4)
            c.expect_closed(timeout=10)
        # a ClientHello cut short, then the client leaves
        with d.client(d.ports[1], greet=False) as c:
            c.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            time.sleep(0.2)
        # close right after the 220
        with d.client() as c:
            c.ehlo()
            c.cmd("STARTTLS", 220)
        d.wait_log(r"(?s)TLS handshake failed.*TLS handshake failed.*TLS handshake failed")
        # the daemon is fine
        with tls_client(d) as c:
            c.cmd("NOOP", 250)
            c.cmd("QUIT", 221)


def test_handshake_timeout_is_the_command_timeout():
    with tls_daemon(settings={"smtp_timeout": 2},
                    more_listeners=[{"tls": "implicit"}]) as d:
        t0 = time.monotonic()
        with d.client(d.ports[1], greet=False) as c:
            c.expect_closed(timeout=10)
        took = time.monotonic() - t0
        assert T(1.5) <= took <= T(6), took
        d.wait_log(r"timeout during the TLS handshake from \[127\.0\.0\.1\]:\d+")


# ---------------------------------------------------------------------------
# AUTH

def test_auth_plain_with_smtplib_and_received_header():
    with tls_daemon() as d:
        s = smtplib.SMTP(petrel.HOST, d.port, timeout=T(10))
        try:
            s.ehlo("client.test")
            s.starttls(context=petrel.tls_context())
            s.ehlo("client.test")
            code, text = s.login(ALICE, ALICE_PW)
            assert code == 235 and text.startswith(b"2.7.0"), (code, text)
            s.sendmail("alice@localhost", ["user@localhost"], make_message("authed"))
        finally:
            s.quit()
        got = petrel.Delivered(d.wait_delivered("user", 1)[0]).received
        assert b"with ESMTPSA id " in got, got
        d.wait_log(r"client=\[127\.0\.0\.1\]:\d+, sasl_method=PLAIN, sasl_username=alice\b")
        assert_password_not_logged(d)


def test_auth_plain_dialog_and_sha512_hash():
    with tls_daemon() as d, tls_client(d) as c:
        c.cmd("AUTH PLAIN", 334)
        c.cmd(plain(BOB, BOB_PW), 235, "2.7.0")
        c.cmd("AUTH PLAIN " + plain(BOB, BOB_PW), 503, "5.5.1")   # after success
        c.cmd("QUIT", 221)
        d.wait_log(r"sasl_method=PLAIN, sasl_username=bob\b")


def test_auth_plain_authzid():
    with tls_daemon(settings={"auth_failure_limit": 10}) as d, tls_client(d) as c:
        c.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW, authzid=BOB), 535, "5.7.8")
        c.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW, authzid=ALICE), 235, "2.7.0")
        d.wait_log(r"SASL PLAIN authentication failed: authorization identity differs")


def test_auth_login():
    with tls_daemon() as d:
        with tls_client(d) as c:
            r = c.cmd("AUTH LOGIN", 334)
            assert r.text == "VXNlcm5hbWU6", r          # "Username:"
            r = c.cmd(b64(ALICE), 334)
            assert r.text == "UGFzc3dvcmQ6", r          # "Password:"
            c.cmd(b64(ALICE_PW), 235, "2.7.0")
        # the user name as initial response
        with tls_client(d) as c:
            r = c.cmd("AUTH LOGIN " + b64(BOB), 334)
            assert r.text == "UGFzc3dvcmQ6", r
            c.cmd(b64(BOB_PW), 235, "2.7.0")
        d.wait_log(r"sasl_method=LOGIN, sasl_username=alice\b")
        d.wait_log(r"sasl_method=LOGIN, sasl_username=bob\b")
        assert_password_not_logged(d)


def test_auth_refusals():
    with tls_daemon(settings={"auth_failure_limit": 20}) as d, tls_client(d) as c:
        c.cmd("AUTH PLAIN " + plain(ALICE, "wrong"), 535, "5.7.8")
        c.cmd("AUTH PLAIN " + plain("nobody", "x"), 535, "5.7.8")
        c.cmd("AUTH LOGIN", 334)
        c.cmd(b64(ALICE), 334)
        c.cmd(b64(BOB_PW), 535, "5.7.8")
        c.cmd("AUTH PLAIN", 334)
        c.cmd("*", 501, "5.0.0")                    # cancelled
        c.cmd("AUTH LOGIN", 334)
        c.cmd("*", 501, "5.0.0")
        c.cmd("AUTH PLAIN not-base64!", 501, "5.5.2")
        c.cmd("AUTH PLAIN", 334)
        c.cmd("YWxpY2U", 501, "5.5.2")              # no padding
        c.cmd("AUTH PLAIN =", 535, "5.7.8")         # empty: malformed
        c.cmd("AUTH PLAIN", 334)
        c.cmd("QUFB" * 1000, 500, "5.5.6")          # too long: the dialog ends
        c.cmd("NOOP", 250)
        c.cmd("AUTH CRAM-MD5", 504, "5.5.4")
        c.cmd("AUTH", 501, "5.5.4")
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW), 503, "5.5.1")  # in a transaction
        c.cmd("RSET", 250)
        c.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW), 235, "2.7.0")
        d.wait_log(r"warning: \[127\.0\.0\.1\]:\d+: SASL PLAIN authentication failed")
        d.wait_log(r"warning: \[127\.0\.0\.1\]:\d+: SASL LOGIN authentication failed")
        assert_password_not_logged(d)


def test_auth_before_ehlo_and_when_not_enabled():
    with tls_daemon(more_listeners=[{}]) as d:
        with d.client() as c:
            c.starttls()
            c.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW), 503, "5.5.1")   # no EHLO
        with d.client(d.ports[1]) as c:
            assert "AUTH" not in ehlo_words(c.ehlo())
            c.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW), 503, "5.5.1")


def test_auth_failure_limit_closes_the_session():
    with tls_daemon() as d, tls_client(d) as c:     # the default limit: 3
        c.cmd("AUTH PLAIN " + plain(ALICE, "guess1"), 535, "5.7.8")
        c.cmd("AUTH PLAIN " + plain(ALICE, "guess2"), 535, "5.7.8")
        c.cmd("AUTH PLAIN " + plain(ALICE, "guess3"), 535, "5.7.8")
        c.expect(421, "4.7.0")
        c.expect_closed()
        d.wait_log(r"too many AUTH failures \(3\) from \[127\.0\.0\.1\]:\d+")


def test_auth_failure_limit_setting():
    with tls_daemon(settings={"auth_failure_limit": 1}) as d, tls_client(d) as c:
        c.cmd("AUTH LOGIN " + b64(BOB), 334)
        c.cmd(b64("nope"), 535, "5.7.8")
        c.expect(421, "4.7.0")
        c.expect_closed()


def test_pipelined_commands_wait_for_the_password_check():
    # the hash is checked on a worker thread; MAIL behind it waits its turn
    with tls_daemon() as d, tls_client(d) as c:
        c.send("AUTH PLAIN %s\r\nMAIL FROM:<alice@localhost>\r\n"
               "RCPT TO:<user@localhost>\r\n" % plain(ALICE, ALICE_PW))
        check(c.reply(), 235, "2.7.0")
        check(c.reply(), 250, "2.1.0")
        check(c.reply(), 250, "2.1.5")
        c.data(make_message("pipelined"))
        got = petrel.Delivered(d.wait_delivered("user", 1)[0]).received
        assert b"with ESMTPSA" in got, got


def test_slow_hash_does_not_stop_other_sessions():
    # ~1 s of SHA-512 rounds: checked on the auth workers, not the loop
    d = Daemon(listener={"auth": True, "auth_cleartext": True},
               settings={"auth_passwords": "@PW@"}, start=False)
    slow = petrel.crypt_hash_setting("carol-pw", b"$6$rounds=2000000$saltsaltsalt")
    pw = petrel.write_passwd(d.dir, ["carol:" + slow])
    d.config_text = d.config_text.replace("@PW@", pw)
    with open(d.conf, "w") as f:
        f.write(d.config_text)
    with d:
        d.start()
        with d.client() as a, d.client() as b:
            a.ehlo()
            b.ehlo()
            t0 = time.monotonic()
            a.send("AUTH PLAIN %s\r\n" % plain("carol", "carol-pw"))
            time.sleep(0.05)
            b.cmd("NOOP", 250)
            noop = time.monotonic() - t0
            check(a.reply(), 235, "2.7.0")
            auth = time.monotonic() - t0
        assert auth > 0.3 and noop < auth / 2, (noop, auth)
        petrel.diag("NOOP answered after %.3f s while AUTH took %.3f s" % (noop, auth))


def test_large_transfers_under_tls():
    # many TLS records in, and replies piling up against a small receive
    # buffer: both directions wait on WANT_READ/WANT_WRITE
    body = ("".join("line %06d of a long message over TLS\n" % i for i in range(60000)))
    msg = make_message("big", body)
    # 30000 EHLO are junk commands: allowed here
    with tls_daemon(settings={"junk_command_limit": 100000}) as d:
        with d.client(rcvbuf=4096, timeout=20) as c:
            c.ehlo()
            c.starttls()
            c.ehlo()
            # 7 MB of EHLO replies: more than the kernel buffers, so the
            # server's TLS writes must wait (WANT_WRITE) while it reads on
            n = 30000
            c.send(b"EHLO again.test\r\n" * n)
            time.sleep(0.5)
            for i in range(n):
                check(c.reply(), 250, None, "EHLO %d" % i)
            qids = [c.send_mail("a@localhost", ["user@localhost"], msg)]
            c.cmd("MAIL FROM:<a@localhost>", 250)
            c.cmd("RCPT TO:<user@localhost>", 250)
            c.send(b"BDAT %d LAST\r\n" % len(msg) + msg)
            qids.append(c.expect(250, "2.0.0").qid)
        got = d.wait_delivered("user", 2)
        for qid in qids:
            content = [g for g in got if petrel.qid_of_file(g) == qid]
            assert len(content) == 1, (qid, len(content))
            petrel.assert_delivery(content[0], "a@localhost", "user@localhost", msg, qid)
        assert not re.search(r"TLS (read|handshake) (error|failed)", d.log_text())


def test_auth_cleartext_listener():
    with tls_daemon(listener={"tls": "none", "auth": True, "auth_cleartext": True},
                    settings={"tls_cert_file": None, "tls_key_file": None}) as d:
        with d.client() as c:
            r = c.ehlo()
            assert "AUTH PLAIN LOGIN" in r.lines and "STARTTLS" not in ehlo_words(r), r
            c.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW), 235, "2.7.0")
            c.send_mail("alice@localhost", ["user@localhost"], make_message("clear"))
        got = petrel.Delivered(d.wait_delivered("user", 1)[0]).received
        assert b"with ESMTPA id" in got and b"(using" not in got, got


def test_authenticated_client_may_relay():
    # issue 8 item 6: an authenticated session may relay; the same
    # client without AUTH still may not
    with tls_daemon() as d:
        with tls_client(d) as c:
            c.cmd("MAIL FROM:<alice@localhost>", 250)
            c.cmd("RCPT TO:<someone@elsewhere.test>", 554, "5.7.1")
        with tls_client(d) as c:
            c.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW), 235)
            c.cmd("MAIL FROM:<alice@localhost>", 250)
            c.cmd("RCPT TO:<someone@elsewhere.test>", 250)
            c.cmd("RSET", 250)


def test_swaks_starttls_auth_plain():
    petrel.need_tool("/usr/bin/swaks")
    with tls_daemon() as d:
        p = petrel.run(["/usr/bin/swaks", "--server", "%s:%d" % (petrel.HOST, d.port),
                        "--from", "alice@localhost", "--to", "user@localhost",
                        "--tls", "--auth", "PLAIN", "--auth-user", ALICE,
                        "--auth-password", ALICE_PW, "--helo", "swaks.test"])
        out = p.stdout.decode("utf-8", "replace")
        if "requires Net::SSLeay" in out + p.stderr.decode("utf-8", "replace"):
            petrel.skip("swaks without Net::SSLeay (libnet-ssleay-perl)")
        assert p.returncode == 0, out
        assert "235 2.7.0" in out, out
        got = petrel.Delivered(d.wait_delivered("user", 1)[0]).received
        assert b"with ESMTPSA" in got, got


# ---------------------------------------------------------------------------
# configuration

def check_conf(path):
    env = dict(os.environ)
    env["PETREL_MODULE_PATH"] = petrel.MODULE_PATH
    return petrel.run([petrel.PETRELD, "-t", "-c", path], timeout=15, env=env)


def conf_errors(d):
    p = check_conf(d.conf)
    return p.returncode, p.stdout.decode() + p.stderr.decode()


def line_of(text, needle):
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError("%r not in %r" % (needle, text))


def test_config_tls_without_key_pair():
    d = Daemon(listener={"tls": "starttls"}, start=False)
    rc, out = conf_errors(d)
    want = "%s:%d: listeners[0].tls: TLS needs tls_cert_file and tls_key_file" % (
        d.conf, line_of(d.config_text, "listeners ="))
    assert rc == 1 and want in out, (rc, out)
    shutil.rmtree(d.dir, ignore_errors=True)


def test_config_unreadable_cert_and_bad_key():
    sec = secrets_dir()
    d = Daemon(listener={"tls": "implicit", "tls_cert_file": "/nonexistent/cert.pem",
                         "tls_key_file": sec["key"]}, start=False)
    rc, out = conf_errors(d)
    assert rc == 1 and re.search(
        re.escape(d.conf) + r":\d+: listeners\[0\]\.tls_cert_file: /nonexistent/cert\.pem: "
        r"No such file or directory", out), out
    shutil.rmtree(d.dir, ignore_errors=True)
    # a key that is not one: the global setting's line is named
    d = Daemon(settings={"tls_cert_file": sec["cert"], "tls_key_file": sec["passwd"]},
               listener={"tls": "starttls"}, start=False)
    rc, out = conf_errors(d)
    want = "%s:%d: tls_key_file: %s: not a PEM private key" % (
        d.conf, line_of(d.config_text, "tls_key_file ="), sec["passwd"])
    assert rc == 1 and want in out, (rc, out)
    shutil.rmtree(d.dir, ignore_errors=True)


def test_config_password_file_errors():
    d = Daemon(listener={"auth": True}, start=False)
    rc, out = conf_errors(d)
    assert rc == 1 and "listeners[0].auth: auth = true needs the top-level auth_passwords" \
        in out, out
    assert "listeners[0].auth: AUTH is offered under TLS only: set tls, or " \
        "auth_cleartext = true" in out, out
    shutil.rmtree(d.dir, ignore_errors=True)
    d = Daemon(listener={"auth": True, "auth_cleartext": True}, start=False)
    bad = write_passwd(d.dir, "passwd", [
        "# ok so far",
        "alice:" + crypt_hash("x", b"$6$"),
        "no colon here",
        "bob:not-a-hash",
        "carol:$1$abcdefgh$0123456789abcdefghijkl",
        "",
        "alice:" + crypt_hash("y", b"$6$"),
    ])
    with open(d.conf, "a") as f:
        f.write('auth_passwords = "%s";\n' % bad)
    rc, out = conf_errors(d)
    assert rc == 1, out
    for want in ("%s:3: auth_passwords: expected user:HASH" % bad,
                 "%s:4: auth_passwords: not a crypt(3) hash" % bad,
                 "%s:5: auth_passwords: a legacy hash method" % bad,
                 "%s:7: auth_passwords: user listed twice" % bad):
        assert want in out, (want, out)
    assert re.search(re.escape(d.conf) + r":\d+: auth_passwords: ", out), out
    shutil.rmtree(d.dir, ignore_errors=True)


def test_check_accepts_a_good_tls_auth_config():
    sec = secrets_dir()
    d = Daemon(settings={"tls_cert_file": sec["cert"], "tls_key_file": sec["key"],
                         "auth_passwords": sec["passwd"], "auth_failure_limit": 5},
               listener={"tls": "starttls", "auth": True},
               more_listeners=[{"tls": "implicit", "auth": True, "auth_cleartext": False,
                                "tls_cert_file": sec["cert"], "tls_key_file": sec["key"]}],
               start=False)
    rc, out = conf_errors(d)
    assert rc == 0, out
    shutil.rmtree(d.dir, ignore_errors=True)


def test_root_only_key_works_after_dropping_privileges():
    if os.geteuid() != 0:
        petrel.skip("needs root")
    pw = pwd.getpwnam("nobody")
    keydir = tempfile.mkdtemp(prefix="petrel-bb-key-")
    try:
        os.chmod(keydir, 0o700)
        cert, key = petrel.make_cert(keydir)
        pwfile = write_passwd(keydir, "passwd", ["alice:" + crypt_hash(ALICE_PW, b"$y$")])
        for f in (key, pwfile):
            os.chmod(f, 0o600)
        d = Daemon(settings={"user": "nobody", "tls_cert_file": cert, "tls_key_file": key,
                             "auth_passwords": pwfile},
                   listener={"tls": "starttls", "auth": True}, start=False)
        os.chmod(d.dir, 0o755)
        os.chown(d.mail, pw.pw_uid, pw.pw_gid)
        with d:
            d.start()
            assert "running as nobody" in d.wait_log("running as nobody").group(0)
            with tls_client(d) as c:
                c.cmd("AUTH PLAIN " + plain(ALICE, ALICE_PW), 235, "2.7.0")
                c.send_mail("alice@localhost", ["user@localhost"], make_message("root key"))
            d.wait_delivered("user", 1)
    finally:
        shutil.rmtree(keydir, ignore_errors=True)


def _peer_cn(sock):
    """The CN of the certificate the server presented."""
    import ssl
    der = sock.getpeercert(binary_form=True)
    pem = ssl.DER_cert_to_PEM_cert(der)
    p = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=pem.encode(),
                       capture_output=True)
    return p.stdout.decode().strip().split("CN", 1)[-1].lstrip(" =")


def test_sighup_reloads_key_pair_and_passwords():
    # a renewed certificate and a changed password file take effect for
    # new sessions at SIGHUP; a session already in TLS goes on; a broken
    # file at the next SIGHUP changes nothing
    sec = tempfile.mkdtemp(prefix="petrel-bb-reload-")
    try:
        os.chmod(sec, 0o755)
        cert, key = petrel.make_cert(sec, "old.mx.test")
        pw = write_passwd(sec, "passwd", ["alice:" + crypt_hash("old-pw", b"$6$")])
        with Daemon(settings={"tls_cert_file": cert, "tls_key_file": key, "auth_passwords": pw},
                    listener={"tls": "starttls", "auth": True}) as d:
            def tls_session():
                c = d.client()
                c.ehlo()
                cn = _peer_cn(c.starttls())
                c.ehlo()
                return c, cn

            old, cn = tls_session()
            assert cn == "old.mx.test"
            new_dir = tempfile.mkdtemp(dir=sec)
            c2, k2 = petrel.make_cert(new_dir, "new.mx.test")
            os.replace(c2, cert)
            os.replace(k2, key)
            write_passwd(sec, "passwd", ["alice:" + crypt_hash("new-pw", b"$6$"),
                                         "carol:" + crypt_hash("carol-pw", b"$6$")])
            d.proc.send_signal(signal.SIGHUP)
            d.wait_log(r"SIGHUP: reloaded: generation 2 .*: 1 TLS key pair\(s\) and the password file")
            c, cn = tls_session()
            with c:
                assert cn == "new.mx.test"
                c.cmd("AUTH PLAIN " + plain("alice", "old-pw"), 535, "5.7.8")
                c.cmd("AUTH PLAIN " + plain("alice", "new-pw"), 235, "2.7.0")
            with tls_session()[0] as c:
                c.cmd("AUTH PLAIN " + plain("carol", "carol-pw"), 235, "2.7.0")
            # the session from before the reload still works over its TLS
            old.cmd("NOOP", 250)
            q = old.send_mail("a@localhost", ["user@localhost"], make_message("across reload"))
            assert petrel.qid_of_file(d.wait_delivered("user", 1)[0]) == q
            old.close()
            # a broken key: the reload fails as a whole, nothing changes
            with open(key, "w") as f:
                f.write("not a key\n")
            d.proc.send_signal(signal.SIGHUP)
            d.wait_log(r"SIGHUP: reload refused, generation 2 .* stays: .*key")
            c, cn = tls_session()
            with c:
                assert cn == "new.mx.test"
                c.cmd("AUTH PLAIN " + plain("carol", "carol-pw"), 235, "2.7.0")
    finally:
        shutil.rmtree(sec, ignore_errors=True)


if __name__ == "__main__":
    petrel.main()
