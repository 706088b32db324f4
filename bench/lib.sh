# bench/lib.sh - what the bash benchmarks share; sourced, never run:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Sets ME (the script's name), HERE (bench/), TOP (the repository), TICK
# (clock ticks per second) and the defaults of the shared options
# (SESSIONS, SIZE, PETRELD, RUN_PETREL, RUN_POSTFIX, KEEP; see
# common_option); reads PY (the Python to run, default python3), REUSE
# (1, the default: smtp-source -d) and FAIL (finish) from the script.
# Servers started here listen on loopback only and are ended by the PID
# recorded when they were started: PETREL_PID for petreld,
# PF_CONF/PF_MASTER_PID for a private Postfix.  Each function says what it
# promises; the results of a run are left in R_* variables and a failure's
# reason in R_ERR.  Safe under set -e (metrics-cost.sh, filter-cost.sh).
# shellcheck shell=bash disable=SC2317,SC2034  # functions also run from EXIT traps; variables are for the sourcing script

ME=$(basename "$0")
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
TOP=$(cd "$HERE/.." && pwd -P)
TICK=$(getconf CLK_TCK)
BENCHLIB_PY=$HERE/benchlib.py

SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
POSTFIX=${POSTFIX:-/usr/sbin/postfix}
POSTCONF=${POSTCONF:-/usr/sbin/postconf}

PETREL_PID=""
PF_CONF=""; PF_MASTER_PID=""
TMPDIRS=()

# defaults of what common_option sets (MESSAGES is each script's own)
SESSIONS=20
SIZE=1024
PETRELD="$TOP/_build/default/src/petreld"
RUN_PETREL=1
RUN_POSTFIX=1
KEEP=0

# ---------------------------------------------------------------------------
# messages, arguments, formatting

say() { echo "$ME: $*" >&2; }            # a line on stderr, prefixed with $ME
die() { say "$*"; exit 2; }              # that line, then exit status 2

# check_positive VAR...: each named variable holds a positive integer, or
# the script exits 2 saying which does not
check_positive() {
  local v
  for v in "$@"; do
    case "${!v}" in ''|*[!0-9]*|0) die "$v must be a positive integer" ;; esac
  done
}

# check_petreld: PETRELD made absolute and executable, or exit 2
check_petreld() {
  case "$PETRELD" in /*) ;; *) PETRELD="$PWD/$PETRELD" ;; esac
  [ -x "$PETRELD" ] || die "petreld not found or not executable: $PETRELD (build it, pass -p, or use --no-petrel)"
}

# check_postfix [USER...]: 0 if a private Postfix instance can run here
# (installed, we are root, user postfix, group postdrop and each USER
# exist); otherwise says why the comparison is skipped and returns 1
# shellcheck disable=SC2120  # its arguments are optional
check_postfix() {
  local u
  if [ ! -x "$POSTFIX" ] || [ ! -x "$POSTCONF" ]; then
    say "Postfix is not installed: skipping the Postfix comparison"; return 1
  fi
  if [ "$(id -u)" != 0 ]; then
    say "the private Postfix instance must be started as root: skipping the Postfix comparison"
    return 1
  fi
  for u in postfix "$@"; do
    getent passwd "$u" >/dev/null || { say "user $u missing: skipping the Postfix comparison"; return 1; }
  done
  getent group postdrop >/dev/null || { say "group postdrop missing: skipping the Postfix comparison"; return 1; }
  return 0
}

# common_option ARG...: parses the option in $1 (its value in $2) that
# the petrel-beside-Postfix scripts share: -n -s -z -p, --no-postfix,
# --no-petrel, --keep, -h/--help (the script's usage(), exit 0); anything
# else is an unknown argument (usage on stderr, exit 2).  OPT_N: how many
# arguments it took, for the caller's shift.
common_option() {
  OPT_N=2
  case "$1" in
    -n) MESSAGES=${2:?} ;;
    -s) SESSIONS=${2:?} ;;
    -z) SIZE=${2:?} ;;
    -p) PETRELD=${2:?} ;;
    --no-postfix) RUN_POSTFIX=0; OPT_N=1 ;;
    --no-petrel) RUN_PETREL=0; OPT_N=1 ;;
    --keep) KEEP=1; OPT_N=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "$ME: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
}

# finish WHAT: exit 0 if FAIL is 0; otherwise prints "NOT OK: WHAT" and
# (without --keep) how to keep the temp dirs, and exits 1
finish() {
  if [ "${FAIL:-0}" != 0 ]; then
    echo "NOT OK: $1"
    [ "${KEEP:-0}" = 1 ] || echo "(temp dirs and logs are removed on exit; rerun with --keep to inspect them)"
    exit 1
  fi
  exit 0
}

fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }   # A - B, 3 decimals
# fdiv A B [DECIMALS]: A / B with DECIMALS (default 1) digits, "-" if B <= 0
fdiv() { awk -v a="$1" -v b="$2" -v p="${3:-1}" 'BEGIN { if (b > 0) printf "%.*f", p, a / b; else print "-" }'; }

# row FIELD...: one table row (or the header) in the script's $ROW_FMT
row() {
  # shellcheck disable=SC2059  # the format is the point
  printf "$ROW_FMT" "$@"
}

# ---------------------------------------------------------------------------
# temp dirs and processes

# tmpdir_new NAME: a new dir ${TMPDIR:-/tmp}/$BENCH_TMP_PREFIX-NAME.XXXXXX in
# MKTMP, remembered in TMPDIRS for tmpdirs_cleanup; exit 2 if mktemp fails
tmpdir_new() {
  MKTMP=$(mktemp -d "${TMPDIR:-/tmp}/${BENCH_TMP_PREFIX:-petrel-bench}-$1.XXXXXX") || die "mktemp failed"
  TMPDIRS+=("$MKTMP")
}

# tmpdirs_cleanup: removes every dir tmpdir_new made, or with KEEP=1 names them
tmpdirs_cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then
    [ ${#TMPDIRS[@]} -gt 0 ] && say "kept: ${TMPDIRS[*]}"
  else
    local d
    for d in "${TMPDIRS[@]+"${TMPDIRS[@]}"}"; do rm -rf -- "$d"; done
  fi
  return 0
}

# set_traps: the script's cleanup() runs on exit; INT and TERM exit 130/143
set_traps() {
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# fresh_fs_mount DIR: DIR becomes the mount point of a new 8 GB ext4 in
# DIR.img (loop device, root), keeping DIR's mode; dirty pages are written
# back first so that earlier runs' write-back does not compete with this one
fresh_fs_mount() {
  local mode; mode=$(stat -c %a "$1")
  sync
  { truncate -s 8G "$1.img" && mkfs.ext4 -q -F "$1.img" && mount -o loop "$1.img" "$1"; } ||
    die "fresh filesystem: cannot make or mount $1.img"
  chmod "$mode" "$1"
}

# fresh_fs_umount DIR: unmounts what fresh_fs_mount put on DIR, removes DIR.img
fresh_fs_umount() {
  umount "$1" 2>/dev/null || umount -l "$1" 2>/dev/null
  rm -f -- "$1.img"
}

session_pids() {  # session_pids SID: the pids whose session id is SID
  ps -e -o pid=,sid= | awk -v s="$1" '$2 == s { print $1 }'
}

# wait_session_empty SID TENTHS: 0 once no process is left in session SID,
# 1 if some still are after TENTHS tenths of a second
wait_session_empty() {
  local i
  for ((i = 0; i < $2; i++)); do
    session_pids "$1" | grep -q . || return 0
    sleep 0.1
  done
  return 1
}

kill_session() {  # kill_session SID: SIGKILL to each pid left in it, by pid
  local p
  for p in $(session_pids "$1"); do kill -KILL "$p" 2>/dev/null || true; done
  return 0
}

# stop_pid VARNAME [WHAT]: SIGTERM to the child whose pid VARNAME holds,
# SIGKILL after 10 s, reaped; VARNAME is cleared.  Nothing if it is empty.
stop_pid() {
  local pid=${!1} i
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "${2:-process} (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  printf -v "$1" '%s' ""
  return 0
}

# proc_ticks PID: "utime stime cutime cstime" of PID in clock ticks (see
# TICK), from /proc/PID/stat; "0 0 0 0" once PID is gone.  cutime/cstime
# hold the children it has reaped.
proc_ticks() {
  awk '{ sub(/.*\) /, ""); print $12, $13, $14, $15 }' "/proc/$1/stat" 2>/dev/null | grep . || echo "0 0 0 0"
}

# ms_per_msg TICKS N [DECIMALS]: TICKS of CPU per message in milliseconds,
# DECIMALS (default 3) digits
ms_per_msg() {
  awk -v c="$1" -v n="$2" -v t="$TICK" -v p="${3:-3}" 'BEGIN { printf "%.*f", p, c * 1000 / t / n }'
}

# ---------------------------------------------------------------------------
# ports and greetings

# free_port [ADDR [udp]]: a port free on ADDR (default 127.0.0.1) just now
# shellcheck disable=SC2120  # its arguments are optional
free_port() { "${PY:-python3}" "$BENCHLIB_PY" free-port "$@"; }

# wait_smtp ADDR PORT TIMEOUT_S PID|"": 0 once ADDR:PORT greets with a 220
# line; 1 after TIMEOUT_S, or as soon as PID (if given) has exited
wait_smtp() {
  local addr=$1 port=$2 timeout=$3 pid=${4:-} deadline line fd
  deadline=$(( $(date +%s) + timeout ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    if { exec {fd}<>"/dev/tcp/$addr/$port"; } 2>/dev/null; then
      line=""
      read -r -t 5 -u "$fd" line || true
      printf 'QUIT\r\n' 1>&"$fd" 2>/dev/null || true
      exec {fd}>&-
      case "$line" in 220*) return 0 ;; esac
    fi
    sleep 0.1
  done
  return 1
}

# wait_tcp ADDR PORT TIMEOUT_S PID|"": 0 once ADDR:PORT accepts a
# connection (closed at once); 1 after TIMEOUT_S or once PID has exited
wait_tcp() {
  local addr=$1 port=$2 timeout=$3 pid=${4:-} deadline fd
  deadline=$(( $(date +%s) + timeout ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    if { exec {fd}<>"/dev/tcp/$addr/$port"; } 2>/dev/null; then
      exec {fd}>&-
      return 0
    fi
    sleep 0.05
  done
  return 1
}

# ---------------------------------------------------------------------------
# load and arrival

# count_arrived KIND PATH: messages arrived now (KIND maildir: entries of
# the directory PATH; sink: smtp-sink -c's count in the file PATH)
count_arrived() { "${PY:-python3}" "$BENCHLIB_PY" count "$1" "$2"; }

# source_load PORT N S Z LOG RCPT: smtp-source -c [-d if REUSE=1] -s S -m N
# -l Z from bench@localhost to RCPT at 127.0.0.1:PORT, its stderr in LOG.
# Sets LOAD_T0 (epoch at the start) and R_ACC_S (its wall time); 1 with
# R_ERR unless it exited 0 having sent all N.
source_load() {
  local port=$1 n=$2 s=$3 z=$4 log=$5 rcpt=$6 t1 rc got
  local args=(-c -s "$s" -m "$n" -l "$z" -f bench@localhost -t "$rcpt")
  [ "${REUSE:-1}" = 1 ] && args=(-d "${args[@]}")
  echo "+ smtp-source ${args[*]} 127.0.0.1:$port" >>"$log"
  LOAD_T0=$EPOCHREALTIME
  "$SMTP_SOURCE" "${args[@]}" "127.0.0.1:$port" >"$log.out" 2>>"$log" && rc=0 || rc=$?
  t1=$EPOCHREALTIME
  got=$(tr '\r' '\n' <"$log.out" | grep -E '^[0-9]+$' | tail -n 1) || true
  got=${got:-0}
  rm -f "$log.out"
  if [ "$rc" != 0 ] || [ "$got" != "$n" ]; then
    R_ERR="smtp-source exit $rc after $got of $n messages (see $log)"
    return 1
  fi
  R_ACC_S=$(fsub "$t1" "$LOAD_T0")
  return 0
}

# arrived_word KIND: how R_ERR says where messages arrived
arrived_word() { case "$1" in sink) echo "at the sink" ;; *) echo "delivered" ;; esac; }

# wait_arrival KIND PATH N T0 [TIMEOUT_S]: poll until N messages arrived
# (see count_arrived; TIMEOUT_S defaults to 60 + N/20, at least 20 msg/s).
# Sets R_ARR_S (seconds from epoch T0 until then) and R_COUNT; 1 with R_ERR
# at the timeout.
wait_arrival() {
  local kind=$1 path=$2 n=$3 t0=$4 timeout=${5:-$(( 60 + $3 / 20 ))} out rc
  out=$("${PY:-python3}" "$BENCHLIB_PY" wait "$kind" "$path" "$n" "$timeout") && rc=0 || rc=$?
  R_COUNT=${out#* }
  R_ARR_S=$(fsub "${out% *}" "$t0")
  if [ "$rc" != 0 ]; then
    R_ERR="only $R_COUNT of $n messages $(arrived_word "$kind") after $R_ARR_S s"
    R_ARR_S=""
    return 1
  fi
  return 0
}

# recount KIND PATH N: a second later, exactly N arrived (R_COUNT), or 1
# with R_ERR: catches duplicate deliveries
recount() {
  sleep 1
  R_COUNT=$(count_arrived "$1" "$2")
  if [ "$R_COUNT" != "$3" ]; then
    case "$1" in
      sink) R_ERR="$R_COUNT messages at the sink for $3 sent" ;;
      *) R_ERR="$R_COUNT files delivered for $3 messages" ;;
    esac
    return 1
  fi
  return 0
}

# run_load PORT N S Z LOG RCPT KIND PATH: source_load, wait_arrival, recount:
# R_ACC_S (accepted), R_ARR_S (arrived), R_COUNT; 1 with R_ERR on failure
run_load() {
  R_COUNT=""
  if ! source_load "$1" "$2" "$3" "$4" "$5" "$6"; then
    R_COUNT=$(count_arrived "$7" "$8")
    return 1
  fi
  wait_arrival "$7" "$8" "$2" "$LOAD_T0" || return 1
  recount "$7" "$8" "$2"
}

# ---------------------------------------------------------------------------
# petreld

# petrel_conf FILE TMP PORT LISTENER TOPLEVEL MODULES: writes a petreld
# configuration: one listener on 127.0.0.1:PORT (LISTENER: its other
# settings, e.g. 'stage = "mta";'), spool TMP/spool, local domain
# localhost delivered by maildir to TMP/mail/<domain>/<user>/, the lines
# TOPLEVEL and $PETREL_EXTRA_CONF, and MODULES inside modules = { }
petrel_conf() {
  cat >"$1" <<EOF
hostname = "bench.localhost";
spool = "$2/spool";
listeners = ( { listen = "127.0.0.1:$3"; $4 } );
domains = [ "localhost" ];
$5
${PETREL_EXTRA_CONF:-}
modules = { maildir = { root = "$2/mail/%d/%u"; }; $6 };
EOF
}

# petrel_start CONF LOG PORT MODULE...: starts $PETRELD -f -c CONF (stdout
# and stderr appended to LOG) with the named modules of its build tree, in
# PETREL_PID; 0 once 127.0.0.1:PORT greets.  Otherwise R_ERR says why, the
# log's tail goes to stderr, petreld is stopped and 1 is returned.
petrel_start() {
  local conf=$1 log=$2 port=$3 b path="" m rc
  shift 3
  b=$(dirname "$(dirname "$PETRELD")")
  for m in "$@"; do path=${path:+$path:}$b/modules/$m; done
  PETREL_MODULE_PATH=$path "$PETRELD" -f -c "$conf" </dev/null >>"$log" 2>&1 &
  PETREL_PID=$!
  wait_smtp 127.0.0.1 "$port" 30 "$PETREL_PID" && return 0
  if kill -0 "$PETREL_PID" 2>/dev/null; then
    R_ERR="petreld did not greet on 127.0.0.1:$port within 30 s (log: $log)"
  else
    wait "$PETREL_PID" && rc=0 || rc=$?
    R_ERR="petreld exited with status $rc before answering SMTP (log: $log)"
    PETREL_PID=""
  fi
  petrel_log_tail "$log"
  petrel_stop
  return 1
}

# petrel_load_cpu PORT N S Z TMP: source_load of N messages to
# user@localhost (smtp-source log in TMP), then wait_arrival in
# TMP/mail/localhost/user/new; R_UTICKS/R_STICKS: the user/system clock
# ticks PETREL_PID spent meanwhile, and R_ARR_S.  1 with R_ERR on failure.
petrel_load_cpu() {
  local u0 s0 u1 s1
  read -r u0 s0 _ _ < <(proc_ticks "$PETREL_PID")
  source_load "$1" "$2" "$3" "$4" "$5/smtp-source.log" user@localhost || return 1
  wait_arrival maildir "$5/mail/localhost/user/new" "$2" "$LOAD_T0" || return 1
  read -r u1 s1 _ _ < <(proc_ticks "$PETREL_PID")
  R_UTICKS=$((u1 - u0)); R_STICKS=$((s1 - s0))
}

petrel_log_tail() { tail -n 20 "$1" | sed 's/^/  petreld: /' >&2; }  # LOG's last 20 lines on stderr
petrel_stop() { stop_pid PETREL_PID petreld; }                     # stop_pid for PETREL_PID

# ---------------------------------------------------------------------------
# a private Postfix instance: its own config, queue and data directories
# under TMP, confined to 127.0.0.1, logging to a file, no per-client limits.
# Durability settings (fsync of queue files and Maildir files) stay at
# Postfix's defaults.  A script appends its own lines to ETC/main.cf and its
# extra services to ETC/master.cf.

# pf_config ETC TMP PORT PLIMIT: makes ETC, TMP/queue and TMP/data (owned by
# postfix) and writes the base ETC/main.cf (default_process_limit PLIMIT,
# maillog_file TMP/maillog) and ETC/master.cf (smtpd on 127.0.0.1:PORT plus
# the services every instance needs)
pf_config() {
  local etc=$1 tmp=$2 port=$3 plimit=$4
  mkdir -p "$etc" "$tmp/queue" "$tmp/data"
  chown postfix "$tmp/data"
  cat >"$etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $tmp/queue
data_directory = $tmp/data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.localhost
mydomain = localhost
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
biff = no
alias_maps =
alias_database =
local_recipient_maps =
# not capped by default limits
default_process_limit = $plimit
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_event_limit_exceptions = 127.0.0.0/8
# log to a file in the temp dir (no syslog needed)
maillog_file = $tmp/maillog
maillog_file_prefixes = $tmp
EOF
  cat >"$etc/master.cf" <<EOF
# service        type  private unpriv chroot wakeup maxproc command
127.0.0.1:$port  inet  n       -      n      -      -       smtpd
pickup           unix  n       -      n      60     1       pickup
cleanup          unix  n       -      n      -      0       cleanup
qmgr             unix  n       -      n      300    1       qmgr
rewrite          unix  -       -      n      -      -       trivial-rewrite
bounce           unix  -       -      n      -      0       bounce
defer            unix  -       -      n      -      0       bounce
trace            unix  -       -      n      -      0       bounce
verify           unix  -       -      n      -      1       verify
flush            unix  n       -      n      1000?  0       flush
proxymap         unix  -       -      n      -      -       proxymap
proxywrite       unix  -       -      n      -      1       proxymap
showq            unix  n       -      n      -      -       showq
error            unix  -       -      n      -      -       error
retry            unix  -       -      n      -      -       error
discard          unix  -       -      n      -      -       discard
anvil            unix  -       -      n      -      1       anvil
scache           unix  -       -      n      -      1       scache
postlog          unix-dgram n  -      n      -      1       postlogd
EOF
}

# pf_local_maildir ETC TMP UID GID: appends to ETC/main.cf and master.cf
# what makes the instance deliver nowhere but user@localhost ->
# TMP/mail/localhost/user/ (virtual(8), as UID:GID; never DNS, never out);
# makes TMP/mail owned by UID:GID
pf_local_maildir() {
  local etc=$1 tmp=$2 uid=$3 gid=$4
  mkdir -p "$tmp/mail"
  chown "$uid:$gid" "$tmp/mail"
  cat >>"$etc/main.cf" <<EOF
relayhost =
# never deliver anywhere but the local Maildir, never look up DNS
default_transport = error:outbound mail disabled in benchmark
relay_transport = error:outbound mail disabled in benchmark
smtp_dns_support_level = disabled
# user@localhost -> $tmp/mail/localhost/user/ (Maildir: trailing slash)
virtual_mailbox_domains = localhost
virtual_mailbox_base = $tmp/mail
virtual_mailbox_maps = inline:{user@localhost=localhost/user/}
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
EOF
  echo "virtual          unix  -       n      n      -      -       virtual" >>"$etc/master.cf"
}

# pf_start ETC TMP PORT [WRAPPER...]: postfix check, then WRAPPER... postfix
# -c ETC start (WRAPPER: e.g. a mount namespace); PF_CONF/PF_MASTER_PID
# set for pf_stop; 0 once 127.0.0.1:PORT greets.  Otherwise R_ERR says why,
# the instance is stopped and 1 is returned.  Output in TMP/postfix.out.
pf_start() {
  local etc=$1 tmp=$2 port=$3
  shift 3
  if ! "$POSTFIX" -c "$etc" check >>"$tmp/postfix.out" 2>&1; then
    R_ERR="postfix check failed: $(tail -n 3 "$tmp/postfix.out")"
    return 1
  fi
  PF_CONF=$etc
  if ! "$@" "$POSTFIX" -c "$etc" start >>"$tmp/postfix.out" 2>&1; then
    R_ERR="postfix start failed: $(tail -n 3 "$tmp/postfix.out")"
    PF_MASTER_PID=$(tr -dc 0-9 <"$tmp/queue/pid/master.pid" 2>/dev/null) || true
    pf_stop
    return 1
  fi
  PF_MASTER_PID=$(tr -dc 0-9 <"$tmp/queue/pid/master.pid" 2>/dev/null) || true
  if ! wait_smtp 127.0.0.1 "$port" 30 "$PF_MASTER_PID"; then
    R_ERR="Postfix did not greet on 127.0.0.1:$port within 30 s (log: $tmp/maillog)"
    pf_stop
    return 1
  fi
  return 0
}

# pf_stop: stops the instance pf_start started (nothing if none) and makes
# sure none of its processes is left: all Postfix daemons run in the
# session of master(8); after 10 s it is aborted and what is left killed
pf_stop() {
  [ -n "$PF_CONF" ] || return 0
  "$POSTFIX" -c "$PF_CONF" stop >/dev/null 2>&1 || true
  if [ -n "$PF_MASTER_PID" ] && ! wait_session_empty "$PF_MASTER_PID" 100; then
    say "Postfix did not stop in 10 s; aborting it"
    "$POSTFIX" -c "$PF_CONF" abort >/dev/null 2>&1 || true
    sleep 1
    kill_session "$PF_MASTER_PID"
  fi
  PF_CONF=""; PF_MASTER_PID=""
  return 0
}

# pf_log_errors TMP [PATTERN]: the maillog's last 10 lines matching PATTERN
# (default warning|fatal|panic|error) on stderr
pf_log_errors() {
  grep -E "${2:-warning|fatal|panic|error}" "$1/maillog" 2>/dev/null | tail -n 10 | sed 's/^/  postfix: /' >&2
}
