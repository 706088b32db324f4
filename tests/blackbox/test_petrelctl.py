#!/usr/bin/env python3
"""petrelctl signals only the petreld of its spool.  The pid file belongs to
the user petreld runs as, and petrelctl may run as root: a pid written
there by someone else (an innocent process, one that even holds a lock on
the file) is refused and survives; the daemon's own pid is signalled.  A
second petreld on a spool in use stops at start."""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon  # noqa: E402

PETRELCTL = os.path.join(os.environ.get("PETREL_SRCDIR") or petrel.TOP, "tools", "petrelctl")


def petrelctl(d, *args):
    r = subprocess.run(["sh", PETRELCTL, "-s", d.spool] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=20, text=True)
    return r.returncode, r.stdout


def innocent():
    """A process SIGUSR1 would kill."""
    return subprocess.Popen(["sleep", "60"])


def assert_survives(p):
    time.sleep(0.3)
    assert p.poll() is None, "the innocent process was signalled (exit %s)" % p.returncode


def write_pid(path, pid, same_inode=True):
    if same_inode:
        with open(path, "r+") as f:
            f.truncate(0)
            f.write("%d\n" % pid)
    else:
        os.unlink(path)
        with open(path, "w") as f:
            f.write("%d\n" % pid)


def test_flush_signals_the_daemon():
    with Daemon() as d:
        rc, out = petrelctl(d, "flush")
        assert rc == 0, out
        assert d.running()


def test_pid_overwritten_in_the_locked_file_refused():
    with Daemon() as d:
        pf = os.path.join(d.spool, "petreld.pid")
        real = open(pf).read()
        p = innocent()
        try:
            write_pid(pf, p.pid)
            rc, out = petrelctl(d, "flush")
            assert_survives(p)
            assert rc != 0, out
            assert "not signalled: pid %d holds no lock on it" % p.pid in out, out
        finally:
            p.kill()
            p.wait()
        with open(pf, "w") as f:
            f.write(real)
        rc, out = petrelctl(d, "flush")
        assert rc == 0, out


def test_pid_in_a_new_file_refused():
    with Daemon() as d:
        pf = os.path.join(d.spool, "petreld.pid")
        p = innocent()
        try:
            write_pid(pf, p.pid, same_inode=False)
            rc, out = petrelctl(d, "flush")
            assert_survives(p)
            assert rc != 0 and "holds no lock on it" in out, out
        finally:
            p.kill()
            p.wait()


def test_lock_holder_that_is_not_petreld_refused():
    """No daemon; a process locks the pid file and writes its own pid."""
    with Daemon(start=False) as d:
        os.makedirs(os.path.join(d.spool, "queue"))
        pf = os.path.join(d.spool, "petreld.pid")
        code = ("import fcntl, os, sys, time\n"
                "f = open(sys.argv[1], 'w')\n"
                "fcntl.lockf(f, fcntl.LOCK_EX)\n"
                "f.write('%d\\n' % os.getpid()); f.flush()\n"
                "print('locked', flush=True)\n"
                "time.sleep(60)\n")
        p = subprocess.Popen([sys.executable, "-c", code, pf], stdout=subprocess.PIPE)
        try:
            assert p.stdout.readline() == b"locked\n"
            rc, out = petrelctl(d, "flush")
            assert_survives(p)
            assert rc != 0, out
            assert "not signalled: pid %d runs" % p.pid in out and "not petreld" in out, out
        finally:
            p.kill()
            p.wait()


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


if __name__ == "__main__":
    petrel.main()
