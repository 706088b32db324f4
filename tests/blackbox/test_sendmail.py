#!/usr/bin/env python3
"""petrel-sendmail and the pickup socket (issue 9 item 4): local programs
hand mail to the running daemon as with Postfix's sendmail.  The daemon
knows the caller by the socket's peer credentials (the Received: line
says the real uid, whatever -f says); the exit status is 0 only once the
message is spooled; 75 when the daemon is not running; 73 for a message
over the size limit; a refused recipient sends nothing.  Tests that run
sendmail as an unprivileged user (nobody) need root."""

import os
import pwd
import re
import socket
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, skip  # noqa: E402

SENDMAIL = os.path.join(petrel.BUILDDIR, "src", "petrel-sendmail")


def nobody():
    if os.geteuid() != 0:
        skip("needs root to run sendmail as another user")
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        skip("no user nobody")


def reachable(d):
    """Let every local user reach the daemon's temp dir (mkdtemp makes it
    0700); the spool and its public/ dir are the daemon's business."""
    os.chmod(d.dir, 0o711)
    os.chmod(d.conf, 0o644)


def wait_pickup(d):
    """The TCP listener is up before the pickup socket (opened after the
    privilege drop and the queue's recovery): wait for the latter, as
    logged by the latest start."""
    deadline = time.monotonic() + petrel.T(10)
    while len(re.findall(r"petreld \S+ started", d.log_text())) < d.starts:
        assert time.monotonic() < deadline, d.log_tail()
        time.sleep(0.05)


def sendmail(d, args, data, user=None, conf=True, env=None):
    if d.running():
        wait_pickup(d)
    argv = [SENDMAIL] + (["-c", d.conf] if conf else []) + args
    pre = None
    if user:
        def pre():
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
    return subprocess.run(argv, input=data, capture_output=True, preexec_fn=pre, timeout=petrel.T(60),
                          env=env)


def only_delivered(d, user, n=1):
    got = d.wait_delivered(user, n)
    d.assert_nothing_more(n)
    return got


def header_section(msg):
    return msg.split(b"\n\n", 1)[0].replace(b"\r\n", b"\n")


def test_t_i_as_unprivileged_user():
    u = nobody()
    with Daemon(router={"mailboxes": ["a@localhost"]}) as d:
        reachable(d)
        r = sendmail(d, ["-t", "-i"], b"To: a@localhost\n\nhi\n", user=u)
        assert r.returncode == 0, r
        (m,) = only_delivered(d, "a")
        h = header_section(m).decode()
        assert "Return-Path: <nobody@localhost>" in h, h
        rcv = re.search(r"Received: by mx\.test \(petrel, from userid (\d+)\)\n\tid ([0-9A-Z]+);", h)
        assert rcv and int(rcv.group(1)) == u.pw_uid, h
        assert re.search(r"^From: nobody@localhost$", h, re.M), h
        assert re.search(r"^Date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$", h, re.M), h
        assert re.search(r"^Message-ID: <[^@>]+@mx\.test>$", h, re.M), h
        assert m.replace(b"\r\n", b"\n").endswith(b"\n\nhi\n"), m
        log = d.log_text()
        assert re.search(r"%s: client=local uid=%d pid=\d+, from=<nobody@localhost>"
                         % (rcv.group(2), u.pw_uid), log), log


def test_f_root_does_not_make_the_user_root():
    u = nobody()
    with Daemon(router={"mailboxes": ["a@localhost"]}) as d:
        reachable(d)
        r = sendmail(d, ["-f", "root@localhost", "a@localhost"],
                     b"From: root@localhost\nSubject: I am root\n\nreally\n", user=u)
        assert r.returncode == 0, r
        (m,) = only_delivered(d, "a")
        h = header_section(m).decode()
        # the envelope sender is the caller's word (as with Postfix);
        # the trace field is the kernel's
        assert "Return-Path: <root@localhost>" in h, h
        assert "from userid %d)" % u.pw_uid in h, h
        assert "from userid 0)" not in h, h


def test_daemon_not_running_exits_75():
    with Daemon(router={"mailboxes": ["a@localhost"]}) as d:
        wait_pickup(d)
        d.stop()
        sock = os.path.join(d.spool, "public", "pickup")
        assert not os.path.exists(sock), "the socket is removed at exit"
        r = sendmail(d, ["a@localhost"], b"Subject: x\n\nbody\n")
        assert r.returncode == 75, r
        assert b"is it running" in r.stderr, r.stderr


def test_stale_socket_after_kill9_is_replaced():
    with Daemon(router={"mailboxes": ["a@localhost"]}) as d:
        wait_pickup(d)
        d.kill9()
        sock = os.path.join(d.spool, "public", "pickup")
        assert stat.S_ISSOCK(os.lstat(sock).st_mode)
        r = sendmail(d, ["a@localhost"], b"Subject: x\n\nbody\n")
        assert r.returncode == 75, r           # nobody listens on the stale socket
        d.start()
        r = sendmail(d, ["a@localhost"], b"Subject: x\n\nbody\n")
        assert r.returncode == 0, r
        only_delivered(d, "a")


def test_socket_and_spool_modes():
    with Daemon() as d:
        wait_pickup(d)
        sock = os.path.join(d.spool, "public", "pickup")
        st = os.lstat(sock)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o666, oct(st.st_mode)
        assert stat.S_IMODE(os.stat(os.path.dirname(sock)).st_mode) == 0o755
        sp = stat.S_IMODE(os.stat(d.spool).st_mode)
        assert sp & 0o011 == 0o011, oct(sp)          # traversable by all
        q = stat.S_IMODE(os.stat(os.path.join(d.spool, "queue")).st_mode)
        assert q & 0o077 == 0, oct(q)                 # the queue stays private


def test_unprivileged_user_cannot_read_the_queue():
    u = nobody()
    with Daemon() as d:
        reachable(d)
        r = subprocess.run(["ls", os.path.join(d.spool, "queue")], capture_output=True,
                           preexec_fn=lambda: (os.setgid(u.pw_gid), os.setuid(u.pw_uid)))
        assert r.returncode != 0, r


def test_pickup_socket_off():
    with Daemon(settings={"pickup_socket": ""}) as d:
        wait_pickup(d)
        assert not os.path.exists(os.path.join(d.spool, "public", "pickup"))
        r = sendmail(d, ["user@localhost"], b"Subject: x\n\nbody\n")
        assert r.returncode == 69, r
        assert b"pickup_socket" in r.stderr, r.stderr


def test_too_large_exits_73():
    with Daemon(settings={"message_size_limit": 2000}, router={"mailboxes": ["a@localhost"]}) as d:
        r = sendmail(d, ["a@localhost"], b"Subject: big\n\n" + b"x" * 76 + b"\n" * 1 + b"y" * 3000 + b"\n")
        assert r.returncode == 73, r
        assert b"too large" in r.stderr, r.stderr
        d.assert_nothing_more(0)


def test_unknown_recipient_sends_to_nobody():
    with Daemon(router={"mailboxes": ["a@localhost"]}) as d:
        r = sendmail(d, ["a@localhost", "ghost@localhost"], b"Subject: x\n\nbody\n")
        assert r.returncode == 67, r
        assert b"ghost@localhost" in r.stderr and b"550" in r.stderr, r.stderr
        d.assert_nothing_more(0)


def test_t_takes_to_cc_bcc_and_removes_bcc():
    with Daemon(router={"mailboxes": ["a@localhost", "b@localhost", "c@localhost",
                                      "d@localhost"]}) as d:
        msg = (b"From: Me <me@localhost>\n"
               b"To: A <a@localhost>, \"Bee, the\" <b@localhost>\n"
               b"Cc: (copy) c@localhost\n"
               b"Bcc: secret: d@localhost;\n"
               b"Date: Tue, 1 Dec 2026 10:00:00 +0000\n"
               b"Message-ID: <keep@me>\n"
               b"Subject: to all\n\nbody\n")
        r = sendmail(d, ["-t", "-i"], msg)
        assert r.returncode == 0, r
        for who in "abcd":
            (m,) = d.wait_delivered(who, 1)
            h = header_section(m).decode()
            assert "Bcc" not in h and "secret" not in h, h
            assert "Message-ID: <keep@me>" in h and h.count("Message-ID:") == 1, h
            assert "Date: Tue, 1 Dec 2026 10:00:00 +0000" in h and h.count("Date:") == 1, h
            assert h.count("From:") == 1, h
        d.assert_nothing_more(4)


def test_dot_line_ends_input_unless_i():
    with Daemon(router={"mailboxes": ["a@localhost"]}) as d:
        r = sendmail(d, ["a@localhost"], b"Subject: dot\n\nbefore\n.\nafter\n")
        assert r.returncode == 0, r
        r = sendmail(d, ["-oi", "a@localhost"], b"Subject: dot\n\nbefore\n.\nafter\n")
        assert r.returncode == 0, r
        bodies = sorted(m.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]
                        for m in only_delivered(d, "a", 2))
        assert bodies == [b"before\n", b"before\n.\nafter\n"], bodies


def test_body_bytes_kept():
    with Daemon(router={"mailboxes": ["a@localhost"]}) as d:
        body = (b".leading dot\n..two dots\nlong " + b"z" * 3000 + b"\n"
                b"tab\there  \n\nblank above\n8bit \xc3\xa9\nno newline at end")
        r = sendmail(d, ["-i", "a@localhost"], b"Subject: bytes\n\n" + body)
        assert r.returncode == 0, r
        (m,) = only_delivered(d, "a")
        got = m.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]
        assert got == body + b"\n", got[-200:]


def test_mbox_from_line_dropped_and_no_header():
    with Daemon(router={"mailboxes": ["a@localhost"]}) as d:
        r = sendmail(d, ["-i", "-F", "Cron Daemon", "a@localhost"],
                     b"From someone Tue Dec  1 10:00:00 2026\nthis is not a header\nsecond\n")
        assert r.returncode == 0, r
        (m,) = only_delivered(d, "a")
        text = m.replace(b"\r\n", b"\n").decode()
        head, body = text.split("\n\n", 1)
        assert "From someone" not in text, text
        assert re.search(r'^From: "Cron Daemon" <root@localhost>$', head, re.M), head
        assert body == "this is not a header\nsecond\n", body


def test_bs_smtp_on_stdin():
    with Daemon(router={"mailboxes": ["a@localhost"]}) as d:
        session = (b"EHLO me\nMAIL FROM:<x@localhost>\nRCPT TO:<a@localhost>\nDATA\n"
                   b"Subject: bs\n\nover stdin\n.\nQUIT\n")
        r = sendmail(d, ["-bs"], session)
        assert r.returncode == 0, r
        out = r.stdout.decode()
        assert out.startswith("220 "), out
        assert re.search(r"^250 2\.0\.0 Ok: queued as ", out, re.M), out
        (m,) = only_delivered(d, "a")
        assert b"from userid %d)" % os.getuid() in m, m


def test_bp_lists_the_queue_and_q_flushes():
    """-bp (mailq) and -q run petrelctl queue / flush with the same -c."""
    closed = petrel._free_port()      # nothing listens there: the relay defers
    with Daemon(settings={"retry_initial": 3600, "retry_max": 3600},
                modules_extra='  smtp = { tls = "none"; connect_timeout = 2; };',
                extra='routes = ( { domain = "remote.test"; transport = "smtp"; '
                      'nexthop = "[127.0.0.1]:%d"; } );' % closed) as d:
        r = sendmail(d, ["far@remote.test"], b"Subject: away\n\nx\n")
        assert r.returncode == 0, r
        d.wait_log(r"to=<far@remote.test>.*status=deferred")
        qid = re.search(r"(\w+): to=<far@remote.test>", d.log_text()).group(1)
        env = dict(os.environ, PETRELCTL=os.path.join(petrel.BUILDDIR, "src", "petrelctl"))
        r = sendmail(d, ["-bp"], b"", env=env)
        assert r.returncode == 0, r
        assert qid.encode() in r.stdout and b"far@remote.test" in r.stdout, r.stdout
        n = len(re.findall(r"to=<far@remote.test>.*status=deferred", d.log_text()))
        r = sendmail(d, ["-q"], b"", env=env)
        assert r.returncode == 0, r
        deadline = time.monotonic() + petrel.T(15)
        while len(re.findall(r"to=<far@remote.test>.*status=deferred", d.log_text())) <= n:
            assert time.monotonic() < deadline, "-q did not retry: " + d.log_tail()
            time.sleep(0.1)


def test_no_recipient_exits_64():
    with Daemon() as d:
        r = sendmail(d, ["-t"], b"Subject: nobody to\n\nx\n")
        assert r.returncode == 64, r
        r = sendmail(d, [], b"Subject: x\n\nx\n")
        assert r.returncode == 64, r


def test_historical_flags_accepted():
    with Daemon(router={"mailboxes": ["a@localhost"]}) as d:
        r = sendmail(d, ["-oem", "-odi", "-v", "-m", "-oi", "-B", "8BITMIME", "a@localhost"],
                     b"Subject: flags\n\nx\n")
        assert r.returncode == 0, r
        only_delivered(d, "a")
        r = sendmail(d, ["-bi"], b"")
        assert r.returncode == 0, r


def test_bare_local_part_gets_a_local_domain():
    with Daemon(router={"mailboxes": ["a@localhost"]}) as d:
        r = sendmail(d, ["a"], b"Subject: bare\n\nx\n")
        assert r.returncode == 0, r
        only_delivered(d, "a")


def test_pickup_is_a_session_like_any_other_to_filters():
    """The global filter chain judges local mail too (a regex body rule):
    refused, nothing delivered, the rule's reply on stderr."""
    d = Daemon(start=False, extra='filters = [ "regex" ];', router={"mailboxes": ["a@localhost"]},
               modules_extra='  regex = { rules = "%s"; };' % "@RULES@")
    rules = os.path.join(d.dir, "regex.rules")
    with open(rules, "w") as f:
        f.write("body /forbidden words/ reject 554 5.7.1 No such words\n")
    d.config_text = d.config_text.replace("@RULES@", rules)
    with open(d.conf, "w") as f:
        f.write(d.config_text)
    with d:
        d.start()
        r = sendmail(d, ["a@localhost"], b"Subject: x\n\nsome forbidden words here\n")
        assert r.returncode == 65, r
        assert b"554 5.7.1 No such words" in r.stderr, r.stderr
        d.assert_nothing_more(0)
        r = sendmail(d, ["a@localhost"], b"Subject: x\n\nharmless\n")
        assert r.returncode == 0, r
        only_delivered(d, "a")


if __name__ == "__main__":
    petrel.main()
