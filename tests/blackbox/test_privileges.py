#!/usr/bin/env python3
"""Dropping privileges: started as root with `user`, petreld binds its port
as root, then runs as that user; the spool and the mail it writes belong to
it.  What root does before the drop trusts no path the user controls: a
spool that is a symbolic link (or a stranger's directory) is refused and
its target left alone; a module file or directory that someone else could
have written is refused, and modules are found only in module_path.
Skipped when the tests do not run as root (the module checks run as any
user)."""

import os
import shutil
import stat
import subprocess
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


def run_briefly(d, args=(), timeout=10):
    """Run petreld on d's configuration; (exit code, output), or
    (None, output) when it was still running after timeout seconds
    (then it is stopped)."""
    p = subprocess.Popen([petrel.PETRELD, "-f", "-c", d.conf] + list(args), env=d.env(),
                         cwd=d.dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=petrel.T(timeout))
        return p.returncode, out.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        out, _ = p.communicate()
        return None, out.decode("utf-8", "replace")


def spool_refused(target_is_dir):
    d = Daemon(settings={"user": USER}, start=False)
    pw = petrel.run_as(d, USER)
    with d:
        target = os.path.join(d.dir, "root-owned")
        if target_is_dir:
            os.mkdir(target, 0o700)
        else:
            with open(target, "w") as f:
                f.write("root's\n")
            os.chmod(target, 0o600)
        os.rmdir(d.spool)
        os.symlink(target, d.spool)   # what a user who can write the parent does
        rc, out = run_briefly(d)
        st = os.lstat(target)
        assert st.st_uid == 0 and st.st_gid == 0, \
            "the link's target was given to uid %d gid %d" % (st.st_uid, st.st_gid)
        assert st.st_uid != pw.pw_uid
        assert rc == 1, "exit %s, want 1 (refused); output %r" % (rc, out)
        assert "spool %s: refused: it is a symbolic link" % d.spool in out, out


def test_spool_symlink_to_root_file_refused():
    spool_refused(target_is_dir=False)


def test_spool_symlink_to_root_dir_refused():
    spool_refused(target_is_dir=True)


def test_spool_of_another_user_refused():
    d = Daemon(settings={"user": USER}, start=False)
    petrel.run_as(d, USER)
    with d:
        os.chown(d.spool, 4242, 4242)
        rc, out = run_briefly(d)
        assert os.stat(d.spool).st_uid == 4242, "the spool changed hands"
        assert rc == 1, "exit %s, want 1; output %r" % (rc, out)
        assert "refused: owned by uid 4242, neither root nor user %s" % USER in out, out


# -- modules ------------------------------------------------------------------

BUILT_MTA = os.path.join(petrel.BUILDDIR, "modules", "mta", ".libs", "mta.so")


def stage_check(d, stage, env=None):
    """petreld -t with the listener's stage named 'stage'."""
    text = d.config_text.replace('stage = "mta"', 'stage = %s' % petrel.cfg_value(stage))
    with open(d.conf, "w") as f:
        f.write(text)
    r = subprocess.run([petrel.PETRELD, "-t", "-c", d.conf], env=env or d.env(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=petrel.T(30))
    return r.returncode, r.stdout.decode("utf-8", "replace")


def module_copy(d):
    mods = os.path.join(d.dir, "mods")
    os.mkdir(mods, 0o755)
    so = os.path.join(mods, "mta.so")
    shutil.copy(BUILT_MTA, so)
    os.chmod(so, 0o755)
    return mods, so


def test_module_by_path_loads_when_safe():
    with Daemon(start=False) as d:
        mods, so = module_copy(d)
        rc, out = stage_check(d, os.path.join(mods, "mta"))
        assert rc == 0, out


def test_module_writable_by_group_refused():
    with Daemon(start=False) as d:
        mods, so = module_copy(d)
        os.chmod(so, 0o775)
        rc, out = stage_check(d, os.path.join(mods, "mta"))
        assert rc == 1, out
        assert "refused: %s: writable by its group (mode 0775)" % so in out, out


def test_module_directory_writable_by_others_refused():
    with Daemon(start=False) as d:
        mods, so = module_copy(d)
        os.chmod(mods, 0o777)
        rc, out = stage_check(d, os.path.join(mods, "mta"))
        assert rc == 1, out
        assert "refused: directory %s (of %s): writable by its group and others (mode 0777)" % (mods, so) \
            in out, out


def test_module_owned_by_another_user_refused():
    if os.geteuid() != 0:
        petrel.skip("needs root (a module file owned by someone else)")
    import pwd
    nobody = pwd.getpwnam(USER)
    with Daemon(start=False) as d:
        mods, so = module_copy(d)
        os.chown(so, nobody.pw_uid, nobody.pw_gid)
        rc, out = stage_check(d, os.path.join(mods, "mta"))
        assert rc == 1, out
        assert "refused: %s: owned by uid %d, neither root nor the user petreld runs as (uid 0)" \
            % (so, nobody.pw_uid) in out, out


def test_module_only_from_module_path():
    """A module in LD_LIBRARY_PATH (and not in module_path) is not found."""
    with Daemon(start=False) as d:
        mods, so = module_copy(d)
        os.rename(so, os.path.join(mods, "ldonly.so"))
        env = d.env()
        env["LD_LIBRARY_PATH"] = mods
        rc, out = stage_check(d, "ldonly", env=env)
        assert rc == 1, "a module outside module_path was loaded: %r" % out
        assert "module 'ldonly' cannot be loaded: not found in module_path" in out, out


if __name__ == "__main__":
    petrel.main()
