#!/usr/bin/env bash
# bench/backlog.sh - the scheduler property of issue 8: deferred messages
# cost no CPU while they wait, and new mail flows beside them.
#
# One petreld on 127.0.0.1 (built tree, temp dir), with the asynchronous
# test transport (tests/modules/asyncdlv.c) for remote.test: every
# "defer..." recipient is deferred (451) with a retry an hour away.  It
#   1. measures the rate of new local mail (smtp-source -> maildir) with
#      an empty queue, after one unmeasured warm-up load of the same size;
#   2. queues BACKLOG messages to defer@remote.test and waits until each
#      has been tried once (deferred);
#   3. measures petreld's CPU seconds over IDLE seconds of waiting;
#   4. measures the rate of new local mail again, beside the backlog;
#   5. prints both rates, their ratio, and petreld's RSS growth per
#      deferred message.
# With -p the backlog goes instead through the real smtp transport to a
# real peer, Postfix's smtp-sink on 127.0.0.1 answering every RCPT with a
# 4xx (smtp-sink -r RCPT): each message pays a real SMTP transaction (over
# reused connections) before it is deferred.
# Usage: bench/backlog.sh [-p] [-b BACKLOG] [-n MESSAGES] [-s SESSIONS] [-i IDLE]
# Loopback only; needs smtp-source, smtp-sink (postfix) and python3.
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
TOP=$(cd "$HERE/.." && pwd -P)
BACKLOG=100000
MESSAGES=5000
SESSIONS=20
IDLE=10
PEER=0
while getopts "pb:n:s:i:h" o; do
  case $o in
    p) PEER=1 ;;
    b) BACKLOG=$OPTARG ;;
    n) MESSAGES=$OPTARG ;;
    s) SESSIONS=$OPTARG ;;
    i) IDLE=$OPTARG ;;
    *) sed -n '2,22p' "$0"; exit 2 ;;
  esac
done
command -v smtp-source >/dev/null || { echo "backlog.sh: needs smtp-source (postfix)" >&2; exit 1; }

exec /usr/bin/python3 - "$TOP" "$BACKLOG" "$MESSAGES" "$SESSIONS" "$IDLE" "$PEER" <<'EOF'
import os, re, subprocess, sys, time
top, backlog, messages, sessions, idle, peer = sys.argv[1], *map(int, sys.argv[2:])
sys.path.insert(0, os.path.join(top, "tests", "blackbox"))
import petrel
from petrel import Daemon

def stat(pid):
    with open("/proc/%d/stat" % pid) as f:
        v = f.read().rsplit(")", 1)[1].split()
    cpu = (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")
    with open("/proc/%d/status" % pid) as f:
        rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    return cpu, rss

def load(d, n, rcpt):
    t0 = time.monotonic()
    subprocess.run(["smtp-source", "-c", "-d", "-s", str(sessions), "-m", str(n), "-l", "1024",
                    "-f", "bench@localhost", "-t", rcpt, "%s:%d" % (petrel.HOST, d.port)],
                   check=True, stdout=subprocess.DEVNULL)
    return t0

def local_rate(d, already):
    t0 = load(d, messages, "user@localhost")
    new = os.path.join(d.mail, "localhost", "user", "new")
    while not os.path.isdir(new) or len(os.listdir(new)) < already + messages:
        time.sleep(0.02)
    return messages / (time.monotonic() - t0)

sink = None
if peer:
    sport = petrel._free_port()
    sink = subprocess.Popen(["smtp-sink", "-r", "RCPT", "127.0.0.1:%d" % sport, "256"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    modules_extra = "  smtp = { tls = \"none\"; };"
    extra = 'routes = ( { domain = "remote.test"; transport = "smtp"; nexthop = "[127.0.0.1]:%d"; } );' % sport
else:
    modules_extra = "  asynctest = { delay_ms = 1; };"
    extra = 'routes = ( { domain = "remote.test"; transport = "asynctest"; } );'
with Daemon(settings={"retry_initial": 3600, "retry_max": 3600, "queue_lifetime": 86400,
                      "relay_networks": ["127.0.0.0/8"], "recipient_limit": 1000},
            modules_extra=modules_extra, extra=extra) as d:
    pid = d.proc.pid
    local_rate(d, 0)            # warm-up (first maildir, page cache): not measured
    r1 = local_rate(d, messages)
    cpu0, rss0 = stat(pid)
    load(d, backlog, "defer@remote.test")
    while len(re.findall(r"status=deferred", d.log_text())) < backlog:
        time.sleep(0.5)
    time.sleep(1)
    cpu1, rss1 = stat(pid)
    time.sleep(idle)
    cpu2, rss2 = stat(pid)
    r2 = local_rate(d, 2 * messages)
    print("backlog.sh: %d deferred messages (%s), %d new local messages, %d sessions"
          % (backlog, "smtp transport to smtp-sink answering 4xx" if peer else "asynctest transport",
             messages, sessions))
    print("  new mail, empty queue:     %8.0f msg/s" % r1)
    print("  new mail, beside backlog:  %8.0f msg/s  (ratio %.2f)" % (r2, r2 / r1))
    print("  CPU while %ds idle:        %8.2f s" % (idle, cpu2 - cpu1))
    print("  RSS: %d KiB -> %d KiB, %.0f bytes per deferred message"
          % (rss0, rss2, (rss2 - rss0) * 1024.0 / backlog))
if sink:
    sink.terminate()
    sink.wait()
EOF
