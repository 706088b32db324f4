#!/usr/bin/env python3
"""ratelimit.py - does the ratelimit store stall petreld's event loop?

A daemon with the ratelimit filter starts on a snapshot of ENTRIES
counters (default 200,000: a big site's day of senders).  For SECONDS a
client sends messages, each from a new sender (so counters change every
second and the store persists them), while a prober connects every 20 ms
and times each 220 greeting.  Printed: the daemon's CPU seconds, the
greetings' worst and 99th percentile, and the state files' sizes.

Before issue 7's fix the loop rewrote the whole table every second (a
stall that grows with the table); now it appends only the changed
counters to STATE.log and merges off the loop.  No figure is checked here.

  bench/ratelimit.py [--entries N] [--seconds S]
  PETREL_BUILD=/path/to/_build/default bench/ratelimit.py   # another build

Loopback only.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from headers import HOST, free_port, cpu_seconds, read_reply  # noqa: E402


class Prober(threading.Thread):
    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.times, self.stop = port, [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                with socket.create_connection((HOST, self.port), timeout=30) as s:
                    read_reply(s)
                    self.times.append(time.monotonic() - t0)
                    s.sendall(b"QUIT\r\n")
            except (OSError, EOFError):
                pass
            self.stop.wait(0.02)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.environ.get("PETREL_BUILD") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_build", "default"))
    ap.add_argument("--entries", type=int, default=200000)
    ap.add_argument("--seconds", type=float, default=6)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="petrel-rlb-")
    port = free_port()
    state = os.path.join(tmp, "rl.state")
    now = int(time.time())
    h, d = now - now % 3600, now - now % 86400
    with open(state, "w") as f:
        f.write("petrel-ratelimit 1\n")
        for i in range(args.entries):
            f.write("s:sender%d@example.org %d 1 0 %d 1 0\n" % (i, h, d))
    conf = os.path.join(tmp, "petrel.conf")
    with open(conf, "w") as f:
        f.write('hostname = "bench.localhost";\nspool = "%s/spool";\n'
                'listeners = ( { listen = "%s:%d"; stage = "mta"; } );\n'
                'domains = [ "localhost" ];\nfilters = [ "ratelimit" ];\n'
                'modules = { maildir = { root = "%s/mail/%%d/%%u"; };\n'
                '  ratelimit = { state_file = "%s"; limits = [ "sender 1000000/hour" ]; }; };\n'
                % (tmp, HOST, port, tmp, state))
    env = dict(os.environ)
    env["PETREL_MODULE_PATH"] = ":".join(os.path.join(args.build, "modules", m)
                                         for m in ("mta", "maildir", "router", "ratelimit"))
    log = open(os.path.join(tmp, "log"), "wb")
    proc = subprocess.Popen([os.path.join(args.build, "src", "petreld"), "-f", "-c", conf],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        for _ in range(600):
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        s = socket.create_connection((HOST, port), timeout=60)
        buf = read_reply(s)[1]
        s.sendall(b"EHLO bench.test\r\n")
        _, buf = read_reply(s, buf)
        prober = Prober(port)
        c0 = cpu_seconds(proc.pid)
        prober.start()
        end = time.monotonic() + args.seconds
        n = 0
        while time.monotonic() < end:
            s.sendall(b"MAIL FROM:<new%d@example.org>\r\nRCPT TO:<user@localhost>\r\nDATA\r\n" % n)
            for _ in range(3):
                _, buf = read_reply(s, buf)
            s.sendall(b"Subject: rl %d\r\n\r\nx\r\n.\r\n" % n)
            _, buf = read_reply(s, buf)
            n += 1
        c1 = cpu_seconds(proc.pid)
        prober.stop.set()
        prober.join(30)
        s.close()
        t = sorted(prober.times)
        p99 = t[int(len(t) * 0.99)] if t else 0
        sizes = " ".join("%s=%d" % (os.path.basename(p), os.path.getsize(p))
                         for p in (state, state + ".log") if os.path.exists(p))
        print("entries %d  messages %d in %.0f s  cpu %.2f s  220: %d probes, worst %.1f ms, "
              "p99 %.1f ms  (%s)" % (args.entries, n, args.seconds, c1 - c0, len(t),
                                     t[-1] * 1000 if t else 0, p99 * 1000, sizes))
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
