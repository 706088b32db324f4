#!/usr/bin/env python3
"""Error limits, as Postfix's smtpd_soft_error_limit, smtpd_hard_error_limit,
smtpd_error_sleep_time and smtpd_junk_command_limit (issue 7, items 9
and 10).

  - refused recipients count: unknown users, relaying denied, a filter's
    reject; harvesting addresses on one connection ends at the hard limit
    (with the defaults: 20, and each reply after the 10th error waits 1 s);
  - past soft_error_limit every reply waits error_sleep_time on a timer,
    while other sessions are served;
  - junk commands (NOOP, RSET, VRFY, HELP, HELO, EHLO) past
    junk_command_limit count as errors;
  - a delivered message starts both counts again."""

import os
import select
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, T, make_message  # noqa: E402

TEST_MODULES = os.path.join(petrel.BUILDDIR, "tests", "modules")
if TEST_MODULES not in petrel.MODULE_PATH.split(":"):
    petrel.MODULE_PATH = petrel.MODULE_PATH + ":" + TEST_MODULES

MAILBOXES = {"mailboxes": ["user@localhost"]}


def test_harvesting_recipients_ends_at_the_hard_limit_with_defaults():
    # the default settings: 20 errors, replies slowed after the 10th
    with Daemon(router=MAILBOXES) as d, d.client(timeout=30) as c:
        c.ehlo()
        c.cmd("MAIL FROM:<h@example.net>", 250)
        c.cmd("RCPT TO:<user@localhost>", 250, "2.1.5")     # a real one: no error
        for i in range(20):
            c.cmd("RCPT TO:<guess%d@localhost>" % i, 550, "5.1.1")
        c.expect(421, "4.7.0", what="after 20 refused recipients")
        c.expect_closed()
        d.wait_log(r"too many errors \(20\) from \[127\.0\.0\.1\]:\d+")


def test_every_kind_of_refused_recipient_counts():
    s = {"hard_error_limit": 3, "error_sleep_time": 0}
    with Daemon(settings=s, router=MAILBOXES) as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<h@example.net>", 250)
        c.cmd("RCPT TO:<nobody@localhost>", 550, "5.1.1")          # unknown user
        c.cmd("RCPT TO:<someone@elsewhere.example>", 554, "5.7.1")  # relaying denied
        c.cmd("RCPT TO:<user@localhost>", 250)
        c.cmd("RSET", 250)
        c.cmd("MAIL FROM:<h@example.net>", 250)
        c.cmd("DATA", 503, "5.5.1")                                # the third error
        c.expect(421, "4.7.0")
        c.expect_closed()
    d = Daemon(settings=s, extra='filters = [ "testhooks" ];',
               modules_extra='  testhooks = { verdict_rcpt = "reject"; };')
    with d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<h@example.net>", 250)
        for i in range(3):                                        # a filter's reject
            c.cmd("RCPT TO:<u%d@localhost>" % i, 554, "5.7.1")
        c.expect(421, "4.7.0")
        c.expect_closed()


def test_replies_past_the_soft_limit_wait_on_a_timer():
    sleep = max(2, int(T(2)))
    s = {"soft_error_limit": 2, "error_sleep_time": sleep, "hard_error_limit": 100}
    with Daemon(settings=s) as d, d.client(timeout=4 * sleep) as a, d.client() as b:
        a.ehlo()
        b.ehlo()
        a.cmd("XYZZY", 500)
        a.cmd("XYZZY", 500)                 # 2 errors: replies now wait
        a.send("NOOP\r\n")
        b.cmd("NOOP", 250)                  # the daemon is not asleep
        r, _, _ = select.select([a.sock], [], [], 0)
        assert not r, "the reply came before error_sleep_time (%d s)" % sleep
        a.expect(250, "2.0.0", timeout=3 * sleep)
        b.cmd("QUIT", 221)
        a.cmd("QUIT", 221, timeout=3 * sleep)


def test_junk_commands_past_the_limit_count_as_errors():
    s = {"junk_command_limit": 5, "hard_error_limit": 3, "error_sleep_time": 0}
    with Daemon(settings=s) as d, d.client() as c:
        c.ehlo()                                     # junk 1
        for cmd, code in (("NOOP", 250), ("RSET", 250), ("VRFY x", 252), ("HELP", 214)):
            c.cmd(cmd, code)                         # junk 2..5: free
        c.cmd("NOOP", 250)                           # 6: error 1
        c.ehlo()                                     # 7: error 2
        c.cmd("NOOP", 250)                           # 8: error 3
        c.expect(421, "4.7.0")
        c.expect_closed()
        d.wait_log(r"too many errors \(3\)")


def test_a_delivered_message_starts_the_counts_again():
    s = {"junk_command_limit": 2, "hard_error_limit": 3, "error_sleep_time": 0}
    with Daemon(settings=s) as d:
        with d.client() as c:
            c.ehlo()                         # junk 1
            c.cmd("NOOP", 250)               # junk 2
            c.cmd("NOOP", 250)               # error 1
            c.cmd("XYZZY", 500)              # error 2
            c.cmd("XYZZY", 500)              # error 3
            c.expect(421, "4.7.0")
            c.expect_closed()
        with d.client() as c:                # the same, with a message in between
            c.ehlo()
            c.cmd("NOOP", 250)
            c.cmd("NOOP", 250)               # error 1
            c.cmd("XYZZY", 500)              # error 2
            c.send_mail("a@localhost", ["user@localhost"], make_message("resets"))
            c.cmd("NOOP", 250)               # junk 1, 2 again: free
            c.cmd("NOOP", 250)
            c.cmd("XYZZY", 500)              # error 1
            c.cmd("XYZZY", 500)              # error 2
            c.cmd("QUIT", 221)


if __name__ == "__main__":
    petrel.main()
