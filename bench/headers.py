#!/usr/bin/env python3
"""headers.py - what a hostile header section costs petreld (run through
bench/headers.sh).

For each case one message is sent over DATA to a petreld with the regex
filter (a header rule of each kind, so every header is indexed, decoded
and matched when the message gets that far), and two figures are taken:

  cpu     the daemon's CPU seconds (user + system, /proc/PID/stat) from
          the MAIL command to the reply to the final dot;
  greet   the slowest 220 greeting seen by a second client that connects
          every 20 ms for as long as the message is sent and processed
          (the event loop's stall, as another sender would see it).

Cases (COUNT scales them; the defaults make 10 MB messages):
  lines   COUNT one-line fields "X:1" (default 2,000,000: 10,000,000 octets)
  cont    one field of COUNT continuation lines " a" (default 2,500,000)
  lines-edit  as lines, with a rule that removes every field (so the
          header edits are rebuilt too) -- worth running with -L

Everything listens and connects on 127.0.0.1 only.  No figure is checked
here: tests check behaviour, this measures it.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick   # utime, stime


def read_reply(sock, buf=b""):
    while True:
        while b"\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; got %r" % buf)
            buf += chunk
        line, buf = buf.split(b"\r\n", 1)
        if line[3:4] != b"-":
            return line, buf


def message(case, count):
    head = b"From: <bench@localhost>\r\nTo: <user@localhost>\r\nSubject: headers bench\r\n"
    if case in ("lines", "lines-edit"):
        return head + b"X:1\r\n" * count + b"\r\nbody\r\n"
    if case == "cont":
        return head + b"X-Long: start\r\n" + b" a\r\n" * count + b"\r\nbody\r\n"
    raise ValueError(case)


class Prober(threading.Thread):
    """Connects every 20 ms and records the time to each 220."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.worst = 0.0
        self.n = 0
        self.failed = 0

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                with socket.create_connection((HOST, self.port), timeout=600) as s:
                    line, _ = read_reply(s)
                    dt = time.monotonic() - t0
                    if not line.startswith(b"220"):
                        self.failed += 1
                    s.sendall(b"QUIT\r\n")
            except OSError:
                self.failed += 1
                dt = time.monotonic() - t0
            self.worst = max(self.worst, dt)
            self.n += 1
            self.stop.wait(0.02)


def run_case(args, case, count):
    tmp = tempfile.mkdtemp(prefix="petrel-hb-")
    port = free_port()
    build = args.build
    rules = os.path.join(tmp, "regex.rules")
    with open(rules, "w") as f:
        f.write("header Subject /^never matches this$/ reject\n"
                "header * /^X-Never-Seen:/ log\n")
        if case == "lines-edit":
            f.write("header X /./ remove\n")
    limits = ""
    if args.raise_limits:
        limits = "header_size_limit = 1073741824L;\nheader_count_limit = 10000000;\n"
    conf = os.path.join(tmp, "petrel.conf")
    with open(conf, "w") as f:
        f.write('hostname = "bench.localhost";\nspool = "%s/spool";\n'
                # no greet_pause: the probe measures the event loop, not the
                # early-talker delay every non-relay client gets by default
                'greet_pause = 0;\n'
                'listeners = ( { listen = "%s:%d"; stage = "mta"; } );\n'
                'domains = [ "localhost" ];\nmessage_size_limit = 104857600L;\n%s'
                'filters = [ "regex" ];\n'
                'modules = { maildir = { root = "%s/mail/%%d/%%u"; }; '
                'regex = { rules = "%s"; }; };\n' % (tmp, HOST, port, limits, tmp, rules))
    env = dict(os.environ)
    env["PETREL_MODULE_PATH"] = ":".join(os.path.join(build, "modules", m)
                                         for m in ("mta", "maildir", "router", "regex"))
    log = open(os.path.join(tmp, "log"), "wb")
    proc = subprocess.Popen([os.path.join(build, "src", "petreld"), "-f", "-c", conf],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        for _ in range(200):
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        msg = message(case, count)
        s = socket.create_connection((HOST, port), timeout=args.timeout)
        read_reply(s)
        s.sendall(b"EHLO bench.test\r\n")
        read_reply(s)
        prober = Prober(port)
        c0 = cpu_seconds(proc.pid)
        t0 = time.monotonic()
        prober.start()
        s.sendall(b"MAIL FROM:<bench@localhost>\r\n")
        read_reply(s)
        s.sendall(b"RCPT TO:<user@localhost>\r\n")
        read_reply(s)
        s.sendall(b"DATA\r\n")
        read_reply(s)
        s.sendall(msg + b".\r\n")
        try:
            reply, _ = read_reply(s)
            reply = reply.decode("utf-8", "replace")
        except socket.timeout:
            reply = "(no reply within %ds)" % args.timeout
        wall = time.monotonic() - t0
        c1 = cpu_seconds(proc.pid)
        prober.stop.set()
        prober.join(args.timeout)
        s.close()
        print("%-10s %9d %10d  cpu %7.2f s  wall %7.2f s  worst 220 %7.1f ms (%d probes%s)  %s"
              % (case, count, len(msg), c1 - c0, wall, prober.worst * 1000, prober.n,
                 ", %d failed" % prober.failed if prober.failed else "", reply[:60]))
        sys.stdout.flush()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.environ.get("PETREL_BUILD") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_build", "default"))
    ap.add_argument("--cases", default="lines,cont")
    ap.add_argument("--count", type=int, default=0,
                    help="fields (lines) or continuation lines (cont); 0: the 10 MB defaults")
    ap.add_argument("-L", "--raise-limits", action="store_true",
                    help="header_size_limit 1 GiB, header_count_limit 10,000,000: "
                         "measure the indexing, matching and editing instead of the refusal")
    ap.add_argument("--timeout", type=int, default=600)
    args = ap.parse_args()
    print("%-10s %9s %10s" % ("case", "count", "octets"))
    for case in args.cases.split(","):
        count = args.count or {"lines": 2000000, "lines-edit": 2000000, "cont": 2500000}[case]
        run_case(args, case, count)


if __name__ == "__main__":
    main()
