#!/usr/bin/env python3
"""The module API, tested by real modules loaded into the real daemon.

tests/modules/ holds the modules: "testhooks" (every hook, every host
function, behaviour chosen by its configuration block), "slow" (a hook
that suspends and resumes from a timer) and "badapi" (built for another
major API version).  Each hook of testhooks logs

    testhooks: hook=NAME sid=N [qid=QID] ... verdict=WORD

which is how these tests see the order of the hooks."""

import base64
import json
import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, make_message, crlf, T  # noqa: E402

# The test modules live in <builddir>/tests/modules (libtool .la files).
BUILDDIR = os.path.dirname(os.path.dirname(os.path.abspath(petrel.PETRELD)))
TEST_MODULES = os.path.join(BUILDDIR, "tests", "modules")
if TEST_MODULES not in petrel.MODULE_PATH.split(":"):
    petrel.MODULE_PATH = petrel.MODULE_PATH + ":" + TEST_MODULES

HOOK_RE = re.compile(r"testhooks: hook=(\w+) sid=(\d+)(?: qid=(\w+))?(.*)")


def api_version():
    """(major, minor) from api/petrel/version.h of the source tree."""
    top = os.environ.get("PETREL_SRCDIR") or petrel.TOP
    with open(os.path.join(top, "api", "petrel", "version.h")) as f:
        text = f.read()
    major = int(re.search(r"#define PETREL_API_MAJOR (\d+)", text).group(1))
    minor = int(re.search(r"#define PETREL_API_MINOR (\d+)", text).group(1))
    return major, minor


def hooks_daemon(settings=None, testhooks=None, filters=("testhooks",),
                 other_modules="", extra="", start=True, listener=None):
    """A daemon whose filter chain is 'filters', testhooks configured by
    the dict 'testhooks'."""
    mods = "  testhooks = %s;" % petrel.cfg_value(testhooks or {})
    if other_modules:
        mods += "\n" + other_modules
    extra_text = "filters = %s;\n%s" % (petrel.cfg_value(list(filters)), extra)
    return Daemon(settings=settings, modules_extra=mods, extra=extra_text,
                  start=start, listener=listener)


def hook_lines(d):
    """[(hook, sid, qid, rest)] in log order."""
    out = []
    for line in d.log_text().splitlines():
        m = HOOK_RE.search(line)
        if m:
            out.append((m.group(1), int(m.group(2)), m.group(3),
                        m.group(4)))
    return out


def hooks_of(d, sid):
    return [h for h in hook_lines(d) if h[1] == sid]


def wait_hook(d, name, n=1, timeout=10):
    """Wait until the log holds n lines for hook 'name'."""
    deadline = time.monotonic() + T(timeout)
    while True:
        got = [h for h in hook_lines(d) if h[0] == name]
        if len(got) >= n:
            return got
        if time.monotonic() > deadline:
            raise AssertionError("hook %s logged %d times, expected %d"
                                 % (name, len(got), n))
        time.sleep(0.05)


B64_PAYLOAD = b"MZ\x90\x00 this is not really a program \xff\xfe" * 3


def multipart_message(subject="parts", filename="report.txt",
                      payload=B64_PAYLOAD):
    """multipart/mixed: a text part and a base64 attachment."""
    b64 = base64.encodebytes(payload).decode("ascii")
    text = ("From: <sender@localhost>\n"
            "To: <user@localhost>\n"
            "Subject: %s\n"
            "MIME-Version: 1.0\n"
            "Content-Type: multipart/mixed; boundary=\"BOUNDARY-1\"\n"
            "\n"
            "preamble\n"
            "--BOUNDARY-1\n"
            "Content-Type: text/plain; charset=us-ascii\n"
            "\n"
            "the text part\n"
            "--BOUNDARY-1\n"
            "Content-Type: application/octet-stream; name=\"%s\"\n"
            "Content-Disposition: attachment; filename=\"%s\"\n"
            "Content-Transfer-Encoding: base64\n"
            "\n"
            "%s"
            "--BOUNDARY-1--\n"
            "epilogue\n") % (subject, filename, filename, b64)
    return crlf(text)


def header_section(content):
    """The delivered file's header section (LF line ends), without the
    lines petrel itself adds (Return-Path, Delivered-To, Received)."""
    head = content.split(b"\n\n", 1)[0]
    out, skip = [], False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if not skip:
                out.append(line)
            continue
        skip = line.split(b":", 1)[0].lower() in (
            b"return-path", b"delivered-to", b"received")
        if not skip:
            out.append(line)
    return out


# ---------------------------------------------------------------------------
# hook order, accessors

def test_hook_order_one_message():
    msg = multipart_message()
    with hooks_daemon(testhooks={"body_preview": 40}) as d:
        with d.client() as c:
            c.ehlo("client.test")
            qid = c.send_mail("a@localhost", ["u1@localhost", "u2@localhost"],
                              msg)
            c.cmd("QUIT", 221)
        wait_hook(d, "session_end")
        d.wait_delivered("u1", 1)
        seq = [h[0] for h in hooks_of(d, 1)]
        want = ["connect", "helo", "mail", "rcpt", "rcpt", "headers",
                "part", "part", "part", "eom", "queued", "txn_end",
                "session_end"]
        assert seq == want, seq
        lines = hooks_of(d, 1)
        for h in lines[2:12]:
            assert h[2] == qid, (h, qid)
        rcpts = [h[3] for h in lines if h[0] == "rcpt"]
        assert "addr=<u1@localhost> local_domain=1" in rcpts[0], rcpts
        assert "addr=<u2@localhost> local_domain=1" in rcpts[1], rcpts
        mail = [h[3] for h in lines if h[0] == "mail"][0]
        assert "addr=<a@localhost> local=a domain=localhost same=1 " \
               "helo=client.test" in mail, mail
        connect = lines[0][3]
        assert "client=127.0.0.1 relay=0" in connect, connect
        helo = lines[1][3]
        assert "helo=client.test session_helo=client.test" in helo, helo
        parts = [h[3] for h in lines if h[0] == "part"]
        assert "index=0 depth=0 multipart=1 type=multipart/mixed" in parts[0], parts
        assert "index=1 depth=1 multipart=0 type=text/plain" in parts[1], parts
        assert ("index=2 depth=1 multipart=0 type=application/octet-stream "
                "filename=report.txt disposition=attachment flags=0x0 "
                "len=%d " % len(B64_PAYLOAD)) in parts[2], parts
        # the part body is handed out decoded (base64 undone)
        assert "body=MZ.. this is not really a program" in parts[2], parts
        assert "body=the text part" in parts[1], parts
        eom = [h[3] for h in lines if h[0] == "eom"][0]
        assert "parts=3 rcpts=u1@localhost,u2@localhost verdict=continue" \
            in eom, eom
        size = int(re.search(r"size=(\d+)", eom).group(1))
        assert size >= len(msg), (size, len(msg))
        # the session slot lived for the session; its timer was cancelled
        end = lines[-1][3]
        assert "txns=1 timer_cancel=0" in end, end


def test_hook_order_two_sessions_and_rset():
    with hooks_daemon() as d:
        with d.client() as c1, d.client() as c2:
            c1.ehlo()
            c2.ehlo("second.test")
            c1.cmd("MAIL FROM:<a@localhost>", 250)
            c1.cmd("RCPT TO:<u1@localhost>", 250)
            c1.cmd("RSET", 250)
            c1.send_mail("a@localhost", ["u1@localhost"], make_message())
            c2.send_mail("b@localhost", ["u2@localhost"], make_message())
            c1.cmd("QUIT", 221)
            c2.cmd("QUIT", 221)
        wait_hook(d, "session_end", 2)
        s1 = [h[0] for h in hooks_of(d, 1)]
        s2 = [h[0] for h in hooks_of(d, 2)]
        assert s1 == ["connect", "helo", "mail", "rcpt", "txn_end",
                      "mail", "rcpt", "headers", "part", "eom", "queued",
                      "txn_end", "session_end"], s1
        assert s2 == ["connect", "helo", "mail", "rcpt", "headers", "part",
                      "eom", "queued", "txn_end", "session_end"], s2
        assert "helo=second.test" in hooks_of(d, 2)[1][3]
        assert "txns=2" in hooks_of(d, 1)[-1][3], hooks_of(d, 1)[-1]
        d.wait_delivered("u1", 1)
        d.wait_delivered("u2", 1)


def test_refused_message_has_no_queued_hook():
    with hooks_daemon(testhooks={"reject_if_subject": "bad"}) as d:
        with d.client() as c:
            c.ehlo()
            c.mail_rcpt("a@localhost", ["u1@localhost"])
            c.cmd("DATA", 354)
            c.send(make_message("this is bad") + b".\r\n")
            c.expect(554, "5.7.1")
            c.cmd("QUIT", 221)
        wait_hook(d, "session_end")
        seq = [h[0] for h in hooks_of(d, 1)]
        assert seq == ["connect", "helo", "mail", "rcpt", "headers", "part",
                       "eom", "txn_end", "session_end"], seq
        d.assert_nothing_more(0, grace=0.5)


def test_logged_headers_are_unfolded_and_decoded():
    msg = crlf("From: <a@localhost>\n"
               "Subject: =?UTF-8?B?w6ljaGVj?= and\n"
               " folded\n"
               "X-Q: =?ISO-8859-1?Q?caf=E9?=\n\nbody\n")
    with hooks_daemon(testhooks={"log_headers": True}) as d:
        petrel.send_one(d.port, "a@localhost", "u@localhost", msg)
        wait_hook(d, "queued")
        text = d.log_text()
        assert "name=Subject value==?UTF-8?B?w6ljaGVj?= and folded " \
               "decoded=\u00e9chec and folded" in text, text[-2000:]
        assert "name=X-Q value==?ISO-8859-1?Q?caf=E9?= decoded=caf\u00e9" \
            in text, text[-2000:]
        headers = [h for h in hook_lines(d) if h[0] == "headers"][0]
        assert "subject=\u00e9chec and folded" in headers[3], headers


# ---------------------------------------------------------------------------
# edits: headers and recipients

def test_header_add_change_remove_in_maildir():
    msg = make_message("original subject", "body\n",
                       headers=["X-Drop: one", "X-Keep: kept",
                                "X-Drop: two"])
    th = {"add_header": "X-Test: yes",
          "prepend_header": "X-Top: first",
          "change_header": "Subject: changed by testhooks",
          "remove_header": "X-Drop"}
    with hooks_daemon(testhooks=th) as d:
        petrel.send_one(d.port, "a@localhost", "user@localhost", msg)
        got = d.wait_delivered("user", 1)[0]
        head = header_section(got)
        assert head == [b"X-Top: first",
                        b"From: <sender@localhost>",
                        b"To: <user@localhost>",
                        b"Subject: changed by testhooks",
                        b"X-Keep: kept",
                        b"X-Test: yes"], head
        assert got.endswith(b"\n\nbody\n"), got[-100:]
        # filters see petrel's own Received: as the first header of the
        # section, so a prepended header lands above it; the delivery
        # headers the transport adds stay first
        assert got.startswith(b"Return-Path: <a@localhost>\n"
                              b"Delivered-To: user@localhost\n"
                              b"X-Top: first\n"
                              b"Received: from "), got[:200]


def test_header_edits_leave_body_untouched():
    msg = multipart_message("edits", "data.bin")
    with hooks_daemon(testhooks={"add_header": "X-Scanned: by testhooks"}) as d:
        petrel.send_one(d.port, "a@localhost", "user@localhost", msg)
        got = d.wait_delivered("user", 1)[0]
        body_sent = petrel.to_lf(msg).split(b"\n\n", 1)[1]
        assert got.split(b"\n\n", 1)[1] == body_sent
        assert b"\nX-Scanned: by testhooks\n\n" in got, got[:800]


def test_rcpt_redirect_delivers_to_new_mailbox():
    msg = make_message("redirect me")
    with hooks_daemon(testhooks={"redirect_to": "other@localhost"}) as d:
        with d.client() as c:
            c.ehlo()
            qid = c.send_mail("a@localhost", ["u1@localhost", "u2@localhost"],
                              msg)
        got = d.wait_delivered("other", 1)
        dl = petrel.Delivered(got[0])
        assert dl.delivered_to == b"Delivered-To: other@localhost\n", \
            dl.delivered_to
        assert dl.qid == qid
        d.assert_nothing_more(1, grace=0.7)
        assert d.delivered("u1") == [] and d.delivered("u2") == []
        eom = [h for h in hook_lines(d) if h[0] == "eom"][0]
        assert "rcpts=other@localhost " in eom[3], eom
        d.wait_log(re.escape(qid) + r"\b.*\bnrcpt=1\b")


def test_rcpt_add_and_remove():
    th = {"add_rcpt": "bcc@example.test", "remove_rcpt": "u2@localhost"}
    with hooks_daemon(testhooks=th) as d:
        with d.client() as c:
            c.ehlo()
            c.send_mail("a@localhost", ["u1@localhost", "u2@localhost"],
                        make_message("add and remove"))
        d.wait_delivered("u1", 1)
        d.wait_delivered("bcc", 1, domain="example.test")
        d.assert_nothing_more(2, grace=0.7)
        assert d.delivered("u2") == []


def test_removing_every_recipient_discards():
    with hooks_daemon(testhooks={"remove_rcpt": "u1@localhost"}) as d:
        with d.client() as c:
            c.ehlo()
            c.send_mail("a@localhost", ["u1@localhost"], make_message("gone"))
        d.wait_log(r"discard: .*no recipients left")
        d.assert_nothing_more(0, grace=0.5)


# ---------------------------------------------------------------------------
# verdicts

def test_hold_goes_to_spool_hold_and_is_not_delivered():
    with hooks_daemon(testhooks={"hold_if_subject": "hold me"}) as d:
        with d.client() as c:
            c.ehlo()
            held = c.send_mail("a@localhost", ["user@localhost"],
                               make_message("please hold me now"))
            passed = c.send_mail("a@localhost", ["user@localhost"],
                                 make_message("deliver me"))
        got = d.wait_delivered("user", 1)
        assert b"Subject: deliver me" in got[0]
        d.assert_nothing_more(1, grace=1.0)
        hold_file = os.path.join(d.spool, "hold", held)
        assert os.path.isfile(hold_file), os.listdir(d.spool)
        with open(hold_file, "rb") as f:
            assert b"please hold me now" in f.read()
        assert not os.path.exists(os.path.join(d.spool, "hold", passed))
        d.wait_log(re.escape(held) + r": hold: by filter")
        # the held message got 'queued' (it is durable), like any other
        assert [h for h in hook_lines(d) if h[0] == "queued" and h[2] == held]
        # and it survives a restart without being delivered
        d.restart()
        d.assert_nothing_more(1, grace=1.0)
        assert os.path.isfile(hold_file)


PETRELCTL = os.environ.get("PETRELCTL") or os.path.join(petrel.BUILDDIR, "src", "petrelctl")


def petrelctl(d, *args):
    r = subprocess.run([PETRELCTL, "-c", d.conf] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=20, text=True)
    assert r.returncode == 0, r.stdout
    return r.stdout


def test_petrelctl_lists_and_releases_a_held_message():
    with hooks_daemon(testhooks={"hold_if_subject": "hold me"}) as d:
        with d.client() as c:
            c.ehlo()
            body = "first line\n.leading dot\nlast line\n"
            held = c.send_mail("a@localhost", ["user@localhost"],
                               make_message("please hold me", body))
        d.wait_log(re.escape(held) + r": hold: by filter")
        listing = [json.loads(x) for x in petrelctl(d, "queue", "--json").splitlines()]
        assert [(m["qid"], m["state"], m["sender"]) for m in listing] == \
            [(held, "held", "a@localhost")], listing
        d.assert_nothing_more(0, grace=0.5)
        out = petrelctl(d, "release", held)
        assert "%s released" % held in out, out
        got = d.wait_delivered("user", 1)
        delivered = petrel.Delivered(got[0])
        assert delivered.body == petrel.to_lf(make_message("please hold me", body)), got[0]
        d.wait_log(re.escape(held) + r": released into the queue")
        d.wait_log(re.escape(held) + r": removed")
        assert not os.path.exists(os.path.join(d.spool, "hold", held))
        assert not os.path.exists(os.path.join(d.spool, "queue", held))
        assert held not in petrelctl(d, "queue")
        # a second release of the same id is an error, and nothing more arrives
        r = subprocess.run([PETRELCTL, "-c", d.conf, "release", held],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert r.returncode == 67 and "no such message" in r.stdout, r.stdout
        d.assert_nothing_more(1, grace=0.5)


def test_discard_answers_250_and_delivers_nothing():
    with hooks_daemon(testhooks={"discard_if_subject": "junk"}) as d:
        with d.client() as c:
            c.ehlo()
            qid = c.send_mail("a@localhost", ["user@localhost"],
                              make_message("some junk here"))
            c.cmd("QUIT", 221)
        d.wait_log(re.escape(qid) + r": discard: .*by filter")
        d.assert_nothing_more(0, grace=1.0)
        assert not os.path.exists(os.path.join(d.spool, "hold", qid))
        seq = [h[0] for h in hooks_of(d, 1)]
        assert "queued" not in seq and seq[-2:] == ["txn_end", "session_end"], seq


def test_reject_with_module_reply_text():
    th = {"reject_if_subject": "forbidden",
          "reply": "550 5.7.1 testhooks does not like this message"}
    with hooks_daemon(testhooks=th) as d:
        with d.client() as c:
            c.ehlo()
            c.mail_rcpt("a@localhost", ["user@localhost"])
            c.cmd("DATA", 354)
            c.send(make_message("a forbidden subject") + b".\r\n")
            r = c.reply()
            assert r.raw == b"550 5.7.1 testhooks does not like this message\r\n", r
            # the session goes on
            c.send_mail("a@localhost", ["user@localhost"], make_message("fine"))
        got = d.wait_delivered("user", 1)
        assert b"Subject: fine" in got[0]
        d.assert_nothing_more(1, grace=0.5)


def test_reject_at_rcpt_with_module_reply():
    th = {"verdict_rcpt": "reject",
          "reply": "553 5.7.1 testhooks refuses every recipient"}
    with hooks_daemon(testhooks=th) as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        r = c.cmd("RCPT TO:<user@localhost>")
        assert r.raw == b"553 5.7.1 testhooks refuses every recipient\r\n", r
        r = c.cmd("DATA")
        assert r.code in (503, 554), r      # no valid recipient


def test_tempfail_at_mail_and_reject_senders_list():
    th = {"reject_senders": ["bad@localhost", "worse@localhost"],
          "reply": "550 5.7.1 sender refused by testhooks"}
    with hooks_daemon(testhooks=th) as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<worse@localhost>", 550, "5.7.1")
        c.cmd("MAIL FROM:<good@localhost>", 250)
    with hooks_daemon(testhooks={"verdict_mail": "tempfail"}) as d, \
            d.client() as c:
        c.ehlo()
        r = c.cmd("MAIL FROM:<a@localhost>", 451, "4.7.1")
        assert "testhooks: try later" in r.text, r


def test_invalid_reply_text_falls_back_to_default():
    # "250 ..." is not a refusal: the host refuses it and uses its default
    th = {"verdict_rcpt": "reject", "reply": "250 2.0.0 not a refusal"}
    with hooks_daemon(testhooks=th) as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<user@localhost>", 550, "5.7.1")
        d.wait_log(r"module reply refused")


def auth_daemon(testhooks=None, settings=None):
    """testhooks in the chain of a listener with AUTH in clear text (the
    TLS side of AUTH is test_tls_auth.py's)."""
    d = hooks_daemon(testhooks=testhooks, start=False,
                     listener={"auth": True, "auth_cleartext": True},
                     settings=dict(settings or {}, auth_passwords="@PASSWD@"))
    pw = petrel.write_passwd(d.dir, ["alice:" + petrel.crypt_hash("alice-pw", b"$6$")])
    d.config_text = d.config_text.replace("@PASSWD@", pw)
    with open(d.conf, "w") as f:
        f.write(d.config_text)
    d.start()
    return d


def test_auth_hook_order_user_and_success():
    with auth_daemon() as d:
        with d.client() as c:
            c.ehlo("client.test")
            c.cmd("AUTH PLAIN " + petrel.auth_plain("alice", "wrong"), 535, "5.7.8")
            c.cmd("AUTH PLAIN " + petrel.auth_plain("alice", "alice-pw"), 235, "2.7.0")
            c.send_mail("alice@localhost", ["user@localhost"], make_message("authed"))
            c.cmd("QUIT", 221)
        wait_hook(d, "session_end")
        lines = hooks_of(d, 1)
        seq = [h[0] for h in lines]
        assert seq[:5] == ["connect", "helo", "auth", "auth", "mail"], seq
        # the hook judges before the login counts: no auth_user yet
        assert lines[2][3].strip() == "user=alice success=0 auth_user=(null) verdict=continue", lines[2]
        assert lines[3][3].strip() == "user=alice success=1 auth_user=(null) verdict=continue", lines[3]
        assert " auth_user=alice " in lines[4][3], lines[4]


def test_auth_hook_reject_turns_success_into_refusal():
    th = {"verdict_auth": "reject", "reply": "535 5.7.8 testhooks: not from here"}
    with auth_daemon(testhooks=th, settings={"auth_failure_limit": 2}) as d, d.client() as c:
        c.ehlo()
        r = c.cmd("AUTH PLAIN " + petrel.auth_plain("alice", "alice-pw"))
        assert r.raw == b"535 5.7.8 testhooks: not from here\r\n", r
        c.cmd("MAIL FROM:<alice@localhost>", 250)     # not authenticated:
        c.cmd("RSET", 250)
        wait_hook(d, "mail")
        assert " auth_user=(null) " in [h for h in hook_lines(d) if h[0] == "mail"][0][3]
        # a refusal by a module counts towards the failure limit
        c.cmd("AUTH PLAIN " + petrel.auth_plain("alice", "alice-pw"), 535, "5.7.8")
        c.expect(421, "4.7.0")
        c.expect_closed()
        d.wait_log(r"reject: AUTH from \[127\.0\.0\.1\]:\d+: 535 5\.7\.8 testhooks: not from "
                   r"here; sasl_method=PLAIN, sasl_username=alice")


def test_auth_hook_tempfail():
    with auth_daemon(testhooks={"verdict_auth": "tempfail", "reply": "454 4.7.0 testhooks: later"},
                     settings={"auth_failure_limit": 1}) as d, d.client() as c:
        c.ehlo()
        c.cmd("AUTH PLAIN " + petrel.auth_plain("alice", "alice-pw"), 454, "4.7.0")
        # a temporary refusal is no failed attempt: the session goes on
        c.cmd("NOOP", 250)


def test_suspend_and_resume_through_fd_watch():
    th = {"suspend_eom": True, "add_header": "X-Resumed: yes"}
    with hooks_daemon(testhooks=th) as d:
        petrel.send_one(d.port, "a@localhost", "user@localhost",
                        make_message("suspended"))
        got = d.wait_delivered("user", 1)[0]
        assert b"\nX-Resumed: yes\n" in got
        d.wait_log(r"testhooks: resumed verdict=continue resume=0")


def test_suspend_then_reject():
    th = {"suspend_eom": True, "verdict_eom": "reject",
          "reply": "554 5.7.1 refused after waiting"}
    with hooks_daemon(testhooks=th) as d, d.client() as c:
        c.ehlo()
        c.mail_rcpt("a@localhost", ["user@localhost"])
        c.cmd("DATA", 354)
        c.send(make_message("x") + b".\r\n")
        r = c.reply()
        assert r.raw == b"554 5.7.1 refused after waiting\r\n", r
        d.assert_nothing_more(0, grace=0.3)


def test_testhooks_as_router_and_transport():
    import tempfile
    out = tempfile.mkdtemp(prefix="petrel-th-out-")
    th = {"route_transport": "testhooks", "deliver_dir": out}
    with hooks_daemon(testhooks=th, extra='router = "testhooks";') as d:
        with d.client() as c:
            c.ehlo()
            qid = c.send_mail("a@localhost", ["u1@example.test"],
                              make_message("own transport", "payload\n"))
        path = os.path.join(out, "%s.u1@example.test" % qid)
        # the file exists from open() on: wait until the delivery is over
        d.wait_log(re.escape(qid) + r"\b.*relay=testhooks\b.*status=sent")
        with open(path, "rb") as f:
            data = f.read()
        assert data.startswith(b"X-Testhooks-Envelope: from=<a@localhost> "
                               b"to=<u1@example.test>\r\n"), data[:200]
        assert data.endswith(b"\r\n\r\npayload\r\n"), data[-100:]
        d.wait_log(re.escape(qid) + r"\b.*relay=testhooks\b.*status=sent "
                   r"\(testhooks: written to ")
        d.wait_log(r"testhooks: route addr=<u1@example.test> local=example.test")
        assert d.all_delivered_files() == []
    import shutil
    shutil.rmtree(out, ignore_errors=True)


def _check_config(d):
    return petrel.run([petrel.PETRELD, "-t", "-c", d.conf], env=d.env())


def test_module_setting_errors_name_file_and_line():
    cases = [
        ({"verdict_rcpt": "maybe"},
         r":\d+: .*modules\.testhooks\.verdict_rcpt.*'maybe' is not a verdict"),
        ({"no_such_setting": 1},
         r":\d+: .*no_such_setting.*unknown setting of module 'testhooks'"),
        ({"body_preview": "ten"}, r":\d+: .*body_preview.*must be an integer"),
    ]
    for th, rx in cases:
        with hooks_daemon(testhooks=th, start=False) as d:
            p = _check_config(d)
            err = p.stderr.decode("utf-8", "replace")
            assert p.returncode == 1, (th, p.returncode, err)
            assert re.search(re.escape(d.conf) + rx, err), (th, err)
    with hooks_daemon(testhooks={"verdict_rcpt": "reject"}, start=False) as d:
        p = _check_config(d)
        assert p.returncode == 0, p.stderr


# ---------------------------------------------------------------------------
# pending hooks: a slow filter holds up only its own session

def _slow_daemon(slow, settings=None):
    return Daemon(settings=settings,
                  modules_extra="  slow = %s;" % petrel.cfg_value(slow),
                  extra='filters = [ "slow" ];')


def _has_bytes(c):
    """Are there reply bytes waiting on client c (without blocking)?"""
    if c.buf:
        return True
    c.sock.setblocking(False)
    try:
        chunk = c.sock.recv(65536)
    except (BlockingIOError, socket.timeout):
        return False
    finally:
        c.sock.setblocking(True)
        c.sock.settimeout(c.timeout)
    c.buf += chunk
    return True


def test_slow_filter_does_not_delay_other_sessions():
    delay = int(T(4) * 1000)
    with _slow_daemon({"delay_ms": delay, "only_rcpt": "slow@localhost"},
                      settings={"pending_timeout": 60}) as d:
        with d.client() as a:
            a.ehlo("a.test")
            a.mail_rcpt("a@localhost", ["slow@localhost"])
            a.cmd("DATA", 354)
            a.send(make_message("from A") + b".\r\n")
            d.wait_log(r"slow: suspend qid=\w+ at=eom")
            # meanwhile B does two whole messages, on one connection and on
            # a second one, and both are delivered
            qb = petrel.send_one(d.port, "b@localhost", "fast@localhost",
                                 make_message("from B"))
            with d.client() as b2:
                b2.ehlo("b2.test")
                b2.send_mail("b@localhost", ["fast@localhost"],
                             make_message("from B2"))
            d.wait_delivered("fast", 2)
            # ... while A still has no answer
            assert not _has_bytes(a), "A got a reply before B finished: %r" % a.buf
            assert "slow: resume" not in d.log_text()
            qa = a.expect(250, "2.0.0", timeout=delay / 1000.0 + 10).qid
        d.wait_delivered("slow", 1)
        log = d.log_text()
        # B was queued before A was resumed, A queued after its resume
        i_b = log.index("%s: client=" % qb)
        i_resume = log.index("slow: resume qid=%s verdict=continue resume=0" % qa)
        i_a = log.index("%s: client=" % qa)
        assert i_b < i_resume < i_a, (i_b, i_resume, i_a)


def test_blocking_work_on_the_filter_pool_does_not_delay_other_sessions():
    # API 1.1 work_submit: two sessions' hooks each block a pool thread
    # (filter_workers = 2) for the whole delay; a third session's message
    # goes through meanwhile, then both blocked ones are resumed and queued
    delay = int(T(3) * 1000)
    with _slow_daemon({"delay_ms": delay, "only_rcpt": "slow@localhost", "wait": "work"},
                      settings={"pending_timeout": 60, "filter_workers": 2}) as d:
        slow = []
        for name in ("a", "b"):
            c = d.client()
            c.ehlo(name + ".test")
            c.mail_rcpt(name + "@localhost", ["slow@localhost"])
            c.cmd("DATA", 354)
            c.send(make_message("from " + name) + b".\r\n")
            slow.append(c)
        d.wait_log(r"(?s)slow: suspend qid=\w+ at=eom.*slow: suspend qid=\w+ at=eom")
        qf = petrel.send_one(d.port, "f@localhost", "fast@localhost", make_message("fast"))
        d.wait_delivered("fast", 1)
        for c in slow:
            assert not _has_bytes(c), "a blocked session got a reply early: %r" % c.buf
        assert "slow: work done" not in d.log_text()
        qids = [c.expect(250, "2.0.0", timeout=delay / 1000.0 + 10).qid for c in slow]
        for c in slow:
            c.close()
        d.wait_delivered("slow", 2)
        log = d.log_text()
        for q in qids:
            # the work ran on a pool thread, then done() resumed the session
            i_work = log.index("slow: work done qid=%s" % q)
            i_resume = log.index("slow: resume qid=%s verdict=continue resume=0" % q)
            assert log.index("%s: client=" % qf) < i_work < i_resume < log.index("%s: client=" % q)


def test_filter_workers_setting_is_checked():
    for value, ok in ((0, False), (257, False), (1, True)):
        with Daemon(settings={"filter_workers": value}, start=False) as d:
            p = _check_config(d)
            err = p.stderr.decode("utf-8", "replace")
            assert (p.returncode == 0) == ok, (value, p.returncode, err)
            if not ok:
                assert re.search(re.escape(d.conf) + r":\d+: filter_workers", err), err


def test_slow_auth_hook_resumes_the_login():
    # a pending auth hook: the login waits, pipelined MAIL behind it too,
    # another session goes on; then the resumed verdict decides
    delay = int(T(1.5) * 1000)
    for verdict, code in (("continue", 235), ("reject", 535)):
        d = Daemon(listener={"auth": True, "auth_cleartext": True},
                   settings={"auth_passwords": "@PW@", "auth_failure_limit": 5},
                   modules_extra="  slow = %s;" % petrel.cfg_value(
                       {"delay_ms": delay, "at": "auth", "verdict": verdict}),
                   extra='filters = [ "slow" ];', start=False)
        pw = petrel.write_passwd(d.dir, ["alice:" + petrel.crypt_hash("pw", b"$6$")])
        d.config_text = d.config_text.replace("@PW@", pw)
        with open(d.conf, "w") as f:
            f.write(d.config_text)
        with d:
            d.start()
            with d.client() as a:
                a.ehlo()
                a.send("AUTH PLAIN %s\r\nMAIL FROM:<alice@localhost>\r\n"
                       % petrel.auth_plain("alice", "pw"))
                d.wait_log(r"slow: suspend qid=auth at=auth")
                petrel.send_one(d.port, "b@localhost", "fast@localhost", make_message("B"))
                assert not _has_bytes(a), "A got a reply during the wait: %r" % a.buf
                r = a.expect(code, timeout=delay / 1000.0 + 10)
                if verdict == "reject":
                    assert r.text == "5.7.8 slow: refused", r
                a.expect(250, "2.1.0")
            d.wait_log(r"slow: resume qid=auth verdict=%s resume=0" % verdict)


def test_two_slow_sessions_wait_at_the_same_time():
    delay = int(T(3) * 1000)
    with _slow_daemon({"delay_ms": delay}) as d:
        with d.client() as a, d.client() as b:
            for c, who in ((a, "a"), (b, "b")):
                c.ehlo(who + ".test")
                c.mail_rcpt(who + "@localhost", ["user@localhost"])
                c.cmd("DATA", 354)
                c.send(make_message("from " + who) + b".\r\n")
            # both are suspended before either resumes
            deadline = time.monotonic() + T(10)
            while len(re.findall(r"slow: suspend", d.log_text())) < 2:
                assert time.monotonic() < deadline, d.log_tail()
                time.sleep(0.02)
            assert "slow: resume" not in d.log_text(), \
                "first session resumed before the second was suspended"
            a.expect(250, "2.0.0", timeout=delay / 1000.0 + 10)
            b.expect(250, "2.0.0", timeout=delay / 1000.0 + 10)
        d.wait_delivered("user", 2)


def test_pending_timeout_tempfails_the_step():
    with _slow_daemon({"delay_ms": int(T(3) * 1000),
                       "only_rcpt": "slow@localhost"},
                      settings={"pending_timeout": 1}) as d:
        with d.client() as c:
            c.ehlo()
            c.mail_rcpt("a@localhost", ["slow@localhost"])
            c.cmd("DATA", 354)
            c.send(make_message("too slow") + b".\r\n")
            r = c.expect(451, "4.7.1", timeout=10)
            assert r.code == 451
            # the session goes on; a message the filter does not delay passes
            c.send_mail("a@localhost", ["user@localhost"], make_message("ok"))
            c.cmd("QUIT", 221)
        d.wait_delivered("user", 1)
        d.wait_log(r"filter hook pending for more than 1 s")
        # the module's late resume is refused (-1), and nothing breaks
        d.wait_log(r"slow: resume qid=\w+ verdict=continue resume=-1",
                   timeout=T(3) + 10)
        d.assert_nothing_more(1, grace=0.3)
        assert d.delivered("slow") == []


def test_pending_timeout_at_rcpt():
    with _slow_daemon({"delay_ms": int(T(3) * 1000), "at": "rcpt",
                       "only_rcpt": "slow@localhost"},
                      settings={"pending_timeout": 1}) as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<slow@localhost>", 451, "4.7.1", timeout=10)
        c.cmd("RCPT TO:<user@localhost>", 250)
        c.data(make_message("one recipient left"))
        d.wait_delivered("user", 1)


def test_slow_verdict_after_resume():
    with _slow_daemon({"delay_ms": 200, "verdict": "reject",
                       "reply": "554 5.7.1 slow says no"}) as d, \
            d.client() as c:
        c.ehlo()
        c.mail_rcpt("a@localhost", ["user@localhost"])
        c.cmd("DATA", 354)
        c.send(make_message("x") + b".\r\n")
        r = c.reply(timeout=10)
        assert r.raw == b"554 5.7.1 slow says no\r\n", r


# ---------------------------------------------------------------------------
# versioning

def test_badapi_module_refused_naming_both_versions():
    major, minor = api_version()
    with Daemon(extra='filters = [ "badapi" ];', start=False) as d:
        p = _check_config(d)
        err = p.stderr.decode("utf-8", "replace")
        out = p.stdout.decode("utf-8", "replace")
        assert p.returncode == 1, (p.returncode, out, err)
        assert "badapi" in err, err
        assert "%d.0" % (major + 1) in err, err           # the module's version
        assert "%d.%d" % (major, minor) in err, err       # the daemon's
        assert re.search(re.escape(d.conf) + r":\d+:", err), err
        assert "init ran" not in err + out, "badapi's code ran"
        # and the daemon does not start with it
        try:
            d.start(timeout=5)
        except petrel.DaemonError:
            pass
        else:
            raise AssertionError("petreld started with a module of API %d"
                                 % (major + 1))
        assert d.proc.returncode == 1, d.proc.returncode
        assert "badapi" in d.log_text(), d.log_tail()
        d.proc = None


if __name__ == "__main__":
    petrel.main()
