#!/usr/bin/env python3
"""A message whose delivery crashes the daemon is held, not retried forever.

Deliveries run on worker threads inside petreld, so a transport that
crashes takes the daemon down, and the queued message would kill it again
at every start (issue 7, item 1: a queue of death).  The guard (src/spool.h,
"Delivery attempts"): each attempt is marked in the queue file; recovery
counts a crash for a message found marked, runs such a suspect alone, and
holds it once it has crashed the daemon SPOOL_CRASH_LIMIT (2) times, the
last time with nothing else being delivered.  Everything else is delivered.

The crash comes from tests/modules/crashy.c, a transport that abort()s for
the local part "crash" and takes delay_ms for every other one (so that
other deliveries are in flight when it crashes).
"""

import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, T, make_message  # noqa: E402

PETRELCTL = os.environ.get("PETRELCTL") or os.path.join(petrel.BUILDDIR, "src", "petrelctl")
CRASH_LIMIT = 2


def crashy_daemon(delay_ms=0, workers=4):
    return Daemon(settings={"delivery_workers": workers, "retry_initial": 3600},
                  router={"local_transport": "crashy"},
                  modules_extra='  crashy = { abort_local = "crash"; delay_ms = %d; };'
                  % delay_ms)


def wait_for(d, done, timeout=20):
    """Wait until done() is true while the daemon runs (returns True) or
    the daemon dies (returns False, after checking it died by abort())."""
    deadline = time.monotonic() + T(timeout)
    while time.monotonic() < deadline:
        if not d.running():
            rc = d.proc.returncode
            assert rc == -signal.SIGABRT, \
                "petreld died with %s, not by the test transport's abort()" % rc
            return False
        if done():
            return True
        time.sleep(0.05)
    raise AssertionError("neither done nor dead within %ss; log: %s"
                         % (T(timeout), d.log_tail()))


def held(d):
    h = os.path.join(d.spool, "hold")
    return sorted(os.listdir(h)) if os.path.isdir(h) else []


def settle(d, done, max_deaths):
    """Restart after each crash until done(); returns the number of deaths."""
    deaths = 0
    while not wait_for(d, done):
        while True:
            deaths += 1
            assert deaths <= max_deaths, \
                "petreld died %d times (more than %d): the crash loop goes on; log: %s" \
                % (deaths, max_deaths, d.log_tail(12))
            try:
                d.start()
                break
            except petrel.DaemonError:
                # it may die before it listens: that is one more crash
                assert d.proc.returncode == -signal.SIGABRT, d.proc.returncode
    return deaths


def send_poison(d, rcpts, subject):
    """Send a message that crashes the daemon; the crash may come before
    the 250 is read, so the queue id is taken from the transport's log."""
    with d.client() as c:
        c.ehlo()
        try:
            c.send_mail("s@localhost", rcpts, make_message(subject=subject))
        except (AssertionError, OSError):
            pass            # the daemon died before its reply was read
    return d.wait_log(r"crashy: (\w+): abort\(\) for <crash@localhost>").group(1)


def sent(d, qid):
    return ("%s: to=" % qid) in d.log_text() and \
        ("%s: removed" % qid) in d.log_text()


def test_poison_held_others_delivered():
    with crashy_daemon(delay_ms=300) as d:
        with d.client() as c:
            c.ehlo()
            good = [c.send_mail("s@localhost", ["user%d@localhost" % i],
                                make_message(subject="good %d" % i)) for i in range(4)]
            # innocent deliveries are in flight (300 ms each) when this crashes
        poison = send_poison(d, ["crash@localhost"], "poison")
        deaths = settle(d, lambda: held(d) == [poison] and all(sent(d, q) for q in good),
                        CRASH_LIMIT)
        assert deaths >= 1, "the test transport never crashed the daemon"
        log = d.log_text()
        for q in good:
            assert "%s: removed" % q in log, "%s never delivered" % q
            assert "%s: petreld died" % q not in log, "innocent %s was held" % q
        assert "%s: petreld died %d times" % (poison, CRASH_LIMIT) in log, d.log_tail()
        assert "petrelctl -s %s release %s" % (d.spool, poison) in log
        assert poison not in d.queued()
        # the daemon stays up and keeps taking and delivering mail
        time.sleep(0.5)
        assert d.running()
        qid = petrel.send_one(d.port, "s@localhost", "after@localhost",
                              make_message(subject="after"))
        assert wait_for(d, lambda: sent(d, qid))
        # and the next start does not touch the held message
        d.restart()
        time.sleep(0.5)
        assert d.running() and held(d) == [poison]


def test_poison_alone_release_and_fix():
    with crashy_daemon() as d:
        poison = send_poison(d, ["crash@localhost", "fine@localhost"], "poison alone")
        deaths = settle(d, lambda: held(d) == [poison], CRASH_LIMIT)
        assert deaths == CRASH_LIMIT, "died %d times, expected %d" % (deaths, CRASH_LIMIT)
        # released while the bug is still there: one attempt, alone, and
        # held again at the next start
        p = subprocess.run([PETRELCTL, "-s", d.spool, "release", poison],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        deaths = settle(d, lambda: held(d) == [poison] and
                        d.log_text().count("%s: released into the queue" % poison) == 1
                        and d.log_text().count("%s: petreld died" % poison) == 2, 1)
        assert deaths == 1, "a released crasher cost %d crashes, expected 1" % deaths
        # the bug is fixed (here: the transport is told not to crash)
        d.stop()
        with open(d.conf) as f:
            text = f.read()
        with open(d.conf, "w") as f:
            f.write(text.replace('abort_local = "crash"', 'abort_local = "nobody"'))
        d.start()
        p = subprocess.run([PETRELCTL, "-s", d.spool, "release", poison],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        assert wait_for(d, lambda: "%s: removed" % poison in d.log_text())
        log = d.log_text()
        assert "%s: to=<crash@localhost>, relay=crashy" % poison in log
        assert held(d) == [] and d.queued() == []


def test_clean_stop_leaves_no_mark():
    """Deliveries in flight at SIGTERM finish: no crash is counted after a
    clean stop, however often it happens."""
    with crashy_daemon(delay_ms=500) as d:
        qids = [petrel.send_one(d.port, "s@localhost", "slow%d@localhost" % i,
                                make_message(subject="slow")) for i in range(3)]
        d.wait_log(r"%s: client=" % qids[-1])
        d.restart()
        d.restart()
        assert wait_for(d, lambda: all(sent(d, q) for q in qids))
        assert "petreld stopped during a delivery" not in d.log_text(), d.log_tail()


if __name__ == "__main__":
    petrel.main()
