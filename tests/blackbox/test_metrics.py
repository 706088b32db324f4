#!/usr/bin/env python3
"""The metrics endpoint (metrics_listen, GET /metrics): the counters agree
with what was sent while a scraper reads them during the load, TLS and
AUTH counters move, promtool accepts both text formats, and hostile
scrapers get 4xx answers or are closed (an oversized head, another method
or path, a ninth client at once, a client that never finishes its head).

promtool (Debian prometheus) checks the Prometheus 0.0.4 text with
`promtool check metrics`, and the OpenMetrics text with its OpenMetrics
parser (`promtool tsdb create-blocks-from openmetrics`, which wants a
timestamp on each sample: one is appended to every sample line); a test
skips only when promtool is not installed."""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import petrel  # noqa: E402
from petrel import Daemon, HOST, T, make_message  # noqa: E402

N, K = 30, 7                 # messages sent, of which K are refused at RCPT
ROUTER = {"mailboxes": ["alice@localhost", "bob@localhost"]}
PROMTOOL = shutil.which("promtool")
SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metrics_daemon(**kw):
    port = petrel._free_port()
    settings = {"metrics_listen": "%s:%d" % (HOST, port)}
    settings.update(kw.pop("settings", {}))
    d = Daemon(settings=settings, router=kw.pop("router", ROUTER), **kw)
    d.mport = port
    return d


def http(port, request, timeout=10):
    """Send request bytes, read until the server closes: (status, headers, body).
    status None: closed without an answer."""
    s = socket.create_connection((HOST, port), timeout=T(timeout))
    try:
        s.sendall(request)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    if not data:
        return None, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def scrape(d, openmetrics=False):
    accept = b"Accept: application/openmetrics-text; version=1.0.0,text/plain;q=0.5\r\n" \
        if openmetrics else b""
    status, headers, body = http(d.mport, b"GET /metrics HTTP/1.1\r\nHost: petrel\r\n"
                                 + accept + b"\r\n")
    assert status == 200, (status, headers, body[:200])
    assert headers.get("connection") == "close", headers
    assert int(headers["content-length"]) == len(body), headers
    want = "application/openmetrics-text; version=1.0.0" if openmetrics \
        else "text/plain; version=0.0.4"
    assert headers["content-type"].startswith(want), headers
    return body.decode("utf-8")


def parse(text):
    """{(name, ((label, value), ...)): float}; every line is a comment or a sample."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        assert m, "not a sample line: %r" % line
        labels = tuple(sorted(LABEL_RE.findall(m.group(3) or "")))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples, name, **labels):
    """The sum over every sample of name whose labels include those given."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def wait_for(d, what, timeout=20):
    """Scrape until what(samples) holds; return the samples."""
    deadline = time.monotonic() + T(timeout)
    while True:
        s = parse(scrape(d))
        if what(s):
            return s
        if time.monotonic() > deadline:
            raise AssertionError("metrics never satisfied the condition: %s"
                                 % {k: v for k, v in s.items() if v})
        time.sleep(0.05)


def send_sessions(d, plan, sizes, errors, record=None):
    """plan: list of sessions, each a list of (rcpt, ok); record(), when
    given, is called between two sessions (a scrape in the middle of the
    load, whatever the machine's speed)."""
    try:
        for n, session in enumerate(plan):
            if n and record:
                record()
            with d.client() as c:
                c.ehlo()
                for i, (rcpt, ok) in session:
                    msg = make_message(subject="m%d" % i, body="message %d\n%s\n" % (i, "x" * (i * 37)))
                    c.cmd("MAIL FROM:<sender@example.test>", 250)
                    if ok:
                        c.cmd("RCPT TO:<%s>" % rcpt, 250)
                        c.data(msg)
                        sizes.append(len(msg))
                    else:
                        c.cmd("RCPT TO:<%s>" % rcpt, 550, "5.1.1")
                        c.cmd("RSET", 250)
                c.cmd("QUIT", 221)
    except Exception as e:  # reported by the main thread
        errors.append(e)


def test_counts_match_what_was_sent():
    refused = set(range(3, N, 4))
    while len(refused) > K:
        refused.pop()
    assert len(refused) == K
    msgs = [(i, ("nobody%d@localhost" % i, False) if i in refused
             else (("alice@localhost", "bob@localhost")[i % 2], True)) for i in range(N)]
    # 3 clients at once, each 2 sessions of 5 messages
    plans = [[msgs[t * 10:t * 10 + 5], msgs[t * 10 + 5:t * 10 + 10]] for t in range(3)]
    with metrics_daemon() as d:
        sizes, errors, seen = [], [], []
        stop = threading.Event()
        lock = threading.Lock()

        def record():
            # one scrape at a time, so that seen is in the order served
            with lock:
                seen.append(parse(scrape(d)))

        def scraper():
            while not stop.is_set():
                try:
                    record()
                except Exception as e:
                    errors.append(e)
                    return
                time.sleep(0.05)
        scr = petrel.start_thread(scraper)
        # each sender also scrapes between its two sessions: on a fast
        # machine the whole load can fit between two of the scraper's reads
        senders = [petrel.start_thread(send_sessions, d, p, sizes, errors, record) for p in plans]
        for t in senders:
            t.join(T(60))
        d.wait_all_delivered(N - K, timeout=30)
        s = wait_for(d, lambda s: total(s, "petrel_messages_delivered_total") >= N - K
                     and value(s, "petrel_sessions_open") == 0
                     and total(s, "petrel_queue_messages") == 0)
        stop.set()
        scr.join(T(10))
        assert not errors, errors
        # each of the 3 senders scraped once between its sessions
        assert len(seen) >= 3, "%d scrapes during the load" % len(seen)
        # counters never go back between scrapes
        for name in ("petrel_messages_received_total", "petrel_messages_delivered_total",
                     "petrel_messages_rejected_total", "petrel_connections_total"):
            series = [total(x, name) for x in seen] + [total(s, name)]
            assert series == sorted(series), (name, series)
        listener = "%s:%d" % (HOST, d.port)
        assert value(s, "petrel_messages_received_total", listener=listener) == N - K, s
        assert total(s, "petrel_messages_received_total") == N - K
        assert value(s, "petrel_messages_delivered_total", transport="maildir") == N - K
        assert total(s, "petrel_messages_delivered_total") == N - K
        assert value(s, "petrel_messages_rejected_total", listener=listener,
                     reason="recipient") == K, s
        assert total(s, "petrel_messages_rejected_total") == K, \
            "refusals counted under another reason too"
        assert total(s, "petrel_messages_deferred_total") == 0
        assert total(s, "petrel_messages_bounced_total") == 0
        assert value(s, "petrel_connections_total", listener=listener) == 6
        assert value(s, "petrel_sessions_open") == 0
        assert value(s, "petrel_bytes_in_total") == sum(sizes), (value(s, "petrel_bytes_in_total"), sum(sizes))
        assert value(s, "petrel_bytes_out_total") == sum(sizes)
        assert value(s, "petrel_delivery_delay_seconds_count") == N - K
        assert value(s, "petrel_delivery_delay_seconds_bucket", le="+Inf") == N - K
        assert value(s, "petrel_delivery_delay_seconds_sum") > 0
        assert value(s, "petrel_queue_oldest_age_seconds") == 0
        assert value(s, "petrel_spool_free_bytes") > 0
        assert value(s, "petrel_tls_handshakes_total", result="ok") == 0
        # the refusals the log shows are the ones counted
        assert len(re.findall(r"reject: RCPT from .*User unknown", d.log_text())) == K
        # an open session shows in the gauge
        with d.client() as c:
            c.ehlo()
            wait_for(d, lambda s: value(s, "petrel_sessions_open") == 1)
            c.cmd("QUIT", 221)
        wait_for(d, lambda s: value(s, "petrel_sessions_open") == 0)


def test_each_refusal_counts_under_its_reason():
    port = petrel._free_port()
    many = ["r%d@localhost" % i for i in range(101)]
    d = Daemon(start=False, router={"mailboxes": ROUTER["mailboxes"] + many},
               settings={"metrics_listen": "%s:%d" % (HOST, port), "message_size_limit": 100000,
                         "recipient_limit": 100},
               extra='filters = [ "regex" ];',
               modules_extra='  regex = { rules = "@RULES@"; };')
    d.mport = port
    rules = os.path.join(d.dir, "regex.rules")
    with open(rules, "w") as f:
        f.write("body /^win a prize/ reject 554 5.7.1 Lottery scam\n")
    with open(d.conf, "w") as f:
        f.write(d.config_text.replace("@RULES@", rules))
    with d.start(), d.client() as c:
        c.ehlo()
        c.cmd("MAIL FROM:<s@example.test> SIZE=200000", 552, "5.3.4")     # size
        c.cmd("MAIL FROM:<s@example.test>", 250)
        c.cmd("RCPT TO:<nobody@localhost>", 550, "5.1.1")               # recipient
        c.cmd("RCPT TO:<alice@localhost>", 250)
        c.cmd("RCPT TO:<jösé@localhost>", 553, "5.6.7")                  # recipient
        c.cmd("DATA", 354)                                               # filter
        c.send(make_message(body="win a prize\n") + b".\r\n")
        c.expect(554, "5.7.1")
        c.send(b"NOOP" + b"x" * 5000 + b"\r\n")                        # protocol
        c.expect(500, "5.5.6")
        c.cmd("MAIL FROM:<s@example.test>", 250)
        c.cmd("RCPT TO:<bob@localhost>", 250)
        c.data(make_message())
        c.cmd("MAIL FROM:<s@example.test>", 250)
        c.send("".join("RCPT TO:<%s>\r\n" % r for r in many))
        rs = c.replies(101)
        for i, r in enumerate(rs[:100]):
            petrel.check(r, 250, what="RCPT %d" % (i + 1))
        petrel.check(rs[100], 452, "4.5.3", "RCPT 101")                 # recipient
        c.cmd("RSET", 250)
        c.cmd("QUIT", 221)
        s = wait_for(d, lambda s: total(s, "petrel_messages_delivered_total") == 1)
        listener = "%s:%d" % (HOST, d.port)
        got = {r: value(s, "petrel_messages_rejected_total", listener=listener, reason=r)
               for r in ("recipient", "filter", "size", "protocol", "policy", "other")}
        assert got == {"recipient": 3, "filter": 1, "size": 1, "protocol": 1,
                       "policy": 0, "other": 0}, got
        assert value(s, "petrel_messages_received_total", listener=listener) == 1


def test_queue_gauges_show_a_deferred_message():
    # a maildir root the daemon cannot write: the delivery is deferred
    with metrics_daemon() as d:
        blocked = os.path.join(d.mail, "localhost")
        with open(blocked, "w") as f:
            f.write("not a directory\n")
        petrel.send_one(d.port, "sender@example.test", "alice@localhost", make_message())
        s = wait_for(d, lambda s: value(s, "petrel_queue_messages", state="deferred") == 1)
        assert value(s, "petrel_messages_deferred_total", transport="maildir") >= 1, s
        assert value(s, "petrel_queue_messages", state="active") == 0
        assert total(s, "petrel_messages_delivered_total") == 0
        age = value(s, "petrel_queue_oldest_age_seconds")
        start = value(s, "petrel_start_time_seconds")
        assert 0 <= age and start > 0, (age, start)


def test_tls_and_auth_counters():
    tmp = tempfile.mkdtemp(prefix="petrel-bb-metrics-")
    try:
        os.chmod(tmp, 0o755)
        cert, key = petrel.make_cert(tmp)
        pw = petrel.write_passwd(tmp, ["alice:%s" % petrel.crypt_hash("s3cret", b"$6$")])
        with metrics_daemon(settings={"tls_cert_file": cert, "tls_key_file": key,
                                      "auth_passwords": pw},
                            listener={"tls": "starttls", "auth": True}) as d:
            with d.client() as c:          # TLS, a good login, a message
                c.ehlo()
                c.starttls()
                c.ehlo()
                c.cmd("AUTH PLAIN " + petrel.auth_plain("alice", "wrong"), 535, "5.7.8")
                c.cmd("AUTH PLAIN " + petrel.auth_plain("alice", "s3cret"), 235, "2.7.0")
                c.send_mail("alice@example.test", ["bob@localhost"], make_message())
                c.cmd("QUIT", 221)
            with d.client() as c:          # garbage instead of a ClientHello
                c.ehlo()
                c.cmd("STARTTLS", 220)
                c.send(b"\x16\x03\x01\x00\x05hello this is not TLS at all\r\n" * 4)
                assert closed(c.sock, 5), "no close after a failed handshake"
            s = wait_for(d, lambda s: value(s, "petrel_tls_handshakes_total", result="failed") == 1
                         and value(s, "petrel_messages_delivered_total", transport="maildir") == 1)
            assert value(s, "petrel_tls_handshakes_total", result="ok") == 1, s
            assert value(s, "petrel_auth_total", result="ok") == 1, s
            assert value(s, "petrel_auth_total", result="failed") == 1, s
            assert total(s, "petrel_messages_received_total") == 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_families(text, openmetrics):
    """Every sample belongs to the family TYPE declared just before it, with
    the suffixes its type allows; each family is declared once."""
    types, fam, seen = {}, None, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            assert name not in seen, "family %s declared twice" % name
            seen.add(name)
            types[name], fam = typ, name
            continue
        if not line or line.startswith("#"):
            continue
        name = SAMPLE_RE.match(line).group(1)
        typ = types[fam]
        if typ == "counter":
            ok = name == fam if not openmetrics else name == fam + "_total"
            assert not openmetrics or not fam.endswith("_total"), fam
        elif typ == "histogram":
            ok = name in (fam + "_bucket", fam + "_sum", fam + "_count")
        else:
            ok = name == fam
        assert ok, "sample %s under family %s (%s)" % (name, fam, typ)
    if openmetrics:
        assert text.endswith("# EOF\n"), text[-50:]
    else:
        assert "# EOF" not in text


def test_promtool_accepts_both_formats():
    with metrics_daemon() as d:
        petrel.send_one(d.port, "sender@example.test", "alice@localhost", make_message())
        with d.client() as c:
            c.ehlo()
            c.cmd("MAIL FROM:<sender@example.test>", 250)
            c.cmd("RCPT TO:<nobody@localhost>", 550)
            c.cmd("QUIT", 221)
        wait_for(d, lambda s: total(s, "petrel_messages_delivered_total") == 1)
        prom, om = scrape(d), scrape(d, openmetrics=True)
        check_families(prom, False)
        check_families(om, True)
        # the same values in both
        pv, ov = parse(prom), parse(om)
        for key in ("petrel_messages_received_total", "petrel_messages_rejected_total",
                    "petrel_delivery_delay_seconds_count"):
            assert total(pv, key) == total(ov, key), key
        if not PROMTOOL:
            petrel.skip("promtool not installed (Debian prometheus)")
        p = subprocess.run([PROMTOOL, "check", "metrics"], input=prom.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=T(30))
        assert p.returncode == 0 and not p.stdout.strip(), p.stdout.decode()
        # promtool's OpenMetrics parser (backfill) wants a timestamp per sample
        ts = int(time.time()) - 60
        stamped = "".join(line + ("" if line.startswith("#") else " %d" % ts) + "\n"
                          for line in om.splitlines())
        tmp = tempfile.mkdtemp(prefix="petrel-bb-metrics-")
        try:
            src = os.path.join(tmp, "metrics.om")
            with open(src, "w") as f:
                f.write(stamped)
            p = subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", src,
                                os.path.join(tmp, "blocks")], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=T(60))
            assert p.returncode == 0, p.stdout.decode()
            # every sample became a series in the block
            out = p.stdout.decode()
            m = re.search(r"^\S+\s+\d+\s+\d+\s+\S+\s+(\d+)\s+\d+\s+(\d+)", out, re.M)
            assert m, out
            assert int(m.group(2)) == len(ov), (out, len(ov))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def test_hostile_requests():
    with metrics_daemon() as d:
        big = b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 5000 + b"\r\n\r\n"
        status, _, _ = http(d.mport, big)
        assert status in (431, None), status
        petrel.diag("a 5 KB head: %s" % (status or "closed without an answer"))
        assert http(d.mport, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")[0] == 405
        status, headers, _ = http(d.mport, b"GET /other HTTP/1.1\r\n\r\n")
        assert status == 404 and headers.get("connection") == "close", (status, headers)
        assert http(d.mport, b"GET /metrics SMTP/1.0\r\n\r\n")[0] == 400
        assert http(d.mport, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")[0] == 400
        status, _, body = http(d.mport, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n")
        assert status == 200 and b"petrel_connections_total" in body, status
        # SMTP goes on, and so do scrapes
        petrel.send_one(d.port, "sender@example.test", "alice@localhost", make_message())
        scrape(d)


def closed(sock, timeout):
    """True when the server closes sock within timeout (reads and drops bytes)."""
    sock.settimeout(T(timeout))
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_ninth_client_and_idle_clients_are_closed():
    with metrics_daemon() as d:
        idle = [socket.create_connection((HOST, d.mport), timeout=T(5)) for _ in range(8)]
        try:
            idle[0].sendall(b"GET /metr")           # a head that never ends
            time.sleep(0.2)                         # the 8 are accepted first
            ninth = socket.create_connection((HOST, d.mport), timeout=T(5))
            assert closed(ninth, 3), "a ninth concurrent client was not closed"
            ninth.close()
            # SMTP is not held up by the idle scrapers
            petrel.send_one(d.port, "sender@example.test", "alice@localhost", make_message())
            # the deadline closes every idle one, the half-sent head too
            for s in idle:
                assert closed(s, 20), "an idle scrape client was never closed"
        finally:
            for s in idle:
                s.close()
        s = parse(scrape(d))
        assert total(s, "petrel_messages_received_total") == 1


def test_bad_metrics_listen_is_a_config_error():
    for bad in ("localhost:9154", "127.0.0.1", "127.0.0.1:0", "[::1]9154"):
        d = Daemon(settings={"metrics_listen": bad}, start=False)
        p = petrel.run([petrel.PETRELD, "-t", "-c", d.conf], env=d.env())
        err = p.stderr.decode()
        assert p.returncode == 1 and "metrics_listen" in err, (bad, p.returncode, err)
        shutil.rmtree(d.dir, ignore_errors=True)
    d = Daemon(settings={"metrics_listen": ""}, start=False)   # "": off
    p = petrel.run([petrel.PETRELD, "-t", "-c", d.conf], env=d.env())
    assert p.returncode == 0, p.stderr.decode()
    shutil.rmtree(d.dir, ignore_errors=True)


if __name__ == "__main__":
    petrel.main()
