#!/usr/bin/env python3
"""The ratelimit store's journal (issue 7, item 9): the loop appends only
the counters that changed to STATE.log, a journal grown past 256 KiB is
merged into the snapshot STATE on a filter thread, and neither kill -9
nor the merge loses a count (modules/ratelimit/ratelimit_store.h).

Before the fix (43c3e2b) the loop rewrote the whole table into STATE
every second and there was no journal: the first test fails there
waiting for STATE.log, the second finds its preloaded journal ignored.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import T  # noqa: E402
from test_ratelimit import rl_daemon, send, mail_refused  # noqa: E402

JOURNAL_MAX = 256 * 1024


def starts(now=None):
    now = int(now or time.time())
    return now - now % 3600, now - now % 86400


def line(key, n, now=None):
    h, d = starts(now)
    return "%s %d %d 0 %d %d 0\n" % (key, h, n, d, n)


def wait_file(path, pred, timeout=10):
    deadline = time.monotonic() + T(timeout)
    while True:
        try:
            with open(path) as f:
                text = f.read()
            if pred(text):
                return text
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("%s never became as expected" % path)
        time.sleep(0.05)


def test_journal_survives_kill9():
    with rl_daemon(["sender 2/hour"]) as d:
        send(d, "a@localhost")
        send(d, "a@localhost")
        # the loop appends what changed, within about a second
        log = wait_file(d.state + ".log",
                        lambda t: "s:a@localhost %d 2 0" % starts()[0] in t)
        assert log.startswith("petrel-ratelimit-log 1\n"), log[:80]
        assert not os.path.exists(d.state), "a snapshot was written on the loop"
        d.kill9()
        d.start()
        r = mail_refused(d, "a@localhost")
        assert "(2/hour)" in r.text, r
        # the journal goes on after the restart, from where it was
        send(d, "b@localhost")
        wait_file(d.state + ".log", lambda t: "s:b@localhost " in t)
        d.kill9()
        d.start()
        mail_refused(d, "a@localhost")
        send(d, "b@localhost")
        mail_refused(d, "b@localhost")
        d.wait_delivered("user", 4)
        d.assert_nothing_more(4, grace=0.3)


def test_compaction_keeps_counts_across_kill9():
    d = rl_daemon(["sender 2/hour"], start=False)
    # a journal past JOURNAL_MAX: 6,000 senders with 1, a@ with 2, and a@
    # written again (a merge must take the larger count, not the last line)
    parts = ["petrel-ratelimit-log 1\n", line("s:a@localhost", 2)]
    parts += [line("s:b%d@localhost" % i, 1) for i in range(6000)]
    parts.append(line("s:a@localhost", 1))
    with open(d.state + ".log", "w") as f:
        f.write("".join(parts))
    assert os.path.getsize(d.state + ".log") > JOURNAL_MAX
    with d:
        d.start()
        # one more count makes the loop append, see the big journal, and
        # hand it to a filter thread: STATE.log.old merged into STATE
        send(d, "c@localhost")
        # (c@'s line went to the journal just before it was moved aside)
        wait_file(d.state, lambda t: "s:c@localhost " in t and "s:b5999@localhost " in t)
        deadline = time.monotonic() + T(10)
        while os.path.exists(d.state + ".log.old") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(d.state + ".log.old"), "the merge left the old journal"
        with open(d.state) as f:
            snap = f.read()
        assert snap.startswith("petrel-ratelimit 1\n"), snap[:80]
        assert "s:b5999@localhost %d 1 0" % starts()[0] in snap, "a count lost in the merge"
        assert "s:a@localhost %d 2 0" % starts()[0] in snap, \
            [ln for ln in snap.splitlines() if ln.startswith("s:a@")]
        assert not os.path.exists(d.state + ".log") or \
            os.path.getsize(d.state + ".log") < JOURNAL_MAX
        # counts after the merge go to a new journal
        send(d, "c@localhost")
        wait_file(d.state + ".log", lambda t: "s:c@localhost %d 2 0" % starts()[0] in t)
        d.kill9()
        d.start()
        # every count is back: the snapshot (a@, bN, c@'s first) and the new journal (c@'s second)
        mail_refused(d, "a@localhost")
        send(d, "b17@localhost")
        mail_refused(d, "b17@localhost")
        mail_refused(d, "c@localhost")
        send(d, "fresh@localhost")
        d.wait_delivered("user", 4)
        d.assert_nothing_more(4, grace=0.3)


if __name__ == "__main__":
    petrel.main()
