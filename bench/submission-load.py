#!/usr/bin/env python3
"""submission-load.py - the load of bench/submission.sh: message submission
as mail clients do it, one message per connection.

    submission-load.py --port P -n MESSAGES -s SESSIONS -z SIZE
                       --user U --password-file F --sender A --rcpt B
                       [--tag T] [--src-net 127.0.1]

SESSIONS worker processes (multiprocessing: the TLS handshakes and Python
itself would saturate one core long before the servers do), each running
its share of MESSAGES in a row; every message is its own connection:

    connect, EHLO, STARTTLS, EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT

Session i connects from 127.0.1.(i+1) (--src-net): twenty clients, not one
address twenty times, so neither server's per-client limits (petrel's
auth_client_concurrency, Postfix's anvil) come into play at their defaults.
The certificate is self-signed: the client does not verify it.

The message has a Date: and a Message-ID: <TAG.K@bench.client> (K = 0 ..
MESSAGES-1), as a mail client writes them, so neither server adds one and
bench/submission.sh can check that each K arrived exactly once, and a body
of SIZE bytes.

Prints one JSON object on stdout: ok, errors (count and the first few),
wall_s (from the moment all workers are released until the last one is
done), cpu_s (user + system CPU of the worker processes over that time,
from getrusage), cpu_cores (cpu_s / wall_s) and the TLS protocol and
cipher seen.  Exit status 0 when every message got its 250, else 1."""

import argparse
import base64
import json
import multiprocessing as mp
import resource
import smtplib
import ssl
import sys
import time


def message(tag, k, sender, rcpt, size):
    head = ("From: Bench Client <%s>\r\nTo: <%s>\r\nSubject: submission bench %d\r\n"
            "Date: %s\r\nMessage-ID: <%s.%d@bench.client>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
            % (sender, rcpt, k, time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()), tag, k))
    line = "submission benchmark line of text, seventy-two octets long, roughly.\r\n"
    body = (line * (size // len(line) + 1))[:size - 2] + "\r\n"
    return (head + body).encode("ascii")


def one(args, ctx, src, k, auth, seen):
    # connects and reads the greeting (SMTPConnectError unless 220)
    s = smtplib.SMTP("127.0.0.1", args.port, timeout=args.timeout, source_address=(src, 0))
    try:
        s.ehlo("client%d.bench.test" % k)
        s.starttls(context=ctx)
        if not seen:
            seen.append("%s %s" % (s.sock.version(), s.sock.cipher()[0]))
        s.ehlo("client%d.bench.test" % k)
        code, msg = s.docmd("AUTH", "PLAIN " + auth)
        if code != 235:
            raise RuntimeError("AUTH: %d %s" % (code, msg.decode(errors="replace")))
        refused = s.sendmail(args.sender, [args.rcpt], message(args.tag, k, args.sender, args.rcpt, args.size))
        if refused:
            raise RuntimeError("refused: %r" % refused)
        s.quit()
    finally:
        s.close()


def worker(i, keys, args, password, go, out):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE      # the bench's self-signed key
    auth = base64.b64encode(("\0%s\0%s" % (args.user, password)).encode()).decode()
    src = "%s.%d" % (args.src_net, i + 1)
    ok, errs, seen = 0, [], []
    go.wait()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for k in keys:
        try:
            one(args, ctx, src, k, auth, seen)
            ok += 1
        except Exception as e:     # counted, reported; the run is FAILED
            errs.append("message %d: %s: %s" % (k, type(e).__name__, e))
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    out.put((ok, errs, cpu, seen[:1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("-s", type=int, default=20)
    ap.add_argument("-z", "--size", type=int, default=1024)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password-file", required=True)
    ap.add_argument("--sender", required=True)
    ap.add_argument("--rcpt", required=True)
    ap.add_argument("--tag", default="bench")
    ap.add_argument("--src-net", default="127.0.1")
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()
    if args.n < 1 or not 1 <= args.s <= 254 or args.size < 2:
        ap.error("need n >= 1, 1 <= s <= 254, size >= 2")
    with open(args.password_file) as f:
        password = f.read().rstrip("\n")

    ctx = mp.get_context("fork")
    go = ctx.Event()
    out = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(i, range(i, args.n, args.s), args, password, go, out))
             for i in range(min(args.s, args.n))]
    for p in procs:
        p.start()
    time.sleep(0.5)                 # all forked and waiting on the event
    t0 = time.time()
    go.set()
    results = [out.get() for _ in procs]
    t1 = time.time()
    for p in procs:
        p.join()
    ok = sum(r[0] for r in results)
    errs = [e for r in results for e in r[1]]
    cpu = sum(r[2] for r in results)
    tls = sorted({t for r in results for t in r[3]})
    wall = t1 - t0
    json.dump({"ok": ok, "messages": args.n, "errors": len(errs), "first_errors": errs[:5],
               "t0": t0, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
               "cpu_cores": round(cpu / wall, 2) if wall > 0 else None, "tls": tls},
              sys.stdout)
    print()
    return 0 if ok == args.n and not errs else 1


if __name__ == "__main__":
    sys.exit(main())
