#!/usr/bin/env python3
"""Live reload (issue 9 item 5): `petrelctl reload` and SIGHUP read the
whole petrel.conf again.  A new generation takes new sessions (a listener
added, a filter added, a limit changed) while a session opened before the
reload finishes under the rules it started with; a broken file is refused
with its FILE:LINE lines (the same ones `petreld -t` prints) and the
daemon serves on as before; 200 reloads in a row, alternating two
configurations, under a smtp-source load lose no message, drop no session,
free every old generation and do not grow the daemon's memory."""

import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, Client, make_message, check, diag, T  # noqa: E402

PETRELCTL = os.environ.get("PETRELCTL") or os.path.join(petrel.BUILDDIR, "src", "petrelctl")
SMTP_SOURCE = "/usr/sbin/smtp-source"
# ASan keeps freed memory in its quarantine: RSS says nothing there, and
# LeakSanitizer at the daemon's exit is the check (as test_backpressure)
SANITIZED = os.environ.get("ASAN_OPTIONS") is not None

RULE = "body /FORBIDDEN-WORD/ reject 554 5.7.1 Refused by the new rules\n"


def ctl(d, *args):
    return subprocess.run([PETRELCTL, "-c", d.conf] + list(args), cwd=d.dir,
                          capture_output=True, text=True, timeout=T(30))


def write_conf(d, text):
    # a new file put in place at once, as an editor or a package would
    tmp = d.conf + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, d.conf)


def with_regex(d, text, rule=RULE):
    """text with filters = [ "regex" ] and its rules file."""
    rules = os.path.join(d.dir, "regex.rules")
    with open(rules, "w") as f:
        f.write(rule)
    text = text.replace("modules = {", 'modules = {\n  regex = { rules = %s; };'
                        % petrel.cfg_value(rules), 1)
    return text + 'filters = [ "regex" ];\n'


def with_listener(text, port):
    m = re.search(r"^listeners = \( (.*) \);$", text, re.M)
    assert m, text
    new = '{ listen = "127.0.0.1:%d"; stage = "mta"; }' % port
    return text[:m.start()] + "listeners = ( %s, %s );" % (m.group(1), new) + text[m.end():]


def setting(text, name, value):
    out, n = re.subn(r"^%s = .*;$" % name, "%s = %s;" % (name, value), text, flags=re.M)
    assert n == 1, name
    return out


def reload_ok(d):
    r = ctl(d, "reload")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    m = re.search(r"reloaded \(generation (\d+)\)", r.stdout)
    assert m, r.stdout
    return int(m.group(1))


def data_reply(c, message):
    """DATA and the message; the reply to the final dot, whatever it is."""
    c.cmd("DATA", 354)
    c.send(petrel.dot_stuff(message) + b".\r\n")
    return c.reply()


def listening(port):
    return petrel._listening(port)


def test_new_listener_and_filter_old_session_keeps_old_rules():
    with Daemon() as d:
        port2 = petrel._free_port()
        assert not listening(port2)
        old = Client(d.port)
        old.ehlo()
        old.mail_rcpt("a@localhost", ["user@localhost"])
        write_conf(d, with_listener(with_regex(d, d.config_text), port2))
        gen = reload_ok(d)
        assert gen == 2, gen
        d.wait_log(r"petrelctl reload \(uid \d+\): reloaded: generation 2 from .*2 listener")
        assert listening(port2), "the new listener is not there"
        # the session from before: its DATA under the old rules (no filter)
        r = data_reply(old, make_message("old rules", body="FORBIDDEN-WORD in the old session\n"))
        check(r, 250, "2.0.0")
        old.cmd("QUIT", 221)
        old.close()
        # a new session on the old port: the new filter refuses it
        with Client(d.port) as c:
            c.ehlo()
            c.mail_rcpt("a@localhost", ["user@localhost"])
            r = data_reply(c, make_message("new rules", body="FORBIDDEN-WORD in a new session\n"))
            check(r, 554, "5.7.1")
            assert "Refused by the new rules" in r.text, r
        # and the new listener takes mail (through the same new chain)
        q = petrel.send_one(port2, "a@localhost", ["other@localhost"],
                            make_message("on the new port"))
        assert q
        with Client(port2) as c:
            c.ehlo()
            c.mail_rcpt("a@localhost", ["user@localhost"])
            check(data_reply(c, make_message("x", body="FORBIDDEN-WORD\n")), 554, "5.7.1")
        got = d.wait_delivered("user", 1)
        assert b"FORBIDDEN-WORD in the old session" in got[0]
        d.wait_delivered("other", 1)
        # the old session was the last holder of generation 1
        d.wait_log(r"configuration generation 1 freed")
        # removing the listener again closes it; the first port stays
        write_conf(d, d.config_text)
        assert reload_ok(d) == 3
        d.wait_log(r"reload: no longer listening on 127\.0\.0\.1:%d" % port2)
        deadline = time.monotonic() + T(5)
        while listening(port2) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not listening(port2), "the removed listener still accepts"
        petrel.send_one(d.port, "a@localhost", ["user@localhost"], make_message("gen 3"))
        d.wait_delivered("user", 2)


def test_edited_rules_file_is_read_again_other_modules_kept():
    """The configuration file unchanged, the regex rules file edited (in
    place, as `echo >>` does, and then replaced, as an editor does): a
    reload reads the rules again, as `postfix reload` re-reads its tables,
    while the modules whose block names no changed file keep their
    instance.  A rules file broken by an edit is refused with its line."""
    with Daemon(start=False) as d:
        d.config_text = with_regex(d, d.config_text, "body /OLD-WORD/ reject 554 5.7.1 Old rule\n")
        write_conf(d, d.config_text)
        d.start()
        rules = os.path.join(d.dir, "regex.rules")

        def reply_for(word):
            with Client(d.port) as c:
                c.ehlo()
                c.mail_rcpt("a@localhost", ["user@localhost"])
                r = data_reply(c, make_message(word, body="%s in the body\n" % word))
                c.cmd("QUIT", 221)
                return r
        check(reply_for("NEW-WORD"), 250, "2.0.0")
        with open(rules, "a") as f:           # the same inode, a longer file
            f.write("body /NEW-WORD/ reject 554 5.7.1 New rule\n")
        assert reload_ok(d) == 2
        d.wait_log(r"reloaded: generation 2 .*\((\d+) kept from generation 1\)")
        r = reply_for("NEW-WORD")
        check(r, 554, "5.7.1")
        assert "New rule" in r.text, r
        check(reply_for("OLD-WORD"), 554, "5.7.1")
        # replaced by rename, the new file no longer has the old rule
        tmp = rules + ".new"
        with open(tmp, "w") as f:
            f.write("body /NEW-WORD/ reject 554 5.7.1 New rule\n")
        os.rename(tmp, rules)
        assert reload_ok(d) == 3
        check(reply_for("OLD-WORD"), 250, "2.0.0")
        # a reload with nothing changed keeps every instance
        assert reload_ok(d) == 4
        d.wait_log(r"reloaded: generation 4 .* (\d+) module\(s\) \(\1 kept from generation 3\)")
        # a broken edit: refused with the file's line, the rules in force stay
        with open(rules, "a") as f:
            f.write("body /unclosed( reject\n")
        r = ctl(d, "reload")
        assert r.returncode == 78, (r.returncode, r.stdout, r.stderr)
        assert "regex.rules:2" in r.stdout + r.stderr, (r.stdout, r.stderr)
        check(reply_for("NEW-WORD"), 554, "5.7.1")
        check(reply_for("OLD-WORD"), 250, "2.0.0")


def test_changed_limit_applies_to_new_sessions_only():
    with Daemon() as d:
        old = Client(d.port)
        r = old.ehlo()
        assert "SIZE %d" % petrel.DEFAULT_SIZE_LIMIT in r.lines, r
        text = setting(d.config_text, "recipient_limit", "100")
        text = setting(text, "hostname", '"renamed.mx.test"')
        text = setting(text, "message_size_limit", "20000")
        text += "delivery_workers = 3;\n"       # the process's: needs a restart
        write_conf(d, text)
        r = ctl(d, "reload")
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        assert "note: %s: delivery_workers: changed, takes effect at the next start" % d.conf \
            in r.stderr, r.stderr
        d.wait_log(r"warning: reload: .*delivery_workers: changed")
        # the old session: its name, and 101 recipients, as its limit (1000) allows
        assert "renamed" not in old.cmd("EHLO again.test", 250).lines[0]
        old.cmd("MAIL FROM:<a@localhost>", 250)
        for i in range(1, 102):
            old.cmd("RCPT TO:<r%d@localhost>" % i, 250)
        check(data_reply(old, make_message("101")), 250)
        old.cmd("QUIT", 221)
        old.close()
        with Client(d.port, greet=False) as c:
            assert "220 renamed.mx.test " in c.reply().raw.decode(), "new greeting"
            r = c.ehlo()
            assert "SIZE 20000" in r.lines, r
            assert r.lines[0].startswith("renamed.mx.test"), r
            c.cmd("MAIL FROM:<a@localhost>", 250)
            for i in range(1, 101):
                c.cmd("RCPT TO:<r%d@localhost>" % i, 250)
            c.cmd("RCPT TO:<r101@localhost>", 452, "4.5.3")
            c.cmd("RSET", 250)
            c.cmd("MAIL FROM:<a@localhost> SIZE=30000", 552, "5.3.4")
        d.wait_delivered("r101", 1)
        time.sleep(0.3)
        assert len(d.delivered_files("r101")) == 1, "r101 got more than the old session's message"


def test_broken_file_refused_with_its_lines_daemon_serves_on():
    with Daemon() as d:
        good = d.config_text
        port2 = petrel._free_port()
        text = with_listener(setting(good, "recipient_limit", "100"), port2)
        lines = text.splitlines()
        bad_line = len(lines) + 1
        text += 'recipient_limit_typo = 5;\nhopcount_limit = "many";\n'
        write_conf(d, text)
        env = dict(os.environ, PETREL_MODULE_PATH=petrel.MODULE_PATH)
        t = subprocess.run([petrel.PETRELD, "-t", "-c", d.conf], capture_output=True,
                           text=True, env=env, timeout=T(30))
        assert t.returncode != 0
        r = ctl(d, "reload")
        assert r.returncode == 78, (r.returncode, r.stdout, r.stderr)
        assert "%s:%d: recipient_limit_typo" % (d.conf, bad_line) in r.stderr, r.stderr
        # both errors, exactly as petreld -t says them
        for line in t.stderr.splitlines():
            assert line in r.stderr, (line, r.stderr)
        assert "generation 1" in r.stderr and "stays" in r.stderr, r.stderr
        d.wait_log(r"petrelctl reload \(uid \d+\): reload refused, generation 1 .* stays: "
                   r".*recipient_limit_typo")
        # SIGHUP with the same file: refused the same way
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(r"SIGHUP: reload refused, generation 1 .* stays: .*:%d: " % bad_line)
        assert d.running()
        assert not listening(port2), "a refused file's listener was bound"
        # the old configuration serves: limit 1000, no new listener
        with Client(d.port) as c:
            c.ehlo()
            c.cmd("MAIL FROM:<a@localhost>", 250)
            for i in range(1, 102):
                c.cmd("RCPT TO:<r%d@localhost>" % i, 250)
            check(data_reply(c, make_message("still the old rules")), 250)
        d.wait_delivered("r101", 1)
        # and the good file is taken once it is back
        write_conf(d, good)
        assert reload_ok(d) == 2


def test_as_user_a_privileged_port_is_refused_a_high_one_bound():
    if os.geteuid() != 0:
        petrel.skip("needs root (runs as nobody after binding)")
    d = Daemon(settings={"user": "nobody"}, start=False)
    petrel.run_as(d, "nobody")
    with d:
        d.start()
        write_conf(d, with_listener(d.config_text, 1023))
        r = ctl(d, "reload")
        assert r.returncode == 78, (r.returncode, r.stdout, r.stderr)
        assert "cannot listen on 127.0.0.1:1023: Permission denied (a port below 1024 " \
               "needs root" in r.stderr, r.stderr
        assert not listening(1023)
        petrel.send_one(d.port, "a@localhost", ["user@localhost"], make_message("still"))
        d.wait_delivered("user", 1)
        port2 = petrel._free_port()
        write_conf(d, with_listener(d.config_text, port2))
        assert reload_ok(d) == 2
        assert listening(port2)
        petrel.send_one(port2, "a@localhost", ["user@localhost"], make_message("new port"))
        d.wait_delivered("user", 2)


def test_pending_hook_of_a_replaced_module_finishes_on_the_old_instance():
    # the "slow" test filter (tests/modules/slow.c) holds the old session's
    # end of DATA on a timer of its instance; the reload changes its block,
    # so new sessions get a new instance, and the old one (its timer, its
    # fini) lives until the old session is done with it
    slow_old = {"delay_ms": int(T(1.5) * 1000), "verdict": "continue"}
    slow_new = {"delay_ms": 10, "verdict": "reject", "reply": "554 5.7.1 new slow rules"}
    with Daemon(modules_extra="  slow = %s;" % petrel.cfg_value(slow_old),
                extra='filters = [ "slow" ];') as d:
        old = Client(d.port)
        old.ehlo()
        old.mail_rcpt("a@localhost", ["user@localhost"])
        old.cmd("DATA", 354)
        old.send(petrel.dot_stuff(make_message("held by the old instance")) + b".\r\n")
        d.wait_log(r"slow: suspend qid=\w+ at=eom")
        write_conf(d, d.config_text.replace(petrel.cfg_value(slow_old),
                                            petrel.cfg_value(slow_new)))
        reload_ok(d)
        d.wait_log(r"reloaded: generation 2 .*\(3 kept from generation 1\)")
        with Client(d.port) as c:
            c.ehlo()
            c.mail_rcpt("a@localhost", ["user@localhost"])
            r = data_reply(c, make_message("new"))
            check(r, 554, "5.7.1")
            assert "new slow rules" in r.text, r
        r = old.reply(timeout=T(15))
        check(r, 250, "2.0.0")
        old.cmd("QUIT", 221)
        old.close()
        d.wait_log(r"configuration generation 1 freed")
        log = d.log_text()
        assert log.index("verdict=continue") < log.index("configuration generation 1 freed"), \
            "generation 1 was freed before its session's hook resumed"
        d.wait_delivered("user", 1)


def test_200_reloads_under_load():
    petrel.need_tool(SMTP_SOURCE)
    with Daemon() as d:
        port2 = petrel._free_port()
        conf_a = d.config_text
        # b: a filter more, a listener more, another limit, and the same
        # maildir root spelt otherwise: a new maildir instance at each
        # reload, while deliveries on the one before are in flight
        root = petrel.cfg_value(os.path.join(d.mail, "%d", "%u"))
        assert root in conf_a
        conf_b = with_listener(setting(with_regex(
            d, conf_a, "body /NEVER-IN-THESE-MESSAGES-xyzzy/ reject 554 5.7.1 no\n"),
            "recipient_limit", "500"), port2).replace(
            root, petrel.cfg_value(os.path.join(d.mail, ".", "%d", "%u")))
        rounds = []        # (messages, CompletedProcess)

        def load(n):
            return subprocess.Popen([SMTP_SOURCE, "-s", "20", "-m", str(n), "-l", "1024",
                                     "-f", "a@localhost", "-t", "user@localhost",
                                     "127.0.0.1:%d" % d.port],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)

        def finish(p, n):
            out, err = p.communicate(timeout=T(300))
            rounds.append((n, p.returncode, err.decode(errors="replace")[-500:]))

        # warm up: both configurations once, and a round of load
        for text in (conf_b, conf_a):
            write_conf(d, text)
            reload_ok(d)
        p = load(500)
        finish(p, 500)
        d.wait_delivered("user", 500, timeout=60)
        deadline = time.monotonic() + T(10)
        while not d.log_text().count("generation 3 freed") and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        rss_before = petrel.rss(d.proc.pid)
        first_gen = 4
        reloads = 0
        during_load = 0
        p, n = load(1000), 1000
        while reloads < 200:
            if p.poll() is not None:
                finish(p, n)
                p, n = load(500), 500
            write_conf(d, conf_b if reloads % 2 == 0 else conf_a)
            gen = reload_ok(d)
            assert gen == first_gen + reloads, (gen, reloads)
            reloads += 1
            during_load += p.poll() is None
        finish(p, n)
        sent = sum(r[0] for r in rounds)
        for n, rc, err in rounds:
            assert rc == 0, "smtp-source exited %d: %s" % (rc, err)
        files = d.wait_delivered("user", sent, timeout=120)
        time.sleep(1.0)
        files = d.delivered_files("user")
        assert len(files) == sent, "%d delivered, %d sent" % (len(files), sent)
        assert not d.queued(), "messages left in the queue"
        last = first_gen + reloads - 1
        # every generation but the running one is freed
        deadline = time.monotonic() + T(10)
        while time.monotonic() < deadline:
            freed = set(int(x) for x in re.findall(r"configuration generation (\d+) freed",
                                                   d.log_text()))
            if set(range(1, last)) <= freed:
                break
            time.sleep(0.2)
        missing = sorted(set(range(1, last)) - freed)
        assert not missing, "generations not freed: %s" % missing[:20]
        assert last not in freed
        time.sleep(0.5)
        rss_after = petrel.rss(d.proc.pid)
        diag("%d reloads, %d of them with smtp-source running; %d messages in %d rounds, "
             "%d delivered" % (reloads, during_load, sent, len(rounds), len(files)))
        diag("RSS before %d KiB, after %d KiB, growth %+d KiB"
             % (rss_before // 1024, rss_after // 1024, (rss_after - rss_before) // 1024))
        assert during_load >= 1, "no reload happened under load"
        # the modules whose blocks differ (regex, maildir) were made anew
        # each time, mta and router kept
        kept = re.findall(r"reloaded: generation \d+ .* (\d+) module\(s\) \((\d+) kept", d.log_text())
        assert len(kept) == reloads + 2, len(kept)
        assert all(k == "2" for _, k in kept[2:]), set(kept)
        assert rss_after - rss_before < 5 * 1024 * 1024 or SANITIZED, (rss_before, rss_after)
        # the last configuration (a: one listener) is the one running
        assert not listening(port2)


if __name__ == "__main__":
    petrel.main(per_test_timeout=600)
