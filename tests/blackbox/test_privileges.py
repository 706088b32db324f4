#!/usr/bin/env python3
"""Dropping privileges: started as root with `user`, petreld binds its port
as root, then runs as that user; the spool and the mail it writes belong to
it.  Skipped when the tests do not run as root."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, make_message  # noqa: E402

USER = "nobody"


def proc_ids(pid):
    uid = gid = None
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                uid = [int(x) for x in line.split()[1:]]
            elif line.startswith("Gid:"):
                gid = [int(x) for x in line.split()[1:]]
    return uid, gid


def test_runs_as_user_after_binding():
    d = Daemon(settings={"user": USER}, start=False)
    pw = petrel.run_as(d, USER)
    with d:
        d.start()
        uid, gid = proc_ids(d.proc.pid)
        assert uid == [pw.pw_uid] * 4, "uids %s, want all %d" % (uid, pw.pw_uid)
        assert gid[0] == pw.pw_gid and gid[1] == pw.pw_gid, gid
        msg = make_message(subject="as nobody")
        with d.client() as c:
            c.ehlo()
            qid = c.send_mail("a@localhost", ["user@localhost"], msg)
        files = d.wait_delivered("user", 1)
        st = os.stat(d.delivered_files("user")[0])
        assert st.st_uid == pw.pw_uid, "maildir file owned by uid %d" % st.st_uid
        assert os.stat(d.spool).st_uid == pw.pw_uid, "spool not owned by %s" % USER
        assert qid.encode() in files[0]
        assert "running as %s" % USER in d.log_text()


def test_unknown_user_refused():
    d = Daemon(settings={"user": "no-such-user-petrel"}, start=False)
    with d:
        import subprocess
        r = subprocess.run([petrel.PETRELD, "-f", "-c", d.conf], env=d.env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        assert r.returncode == 1, r.returncode
        assert b"no such user" in r.stdout, r.stdout


if __name__ == "__main__":
    petrel.main()
