#!/usr/bin/env python3
"""petrelctl over the control socket, on real queued messages.

A delivery that defers keeps a message queued: a plain file stands where
the recipient's maildir must be created (ENOTDIR), and retry_initial is an
hour, so nothing is retried unless petrelctl says so.  Covered: `queue`
(--json parsed, and the mailq-like text), `show`, `hold` (durable: a
restart keeps it held and undelivered), `release` (then delivered),
`delete` (gone from the spool, no bounce), `flush`, `requeue`, `stats
--json`, the exit codes (unknown queue id, wrong state, usage, daemon not
running, no permission), the socket's mode and owner, the SO_PEERCRED
check for a user the mode lets in, the request bounds, a listing of a
queue bigger than the daemon's output buffer while messages leave it, and
`passwd` writing a yescrypt line the daemon accepts for AUTH after
`petrelctl reload`.  A second petreld on the spool stops."""

import base64
import json
import os
import pty
import pwd
import random
import select
import socket
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, block_mailbox, make_message  # noqa: E402

PETRELCTL = os.environ.get("PETRELCTL") or os.path.join(petrel.BUILDDIR, "src", "petrelctl")

EXIT_USAGE, EXIT_STATE, EXIT_UNKNOWN, EXIT_NOT_RUNNING, EXIT_PERM = 64, 65, 67, 69, 77


def ctl(d, *args, user=None, stdin=None, conf=None):
    ids = {}
    if user:        # that user's uid and group, none of root's groups
        pw = pwd.getpwnam(user)
        ids = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    r = subprocess.run([PETRELCTL, "-c", conf or d.conf] + list(args), cwd=d.dir,
                       input=stdin, capture_output=True, text=True, timeout=petrel.T(30),
                       **ids)
    return r


def ok(d, *args, **kw):
    r = ctl(d, *args, **kw)
    assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
    return r.stdout


def queue_json(d):
    return [json.loads(line) for line in ok(d, "queue", "--json").splitlines()]


def deferring_daemon(**kw):
    settings = {"retry_initial": 3600, "retry_max": 3600}
    settings.update(kw.pop("settings", {}))
    return Daemon(settings=settings, router={"mailboxes": ["user@localhost", "other@localhost",
                                                           "third@localhost", "a@localhost"]}, **kw)


def send(d, rcpts, subject, params=""):
    with d.client() as c:
        c.ehlo()
        return c.send_mail("a@localhost", rcpts, make_message(subject=subject), params=params)


def deferred(d, qid, rcpt="user@localhost"):
    d.wait_log(r"%s: to=<%s>.*status=deferred" % (qid, rcpt))


def test_queue_show_and_stats():
    with deferring_daemon() as d:
        block_mailbox(d, "user")
        q1 = send(d, ["user@localhost"], "first one")
        q2 = send(d, ["user@localhost"], "second one", params="BODY=8BITMIME RET=HDRS ENVID=env+2Bid")
        deferred(d, q1)
        deferred(d, q2)
        msgs = {m["qid"]: m for m in queue_json(d)}
        assert sorted(msgs) == sorted([q1, q2]), msgs
        for q in (q1, q2):
            m = msgs[q]
            assert m["state"] == "deferred" and m["sender"] == "a@localhost", m
            assert m["size"] > 100 and abs(m["arrival"] - time.time()) < 600, m
            (r,) = m["recipients"]
            assert r["address"] == "user@localhost" and r["state"] == "deferred", r
            assert "Not a directory" in r["last_error"] and r["next_try"] > time.time() + 600, r
        text = ok(d, "queue")
        assert q1 in text and q2 in text and "in 2 Requests." in text, text
        assert "(cannot create maildir" in text, text
        out = ok(d, "show", q1)
        assert "queue id: %s" % q1 in out and "sender:   <a@localhost>" in out, out
        assert "recipient: <user@localhost> deferred via maildir, 1 attempt(s), next try" in out, out
        assert "Subject: first one" in out and "Subject: second one" not in out, out
        lines = [json.loads(x) for x in ok(d, "show", q2, "--json").splitlines()]
        assert lines[0]["qid"] == q2 and "Subject: second one" in lines[1]["headers"], lines
        assert (lines[0]["body"], lines[0]["ret"], lines[0]["envid"]) == \
            ("8bitmime", "hdrs", "env+2Bid"), lines[0]
        assert "body" not in msgs[q1] and "envid" not in msgs[q1], msgs[q1]
        st = json.loads(ok(d, "stats", "--json"))
        assert st["queue"] == {"messages": 2, "active": 0, "deferred": 2, "held": 0}, st
        assert st["accepted"] == 2, st
        for key in ("received", "delivered", "deferred", "bounced", "connections", "sessions_open",
                    "bytes_in", "bytes_out", "uptime"):
            assert isinstance(st[key], int), (key, st)
        assert set(st["rejected"]) == {"recipient", "filter", "size", "protocol", "policy", "other"}
        assert st["listeners"][0]["listen"].endswith(":%d" % d.port), st
        # the counters of the metrics store (stats_snapshot): what was sent
        assert st["received"] == 2 and st["listeners"][0]["received"] == 2, st
        assert st["connections"] >= 2 and st["bytes_in"] > 0, st
        (maildir,) = [t for t in st["transports"] if t["name"] == "maildir"]
        assert maildir["deferred"] == 2 and maildir["delivered"] == 0, st
        assert "queue.deferred: 2" in ok(d, "stats")


def test_last_error_survives_restart_and_hold():
    """The last error of a deferred recipient is in the queue file (past
    the message): `petrelctl queue` gives it after a restart, and for a
    held message, as Postfix's mailq gives the defer reason; a recipient
    delivered meanwhile has none."""
    with deferring_daemon() as d:
        block_mailbox(d, "user")
        qid = send(d, ["user@localhost", "other@localhost"], "keep my reason")
        deferred(d, qid)
        d.wait_delivered("other", 1)

        def reasons():
            (m,) = queue_json(d)
            assert m["qid"] == qid, m
            return m["state"], {r["address"]: (r["state"], r.get("last_error")) for r in m["recipients"]}
        state, before = reasons()
        assert state == "deferred" and before["user@localhost"][0] == "deferred", before
        assert "Not a directory" in before["user@localhost"][1], before
        d.restart()
        d.wait_log(r"spool: recovered 1 queued messages")
        state, after = reasons()
        assert after["user@localhost"] == before["user@localhost"], (before, after)
        assert state == "deferred", state
        assert "other@localhost" not in after or after["other@localhost"][1] is None, after
        ok(d, "hold", qid)
        state, held = reasons()
        assert state == "held" and held["user@localhost"][1] == before["user@localhost"][1], held
        assert "cannot create maildir" in ok(d, "show", qid)


def test_hold_survives_restart_release_delivers():
    with deferring_daemon() as d:
        blocker = block_mailbox(d, "user")
        qid = send(d, ["user@localhost"], "hold me")
        deferred(d, qid)
        assert "%s held" % qid in ok(d, "hold", qid)
        assert os.path.isfile(os.path.join(d.spool, "hold", qid))
        assert qid not in d.queued()
        (m,) = queue_json(d)
        assert m["qid"] == qid and m["state"] == "held", m
        r = ctl(d, "hold", qid)
        assert r.returncode == EXIT_STATE and "already held" in r.stderr, r
        os.unlink(blocker)
        d.restart()
        ok(d, "flush")              # every deferred message now: a held one is not
        r = ctl(d, "flush", qid)
        assert r.returncode == EXIT_STATE and "is held" in r.stderr, r
        time.sleep(0.5)
        assert d.delivered("user") == []
        (m,) = queue_json(d)
        assert m["state"] == "held", m
        assert "%s released" % qid in ok(d, "release", qid)
        got = d.wait_delivered("user", 1)
        assert b"Subject: hold me" in got[0]
        d.wait_log(r"%s: removed" % qid)
        assert queue_json(d) == []
        r = ctl(d, "release", qid)
        assert r.returncode == EXIT_UNKNOWN, r
        d.assert_nothing_more(1, grace=0.5)


def test_delete_flush_requeue():
    with deferring_daemon() as d:
        blocker = block_mailbox(d, "user")
        gone = send(d, ["user@localhost"], "delete me")
        held = send(d, ["user@localhost"], "delete me held")
        keep = send(d, ["user@localhost"], "keep me")
        for q in (gone, held, keep):
            deferred(d, q)
        ok(d, "hold", held)
        out = ok(d, "delete", gone, held)
        assert "%s deleted" % gone in out and "%s deleted" % held in out, out
        assert sorted(d.queued()) == [keep] and os.listdir(os.path.join(d.spool, "hold")) == []
        assert [m["qid"] for m in queue_json(d)] == [keep]
        os.unlink(blocker)
        assert "%s flushed" % keep in ok(d, "flush", keep)
        got = d.wait_delivered("user", 1)
        assert b"Subject: keep me" in got[0]
        d.assert_nothing_more(1, grace=0.8)     # no bounce to a@localhost, nothing deleted came
        assert d.delivered("a") == []
        # a restart does not bring the deleted ones back
        d.restart()
        time.sleep(0.3)
        assert queue_json(d) == [] and d.queued() == []
        # requeue: the backoff starts again and the message is tried now
        blocker = block_mailbox(d, "other")
        q = send(d, ["other@localhost"], "requeue")
        deferred(d, q, "other@localhost")
        os.unlink(blocker)
        ok(d, "requeue")
        d.wait_delivered("other", 1)
        # delete ALL: queued and held
        block_mailbox(d, "third")
        qs = [send(d, ["third@localhost"], "all %d" % i) for i in range(3)]
        for x in qs:
            deferred(d, x, "third@localhost")
        ok(d, "hold", qs[0])
        assert "3 message(s) deleted" in ok(d, "delete", "ALL")
        assert queue_json(d) == [] and d.queued() == []


def test_exit_codes():
    with deferring_daemon() as d:
        block_mailbox(d, "user")
        qid = send(d, ["user@localhost"], "codes")
        deferred(d, qid)
        for args in (["show", "0123456789ABCDEF0"], ["hold", "NOSUCH"], ["delete", "NOSUCH"],
                     ["flush", "NOSUCH"], ["release", "NOSUCH"]):
            r = ctl(d, *args)
            assert r.returncode == EXIT_UNKNOWN and "no such message" in r.stderr, (args, r)
        r = ctl(d, "hold", qid, "NOSUCH")      # one done, one not: the code says so
        assert r.returncode == EXIT_UNKNOWN and "%s held" % qid in r.stdout, r
        r = ctl(d, "hold", "../../etc")
        assert r.returncode == EXIT_USAGE, r
        ok(d, "release", qid)
        r = ctl(d, "release", qid)
        assert r.returncode == EXIT_STATE and "is not held" in r.stderr, r
        for args in ([], ["frobnicate"], ["show"], ["hold"], ["stats", "x"]):
            r = ctl(d, *args)
            assert r.returncode == EXIT_USAGE, (args, r)
        d.stop()
        assert not os.path.exists(os.path.join(d.spool, "control"))
        r = ctl(d, "queue")
        assert r.returncode == EXIT_NOT_RUNNING and "petreld is not running" in r.stderr, r
        d.start()
        d.kill9()                   # the socket stays behind, nobody answers on it
        assert stat.S_ISSOCK(os.lstat(os.path.join(d.spool, "control")).st_mode)
        r = ctl(d, "stats")
        assert r.returncode == EXIT_NOT_RUNNING, r
        d.start()                   # a stale socket is replaced
        assert [m["qid"] for m in queue_json(d)] == [qid]


def need_root():
    if os.geteuid() != 0:
        petrel.skip("needs root (runs petrelctl as other users)")


def open_up(d):
    """Let other users reach the spool (the test's temp dir is 0700)."""
    for p in (d.dir, d.spool):
        os.chmod(p, 0o755)


def test_other_user_refused_by_mode_and_by_peer_credentials():
    need_root()
    with deferring_daemon() as d:
        sock = os.path.join(d.spool, "control")
        st = os.lstat(sock)
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_uid == 0, oct(st.st_mode)
        open_up(d)
        r = ctl(d, "queue", user="nobody")
        assert r.returncode == EXIT_PERM and "permission denied" in r.stderr, r
        assert "control: refused uid" not in d.log_text()       # the mode kept it out
        os.chmod(sock, 0o666)       # loosened: the daemon's own check refuses
        r = ctl(d, "queue", user="nobody")
        assert r.returncode == EXIT_PERM and "only root and the petrel user" in r.stderr, r
        d.wait_log(r"control: refused uid %d" % pwd.getpwnam("nobody").pw_uid)
        assert ok(d, "queue").endswith("Mail queue is empty\n")    # root still may


def test_the_petrel_user_may_others_may_not():
    """user = "nobody": the socket is root:nobody's group, nobody may use
    it, another unprivileged user (daemon) may not."""
    need_root()
    nobody = pwd.getpwnam("nobody")
    with deferring_daemon(settings={"user": "nobody"}, start=False) as d:
        open_up(d)
        d.start()
        st = os.lstat(os.path.join(d.spool, "control"))
        assert (st.st_uid, st.st_gid) == (0, nobody.pw_gid), (st.st_uid, st.st_gid)
        assert stat.S_IMODE(st.st_mode) == 0o660
        r = ctl(d, "stats", "--json", user="nobody")
        assert r.returncode == 0, r
        assert json.loads(r.stdout)["queue"]["messages"] == 0
        os.chmod(d.spool, 0o755)    # the spool is nobody's 0700: let "daemon" try the socket
        r = ctl(d, "stats", user="daemon")
        assert r.returncode == EXIT_PERM, r


def raw(d):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(petrel.T(10))
    s.connect(os.path.join(d.spool, "control"))
    return s


def read_lines(s, until_final=True):
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
        if until_final and (data.endswith(b'{"ok":true}\n') or b'{"ok":false' in data.split(b"\n")[-2:][0]):
            break
    return [json.loads(x) for x in data.decode().splitlines()]


def test_protocol_bounds():
    with deferring_daemon() as d:
        s = raw(d)
        s.sendall(b"stats\r\nrequeue\nbogus\n")         # several requests on one connection
        got = []
        while len([x for x in got if "ok" in x]) < 3:
            got += read_lines(s)
        finals = [x for x in got if "ok" in x]
        assert finals[0] == {"ok": True} and finals[1] == {"ok": True}, got
        assert finals[2]["ok"] is False and finals[2]["code"] == "usage", got
        s.close()
        s = raw(d)
        s.sendall(b"queue " + b"x" * 5000)
        (err,) = read_lines(s, until_final=False)
        assert err["code"] == "too_long", err
        s.close()
        # hostile lines, each answered with an error, the daemon unharmed
        rnd = random.Random(9)
        s = raw(d)
        bad = [b"queue\0 x", b"show " + b" ".join([b"A"] * 2000), b"hold " + b"Z" * 40,
               b"delete ../hold/x", b"\xff\xfe", b"flush " + b"\x01" * 10, b"stats now"]
        bad += [bytes(rnd.randrange(1, 256) for _ in range(rnd.randrange(1, 300))).replace(b"\n", b"")
                for _ in range(40)]
        for line in bad:
            s.sendall(line + b"\n")
            finals = []
            while not finals:
                finals = [x for x in read_lines(s) if "ok" in x]
            assert finals[-1]["ok"] is False and finals[-1]["code"] in ("usage", "unknown_qid"), \
                (line, finals)
        s.close()
        idle = [raw(d) for _ in range(4)]
        s = raw(d)
        (err,) = read_lines(s, until_final=False)
        assert err["code"] == "too_many", err
        for x in idle:
            x.close()
        time.sleep(0.2)
        assert ok(d, "stats")


def test_big_listing_streams_while_messages_leave():
    """A listing far bigger than the daemon's 64 KiB output and the
    socket's buffer: it is written as the socket drains, and messages
    deleted meanwhile (the oldest, which the walk reaches last) are not
    listed, while every other one is, once."""
    n, users = 150, ["u%d@localhost" % i for i in range(20)]
    with Daemon(settings={"retry_initial": 3600, "retry_max": 3600},
                router={"mailboxes": users}) as d:
        for u in users:
            block_mailbox(d, u.split("@")[0])
        qids = []
        with d.client() as c:
            c.ehlo()
            for i in range(n):
                qids.append(c.send_mail("a@localhost", users, make_message(subject="bulk %d" % i)))
        deadline = time.monotonic() + petrel.T(30)
        while sum(1 for m in queue_json(d) if m["state"] == "deferred") < n:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        s = raw(d)
        s.sendall(b"queue\n")
        first = s.recv(2048)
        gone = qids[:40]
        ok(d, "delete", *gone)
        data = first
        while not data.endswith(b'{"ok":true}\n'):
            chunk = s.recv(65536)
            assert chunk, data[-200:]
            data += chunk
        listed = [json.loads(x)["qid"] for x in data.decode().splitlines()[:-1]]
        assert len(data) > 300 * 1024, len(data)
        assert len(listed) == len(set(listed)), "a message was listed twice"
        assert not set(qids) - set(gone) - set(listed), "a message was not listed"
        assert not set(gone) & set(listed), "deleted before the walk reached them, yet listed"


def test_passwd_writes_a_line_auth_accepts_after_reload():
    d = Daemon(listener={"auth": True, "auth_cleartext": True}, start=False)
    with d:
        pwfile = os.path.join(d.dir, "passwd")
        with open(d.conf, "a") as f:
            f.write('auth_passwords = "%s";\n' % pwfile)
        r = ctl(d, "passwd", "alice", stdin="first secret\n")
        assert r.returncode == 0, r
        line = open(pwfile).read()
        assert line.startswith("alice:$y$") and line.count("\n") == 1, line
        assert "first secret" not in line
        os.chmod(pwfile, 0o640)
        d.start()

        def auth(user, pw):
            with d.client() as c:
                c.ehlo()
                token = base64.b64encode(b"\0" + user.encode() + b"\0" + pw.encode()).decode()
                return c.cmd("AUTH PLAIN " + token).code

        assert auth("alice", "first secret") == 235
        ok(d, "passwd", "bob", stdin="bob's pw\n")
        ok(d, "passwd", "alice", stdin="second secret\n")
        lines = open(pwfile).read().splitlines()
        assert [x.split(":")[0] for x in lines] == ["alice", "bob"], lines
        assert stat.S_IMODE(os.stat(pwfile).st_mode) == 0o640      # kept across the rewrite
        assert not [x for x in os.listdir(d.dir) if ".petrelctl." in x]
        assert auth("bob", "bob's pw") == 535       # not read yet
        out = ok(d, "reload")
        assert "reloaded (generation 2)" in out, out
        d.wait_log(r"petrelctl reload \(uid \d+\): reloaded: generation 2 .*the password file")
        assert auth("bob", "bob's pw") == 235
        assert auth("alice", "first secret") == 535
        assert auth("alice", "second secret") == 235
        # from a terminal: asked twice, never echoed
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(PETRELCTL, [PETRELCTL, "-c", d.conf, "passwd", "carol"])
        seen = b""

        def expect(what):
            nonlocal seen
            deadline = time.monotonic() + petrel.T(10)
            while what not in seen:
                assert time.monotonic() < deadline, seen
                if select.select([fd], [], [], 0.2)[0]:
                    try:
                        seen += os.read(fd, 1024)
                    except OSError:
                        break
        expect(b"New password: ")
        os.write(fd, b"tty secret\n")
        expect(b"Again: ")
        os.write(fd, b"tty secret\n")
        expect(b"password of carol set")
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        assert os.WEXITSTATUS(status) == 0 and b"tty secret" not in seen, seen
        ok(d, "reload")
        d.wait_log(r"petrelctl reload \(uid \d+\): reloaded: generation 3 .*the password file")
        assert auth("carol", "tty secret") == 235
        r = ctl(d, "passwd", "bad:name", stdin="x\n")
        assert r.returncode == EXIT_USAGE, r


def test_second_daemon_on_the_spool_refused():
    with Daemon() as d:
        d2 = Daemon(settings={"spool": d.spool}, start=False)
        with d2:
            r = subprocess.run([petrel.PETRELD, "-f", "-c", d2.conf], env=d2.env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=petrel.T(20))
            out = r.stdout.decode("utf-8", "replace")
            assert r.returncode == 1, (r.returncode, out)
            assert "the spool is in use by petreld pid %d" % d.proc.pid in out, out
        assert d.running()
        assert int(open(os.path.join(d.spool, "petreld.pid")).read()) == d.proc.pid
        # the running daemon kept its control socket
        assert ok(d, "queue").endswith("Mail queue is empty\n")


if __name__ == "__main__":
    petrel.main()
