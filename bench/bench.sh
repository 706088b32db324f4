#!/usr/bin/env bash
# bench/bench.sh - throughput benchmark: petrel vs. a private Postfix instance.
#
# Both servers listen on 127.0.0.1 only, all traffic goes to 127.0.0.1, and
# both are loaded with the same smtp-source(1) command line.  For each server
# we measure
#   accepted msg/s  = MESSAGES / wall time of smtp-source (SMTP acceptance)
#   delivered msg/s = MESSAGES / time from start of load until MESSAGES files
#                     are in the Maildir's new/ directory (end-to-end delivery)
# See bench/README.md.

# shellcheck disable=SC2317  # functions are also called from the EXIT trap
set -u -o pipefail

ME=$(basename "$0")
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
TOP=$(cd "$HERE/.." && pwd -P)

MESSAGES=10000
SESSIONS=20
SIZE=1024
PETRELD="$TOP/_build/default/src/petreld"
REGEX_RULES=0    # -r N: run petrel with the regex filter and N generated rules
RUN_PETREL=1
RUN_POSTFIX=1
MATRIX=0
REUSE=1          # smtp-source -d: several messages per SMTP session
KEEP=0
FRESH_FS=0       # --fresh-fs: each server run on a newly made ext4 (root, loop device)
N_SET=0

SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
POSTFIX=${POSTFIX:-/usr/sbin/postfix}
POSTCONF=${POSTCONF:-/usr/sbin/postconf}
# Maildir owner for Postfix's virtual(8) delivery (must be >= virtual_minimum_uid).
PF_MAIL_USER=${PF_MAIL_USER:-nobody}

usage() {
  cat <<EOF
usage: $ME [-n MESSAGES] [-s SESSIONS] [-z SIZE_BYTES] [-p PETRELD]
          [--no-postfix] [--no-petrel] [--matrix] [--reconnect] [--keep]

  -n MESSAGES    messages to send per run (default 10000)
  -s SESSIONS    parallel SMTP sessions (default 20)
  -z SIZE_BYTES  message body size, smtp-source -l (default 1024)
  -p PETRELD     petreld binary (default: <repo top>/_build/default/src/petreld);
                 modules are taken from the same build directory
  -r RULES       petrel runs the regex filter with RULES generated rules
                 (modules/regex/gen-rules.py), to measure what a filter costs
  --no-postfix   do not run the Postfix comparison
  --no-petrel    run only the Postfix half
  --matrix       run messages=10000 (or -n) x sessions {1,20,50}
                 x size {1024,10240,102400}, print one table
  --reconnect    new SMTP connection per message (omit smtp-source -d)
  --keep         keep the temp dirs (spools, Maildirs, logs) for inspection
  --fresh-fs     run each server on its own newly made ext4 (loop device, as
                 root): runs stop paying for inodes earlier runs deleted
  -h, --help     this text

Temp dirs are made with mktemp(1) and honour \$TMPDIR; put it on the disk you
want to measure (not tmpfs: both servers fsync).
Exit status: 0 if every run delivered exactly MESSAGES files, non-zero otherwise.
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    -n) MESSAGES=${2:?}; N_SET=1; shift 2 ;;
    -s) SESSIONS=${2:?}; shift 2 ;;
    -z) SIZE=${2:?}; shift 2 ;;
    -p) PETRELD=${2:?}; shift 2 ;;
    -r) REGEX_RULES=${2:?}; shift 2 ;;
    --no-postfix) RUN_POSTFIX=0; shift ;;
    --no-petrel) RUN_PETREL=0; shift ;;
    --matrix) MATRIX=1; shift ;;
    --reconnect) REUSE=0; shift ;;
    --keep) KEEP=1; shift ;;
    --fresh-fs) FRESH_FS=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "$ME: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

for v in MESSAGES SESSIONS SIZE; do
  case "${!v}" in
    ''|*[!0-9]*|0) echo "$ME: $v must be a positive integer" >&2; exit 2 ;;
  esac
done

say()  { echo "$ME: $*" >&2; }
die()  { say "$*"; exit 2; }

command -v python3 >/dev/null || die "python3 is required"
[ -x "$SMTP_SOURCE" ] || die "smtp-source not found at $SMTP_SOURCE (Debian package postfix)"

if [ "$RUN_PETREL" = 1 ]; then
  case "$PETRELD" in /*) ;; *) PETRELD="$PWD/$PETRELD" ;; esac
  [ -x "$PETRELD" ] || die "petreld not found or not executable: $PETRELD (build it, pass -p, or use --no-petrel)"
fi

if [ "$RUN_POSTFIX" = 1 ]; then
  if [ ! -x "$POSTFIX" ] || [ ! -x "$POSTCONF" ]; then
    say "Postfix is not installed: skipping the Postfix comparison"
    RUN_POSTFIX=0
  elif [ "$(id -u)" != 0 ]; then
    say "the private Postfix instance must be started as root: skipping the Postfix comparison"
    RUN_POSTFIX=0
  elif ! getent passwd postfix >/dev/null || ! getent group postdrop >/dev/null \
       || ! getent passwd "$PF_MAIL_USER" >/dev/null; then
    say "user postfix, group postdrop or user $PF_MAIL_USER missing: skipping the Postfix comparison"
    RUN_POSTFIX=0
  fi
fi

[ "$RUN_PETREL" = 1 ] || [ "$RUN_POSTFIX" = 1 ] || die "nothing to run"

# ---------------------------------------------------------------------------
# state for cleanup

PETREL_PID=""
PF_CONF=""          # config_directory of a running private Postfix
PF_MASTER_PID=""
TMPDIRS=()
MOUNTS=()        # --fresh-fs: loop filesystems mounted on temp dirs

# Stop a private Postfix instance and make sure none of its processes are
# left: all Postfix daemons run in the session of master(8).
postfix_stop() {
  [ -n "$PF_CONF" ] || return 0
  local conf=$PF_CONF sid=$PF_MASTER_PID i
  "$POSTFIX" -c "$conf" stop >/dev/null 2>&1
  if [ -n "$sid" ]; then
    for ((i = 0; i < 100; i++)); do
      session_pids "$sid" | grep -q . || break
      sleep 0.1
    done
    if session_pids "$sid" | grep -q .; then
      say "Postfix did not stop in 10 s; aborting it"
      "$POSTFIX" -c "$conf" abort >/dev/null 2>&1
      sleep 1
      local p
      for p in $(session_pids "$sid"); do kill -KILL "$p" 2>/dev/null; done
    fi
  fi
  PF_CONF=""
  PF_MASTER_PID=""
}

session_pids() {  # pids whose session id is $1
  ps -e -o pid=,sid= | awk -v s="$1" '$2 == s { print $1 }'
}

petrel_stop() {
  [ -n "$PETREL_PID" ] || return 0
  local i
  kill -TERM "$PETREL_PID" 2>/dev/null
  for ((i = 0; i < 100; i++)); do
    kill -0 "$PETREL_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$PETREL_PID" 2>/dev/null; then
    say "petreld (pid $PETREL_PID) ignored SIGTERM for 10 s; sending SIGKILL"
    kill -KILL "$PETREL_PID" 2>/dev/null
  fi
  wait "$PETREL_PID" 2>/dev/null
  PETREL_PID=""
}

cleanup() {
  petrel_stop
  postfix_stop
  local m
  for m in "${MOUNTS[@]+"${MOUNTS[@]}"}"; do
    if [ "$KEEP" = 1 ]; then say "kept mounted: $m ($m.img)"; continue; fi
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; rm -f -- "$m.img"
  done
  if [ "$KEEP" = 1 ]; then
    [ ${#TMPDIRS[@]} -gt 0 ] && say "kept: ${TMPDIRS[*]}"
  else
    local d
    for d in "${TMPDIRS[@]+"${TMPDIRS[@]}"}"; do rm -rf -- "$d"; done
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# helpers

# Print a free TCP port on 127.0.0.1 (bind to port 0, report, release).
free_port() {
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# wait_smtp PORT TIMEOUT_S PID|"" : wait until 127.0.0.1:PORT sends a 220
# greeting.  If PID is given, give up as soon as that process is gone.
wait_smtp() {
  local port=$1 timeout=$2 pid=${3:-} deadline line fd
  deadline=$(( $(date +%s) + timeout ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      return 1
    fi
    if { exec {fd}<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
      line=""
      read -r -t 5 -u "$fd" line
      printf 'QUIT\r\n' 1>&"$fd" 2>/dev/null
      exec {fd}>&-
      case "$line" in 220*) return 0 ;; esac
    fi
    sleep 0.1
  done
  return 1
}

# count_files DIR: number of entries in DIR (0 if it does not exist)
count_files() {
  python3 -c 'import os, sys
try:
    print(sum(1 for _ in os.scandir(sys.argv[1])))
except FileNotFoundError:
    print(0)' "$1"
}

# wait_delivered DIR N TIMEOUT_S: poll until DIR holds >= N entries.
# Prints "<epoch seconds when reached> <count>"; exit 1 on timeout.
wait_delivered() {
  python3 -c 'import os, sys, time
d, n, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
end = time.time() + timeout
c = 0
while True:
    try:
        c = sum(1 for _ in os.scandir(d))
    except FileNotFoundError:
        c = 0
    now = time.time()
    if c >= n:
        print("%.6f %d" % (now, c)); sys.exit(0)
    if now > end:
        print("%.6f %d" % (now, c)); sys.exit(1)
    time.sleep(0.01)' "$1" "$2" "$3"
}

fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
fdiv() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "-" }'; }

# Results of the last run_load / run_server call
R_ACC_S=""; R_DEL_S=""; R_FILES=""; R_ERR=""

# run_load PORT N S Z LOGFILE NEWDIR: drive the load, then wait for delivery.
run_load() {
  local port=$1 n=$2 s=$3 z=$4 log=$5 newdir=$6
  local args=(-c -s "$s" -m "$n" -l "$z" -f bench@localhost -t user@localhost)
  [ "$REUSE" = 1 ] && args=(-d "${args[@]}")
  local t0 t1 rc got out reached
  echo "+ smtp-source ${args[*]} 127.0.0.1:$port" >>"$log"
  t0=$EPOCHREALTIME
  "$SMTP_SOURCE" "${args[@]}" "127.0.0.1:$port" >"$log.out" 2>>"$log"
  rc=$?
  t1=$EPOCHREALTIME
  got=$(tr '\r' '\n' <"$log.out" | grep -E '^[0-9]+$' | tail -n 1)
  got=${got:-0}
  rm -f "$log.out"
  if [ "$rc" != 0 ] || [ "$got" != "$n" ]; then
    R_ERR="smtp-source exit $rc after $got of $n messages (see $log)"
    R_FILES=$(count_files "$newdir")
    return 1
  fi
  R_ACC_S=$(fsub "$t1" "$t0")
  # Allow at least 20 msg/s for delivery, plus 60 s.
  out=$(wait_delivered "$newdir" "$n" $(( 60 + n / 20 )))
  rc=$?
  reached=${out% *}
  if [ "$rc" != 0 ]; then
    R_FILES=${out#* }
    R_ERR="only $R_FILES of $n messages delivered after $(fsub "$reached" "$t0") s"
    return 1
  fi
  R_DEL_S=$(fsub "$reached" "$t0")
  # Settle a moment, then recount: catches duplicate deliveries.
  sleep 1
  R_FILES=$(count_files "$newdir")
  if [ "$R_FILES" != "$n" ]; then
    R_ERR="$R_FILES files delivered for $n messages"
    return 1
  fi
  return 0
}

# mktmp NAME: make a temp dir, remembered for cleanup, in $MKTMP
mktmp() {
  MKTMP=$(mktemp -d "${TMPDIR:-/tmp}/petrel-bench-$1.XXXXXX") || die "mktemp failed"
  TMPDIRS+=("$MKTMP")
  if [ "$FRESH_FS" = 1 ]; then
    # The runs before this one are over: their filesystems go now, and
    # what they left dirty is written back before this run starts, or
    # that write-back would compete with this run (1 GB at 100 KiB).
    if [ "$KEEP" != 1 ] && [ ${#MOUNTS[@]} -gt 0 ]; then
      local m
      for m in "${MOUNTS[@]}"; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; rm -f -- "$m.img"
      done
      MOUNTS=()
    fi
    sync
    # a new ext4 (mkfs defaults: with a journal) for this run alone, so no
    # run pays for the inodes an earlier run created and deleted
    local mode; mode=$(stat -c %a "$MKTMP")
    truncate -s 8G "$MKTMP.img" && mkfs.ext4 -q -F "$MKTMP.img" &&
      mount -o loop "$MKTMP.img" "$MKTMP" || die "--fresh-fs: cannot make or mount $MKTMP.img"
    MOUNTS+=("$MKTMP")
    chmod "$mode" "$MKTMP"
  fi
}

# ---------------------------------------------------------------------------
# petrel

bench_petrel() {
  local n=$1 s=$2 z=$3 tmp port conf log
  mktmp petrel; tmp=$MKTMP
  port=$(free_port) || { R_ERR="no free port"; return 1; }
  conf=$tmp/petrel.conf
  log=$tmp/petreld.log
  mkdir -p "$tmp/spool" "$tmp/mail"
  local filters="" regex="" b
  if [ "$REGEX_RULES" -gt 0 ]; then
    python3 "$TOP/modules/regex/gen-rules.py" "$REGEX_RULES" >"$tmp/regex.rules"
    filters='filters = [ "regex" ];'
    regex="regex = { rules = \"$tmp/regex.rules\"; };"
  fi
  cat >"$conf" <<EOF
hostname = "bench.localhost";
spool = "$tmp/spool";
listeners = ( { listen = "127.0.0.1:$port"; stage = "mta"; } );
domains = [ "localhost" ];
$filters
${PETREL_EXTRA_CONF:-}
modules = { maildir = { root = "$tmp/mail/%d/%u"; }; $regex };
EOF
  b=$(dirname "$(dirname "$PETRELD")")
  PETREL_MODULE_PATH="$b/modules/mta:$b/modules/maildir:$b/modules/router:$b/modules/regex" \
    "$PETRELD" -f -c "$conf" </dev/null >>"$log" 2>&1 &
  PETREL_PID=$!
  if ! wait_smtp "$port" 30 "$PETREL_PID"; then
    if kill -0 "$PETREL_PID" 2>/dev/null; then
      R_ERR="petreld did not greet on 127.0.0.1:$port within 30 s (log: $log)"
    else
      wait "$PETREL_PID"
      R_ERR="petreld exited with status $? before answering SMTP (log: $log)"
      PETREL_PID=""
    fi
    tail -n 20 "$log" | sed 's/^/  petreld: /' >&2
    petrel_stop
    return 1
  fi
  local ok=0
  run_load "$port" "$n" "$s" "$z" "$tmp/smtp-source.log" "$tmp/mail/localhost/user/new" || ok=1
  if ! kill -0 "$PETREL_PID" 2>/dev/null; then
    R_ERR="${R_ERR:+$R_ERR; }petreld died during the run (log: $log)"
    ok=1
  fi
  [ "$ok" = 0 ] || tail -n 20 "$log" | sed 's/^/  petreld: /' >&2
  petrel_stop
  return "$ok"
}

# ---------------------------------------------------------------------------
# Postfix: a private instance with its own config and queue directory.

bench_postfix() {
  local n=$1 s=$2 z=$3 tmp port etc log uid gid plimit
  mktmp postfix; tmp=$MKTMP
  chmod 755 "$tmp"     # postfix and the Maildir owner must traverse it
  port=$(free_port) || { R_ERR="no free port"; return 1; }
  etc=$tmp/etc
  log=$tmp/maillog
  uid=$(id -u "$PF_MAIL_USER")
  gid=$(id -g "$PF_MAIL_USER")
  plimit=$(( s + 10 > 100 ? s + 10 : 100 ))
  mkdir -p "$etc" "$tmp/queue" "$tmp/data" "$tmp/mail"
  chown postfix "$tmp/data"
  chown "$uid:$gid" "$tmp/mail"

  # Only non-default settings that confine the instance to loopback and to
  # our Maildir, or lift per-client limits.  Durability settings (fsync of
  # queue files and Maildir files) stay at Postfix's defaults.
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
relayhost =
# never deliver anywhere but the local Maildir, never look up DNS
default_transport = error:outbound mail disabled in benchmark
relay_transport = error:outbound mail disabled in benchmark
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
biff = no
alias_maps =
alias_database =
local_recipient_maps =
# user@localhost -> $tmp/mail/localhost/user/ (Maildir: trailing slash)
virtual_mailbox_domains = localhost
virtual_mailbox_base = $tmp/mail
virtual_mailbox_maps = inline:{user@localhost=localhost/user/}
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
# not capped by default limits
default_process_limit = $plimit
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_event_limit_exceptions = 127.0.0.0/8
# log to a file in the temp dir (no syslog needed)
maillog_file = $log
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
virtual          unix  -       n      n      -      -       virtual
anvil            unix  -       -      n      -      1       anvil
scache           unix  -       -      n      -      1       scache
postlog          unix-dgram n  -      n      -      1       postlogd
EOF

  if ! "$POSTFIX" -c "$etc" check >>"$tmp/postfix.out" 2>&1; then
    R_ERR="postfix check failed: $(tail -n 3 "$tmp/postfix.out")"
    return 1
  fi
  PF_CONF=$etc
  if ! "$POSTFIX" -c "$etc" start >>"$tmp/postfix.out" 2>&1; then
    R_ERR="postfix start failed: $(tail -n 3 "$tmp/postfix.out")"
    PF_MASTER_PID=$(tr -dc 0-9 <"$tmp/queue/pid/master.pid" 2>/dev/null)
    postfix_stop
    return 1
  fi
  PF_MASTER_PID=$(tr -dc 0-9 <"$tmp/queue/pid/master.pid" 2>/dev/null)
  if ! wait_smtp "$port" 30 "$PF_MASTER_PID"; then
    R_ERR="Postfix did not greet on 127.0.0.1:$port within 30 s (log: $log)"
    postfix_stop
    return 1
  fi
  local ok=0
  run_load "$port" "$n" "$s" "$z" "$tmp/smtp-source.log" "$tmp/mail/localhost/user/new" || ok=1
  if [ "$ok" != 0 ]; then
    grep -E 'warning|fatal|panic|error' "$log" 2>/dev/null | tail -n 10 | sed 's/^/  postfix: /' >&2
  fi
  postfix_stop
  return "$ok"
}

# ---------------------------------------------------------------------------
# driver

ROWS=()      # "server n s z acc_s del_s files status"
RATIOS=()
ERRS=()
FAIL=0

run_one() {  # run_one N S Z
  local n=$1 s=$2 z=$3 srv pa="" pd="" fa="" fd=""
  for srv in petrel postfix; do
    if [ "$srv" = petrel ]; then [ "$RUN_PETREL" = 1 ] || continue; fi
    if [ "$srv" = postfix ]; then [ "$RUN_POSTFIX" = 1 ] || continue; fi
    R_ACC_S=""; R_DEL_S=""; R_FILES=""; R_ERR=""
    say "$srv: messages=$n sessions=$s size=$z ..."
    if "bench_$srv" "$n" "$s" "$z"; then
      ROWS+=("$srv $n $s $z $R_ACC_S $R_DEL_S $R_FILES ok")
      say "$srv: accepted in ${R_ACC_S}s, delivered in ${R_DEL_S}s, $R_FILES files"
      if [ "$srv" = petrel ]; then pa=$R_ACC_S; pd=$R_DEL_S; else fa=$R_ACC_S; fd=$R_DEL_S; fi
    else
      FAIL=1
      say "$srv: FAILED: $R_ERR"
      ROWS+=("$srv $n $s $z - - ${R_FILES:--} FAILED")
      ERRS+=("$srv messages=$n sessions=$s size=$z: $R_ERR")
    fi
  done
  if [ -n "$pa" ] && [ -n "$fa" ]; then
    # rate ratio petrel/postfix = postfix time / petrel time
    RATIOS+=("$n $s $z $(awk -v a="$fa" -v b="$pa" 'BEGIN{printf "%.2f", a/b}') $(awk -v a="$fd" -v b="$pd" 'BEGIN{printf "%.2f", a/b}')")
  fi
}

if [ "$MATRIX" = 1 ]; then
  [ "$N_SET" = 1 ] || MESSAGES=10000
  for s in 1 20 50; do
    for z in 1024 10240 102400; do
      run_one "$MESSAGES" "$s" "$z"
    done
  done
else
  run_one "$MESSAGES" "$SESSIONS" "$SIZE"
fi

echo
echo "petrel benchmark: $(date -u '+%Y-%m-%d %H:%M:%SZ')  $(uname -sr)  $(nproc) cpus"
echo "load: smtp-source $([ "$REUSE" = 1 ] && echo '-d ')-c -s S -m N -l Z -f bench@localhost -t user@localhost 127.0.0.1:PORT"
echo
printf '%-8s %9s %9s %9s %10s %11s %12s %10s\n' \
  server messages sessions size accepted/s delivered/s files-in-new status
for r in "${ROWS[@]}"; do
  read -r srv n s z acc del files st <<<"$r"
  if [ "$st" = ok ]; then
    printf '%-8s %9s %9s %9s %10s %11s %12s %10s\n' \
      "$srv" "$n" "$s" "$z" "$(fdiv "$n" "$acc")" "$(fdiv "$n" "$del")" "$files" ok
  else
    printf '%-8s %9s %9s %9s %10s %11s %12s %10s\n' \
      "$srv" "$n" "$s" "$z" - - "$files" FAILED
  fi
done
echo
for r in "${RATIOS[@]+"${RATIOS[@]}"}"; do
  read -r n s z ra rd <<<"$r"
  echo "petrel/Postfix (messages=$n sessions=$s size=$z): accepted ${ra}x, delivered ${rd}x"
done
for r in "${ERRS[@]+"${ERRS[@]}"}"; do
  echo "FAILED: $r"
done
if [ "$FAIL" != 0 ]; then
  echo "NOT OK: at least one run failed or did not deliver exactly the number of messages sent"
  [ "$KEEP" = 1 ] || echo "(temp dirs and logs are removed on exit; rerun with --keep to inspect them)"
  exit 1
fi
exit 0
