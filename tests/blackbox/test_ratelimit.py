#!/usr/bin/env python3
"""The ratelimit filter: messages per hour per sender and client, recipients
per message, overrides, counters that survive a restart (SIGTERM and
kill -9), and configuration errors at `petreld -t`.  Each refusal is checked
for its code, enhanced code and text, and refused mail is never delivered."""

import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, make_message, check  # noqa: E402


def rl_daemon(limits, overrides=(), more=(), start=True, state=True, **kw):
    """A daemon with filters = [ "ratelimit" ]; each ratelimit setting on
    its own line (so an error's line number says which one)."""
    lines = ["  ratelimit = {"]
    if state:
        lines.append('    state_file = "@STATE@";')
    lines.append("    limits = %s;" % petrel.cfg_value(list(limits)))
    if overrides:
        lines.append("    overrides = %s;" % petrel.cfg_value(list(overrides)))
    for m in more:
        lines.append("    " + m)
    lines.append("  };")
    d = Daemon(start=False, extra='filters = [ "ratelimit" ];',
               modules_extra="\n".join(lines), **kw)
    d.state = os.path.join(d.dir, "ratelimit.state")
    d.config_text = d.config_text.replace("@STATE@", d.state)
    with open(d.conf, "w") as f:
        f.write(d.config_text)
    if start:
        d.start()
    return d


def send(d, sender, rcpts=("user@localhost",), subject="rl"):
    return petrel.send_one(d.port, sender, list(rcpts), make_message(subject))


def mail_refused(d, sender, code=450, enh="4.7.1"):
    """MAIL is refused; the transaction goes nowhere.  Returns the reply."""
    with d.client() as c:
        c.ehlo()
        r = c.cmd("MAIL FROM:<%s>" % sender)
        check(r, code, enh, "MAIL FROM:<%s>" % sender)
        c.cmd("RCPT TO:<user@localhost>", 503)
        c.cmd("DATA", 503)
        c.cmd("QUIT", 221)
    return r


def check_conf(path):
    env = dict(os.environ)
    env["PETREL_MODULE_PATH"] = petrel.MODULE_PATH
    return petrel.run([petrel.PETRELD, "-t", "-c", path], timeout=15, env=env)


# ---------------------------------------------------------------------------
# message rates

def test_sender_limit_refuses_the_fourth_message():
    with rl_daemon(["sender 3/hour"]) as d:
        for i in range(3):
            send(d, "a@localhost", subject="ok %d" % i)
        r = mail_refused(d, "a@localhost")
        assert "<a@localhost>: too many messages from this sender (3/hour)" \
            in r.text, r
        # the sender is lower-cased: the same counter
        mail_refused(d, "A@LocalHost")
        # a different sender still passes
        send(d, "b@localhost", subject="other sender")
        d.wait_delivered("user", 4)
        d.assert_nothing_more(4, grace=0.5)
        d.wait_log(r"ratelimit: refused MAIL FROM:<a@localhost> from 127\.0\.0\.1: "
                   r"sender 3/hour reached")


def test_configured_reply_code():
    with rl_daemon(["sender 1/day"], more=['reply = "550 5.7.1";']) as d:
        send(d, "a@localhost")
        r = mail_refused(d, "a@localhost", 550, "5.7.1")
        assert "too many messages from this sender (1/day)" in r.text, r
        d.assert_nothing_more(1, grace=0.3)


def test_null_sender_is_never_limited():
    with rl_daemon(["sender 1/hour"]) as d:
        for i in range(3):
            send(d, "", subject="bounce %d" % i)
        d.wait_delivered("user", 3)


def test_client_limit():
    with rl_daemon(["client 2/hour", "sender 10/hour"]) as d:
        send(d, "a@localhost")
        send(d, "b@localhost")
        r = mail_refused(d, "c@localhost")
        assert "too many messages from this client [127.0.0.1] (2/hour)" in r.text, r
        d.wait_delivered("user", 2)
        d.assert_nothing_more(2, grace=0.5)


def test_user_limit_ignored_without_auth():
    # a session with no login has no user limit
    with rl_daemon(["user 1/hour"]) as d:
        for i in range(3):
            send(d, "a@localhost", subject="no auth %d" % i)
        d.wait_delivered("user", 3)


def auth_rl_daemon(limits, overrides=()):
    """rl_daemon whose listener offers AUTH (in clear text: the limit sees
    only the login) to alice and bob."""
    d = rl_daemon(limits, overrides, start=False,
                  listener={"auth": True, "auth_cleartext": True},
                  settings={"auth_passwords": "@PASSWD@"})
    pw = petrel.write_passwd(d.dir, ["alice:" + petrel.crypt_hash("alice-pw", b"$6$"),
                                     "bob:" + petrel.crypt_hash("bob-pw", b"$6$")])
    d.config_text = d.config_text.replace("@PASSWD@", pw)
    with open(d.conf, "w") as f:
        f.write(d.config_text)
    d.start()
    return d


def auth_session(d, user):
    c = d.client()
    c.ehlo()
    c.cmd("AUTH PLAIN " + petrel.auth_plain(user, user + "-pw"), 235, "2.7.0")
    return c


def test_user_limit_follows_the_login_across_a_restart():
    # the key is the login: other senders, other sessions do not help alice
    with auth_rl_daemon(["user 3/hour", "sender 100/hour"]) as d:
        for i in range(3):
            with auth_session(d, "alice") as c:
                c.send_mail("alice%d@localhost" % i, ["user@localhost"],
                            make_message("alice %d" % i))
        with auth_session(d, "alice") as c:
            r = c.cmd("MAIL FROM:<alice9@localhost>")
            check(r, 450, "4.7.1", "alice's fourth MAIL")
            assert "too many messages from this user (3/hour)" in r.text, r
            c.cmd("RCPT TO:<user@localhost>", 503, "5.5.1")
        # bob has his own counter, and without AUTH there is no user limit
        with auth_session(d, "bob") as c:
            c.send_mail("bob@localhost", ["user@localhost"], make_message("bob"))
        send(d, "anon@localhost", subject="anonymous")
        d.wait_delivered("user", 5)
        d.wait_log(r"(?m)ratelimit: refused MAIL FROM:<alice9@localhost> from 127\.0\.0\.1: "
                   r"user 3/hour reached \(3\), sasl_username=alice$")
        d.restart()
        with open(d.state) as f:
            assert "\nu:alice " in f.read()
        with auth_session(d, "alice") as c:
            c.cmd("MAIL FROM:<alice@localhost>", 450, "4.7.1")
        with auth_session(d, "bob") as c:
            c.send_mail("bob@localhost", ["user@localhost"], make_message("bob again"))
        d.wait_delivered("user", 6)
        d.assert_nothing_more(6, grace=0.3)


def test_recipients_override_for_a_login():
    with auth_rl_daemon(["recipients 5/message"], ["alice: recipients 2/message"]) as d:
        with auth_session(d, "alice") as c:
            c.cmd("MAIL FROM:<whoever@localhost>", 250)
            c.cmd("RCPT TO:<r1@localhost>", 250)
            c.cmd("RCPT TO:<r2@localhost>", 250)
            r = c.cmd("RCPT TO:<r3@localhost>")
            check(r, 452, "4.5.3", "alice's third RCPT")
        with auth_session(d, "bob") as c:
            c.mail_rcpt("whoever@localhost", ["r%d@localhost" % i for i in range(1, 5)])


def test_concurrent_sessions_cannot_overshoot():
    # an open transaction holds its place: a second session waits its turn
    with rl_daemon(["sender 1/hour"]) as d, d.client() as a, d.client() as b:
        a.ehlo()
        b.ehlo()
        a.mail_rcpt("a@localhost", ["user@localhost"])
        r = b.cmd("MAIL FROM:<a@localhost>")
        check(r, 450, "4.7.1", "second session")
        b.cmd("QUIT", 221)
        a.data(make_message("the one"))
        a.cmd("QUIT", 221)
        d.wait_delivered("user", 1)
        mail_refused(d, "a@localhost")
        d.assert_nothing_more(1, grace=0.3)


def test_rset_releases_the_place():
    with rl_daemon(["sender 1/hour"]) as d:
        with d.client() as c:
            c.ehlo()
            c.cmd("MAIL FROM:<a@localhost>", 250)
            c.cmd("RSET", 250)
            c.cmd("MAIL FROM:<a@localhost>", 250)
            c.cmd("RCPT TO:<user@localhost>", 250)
            c.data(make_message("after rset"))
            c.cmd("MAIL FROM:<a@localhost>", 450, "4.7.1")
        d.wait_delivered("user", 1)


# ---------------------------------------------------------------------------
# recipients per message

def test_recipients_per_message():
    with rl_daemon(["recipients 2/message"]) as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<r1@localhost>", 250)
        c.cmd("RCPT TO:<r2@localhost>", 250)
        r = c.cmd("RCPT TO:<r3@localhost>")
        check(r, 452, "4.5.3", "third RCPT")
        assert "<a@localhost>: too many recipients for this sender (2/message)" \
            in r.text, r
        c.data(make_message("two of three"))
        d.wait_delivered("r1", 1)
        d.wait_delivered("r2", 1)
        d.assert_nothing_more(2, grace=0.5)
        assert not d.delivered("r3")


def test_refused_recipient_does_not_count():
    # the limit counts accepted recipients: one the router refuses is free
    router = {"mailboxes": ["r1@localhost", "r2@localhost"]}
    with rl_daemon(["recipients 2/message"], router=router) as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<nobody@localhost>", 550, "5.1.1")
        c.cmd("RCPT TO:<r1@localhost>", 250)
        c.cmd("RCPT TO:<r2@localhost>", 250)
        c.cmd("RCPT TO:<r1x@localhost>", 452, "4.5.3")


def test_recipients_configured_reply():
    with rl_daemon(["recipients 1/message"],
                   more=['recipients_reply = "550 5.5.3";']) as d, d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<a@localhost>", 250)
        c.cmd("RCPT TO:<r1@localhost>", 250)
        r = c.cmd("RCPT TO:<r2@localhost>", 550, "5.5.3")
        assert "too many recipients for this sender (1/message)" in r.text, r


# ---------------------------------------------------------------------------
# overrides

def test_override_for_one_address():
    overrides = ["alice@localhost: sender 1/hour, recipients 1/message"]
    with rl_daemon(["sender 5/hour", "recipients 3/message"], overrides) as d:
        with d.client() as c:
            c.ehlo()
            c.cmd("MAIL FROM:<alice@localhost>", 250)
            c.cmd("RCPT TO:<user@localhost>", 250)
            c.cmd("RCPT TO:<other@localhost>", 452, "4.5.3")
            c.data(make_message("alice 1"))
        r = mail_refused(d, "Alice@localhost")
        assert "(1/hour)" in r.text, r
        # bob keeps the global limits
        for i in range(3):
            send(d, "bob@localhost", ["user@localhost", "u2@localhost", "u3@localhost"],
                 subject="bob %d" % i)
        d.wait_delivered("user", 4)
        d.wait_delivered("u3", 3)


def test_override_most_specific_wins():
    overrides = ["spam.test: sender 1/hour",
                 "vip@spam.test: sender 3/hour"]
    with rl_daemon(["sender 10/hour"], overrides) as d:
        send(d, "x@spam.test")
        r = mail_refused(d, "x@spam.test")
        assert "(1/hour)" in r.text, r
        for i in range(3):
            send(d, "vip@spam.test", subject="vip %d" % i)
        r = mail_refused(d, "vip@spam.test")
        assert "(3/hour)" in r.text, r
        send(d, "a@other.test")
        d.wait_delivered("user", 5)
        d.assert_nothing_more(5, grace=0.3)


# ---------------------------------------------------------------------------
# persistence

def test_counters_survive_restart():
    with rl_daemon(["sender 2/hour"]) as d:
        send(d, "a@localhost")
        send(d, "a@localhost")
        d.restart()
        with open(d.state) as f:
            text = f.read()
        assert text.startswith("petrel-ratelimit 1\n"), text
        assert "s:a@localhost " in text, text
        mail_refused(d, "a@localhost")
        send(d, "b@localhost")
        d.wait_delivered("user", 3)
        d.assert_nothing_more(3, grace=0.3)


def test_counters_survive_kill9():
    with rl_daemon(["sender 2/hour"]) as d:
        send(d, "a@localhost")
        send(d, "a@localhost")
        time.sleep(petrel.T(1.6))       # the module flushes within ~1 s
        d.kill9()
        d.start()
        r = mail_refused(d, "a@localhost")
        assert "(2/hour)" in r.text, r


def test_missing_and_corrupt_state_file():
    d = rl_daemon(["sender 1/hour"], start=False)
    with open(d.state, "w") as f:
        f.write("petrel-ratelimit 1\ns:a@localhost 12 x\n")
    with d:
        d.start()
        d.wait_log(r"ratelimit: .*ratelimit\.state:2: corrupt state file: ignored")
        send(d, "a@localhost")
        mail_refused(d, "a@localhost")
        d.restart()
        mail_refused(d, "a@localhost")


def test_state_dir_created_later():
    # a missing directory is a warning, saving is retried until it works
    d = rl_daemon(["sender 2/hour"], start=False)
    later = os.path.join(d.dir, "later")
    d.state = os.path.join(later, "ratelimit.state")
    d.config_text = d.config_text.replace(os.path.join(d.dir, "ratelimit.state"), d.state)
    with open(d.conf, "w") as f:
        f.write(d.config_text)
    with d:
        d.start()
        d.wait_log(r"ratelimit: state_file .*later/ratelimit\.state: directory .* does not exist")
        send(d, "a@localhost")
        d.wait_log(r"ratelimit: cannot save counters: .*later/ratelimit\.state\.(log|tmp)")
        os.mkdir(later)
        send(d, "a@localhost")
        d.restart()
        assert os.path.exists(d.state)
        mail_refused(d, "a@localhost")


# ---------------------------------------------------------------------------
# configuration errors

def line_of(text, needle):
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError("%r not in config" % needle)


BAD = [
    ("bad window", dict(limits=["sender 3/week"]), "limits =", "unknown window 'week'"),
    ("unknown key", dict(limits=["sender 3/hour", "bogus 3/hour"]), "limits =",
     "unknown key 'bogus'"),
    ("not a number", dict(limits=["sender three/hour"]), "limits =", "expected a number"),
    ("no slash", dict(limits=["sender 3 hour"]), "limits =", "expected '/'"),
    ("recipients per hour", dict(limits=["recipients 3/hour"]), "limits =", "per message"),
    ("sender per message", dict(limits=["sender 3/message"]), "limits =", "unknown window"),
    ("twice", dict(limits=["sender 3/hour", "sender 4/hour"]), "limits =", "twice"),
    ("override without colon", dict(limits=[], overrides=["alice sender 1/hour"]),
     "overrides =", "expected \"WHO: limit"),
    ("override bad limit", dict(limits=[], overrides=["alice@x: sender 1/year"]),
     "overrides =", "unknown window 'year'"),
    ("bad reply", dict(limits=[], more=['reply = "250 2.0.0";']), "reply =", "4xx or 5xx"),
    ("reply class mismatch", dict(limits=[], more=['reply = "450 5.7.1";']), "reply =",
     "same class"),
    ("relative state file", dict(limits=[], state=False, more=['state_file = "rl.state";']),
     "state_file =", "absolute path"),
]


def test_bad_config_is_refused_with_line():
    bad = []
    for label, kw, needle, text in BAD:
        d = rl_daemon(start=False, **kw)
        p = check_conf(d.conf)
        out = p.stderr.decode("utf-8", "replace") + p.stdout.decode("utf-8", "replace")
        want = "%s:%d: " % (d.conf, line_of(d.config_text, needle))
        if p.returncode != 1 or want not in out or text not in out \
                or "ratelimit" not in out:
            bad.append("%s: exit %d, want %r and %r in %r"
                       % (label, p.returncode, want, text, out))
        shutil.rmtree(d.dir, ignore_errors=True)
    assert not bad, "\n".join(bad)


def test_missing_state_file_setting():
    d = rl_daemon(["sender 1/hour"], start=False, state=False)
    p = check_conf(d.conf)
    out = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 1 and d.conf in out and "state_file" in out, (p.returncode, out)
    assert re.search(re.escape(d.conf) + r":\d+: ", out), out
    # and the daemon refuses to start
    p = petrel.run([petrel.PETRELD, "-f", "-c", d.conf], timeout=15, env=d.env())
    assert p.returncode != 0, p
    shutil.rmtree(d.dir, ignore_errors=True)


def test_good_config_passes_check():
    d = rl_daemon(["sender 100/hour", "sender 1000/day", "client 500/hour",
                   "user 200/day", "recipients 50/message"],
                  ["alice@example.org: sender 10/hour, recipients 5/message",
                   "example.net: sender 500/day"],
                  more=['reply = "450 4.7.1";'], start=False)
    p = check_conf(d.conf)
    assert p.returncode == 0, p.stderr
    assert not os.path.exists(d.state), "petreld -t wrote the state file"
    shutil.rmtree(d.dir, ignore_errors=True)


if __name__ == "__main__":
    petrel.main()
