#!/usr/bin/env bash
# metrics-cost.sh - what serving /metrics costs: the same smtp-source load
# to petreld delivering to maildir, once without a scraper and once with
# one reading GET /metrics every 100 ms, in alternating rounds.  Prints the
# delivery rate (msgs/s, from the start of the load until every message is
# in the maildir), petreld's CPU time per message (user + system, from
# /proc/PID/stat), the scrapes served, and the ratio scrape/none of the
# rates of each round.
#
#   bench/metrics-cost.sh [-n MESSAGES] [-s SESSIONS] [-z SIZE] [-k ROUNDS] [-i INTERVAL_MS]
#
# First, petreld's CPU time per scrape, 5,000 back to back with no mail
# (resolution: the clock tick; the load's rates are noisier than that).
# Defaults: 40000 messages (20 sessions x 2,000) of 1 KiB, 2 rounds, 100 ms.
# Loopback only; smtp-source (Debian's postfix package) is the load.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
N=40000 S=20 Z=1024 K=2 I=100
while getopts n:s:z:k:i: o; do
  case $o in n) N=$OPTARG ;; s) S=$OPTARG ;; z) Z=$OPTARG ;; k) K=$OPTARG ;; i) I=$OPTARG ;;
  *) sed -n '2,15p' "$0"; exit 2 ;; esac
done
B=${PETREL_BUILD:-$TOP/_build/default}
PETRELD=$B/src/petreld
[ -x "$PETRELD" ] || { echo "build petrel first ($PETRELD)" >&2; exit 1; }
[ -x "$SMTP_SOURCE" ] || { echo "smtp-source not found (apt-get install postfix)" >&2; exit 1; }

# fetch(port): one GET /metrics, the whole answer (the connection closes)
FETCH='
import socket
def fetch(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data
'

# The scraper: GET /metrics every INTERVAL ms until SIGTERM, then prints
# "served failed" (a failure: no 200, or a body without the delivered count).
SCRAPER=$FETCH'
import signal, sys, time
port, interval = int(sys.argv[1]), int(sys.argv[2]) / 1000.0
served = failed = 0
stop = False
def on_term(*a):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
while not stop:
    t0 = time.monotonic()
    try:
        data = fetch(port)
        if data.startswith(b"HTTP/1.1 200 ") and b"petrel_messages_delivered_total" in data:
            served += 1
        else:
            failed += 1
    except OSError:
        failed += 1
    left = interval - (time.monotonic() - t0)
    if left > 0 and not stop:
        time.sleep(left)
print(served, failed)
'

# start TMP: petreld (mta, maildir) with a metrics listener, config and log
# in TMP; PORT (SMTP) and MPORT (metrics) set.  Exits 1 if it does not come up.
start() {
  PORT=$(free_port)
  MPORT=$(free_port)
  petrel_conf "$1/petrel.conf" "$1" "$PORT" 'stage = "mta";' "metrics_listen = \"127.0.0.1:$MPORT\";" ""
  petrel_start "$1/petrel.conf" "$1/log" "$PORT" mta maildir router || fail "$1"
  wait_tcp 127.0.0.1 "$MPORT" 10 "$PETREL_PID" || { R_ERR="no metrics listener on 127.0.0.1:$MPORT"; fail "$1"; }
}

# fail TMP: R_ERR on stderr, petreld stopped, TMP removed, exit 1
fail() {
  say "$R_ERR"
  petrel_stop
  rm -rf "$1"
  exit 1
}

# run MODE (none|scrape) -> prints "delivered_per_s cpu_ms_per_msg scrapes failed"
run() {
  local mode=$1 tmp spid=""
  tmp=$(mktemp -d /tmp/petrel-mc-XXXXXX)
  start "$tmp"
  if [ "$mode" = scrape ]; then
    python3 -c "$SCRAPER" "$MPORT" "$I" >"$tmp/scrapes" &
    spid=$!
  fi
  petrel_load_cpu "$PORT" "$N" "$S" "$Z" "$tmp" || fail "$tmp"
  local served=0 failed=0
  if [ -n "$spid" ]; then
    kill -TERM "$spid"; wait "$spid" || true
    read -r served failed <"$tmp/scrapes"
  fi
  petrel_stop
  rm -rf "$tmp"
  awk -v u="$R_UTICKS" -v s="$R_STICKS" -v t="$TICK" -v n="$N" -v d="$R_ARR_S" \
    -v sv="$served" -v f="$failed" \
    'BEGIN { printf "%.0f %.3f %d %d\n", n/d, (u+s)*1000/t/n, sv, f }'
}

# idle -> prints "scrapes cpu_us_per_scrape bytes": petreld's CPU time per
# scrape, back to back with no mail (the figure the load hides in its noise)
idle() {
  local tmp u0 s0 u1 s1 out
  tmp=$(mktemp -d /tmp/petrel-mc-XXXXXX)
  start "$tmp"
  read -r u0 s0 _ _ < <(proc_ticks "$PETREL_PID")
  out=$(python3 -c "$FETCH"'
import sys
port, n, size = int(sys.argv[1]), int(sys.argv[2]), 0
for _ in range(n):
    data = fetch(port)
    assert data.startswith(b"HTTP/1.1 200 "), data[:80]
    size = len(data)
print(n, size)' "$MPORT" 5000)
  read -r u1 s1 _ _ < <(proc_ticks "$PETREL_PID")
  petrel_stop
  rm -rf "$tmp"
  set -- $out
  awk -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v t="$TICK" -v n="$1" -v b="$2" \
    'BEGIN { printf "%d %.0f %d\n", n, (u+s)*1e6/t/n, b }'
}

read -r ni cu nb < <(idle)
echo "idle: $ni scrapes back to back, $cu us of petreld CPU each ($nb bytes per answer);" \
  "at one scrape every $I ms: $(awk -v c="$cu" -v i="$I" 'BEGIN { printf "%.3f", c / (i * 10) }')% of a core"
echo "metrics cost: $N messages x $Z bytes, $S sessions, a scrape every $I ms, $K rounds"
ROW_FMT='%-6s %-7s %12s %11s %8s %7s\n'
row round mode msgs/s cpu_ms/msg scrapes failed
bad=0
for k in $(seq "$K"); do
  read -r r0 c0 _ _ < <(run none)
  row "$k" none "$r0" "$c0" - -
  read -r r1 c1 sv f < <(run scrape)
  row "$k" scrape "$r1" "$c1" "$sv" "$f"
  awk -v a="$r1" -v b="$r0" -v k="$k" 'BEGIN { printf "round %s: scrape/none = %.3f\n", k, a/b }'
  [ "$f" = 0 ] && [ "$sv" -gt 0 ] || bad=1
done
[ "$bad" = 0 ] || { echo "FAILED: a scrape failed, or none was served" >&2; exit 1; }
