#!/usr/bin/env bash
# bench/relay.sh - relay throughput: petrel vs. a private Postfix instance,
# both forwarding to the same smtp-sink next hop (issue 8, item 10).
#
#   smtp-source -> server (petreld | Postfix) -> smtp-sink on 127.0.0.2
#
# The next hop is reached in one of two ways (both by default):
#   relayhost  petrel: relayhost = "[127.0.0.2]:SINKPORT"
#              Postfix: relayhost = [127.0.0.2]:SINKPORT
#   mx         the recipient domain remote.test has MX mx.remote.test,
#              A 127.0.0.2, served by a private dnsmasq on 127.0.0.153:53;
#              petrel: resolver = "127.0.0.153:53", modules.smtp.port;
#              Postfix: its own /etc/resolv.conf (a bind mount in a private
#              mount namespace, nothing changes for the host) and
#              transport_maps remote.test -> smtp:remote.test:SINKPORT
#              (no brackets: an MX lookup, then that port)
# For each run it measures
#   accepted msg/s = MESSAGES / wall time of smtp-source
#   arrived msg/s  = MESSAGES / time from the start of the load until the
#                    sink has counted MESSAGES messages (smtp-sink -c)
# Without -s or -z it runs the whole table: sessions {1,20,50} x
# {1,100} KiB x both routes, petrel beside Postfix.
# See bench/README.md ("relay.sh").

# shellcheck disable=SC2317  # functions are also called from the EXIT trap
set -u -o pipefail

ME=$(basename "$0")
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
TOP=$(cd "$HERE/.." && pwd -P)

MESSAGES=10000
SESSIONS=20
SIZE=1024
ROUTES="relayhost mx"
PETRELD="$TOP/_build/default/src/petreld"
RUN_PETREL=1
RUN_POSTFIX=1
TABLE=1          # no -s and no -z: the whole table
KEEP=0

SMTP_SOURCE=${SMTP_SOURCE:-/usr/sbin/smtp-source}
SMTP_SINK=${SMTP_SINK:-/usr/sbin/smtp-sink}
POSTFIX=${POSTFIX:-/usr/sbin/postfix}
POSTCONF=${POSTCONF:-/usr/sbin/postconf}
DNSMASQ=${DNSMASQ:-/usr/sbin/dnsmasq}
SINK_ADDR=127.0.0.2          # not one of the servers' own addresses (loop checks)
DNS_ADDR=${DNS_ADDR:-127.0.0.153}
DOMAIN=remote.test

usage() {
  cat <<EOF
usage: $ME [-n MESSAGES] [-s SESSIONS] [-z SIZE_BYTES] [-r relayhost|mx|both]
          [-p PETRELD] [--table] [--no-postfix] [--no-petrel] [--keep]

  -n MESSAGES    messages per run (default 10000)
  -s SESSIONS    parallel inbound SMTP sessions: one configuration, not
                 the table (default 20 with -z)
  -z SIZE_BYTES  message body size, smtp-source -l: one configuration
                 (default 1024 with -s)
  -r ROUTE       relayhost, mx or both (default both)
  -p PETRELD     petreld binary (default <repo top>/_build/default/src/petreld)
  --table        sessions {1,20,50} x size {1024,102400} x the routes,
                 petrel beside Postfix, one table (MESSAGES per run): the
                 default when neither -s nor -z is given
  --no-postfix   petrel only (root not needed then)
  --no-petrel    Postfix only
  --keep         keep the temp dirs (configs, logs, spools)
  -h, --help     this text

Everything listens on loopback: the servers on 127.0.0.1, the sink on
$SINK_ADDR, dnsmasq on $DNS_ADDR:53 (127.0.0.1 and a free port without
Postfix).  Temp dirs honour \$TMPDIR (not tmpfs: both servers fsync).
Exit status: 0 if every run got exactly MESSAGES messages to the sink.
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    -n) MESSAGES=${2:?}; shift 2 ;;
    -s) SESSIONS=${2:?}; [ "$TABLE" = 2 ] || TABLE=0; shift 2 ;;
    -z) SIZE=${2:?}; [ "$TABLE" = 2 ] || TABLE=0; shift 2 ;;
    -r) case "${2:?}" in
          relayhost|mx) ROUTES=$2 ;;
          both) ROUTES="relayhost mx" ;;
          *) echo "$ME: -r relayhost, mx or both" >&2; exit 2 ;;
        esac; shift 2 ;;
    -p) PETRELD=${2:?}; shift 2 ;;
    --table) TABLE=2; shift ;;
    --no-postfix) RUN_POSTFIX=0; shift ;;
    --no-petrel) RUN_PETREL=0; shift ;;
    --keep) KEEP=1; shift ;;
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
[ -x "$SMTP_SINK" ] || die "smtp-sink not found at $SMTP_SINK (Debian package postfix)"
case " $ROUTES " in *" mx "*) [ -x "$DNSMASQ" ] || die "dnsmasq not found at $DNSMASQ (Debian package dnsmasq-base)" ;; esac

if [ "$RUN_PETREL" = 1 ]; then
  case "$PETRELD" in /*) ;; *) PETRELD="$PWD/$PETRELD" ;; esac
  [ -x "$PETRELD" ] || die "petreld not found or not executable: $PETRELD (build it, pass -p, or use --no-petrel)"
fi
if [ "$RUN_POSTFIX" = 1 ]; then
  if [ ! -x "$POSTFIX" ] || [ ! -x "$POSTCONF" ]; then
    say "Postfix is not installed: skipping the Postfix comparison"; RUN_POSTFIX=0
  elif [ "$(id -u)" != 0 ]; then
    say "the private Postfix instance must be started as root: skipping the Postfix comparison"
    RUN_POSTFIX=0
  elif ! getent passwd postfix >/dev/null || ! getent group postdrop >/dev/null; then
    say "user postfix or group postdrop missing: skipping the Postfix comparison"; RUN_POSTFIX=0
  elif ! command -v unshare >/dev/null; then
    say "unshare(1) missing (util-linux): skipping the Postfix comparison"; RUN_POSTFIX=0
  fi
fi
[ "$RUN_PETREL" = 1 ] || [ "$RUN_POSTFIX" = 1 ] || die "nothing to run"

# ---------------------------------------------------------------------------
# state for cleanup: everything is ended by the PID we started

PETREL_PID=""
SINK_PID=""
DNS_PID=""
PF_CONF=""
PF_MASTER_PID=""
TMPDIRS=()

session_pids() {  # pids whose session id is $1
  ps -e -o pid=,sid= | awk -v s="$1" '$2 == s { print $1 }'
}

postfix_stop() {
  [ -n "$PF_CONF" ] || return 0
  local conf=$PF_CONF sid=$PF_MASTER_PID i p
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
      for p in $(session_pids "$sid"); do kill -KILL "$p" 2>/dev/null; done
    fi
  fi
  PF_CONF=""; PF_MASTER_PID=""
}

stop_pid() {  # stop_pid VARNAME: TERM, then KILL after 10 s; clears the variable
  local pid=${!1} i
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "pid $pid ignored SIGTERM for 10 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null
  printf -v "$1" '%s' ""
}

cleanup() {
  stop_pid PETREL_PID
  postfix_stop
  stop_pid SINK_PID
  stop_pid DNS_PID
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

free_port() {  # free_port ADDR [udp]
  python3 -c 'import socket, sys
s = socket.socket(type=socket.SOCK_DGRAM if sys.argv[2:] == ["udp"] else socket.SOCK_STREAM)
s.bind((sys.argv[1], 0))
print(s.getsockname()[1])' "$@"
}

# wait_smtp ADDR PORT TIMEOUT_S PID|"": wait for a 220 greeting
wait_smtp() {
  local addr=$1 port=$2 timeout=$3 pid=${4:-} deadline line fd
  deadline=$(( $(date +%s) + timeout ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    if { exec {fd}<>"/dev/tcp/$addr/$port"; } 2>/dev/null; then
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

# sink_count FILE: the last "mesg=N" smtp-sink -c wrote (0 if none)
sink_count() {
  python3 -c 'import re, sys
try:
    with open(sys.argv[1], "rb") as f:
        f.seek(0, 2); f.seek(max(0, f.tell() - 200)); t = f.read()
except FileNotFoundError:
    t = b""
m = re.findall(rb"mesg=(\d+)", t)
print(int(m[-1]) if m else 0)' "$1"
}

# wait_sink FILE N TIMEOUT_S: poll until the sink counted >= N messages.
# Prints "<epoch seconds when reached> <count>"; exit 1 on timeout.
wait_sink() {
  python3 -c 'import re, sys, time
path, n, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
end = time.time() + timeout
def count():
    try:
        with open(path, "rb") as f:
            f.seek(0, 2); f.seek(max(0, f.tell() - 200)); t = f.read()
    except FileNotFoundError:
        return 0
    m = re.findall(rb"mesg=(\d+)", t)
    return int(m[-1]) if m else 0
while True:
    c = count(); now = time.time()
    if c >= n:
        print("%.6f %d" % (now, c)); sys.exit(0)
    if now > end:
        print("%.6f %d" % (now, c)); sys.exit(1)
    time.sleep(0.01)' "$1" "$2" "$3"
}

fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
fdiv() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f", a / b; else print "-" }'; }

mktmp() {  # mktmp NAME: a temp dir, remembered for cleanup, in $MKTMP
  MKTMP=$(mktemp -d "${TMPDIR:-/tmp}/petrel-relaybench-$1.XXXXXX") || die "mktemp failed"
  TMPDIRS+=("$MKTMP")
}

# ---------------------------------------------------------------------------
# dnsmasq (once per script run) and the sink (fresh for every run)

DNS_HOSTPORT=""
DNS_RESOLV=""
start_dns() {
  local tmp port user
  mktmp dns; tmp=$MKTMP
  if [ "$RUN_POSTFIX" = 1 ]; then
    # Postfix reads resolv.conf, which has no port: dnsmasq on :53 of an
    # address of its own (root; nothing else listens there)
    port=53; user=nobody
  else
    DNS_ADDR=127.0.0.1; port=$(free_port 127.0.0.1 udp); user=$(id -un)
  fi
  cat >"$tmp/dnsmasq.conf" <<EOF
no-resolv
no-hosts
no-poll
bind-interfaces
listen-address=$DNS_ADDR
port=$port
local=/test/
mx-host=$DOMAIN,mx.$DOMAIN,10
host-record=mx.$DOMAIN,$SINK_ADDR
EOF
  "$DNSMASQ" -k -C "$tmp/dnsmasq.conf" --log-facility=- --pid-file= --user="$user" \
    </dev/null >"$tmp/dnsmasq.log" 2>&1 &
  DNS_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$DNS_PID" 2>/dev/null || { DNS_PID=""; die "dnsmasq exited: $(tail -n 3 "$tmp/dnsmasq.log")"; }
    if python3 - "$DNS_ADDR" "$port" "$DOMAIN" <<'EOF' 2>/dev/null; then break; fi
import socket, struct, sys
addr, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 15, 1)
s = socket.socket(type=socket.SOCK_DGRAM); s.settimeout(0.2)
s.sendto(q, (addr, port))
r = s.recv(512)
sys.exit(0 if struct.unpack(">H", r[6:8])[0] >= 1 else 1)
EOF
    sleep 0.1
  done
  [ "$i" -lt 100 ] || die "dnsmasq does not answer MX $DOMAIN on $DNS_ADDR:$port"
  DNS_HOSTPORT="$DNS_ADDR:$port"
  printf 'nameserver %s\n' "$DNS_ADDR" >"$tmp/resolv.conf"
  chmod 644 "$tmp/resolv.conf"; chmod 755 "$tmp"
  DNS_RESOLV=$tmp/resolv.conf
  say "dnsmasq: MX $DOMAIN -> mx.$DOMAIN -> $SINK_ADDR, on $DNS_HOSTPORT"
}

SINK_PORT=""; SINK_OUT=""
start_sink() {  # start_sink TMPDIR
  local tmp=$1 u=()
  SINK_PORT=$(free_port "$SINK_ADDR") || return 1
  SINK_OUT=$tmp/sink.count
  [ "$(id -u)" = 0 ] && u=(-u nobody)
  # -c: a running count ("mesg=N") at every "."; -m: more sessions than
  # either server opens (destination concurrency is 20 for both)
  "$SMTP_SINK" -c "${u[@]}" -m 500 "$SINK_ADDR:$SINK_PORT" 1024 \
    </dev/null >"$SINK_OUT" 2>"$tmp/sink.err" &
  SINK_PID=$!
  wait_smtp "$SINK_ADDR" "$SINK_PORT" 10 "$SINK_PID" || { stop_pid SINK_PID; return 1; }
  # the probe's own session counts no message
  return 0
}

# Results of the last run
R_ACC_S=""; R_ARR_S=""; R_GOT=""; R_ERR=""; R_NOTE=""

# run_load PORT N S Z LOG: drive the load, then wait for the sink
run_load() {
  local port=$1 n=$2 s=$3 z=$4 log=$5
  local args=(-d -c -s "$s" -m "$n" -l "$z" -f bench@localhost -t "user@$DOMAIN")
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
    R_GOT=$(sink_count "$SINK_OUT")
    return 1
  fi
  R_ACC_S=$(fsub "$t1" "$t0")
  out=$(wait_sink "$SINK_OUT" "$n" $(( 60 + n / 20 )))
  rc=$?
  reached=${out% *}
  if [ "$rc" != 0 ]; then
    R_GOT=${out#* }
    R_ERR="only $R_GOT of $n messages at the sink after $(fsub "$reached" "$t0") s"
    return 1
  fi
  R_ARR_S=$(fsub "$reached" "$t0")
  sleep 1      # then count again: duplicates
  R_GOT=$(sink_count "$SINK_OUT")
  if [ "$R_GOT" != "$n" ]; then
    R_ERR="$R_GOT messages at the sink for $n sent"
    return 1
  fi
  return 0
}

# ---------------------------------------------------------------------------
# petrel

bench_petrel() {
  local route=$1 n=$2 s=$3 z=$4 tmp port conf log b hop
  mktmp petrel; tmp=$MKTMP
  start_sink "$tmp" || { R_ERR="smtp-sink did not start ($(cat "$tmp/sink.err"))"; return 1; }
  port=$(free_port 127.0.0.1) || { R_ERR="no free port"; return 1; }
  conf=$tmp/petrel.conf
  log=$tmp/petreld.log
  mkdir -p "$tmp/spool" "$tmp/mail"
  if [ "$route" = relayhost ]; then
    hop="relayhost = \"[$SINK_ADDR]:$SINK_PORT\";"
  else
    hop="resolver = \"$DNS_HOSTPORT\";"
  fi
  # Defaults everywhere else: the spool's fsync before 250, the smtp
  # transport's concurrency (20 per destination) and tls = "may" (the
  # sink offers no STARTTLS).
  cat >"$conf" <<EOF
hostname = "bench.localhost";
spool = "$tmp/spool";
listeners = ( { listen = "127.0.0.1:$port"; stage = "mta"; } );
domains = [ "localhost" ];
relay_networks = [ "127.0.0.0/8" ];
$hop
${PETREL_EXTRA_CONF:-}
modules = { maildir = { root = "$tmp/mail/%d/%u"; }; smtp = { port = $SINK_PORT; ${PETREL_SMTP_CONF:-} }; };
EOF
  b=$(dirname "$(dirname "$PETRELD")")
  PETREL_MODULE_PATH="$b/modules/mta:$b/modules/maildir:$b/modules/router:$b/modules/smtp" \
    "$PETRELD" -f -c "$conf" </dev/null >>"$log" 2>&1 &
  PETREL_PID=$!
  if ! wait_smtp 127.0.0.1 "$port" 30 "$PETREL_PID"; then
    R_ERR="petreld did not greet on 127.0.0.1:$port (log: $log)"
    tail -n 20 "$log" | sed 's/^/  petreld: /' >&2
    stop_pid PETREL_PID; stop_pid SINK_PID
    return 1
  fi
  [ -n "${PETREL_ON_START:-}" ] && eval "$PETREL_ON_START"   # profiling hook: $PETREL_PID
  local ok=0
  run_load "$port" "$n" "$s" "$z" "$tmp/smtp-source.log" || ok=1
  kill -0 "$PETREL_PID" 2>/dev/null || { R_ERR="${R_ERR:+$R_ERR; }petreld died (log: $log)"; ok=1; }
  # petreld's own CPU (user + system, every thread) per message: steadier
  # than the rates when the machine is shared
  R_CPU=$(awk -v n="$n" -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.3f", ($12 + $13) * 1000 / hz / n }' \
          "/proc/$PETREL_PID/stat" 2>/dev/null)
  local def; def=$(grep -c 'status=deferred' "$log")
  R_NOTE="cpu ${R_CPU:-?} ms/msg"
  [ "$def" = 0 ] || R_NOTE="$R_NOTE, $def deferrals"
  [ "$ok" = 0 ] || tail -n 20 "$log" | sed 's/^/  petreld: /' >&2
  stop_pid PETREL_PID
  stop_pid SINK_PID
  return "$ok"
}

# ---------------------------------------------------------------------------
# Postfix: a private instance relaying to the sink

bench_postfix() {
  local route=$1 n=$2 s=$3 z=$4 tmp port etc log plimit hop
  mktmp postfix; tmp=$MKTMP
  chmod 755 "$tmp"
  start_sink "$tmp" || { R_ERR="smtp-sink did not start ($(cat "$tmp/sink.err"))"; return 1; }
  port=$(free_port 127.0.0.1) || { R_ERR="no free port"; return 1; }
  etc=$tmp/etc
  log=$tmp/maillog
  plimit=$(( s + 30 > 100 ? s + 30 : 100 ))
  mkdir -p "$etc" "$tmp/queue" "$tmp/data"
  chown postfix "$tmp/data"
  if [ "$route" = relayhost ]; then
    hop="relayhost = [$SINK_ADDR]:$SINK_PORT"
  else
    # no brackets: MX lookup of remote.test (the private resolv.conf), then
    # the sink's port
    hop="relayhost =
transport_maps = inline:{ $DOMAIN=smtp:$DOMAIN:$SINK_PORT }"
  fi
  # Non-default settings confine the instance to loopback and lift
  # per-client limits; durability (fsync of the queue file before 250)
  # and the queue manager and smtp client (20 per destination,
  # connection cache on demand) stay at Postfix's defaults.
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
$hop
smtpd_peername_lookup = no
biff = no
alias_maps =
alias_database =
local_recipient_maps =
default_process_limit = $plimit
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_event_limit_exceptions = 127.0.0.0/8
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
smtp             unix  -       -      n      -      -       smtp
relay            unix  -       -      n      -      -       smtp
showq            unix  n       -      n      -      -       showq
error            unix  -       -      n      -      -       error
retry            unix  -       -      n      -      -       error
discard          unix  -       -      n      -      -       discard
anvil            unix  -       -      n      -      1       anvil
scache           unix  -       -      n      -      1       scache
postlog          unix-dgram n  -      n      -      1       postlogd
EOF
  if ! "$POSTFIX" -c "$etc" check >>"$tmp/postfix.out" 2>&1; then
    R_ERR="postfix check failed: $(tail -n 3 "$tmp/postfix.out")"
    stop_pid SINK_PID
    return 1
  fi
  PF_CONF=$etc
  # A private mount namespace whose /etc/resolv.conf names dnsmasq: the
  # daemons master(8) starts stay in it; the host's file is untouched.
  local resolv=${DNS_RESOLV:-/etc/resolv.conf}
  # shellcheck disable=SC2016  # expanded by the inner sh
  if ! unshare -m --propagation private sh -c \
       'mount --bind "$1" /etc/resolv.conf && exec "$2" -c "$3" start' sh \
       "$resolv" "$POSTFIX" "$etc" >>"$tmp/postfix.out" 2>&1; then
    R_ERR="postfix start failed: $(tail -n 3 "$tmp/postfix.out")"
    PF_MASTER_PID=$(tr -dc 0-9 <"$tmp/queue/pid/master.pid" 2>/dev/null)
    postfix_stop; stop_pid SINK_PID
    return 1
  fi
  PF_MASTER_PID=$(tr -dc 0-9 <"$tmp/queue/pid/master.pid" 2>/dev/null)
  if ! wait_smtp 127.0.0.1 "$port" 30 "$PF_MASTER_PID"; then
    R_ERR="Postfix did not greet on 127.0.0.1:$port (log: $log)"
    postfix_stop; stop_pid SINK_PID
    return 1
  fi
  local ok=0
  run_load "$port" "$n" "$s" "$z" "$tmp/smtp-source.log" || ok=1
  local def; def=$(grep -c 'status=deferred' "$log" 2>/dev/null)
  [ "${def:-0}" = 0 ] || R_NOTE="$def deferrals"
  if [ "$ok" != 0 ]; then
    grep -E 'warning|fatal|panic|error|deferred' "$log" 2>/dev/null | tail -n 10 | sed 's/^/  postfix: /' >&2
  fi
  postfix_stop
  stop_pid SINK_PID
  return "$ok"
}

# ---------------------------------------------------------------------------
# driver

ROWS=()      # "route s z server acc_s arr_s got status note"
FAIL=0
declare -A ARR   # "route s z server" -> arrived seconds

run_one() {  # run_one ROUTE N S Z
  local route=$1 n=$2 s=$3 z=$4 srv
  for srv in petrel postfix; do
    if [ "$srv" = petrel ]; then [ "$RUN_PETREL" = 1 ] || continue; fi
    if [ "$srv" = postfix ]; then [ "$RUN_POSTFIX" = 1 ] || continue; fi
    R_ACC_S=""; R_ARR_S=""; R_GOT=""; R_ERR=""; R_NOTE=""
    say "$srv via $route: messages=$n sessions=$s size=$z ..."
    if "bench_$srv" "$route" "$n" "$s" "$z"; then
      ROWS+=("$route $s $z $srv $R_ACC_S $R_ARR_S $R_GOT ok ${R_NOTE// /_}")
      ARR["$route $s $z $srv"]=$R_ARR_S
      say "$srv via $route: accepted in ${R_ACC_S}s, at the sink in ${R_ARR_S}s${R_NOTE:+ ($R_NOTE)}"
    else
      FAIL=1
      say "$srv via $route: FAILED: $R_ERR"
      ROWS+=("$route $s $z $srv - - ${R_GOT:--} FAILED ${R_ERR// /_}")
    fi
  done
}

case " $ROUTES " in *" mx "*) start_dns ;; esac

if [ "$TABLE" != 0 ]; then
  for route in $ROUTES; do
    for z in 1024 102400; do
      for s in 1 20 50; do run_one "$route" "$MESSAGES" "$s" "$z"; done
    done
  done
else
  for route in $ROUTES; do run_one "$route" "$MESSAGES" "$SESSIONS" "$SIZE"; done
fi

echo
echo "petrel relay benchmark: $(date -u '+%Y-%m-%d %H:%M:%SZ')  $(uname -sr)  $(nproc) cpus  $("$POSTCONF" -d -h mail_version 2>/dev/null | sed 's/^/Postfix /')"
echo "load: smtp-source -d -c -s S -m $MESSAGES -l Z -f bench@localhost -t user@$DOMAIN 127.0.0.1:PORT"
echo "next hop: smtp-sink -c on $SINK_ADDR (relayhost [$SINK_ADDR]:PORT, or MX $DOMAIN from dnsmasq)"
echo
printf '%-9s %8s %7s %-7s %10s %9s %7s %8s  %s\n' \
  route sessions size server accepted/s arrived/s at-sink status note
for r in "${ROWS[@]}"; do
  read -r route s z srv acc arr got st note <<<"$r"
  if [ "$st" = ok ]; then
    printf '%-9s %8s %7s %-7s %10s %9s %7s %8s  %s\n' "$route" "$s" "$z" "$srv" \
      "$(fdiv "$MESSAGES" "$acc")" "$(fdiv "$MESSAGES" "$arr")" "$got" ok "${note//_/ }"
  else
    printf '%-9s %8s %7s %-7s %10s %9s %7s %8s  %s\n' "$route" "$s" "$z" "$srv" - - "$got" FAILED "${note//_/ }"
  fi
done
echo
for r in "${ROWS[@]}"; do
  read -r route s z srv _ <<<"$r"
  [ "$srv" = petrel ] || continue
  p=${ARR["$route $s $z petrel"]:-}; f=${ARR["$route $s $z postfix"]:-}
  [ -n "$p" ] && [ -n "$f" ] || continue
  echo "petrel/Postfix arrived at the sink ($route, sessions=$s, size=$z): $(awk -v a="$f" -v b="$p" 'BEGIN{printf "%.2f", a/b}')x"
done
if [ "$FAIL" != 0 ]; then
  echo "NOT OK: at least one run failed or did not bring exactly $MESSAGES messages to the sink"
  [ "$KEEP" = 1 ] || echo "(temp dirs and logs are removed on exit; rerun with --keep to inspect them)"
  exit 1
fi
exit 0
