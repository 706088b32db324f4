#!/usr/bin/env bash
# filter-cost.sh - what a filter costs: petreld's own CPU time per message
# (user and system, from /proc/PID/stat) and the delivery rate, with the
# regex filter and N generated rules beside the same run without filters,
# in alternating rounds (throughput on a shared disk is noisy; CPU time per
# message is the steadier figure).
#
#   bench/filter-cost.sh [-n MESSAGES] [-s SESSIONS] [-z SIZE] [-r RULES] [-k ROUNDS] [-F]
#
# -F: every run on its own newly made ext4 (loop device, as root), as
#     bench.sh --fresh-fs: no run pays for the files earlier runs deleted.
#
# Loopback only; smtp-source (Debian's postfix package) is the load.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
N=10000 S=20 Z=1024 R=100 K=3 FRESH=0
while getopts n:s:z:r:k:F o; do
  case $o in n) N=$OPTARG ;; s) S=$OPTARG ;; z) Z=$OPTARG ;; r) R=$OPTARG ;; k) K=$OPTARG ;;
  F) FRESH=1 ;;
  *) sed -n '2,16p' "$0"; exit 2 ;; esac
done
B=${PETREL_BUILD:-$TOP/_build/default}
PETRELD=$B/src/petreld
SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
[ -x "$PETRELD" ] || { echo "build petrel first ($PETRELD)" >&2; exit 1; }
[ -x "$SMTP_SOURCE" ] || { echo "smtp-source not found (apt-get install postfix)" >&2; exit 1; }
TICK=$(getconf CLK_TCK)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run MODE (none|regex) -> prints "cpu_ms_per_msg user_ms sys_ms delivered_per_s"
run() {
  local mode=$1 tmp port pid filters="" regex=""
  tmp=$(mktemp -d /tmp/petrel-fc-XXXXXX)
  if [ "$FRESH" = 1 ]; then
    sync
    truncate -s 8G "$tmp.img" && mkfs.ext4 -q -F "$tmp.img" && mount -o loop "$tmp.img" "$tmp" ||
      { echo "-F: cannot make or mount $tmp.img" >&2; exit 1; }
  fi
  port=$(free_port)
  if [ "$mode" = regex ]; then
    python3 "$TOP/modules/regex/gen-rules.py" "$R" >"$tmp/regex.rules"
    filters='filters = [ "regex" ];'
    regex="regex = { rules = \"$tmp/regex.rules\"; };"
  fi
  cat >"$tmp/petrel.conf" <<CONF
hostname = "bench.localhost";
spool = "$tmp/spool";
listeners = ( { listen = "127.0.0.1:$port"; stage = "mta"; } );
domains = [ "localhost" ];
$filters
modules = { maildir = { root = "$tmp/mail/%d/%u"; }; $regex };
CONF
  PETREL_MODULE_PATH="$B/modules/mta:$B/modules/maildir:$B/modules/router:$B/modules/regex" \
    "$PETRELD" -f -c "$tmp/petrel.conf" 2>"$tmp/log" &
  pid=$!
  for _ in $(seq 100); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null && break
    sleep 0.05
  done
  read -r u0 s0 < <(awk '{print $14, $15}' /proc/$pid/stat)
  local t0 t1 n
  t0=$(date +%s.%N)
  "$SMTP_SOURCE" -d -s "$S" -m "$N" -l "$Z" -f bench@localhost -t user@localhost "127.0.0.1:$port"
  while :; do
    n=$(find "$tmp/mail/localhost/user/new" -type f 2>/dev/null | wc -l)
    [ "$n" -ge "$N" ] && break
    sleep 0.05
  done
  t1=$(date +%s.%N)
  read -r u1 s1 < <(awk '{print $14, $15}' /proc/$pid/stat)
  kill -TERM "$pid"; wait "$pid" || true
  if [ "$FRESH" = 1 ]; then
    umount "$tmp" || umount -l "$tmp"
    rm -f "$tmp.img"
  fi
  rm -rf "$tmp"
  awk -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v t="$TICK" -v n="$N" -v d="$(echo "$t1 - $t0" | bc)" \
    'BEGIN { printf "%.3f %.3f %.3f %.0f\n", (u+s)*1000/t/n, u*1000/t/n, s*1000/t/n, n/d }'
}

echo "filter cost: $N messages x $Z bytes, $S sessions, regex with $R rules, $K rounds"
printf '%-8s %-6s %12s %10s %10s %12s\n' round mode cpu_ms/msg user_ms sys_ms delivered/s
for k in $(seq "$K"); do
  for mode in none regex; do
    read -r c u s d < <(run "$mode")
    printf '%-8s %-6s %12s %10s %10s %12s\n' "$k" "$mode" "$c" "$u" "$s" "$d"
  done
done
