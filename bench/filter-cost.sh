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
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
N=10000 S=20 Z=1024 R=100 K=3 FRESH=0
while getopts n:s:z:r:k:F o; do
  case $o in n) N=$OPTARG ;; s) S=$OPTARG ;; z) Z=$OPTARG ;; r) R=$OPTARG ;; k) K=$OPTARG ;;
  F) FRESH=1 ;;
  *) sed -n '2,16p' "$0"; exit 2 ;; esac
done
B=${PETREL_BUILD:-$TOP/_build/default}
PETRELD=$B/src/petreld
[ -x "$PETRELD" ] || { echo "build petrel first ($PETRELD)" >&2; exit 1; }
[ -x "$SMTP_SOURCE" ] || { echo "smtp-source not found (apt-get install postfix)" >&2; exit 1; }

# done_with TMP: petreld stopped, TMP (and with -F its filesystem) removed
done_with() {
  petrel_stop
  [ "$FRESH" = 0 ] || fresh_fs_umount "$1"
  rm -rf "$1"
}

# run MODE (none|regex) -> prints "cpu_ms_per_msg user_ms sys_ms delivered_per_s"
run() {
  local mode=$1 tmp port filters="" regex=""
  tmp=$(mktemp -d /tmp/petrel-fc-XXXXXX)
  [ "$FRESH" = 0 ] || fresh_fs_mount "$tmp"
  port=$(free_port)
  if [ "$mode" = regex ]; then
    python3 "$TOP/modules/regex/gen-rules.py" "$R" >"$tmp/regex.rules"
    filters='filters = [ "regex" ];'
    regex="regex = { rules = \"$tmp/regex.rules\"; };"
  fi
  petrel_conf "$tmp/petrel.conf" "$tmp" "$port" 'stage = "mta";' "$filters" "$regex"
  if ! petrel_start "$tmp/petrel.conf" "$tmp/log" "$port" mta maildir router regex ||
     ! petrel_load_cpu "$port" "$N" "$S" "$Z" "$tmp"; then
    say "$R_ERR"; done_with "$tmp"; exit 1
  fi
  done_with "$tmp"
  awk -v u="$R_UTICKS" -v s="$R_STICKS" -v t="$TICK" -v n="$N" -v d="$R_ARR_S" \
    'BEGIN { printf "%.3f %.3f %.3f %.0f\n", (u+s)*1000/t/n, u*1000/t/n, s*1000/t/n, n/d }'
}

echo "filter cost: $N messages x $Z bytes, $S sessions, regex with $R rules, $K rounds"
ROW_FMT='%-8s %-6s %12s %10s %10s %12s\n'
row round mode cpu_ms/msg user_ms sys_ms delivered/s
for k in $(seq "$K"); do
  for mode in none regex; do
    read -r c u s d < <(run "$mode")
    row "$k" "$mode" "$c" "$u" "$s" "$d"
  done
done
