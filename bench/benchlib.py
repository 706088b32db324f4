#!/usr/bin/env python3
"""bench/benchlib.py - the Python helpers of bench/lib.sh, one process each.

  benchlib.py free-port [ADDR [udp]]    a free port on ADDR (127.0.0.1)
  benchlib.py count KIND PATH           what has arrived, now
  benchlib.py wait KIND PATH N TIMEOUT  poll every 10 ms until >= N arrived

KIND says where messages arrive and how they are counted:
  maildir  PATH is a directory (a Maildir's new/): its entries; 0 while it
           does not exist
  sink     PATH is the stdout of smtp-sink -c: the last "mesg=N" in it
           (0 if none yet)

`wait` prints "<epoch seconds when reached> <count>" and exits 0, or prints
the same at the timeout and exits 1.  Nothing here listens or connects.
"""
import os
import re
import socket
import sys
import time


def free_port(addr="127.0.0.1", kind="tcp"):
    """Bind port 0 on addr, report the port, release it."""
    s = socket.socket(type=socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    s.bind((addr, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def count_maildir(path):
    try:
        return sum(1 for _ in os.scandir(path))
    except FileNotFoundError:
        return 0


def count_sink(path):
    # smtp-sink -c rewrites one status line: the last 200 bytes hold the
    # newest count
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 200))
            tail = f.read()
    except FileNotFoundError:
        return 0
    m = re.findall(rb"mesg=(\d+)", tail)
    return int(m[-1]) if m else 0


COUNTERS = {"maildir": count_maildir, "sink": count_sink}


def wait(count, path, n, timeout):
    end = time.time() + timeout
    while True:
        c = count(path)
        now = time.time()
        if c >= n or now > end:
            print("%.6f %d" % (now, c))
            return 0 if c >= n else 1
        time.sleep(0.01)


def main(argv):
    if argv[:1] == ["free-port"] and len(argv) <= 3:
        print(free_port(*argv[1:]))
        return 0
    if len(argv) >= 3 and argv[0] in ("count", "wait") and argv[1] in COUNTERS:
        count = COUNTERS[argv[1]]
        if argv[0] == "count" and len(argv) == 3:
            print(count(argv[2]))
            return 0
        if argv[0] == "wait" and len(argv) == 5:
            return wait(count, argv[2], int(argv[3]), float(argv[4]))
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
