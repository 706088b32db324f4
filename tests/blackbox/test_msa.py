#!/usr/bin/env python3
"""The msa stage (issue 9, item 1): message submission from mail clients
(RFC 6409) on listeners with stage = "msa", against the real daemon with a
certificate and a password file made here.

Real clients: msmtp (Debian) with STARTTLS and AUTH, Python's
smtplib.SMTP_SSL on an implicit-TLS listener, raw sockets for the replies;
a real aiosmtpd peer behind relayhost for mail to another domain.  Each
delivered message is compared byte for byte with what was sent: only the
trace fields (Return-Path, Delivered-To, Received) and the Date: and
Message-ID: the stage adds may differ, and those are checked exactly."""

import email.utils
import os
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, check, T  # noqa: E402

# logins: a plain name (owns NAME@ each local domain), an address (owns
# itself), and one the senders table widens
ALICE, ALICE_PW = "alice", "alice's submission secret"
BOB, BOB_PW = "bob@example.test", "b0b-pa55"
CAROL, CAROL_PW = "carol", "carol pw"

_shared = {}


def secrets():
    """One temp dir per run: certificate, key, password file."""
    if "dir" not in _shared:
        d = tempfile.mkdtemp(prefix="petrel-bb-msa-")
        import atexit
        atexit.register(shutil.rmtree, d, True)
        os.chmod(d, 0o755)
        _shared["dir"] = d
        _shared["cert"], _shared["key"] = petrel.make_cert(d)
        _shared["passwd"] = petrel.write_passwd(d, [
            "%s:%s" % (ALICE, petrel.crypt_hash(ALICE_PW, b"$y$")),
            "%s:%s" % (BOB, petrel.crypt_hash(BOB_PW, b"$6$")),
            "%s:%s" % (CAROL, petrel.crypt_hash(CAROL_PW, b"$6$")),
        ])
    return _shared


def msa_daemon(msa=None, settings=None, implicit=False, extra="", modules_extra="", more=(), **kw):
    """A daemon whose first listener is msa with STARTTLS (ports[1]: msa
    with implicit TLS when implicit=True; then the listeners of more),
    msa settings from the dict."""
    sec = secrets()
    s = {"tls_cert_file": sec["cert"], "tls_key_file": sec["key"],
         "auth_passwords": sec["passwd"]}
    s.update(settings or {})
    more = ([{"stage": "msa", "tls": "implicit", "auth": True}] if implicit else []) + list(more)
    blocks = modules_extra
    if msa:
        blocks += "\n  msa = %s;" % petrel.cfg_value(msa)
    return Daemon(settings=s, listener={"stage": "msa", "tls": "starttls", "auth": True},
                  more_listeners=more, modules_extra=blocks, extra=extra, **kw)


def login(d, user, password, port=None):
    """A raw client: EHLO, STARTTLS, EHLO, AUTH PLAIN accepted."""
    c = d.client(port)
    c.ehlo()
    c.starttls()
    c.ehlo()
    c.cmd("AUTH PLAIN " + petrel.auth_plain(user, password), 235, "2.7.0")
    return c


def message(subject, frm="Alice <alice@localhost>", extra=(), body=None):
    """A message as a mail client writes it (LF line ends), without Date:
    and Message-ID: unless extra has them."""
    lines = ["From: " + frm, "To: User <user@localhost>", "Subject: " + subject,
             "MIME-Version: 1.0", "Content-Type: text/plain; charset=us-ascii"]
    lines.extend(extra)
    if body is None:
        body = ("Hello,\n\n.a line that starts with a dot\n..and two\n"
                "trailing blanks   \n\ttab first\nbye\n")
    return ("\n".join(lines) + "\n\n" + body).encode()


DATE_RE = rb"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}"


def split_delivered(content):
    """(Return-Path, Delivered-To, Received field (its lines), rest)."""
    lines = content.split(b"\n")
    i = 3
    while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
        i += 1
    return lines[0], lines[1], b"\n".join(lines[2:i]), b"\n".join(lines[i:])


def assert_submitted(content, sender, rcpt, sent, helo, with_word="ESMTPSA",
                     add_date=True, add_mid=True, hidden=False):
    """The delivered file is the sent message (LF) with this hop's trace
    fields in front and the missing Date:/Message-ID: at the end of its
    header section; returns the queue id."""
    rp, dt, received, rest = split_delivered(content)
    assert rp == b"Return-Path: <%s>" % sender.encode(), rp
    assert dt == b"Delivered-To: %s" % rcpt.encode(), dt
    tls = rb"\(using TLSv1\.[23] with cipher \S+ \(\d+/\d+ bits\)\)"
    tail = (rb"by mx\.test \(petrel\) with " + with_word.encode() + rb" id ([0-9A-Za-z]+)"
            rb"[ \t\n]+for <" + re.escape(rcpt.encode()) + rb">; (" + DATE_RE + rb")")
    if hidden:
        # one line, no "from": neither the HELO name nor the address
        m = re.fullmatch(rb"Received: " + tls + rb" " + tail, received)
        assert m, received
        assert b"127.0.0.1" not in content and helo.encode() not in content, content[:600]
    else:
        m = re.fullmatch(rb"Received: from " + re.escape(helo.encode()) + rb" \(\[127\.0\.0\.1\]\)\n\t"
                         + tls + rb"\n\t" + tail, received)
        assert m, received
    qid = m.group(1).decode()
    head, sep, body = sent.partition(b"\n\n")
    assert sep, "the sent message has no body"
    added = b""
    if add_date:
        added += b"Date: (?P<date>" + DATE_RE + b")\n"
    if add_mid:
        added += b"Message-ID: <\\d{14}\\." + qid.encode() + rb"@mx\.test>\n"
    m2 = re.fullmatch(re.escape(head + b"\n") + added + b"\n" + re.escape(body), rest, re.S)
    assert m2, "delivered:\n%r\nsent:\n%r" % (rest, sent)
    if add_date:
        when = email.utils.parsedate_to_datetime(m2.group("date").decode()).timestamp()
        assert abs(when - time.time()) < 3600, m2.group("date")
    return qid


# ---------------------------------------------------------------------------
# real clients

def cert_fingerprint(cert):
    out = petrel.run(["openssl", "x509", "-in", cert, "-noout", "-fingerprint", "-sha256"])
    assert out.returncode == 0, out.stderr
    return out.stdout.decode().strip().split("=", 1)[1]


def run_msmtp(d, user, password, sender, rcpts, msg):
    if not shutil.which("msmtp"):
        petrel.skip("msmtp not installed (tools/install-deps.sh installs it)")
    rc = os.path.join(d.dir, "msmtprc")
    with open(rc, "w") as f:
        f.write("account petrel\nhost 127.0.0.1\nport %d\ndomain msmtp.client.test\n"
                "tls on\ntls_starttls on\ntls_fingerprint %s\n"
                "auth plain\nuser %s\npassword %s\nfrom %s\n"
                "set_from_header off\nset_date_header off\nset_msgid_header off\n"
                "account default : petrel\n"
                % (d.port, cert_fingerprint(secrets()["cert"]), user, password, sender))
    os.chmod(rc, 0o600)
    p = subprocess.run(["msmtp", "-C", rc, "-a", "petrel"] + rcpts, input=msg,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=T(30))
    return p


def test_msmtp_starttls_auth_delivers():
    with msa_daemon() as d:
        sent = message("from msmtp")
        p = run_msmtp(d, ALICE, ALICE_PW, "alice@localhost", ["user@localhost"], sent)
        assert p.returncode == 0, (p.returncode, p.stderr)
        got = d.wait_delivered("user", 1)[0]
        qid = assert_submitted(got, "alice@localhost", "user@localhost", sent, "msmtp.client.test")
        d.wait_log(r"client=\[127\.0\.0\.1\]:\d+, sasl_method=PLAIN, sasl_username=alice")
        d.wait_log(r"%s: removed" % qid)


def test_smtp_ssl_implicit_tls_delivers():
    with msa_daemon(implicit=True) as d:
        sent = message("from smtplib", frm="bob@example.test")
        s = smtplib.SMTP_SSL(petrel.HOST, d.ports[1], timeout=T(10), context=petrel.tls_context())
        try:
            s.ehlo("ssl.client.test")
            assert s.has_extn("auth"), s.esmtp_features
            s.login(BOB, BOB_PW)
            refused = s.sendmail("bob@example.test", ["user@localhost"], sent.replace(b"\n", b"\r\n"))
            assert refused == {}, refused
            s.quit()
        finally:
            s.close()
        got = d.wait_delivered("user", 1)[0]
        assert_submitted(got, "bob@example.test", "user@localhost", sent, "ssl.client.test")


# ---------------------------------------------------------------------------
# what is refused

def test_mail_without_auth_530():
    with msa_daemon(implicit=True) as d:
        with d.client() as c:
            words = [l.split()[0].upper() for l in c.ehlo().lines[1:]]
            assert "STARTTLS" in words and "AUTH" not in words, words   # no AUTH in clear
            c.cmd("MAIL FROM:<alice@localhost>", 530, "5.7.0")
            c.cmd("AUTH PLAIN " + petrel.auth_plain(ALICE, ALICE_PW), 538, "5.7.11")
            c.starttls()
            r = c.ehlo()
            assert "AUTH PLAIN LOGIN" in r.lines, r.lines
            r = c.cmd("MAIL FROM:<alice@localhost>", 530, "5.7.0")
            assert r.text == "5.7.0 Authentication required", r
            c.cmd("RCPT TO:<user@localhost>", 503, "5.5.1")
            c.cmd("QUIT", 221)
        with d.client(d.ports[1], tls=True) as c:
            c.ehlo()
            c.cmd("MAIL FROM:<>", 530, "5.7.0")
            c.cmd("QUIT", 221)
        assert not d.all_delivered()


def test_wrong_password_535():
    with msa_daemon() as d, d.client() as c:
        c.ehlo()
        c.starttls()
        c.ehlo()
        c.cmd("AUTH PLAIN " + petrel.auth_plain(ALICE, "not her password"), 535, "5.7.8")
        c.cmd("MAIL FROM:<alice@localhost>", 530, "5.7.0")
        c.cmd("AUTH PLAIN " + petrel.auth_plain(ALICE, ALICE_PW), 235, "2.7.0")
        c.cmd("MAIL FROM:<alice@localhost>", 250)


def test_sender_not_owned_553():
    with msa_daemon() as d:
        with login(d, ALICE, ALICE_PW) as c:
            r = c.cmd("MAIL FROM:<bob@localhost>", 553, "5.7.1")
            assert r.text == ("5.7.1 <bob@localhost>: Sender address rejected: "
                              "not owned by user alice"), r
            c.cmd("MAIL FROM:<alice@remote.test>", 553, "5.7.1")   # not a local domain
            c.cmd("MAIL FROM:<alice.x@localhost>", 553, "5.7.1")
            c.cmd("MAIL FROM:<alice@localhost>", 250)              # login@ a local domain
            c.cmd("RSET", 250)
            c.cmd("MAIL FROM:<Alice@Example.TEST>", 250)           # the other one, any case
            c.cmd("RSET", 250)
        with login(d, BOB, BOB_PW) as c:                          # a login that is an address
            c.cmd("MAIL FROM:<bob@example.test>", 250)
            c.cmd("RSET", 250)
            c.cmd("MAIL FROM:<bob@localhost>", 553, "5.7.1")
        d.wait_log(r"reject: MAIL from \S+: 553 5\.7\.1 <bob@localhost>: Sender address rejected")
        assert not d.all_delivered()


def test_senders_table_widens():
    sec = secrets()
    table = os.path.join(sec["dir"], "senders")
    with open(table, "w") as f:
        f.write("# who may send as whom\ncarol: sales@shop.test, @team.test\n\n"
                "alice: info@localhost\n")
    with msa_daemon(msa={"senders": table}) as d:
        d.wait_log(r"msa: 3 sender table entries from " + re.escape(table))
        with login(d, CAROL, CAROL_PW) as c:
            for ok in ("sales@shop.test", "anyone@team.test", "Sales@SHOP.test", "carol@localhost"):
                c.cmd("MAIL FROM:<%s>" % ok, 250)
                c.cmd("RSET", 250)
            for bad in ("other@shop.test", "x@sub.team.test", "info@localhost"):
                c.cmd("MAIL FROM:<%s>" % bad, 553, "5.7.1")
            c.mail_rcpt("x@team.test", ["user@localhost"])
            c.data(petrel.crlf(message("as the team", frm="Team <x@team.test>")))
        with login(d, ALICE, ALICE_PW) as c:
            c.cmd("MAIL FROM:<info@localhost>", 250)
            c.cmd("RSET", 250)
            c.cmd("MAIL FROM:<sales@shop.test>", 553, "5.7.1")
        got = d.wait_delivered("user", 1)[0]
        assert got.startswith(b"Return-Path: <x@team.test>\n"), got[:100]


def test_senders_table_errors_at_start():
    sec = secrets()
    table = os.path.join(sec["dir"], "senders-bad")
    with open(table, "w") as f:
        f.write("carol: sales@shop.test\n# ok so far\nalice info@localhost\n")
    with msa_daemon(msa={"senders": table}, start=False) as d:
        check_table_errors(d, table)


def check_table_errors(d, table):
    p = petrel.run([petrel.PETRELD, "-t", "-c", d.conf], env=d.env())
    err = p.stderr.decode() + p.stdout.decode()
    assert p.returncode != 0, err
    assert re.search(r"petrel\.conf:\d+: modules\.msa\.senders: " + re.escape(table) +
                     r":3: expected 'login: address, @domain, \.\.\.'", err), err
    with open(table, "w") as f:
        f.write("carol: sales@shop.test, " + "a" * 5000 + "@x.test\n")
    p = petrel.run([petrel.PETRELD, "-t", "-c", d.conf], env=d.env())
    err = p.stderr.decode() + p.stdout.decode()
    assert p.returncode != 0 and re.search(re.escape(table) + r":1: line longer than 4096 octets", err), err
    os.unlink(table)
    p = petrel.run([petrel.PETRELD, "-t", "-c", d.conf], env=d.env())
    err = p.stderr.decode() + p.stdout.decode()
    assert p.returncode != 0 and (table + ": No such file or directory") in err, err


def test_msa_listener_needs_auth():
    sec = secrets()
    with Daemon(settings={"tls_cert_file": sec["cert"], "tls_key_file": sec["key"]},
                listener={"stage": "msa", "tls": "starttls"}, start=False) as d:
        p = petrel.run([petrel.PETRELD, "-t", "-c", d.conf], env=d.env())
    err = p.stderr.decode() + p.stdout.decode()
    assert p.returncode != 0, err
    assert re.search(r"listeners\[0\]\.stage: stage \"msa\" takes mail from logged-in users "
                     r"only: set auth = true", err), err


def test_check_from():
    spoof = petrel.crlf(message("spoofed", frm="The Boss <boss@localhost>"))
    with msa_daemon(msa={"check_from": True}) as d:
        with login(d, ALICE, ALICE_PW) as c:
            c.mail_rcpt("alice@localhost", ["user@localhost"])
            c.cmd("DATA", 354)
            c.send(petrel.dot_stuff(spoof) + b".\r\n")
            r = c.expect(553, "5.7.1")
            assert r.text == ("5.7.1 <boss@localhost>: Sender address rejected: not owned by "
                              "user alice (From: header)"), r
            # every mailbox of the field counts
            for frm in ("alice@localhost, boss@localhost", '"alice@localhost" <boss@localhost>',
                        "undisclosed:;", "Alice <alice@localhost"):
                c.mail_rcpt("alice@localhost", ["user@localhost"])
                c.cmd("DATA", 354)
                c.send(petrel.dot_stuff(petrel.crlf(message("x", frm=frm))) + b".\r\n")
                c.expect(553, "5.7.1", what=frm)
            # her own addresses, in any form, pass
            for frm in ('"Alice" <alice@localhost>', "alice@EXAMPLE.test (work)",
                        "team: alice@localhost, <alice@example.test>;"):
                c.mail_rcpt("alice@localhost", ["user@localhost"])
                c.data(petrel.crlf(message("own", frm=frm)))
        assert len(d.wait_delivered("user", 3)) == 3
        d.assert_nothing_more(3)
    # without check_from the From: is the client's business
    with msa_daemon() as d, login(d, ALICE, ALICE_PW) as c:
        c.mail_rcpt("alice@localhost", ["user@localhost"])
        c.data(spoof)
        d.wait_delivered("user", 1)


def test_null_sender():
    with msa_daemon() as d:
        with login(d, ALICE, ALICE_PW) as c:
            sent = message("an MDN")
            c.mail_rcpt("", ["user@localhost"])
            c.data(petrel.crlf(sent))
        got = d.wait_delivered("user", 1)[0]
        assert_submitted(got, "", "user@localhost", sent, "client.test")
    with msa_daemon(msa={"allow_null_sender": False}) as d, login(d, ALICE, ALICE_PW) as c:
        r = c.cmd("MAIL FROM:<>", 553, "5.7.1")
        assert "not owned by user alice" in r.text, r


def test_hide_client():
    with msa_daemon(msa={"hide_client": True}) as d:
        with login(d, ALICE, ALICE_PW) as c:
            sent = message("hidden")
            c.mail_rcpt("alice@localhost", ["user@localhost"])
            c.data(petrel.crlf(sent))
        got = d.wait_delivered("user", 1)[0]
        assert_submitted(got, "alice@localhost", "user@localhost", sent, "client.test", hidden=True)


def test_existing_date_and_message_id_kept():
    with msa_daemon(msa={"hide_client": False}) as d:
        extra = ["Date: Tue, 01 Dec 2026 09:30:00 +0100",
                 "Message-ID: <already.there@client.example>"]
        sent = message("dated", extra=extra)
        with login(d, ALICE, ALICE_PW) as c:
            c.mail_rcpt("alice@localhost", ["user@localhost"])
            c.data(petrel.crlf(sent))
            # one of the two: only the other is added
            only_date = message("no id", extra=extra[:1])
            c.mail_rcpt("alice@localhost", ["user@localhost"])
            c.data(petrel.crlf(only_date))
            lower = message("lower case names", extra=["date: " + extra[0][6:],
                                                       "message-id: <x@y.example>"])
            c.mail_rcpt("alice@localhost", ["user@localhost"])
            c.data(petrel.crlf(lower))
        got = d.wait_delivered("user", 3)
        by_subject = {re.search(rb"\nSubject: ([^\n]*)", g).group(1): g for g in got}
        assert_submitted(by_subject[b"dated"], "alice@localhost", "user@localhost", sent,
                         "client.test", add_date=False, add_mid=False)
        assert_submitted(by_subject[b"no id"], "alice@localhost", "user@localhost", only_date,
                         "client.test", add_date=False, add_mid=True)
        assert_submitted(by_subject[b"lower case names"], "alice@localhost", "user@localhost",
                         lower, "client.test", add_date=False, add_mid=False)


def test_ratelimit_counts_per_login():
    # the ratelimit filter's "user" key is the login (issue 9, item 1)
    with tempfile.TemporaryDirectory(prefix="petrel-bb-msa-rl-") as tmp:
        state = os.path.join(tmp, "rl.state")
        with msa_daemon(extra='filters = [ "ratelimit" ];',
                        modules_extra='  ratelimit = { state_file = "%s"; limits = [ "user 2/hour" ]; };'
                        % state) as d:
            with login(d, CAROL, CAROL_PW) as c:
                for _ in range(2):
                    c.mail_rcpt("carol@localhost", ["user@localhost"])
                    c.data(petrel.crlf(message("rl", frm="carol@localhost")))
                c.cmd("MAIL FROM:<carol@example.test>", 450, "4.7.1")   # another address, same login
            with login(d, ALICE, ALICE_PW) as c:                       # another login is not limited
                c.mail_rcpt("alice@localhost", ["user@localhost"])
                c.data(petrel.crlf(message("rl")))
            assert len(d.wait_delivered("user", 3)) == 3


def test_relay_to_remote_domain():
    from relaypeers import Peer, free_port
    smtp_dir = os.path.join(petrel.BUILDDIR, "modules", "smtp")
    if smtp_dir not in petrel.MODULE_PATH.split(":"):
        petrel.MODULE_PATH += ":" + smtp_dir
    port = free_port()
    with Peer("127.0.0.1", port) as peer, \
            msa_daemon(settings={"relayhost": "[127.0.0.1]:%d" % port, "relayhost_tls": "none",
                                 "retry_initial": 1, "retry_max": 2},
                       modules_extra='  smtp = { connect_timeout = 5; tls = "none"; };') as d:
        sent = message("to the world", frm="Alice <alice@localhost>")
        with login(d, ALICE, ALICE_PW) as c:
            c.mail_rcpt("alice@localhost", ["friend@remote.example", "user@localhost"])
            qid = c.data(petrel.crlf(sent))
        msgs = peer.wait_messages(1, timeout=T(30))
        mail_from, rcpts, _, _, data = msgs[0]
        assert mail_from == "alice@localhost" and rcpts == ["friend@remote.example"], msgs[0]
        # the peer gets the message as queued: our Received, then the
        # client's header with Date and Message-ID added
        head = data.split(b"\r\n\r\n", 1)[0]
        assert head.startswith(b"Received: from client.test ([127.0.0.1])"), head[:200]
        assert re.search(rb"\r\nMessage-ID: <\d{14}\." + qid.encode() + rb"@mx\.test>\r\n",
                         head + b"\r\n"), head
        assert data.endswith(petrel.crlf(sent).split(b"\r\n\r\n", 1)[1]), data[-200:]
        d.wait_log(r"%s: to=<friend@remote\.example>, relay=\S+.*status=sent" % qid)
        d.wait_delivered("user", 1)
    # without a login nobody relays (nor sends at all) on an msa listener
    with msa_daemon() as d, d.client() as c:
        c.ehlo()
        c.starttls()
        c.ehlo()
        c.cmd("MAIL FROM:<alice@localhost>", 530, "5.7.0")


def test_msa_listeners_are_not_greet_paused():
    # greet_pause is the early-talker test for port 25; a mail client must
    # log in on an msa listener anyway, and it connects once per message,
    # so every submission would wait the pause (bench/submission.sh found
    # 1 s per message).  With a 60 s pause set, both msa listeners greet
    # within the client's 20 s timeout, while the mta listener beside them
    # still holds its greeting and answers an early talker 554.
    import socket
    more = [{"stage": "mta"}]
    with msa_daemon(settings={"greet_pause": 60000}, implicit=True, more=more) as d:
        s = socket.create_connection((petrel.HOST, d.port), timeout=T(20))
        try:
            greeting = s.recv(512)
            assert greeting.startswith(b"220 "), greeting
        finally:
            s.close()
        c = login(d, ALICE, ALICE_PW)       # and the session goes on as ever
        c.cmd("MAIL FROM:<alice@localhost>", 250)
        c.cmd("QUIT", 221)
        ssl_client = smtplib.SMTP_SSL(petrel.HOST, d.ports[1], timeout=T(20),
                                      context=petrel.tls_context())
        try:
            ssl_client.ehlo("ssl.client.test")
            ssl_client.login(BOB, BOB_PW)
            ssl_client.quit()
        finally:
            ssl_client.close()
        s = socket.create_connection((petrel.HOST, d.ports[2]), timeout=T(20))
        try:
            s.sendall(b"EHLO early.test\r\n")     # before the mta greeting
            r = s.recv(512)
            assert r.startswith(b"554 5.5.0 ") and b"talking before the greeting" in r, r
        finally:
            s.close()
        d.wait_log(r"pregreet: 17 octet\(s\) after \d+ ms from \[127\.0\.0\.1\]:\d+: EHLO early\.test")


if __name__ == "__main__":
    petrel.main()
