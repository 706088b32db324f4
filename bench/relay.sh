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
#   lmtp       (-r lmtp, not in the default set) smtp-sink -L speaks LMTP;
#              petrel: a route remote.test -> transport "lmtp", nexthop
#              "[127.0.0.2]:SINKPORT"; Postfix: transport_maps
#              remote.test -> lmtp:inet:127.0.0.2:SINKPORT
#   dovecot    (-r dovecot, root) as lmtp, but a private Dovecot's LMTP
#              service on 127.0.0.2 takes the mail into a maildir (its
#              defaults: fsync of each message), counted there
# For each run it measures
#   accepted msg/s = MESSAGES / wall time of smtp-source
#   arrived msg/s  = MESSAGES / time from the start of the load until the
#                    sink has counted MESSAGES messages (smtp-sink -c)
# Without -s or -z it runs the whole table: sessions {1,20,50} x
# {1,100} KiB x both routes, petrel beside Postfix.
# See bench/README.md ("relay.sh").

# shellcheck disable=SC2317  # functions are also called from the EXIT trap
set -u -o pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BENCH_TMP_PREFIX=petrel-relaybench

MESSAGES=10000
ROUTES="relayhost mx"
TABLE=1          # no -s and no -z: the whole table

SMTP_SINK=${SMTP_SINK:-/usr/sbin/smtp-sink}
DNSMASQ=${DNSMASQ:-/usr/sbin/dnsmasq}
DOVECOT=${DOVECOT:-/usr/sbin/dovecot}
SINK_ADDR=127.0.0.2          # not one of the servers' own addresses (loop checks)
DNS_ADDR=${DNS_ADDR:-127.0.0.153}
DOMAIN=remote.test

usage() {
  cat <<EOF
usage: $ME [-n MESSAGES] [-s SESSIONS] [-z SIZE_BYTES] [-r relayhost|mx|both|lmtp|dovecot]
          [-p PETRELD] [--table] [--no-postfix] [--no-petrel] [--keep]

  -n MESSAGES    messages per run (default 10000)
  -s SESSIONS    parallel inbound SMTP sessions: one configuration, not
                 the table (default 20 with -z)
  -z SIZE_BYTES  message body size, smtp-source -l: one configuration
                 (default 1024 with -s)
  -r ROUTE       relayhost, mx, both (default), lmtp (the sink speaks LMTP:
                 petrel's lmtp transport beside Postfix's lmtp client) or
                 dovecot (as lmtp, into a private Dovecot's maildir; root)
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
    -s) SESSIONS=${2:?}; [ "$TABLE" = 2 ] || TABLE=0; shift 2 ;;
    -z) SIZE=${2:?}; [ "$TABLE" = 2 ] || TABLE=0; shift 2 ;;
    -r) case "${2:?}" in
          relayhost|mx|lmtp|dovecot) ROUTES=$2 ;;
          both) ROUTES="relayhost mx" ;;
          *) echo "$ME: -r relayhost, mx, both, lmtp or dovecot" >&2; exit 2 ;;
        esac; shift 2 ;;
    --table) TABLE=2; shift ;;
    *) common_option "$@"; shift "$OPT_N" ;;
  esac
done

check_positive MESSAGES SESSIONS SIZE

command -v python3 >/dev/null || die "python3 is required"
[ -x "$SMTP_SOURCE" ] || die "smtp-source not found at $SMTP_SOURCE (Debian package postfix)"
[ -x "$SMTP_SINK" ] || die "smtp-sink not found at $SMTP_SINK (Debian package postfix)"
case " $ROUTES " in *" mx "*) [ -x "$DNSMASQ" ] || die "dnsmasq not found at $DNSMASQ (Debian package dnsmasq-base)" ;; esac
case " $ROUTES " in *" dovecot "*)
  [ -x "$DOVECOT" ] && [ -x /usr/lib/dovecot/lmtp ] || die "Dovecot's LMTP not found (Debian packages dovecot-core, dovecot-lmtpd)"
  [ "$(id -u)" = 0 ] || die "-r dovecot needs root (Dovecot delivers as nobody)" ;;
esac

[ "$RUN_PETREL" = 1 ] && check_petreld
if [ "$RUN_POSTFIX" = 1 ]; then
  if ! check_postfix; then
    RUN_POSTFIX=0
  elif ! command -v unshare >/dev/null; then
    say "unshare(1) missing (util-linux): skipping the Postfix comparison"; RUN_POSTFIX=0
  fi
fi
[ "$RUN_PETREL" = 1 ] || [ "$RUN_POSTFIX" = 1 ] || die "nothing to run"

# ---------------------------------------------------------------------------
# clean-up: everything is ended by the PID we started

SINK_PID=""
DNS_PID=""

cleanup() {
  petrel_stop
  pf_stop
  stop_pid SINK_PID smtp-sink
  stop_pid DNS_PID dnsmasq
  tmpdirs_cleanup
}
set_traps

# ---------------------------------------------------------------------------
# dnsmasq (once per script run) and the sink (fresh for every run)

DNS_HOSTPORT=""
DNS_RESOLV=""
start_dns() {
  local tmp port user
  tmpdir_new dns; tmp=$MKTMP
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

SINK_PORT=""; SINK_OUT=""; SINK_KIND=sink
start_sink() {  # start_sink TMPDIR
  local tmp=$1 u=()
  SINK_KIND=sink
  [ "${SINK_DOVECOT:-0}" = 1 ] && { start_dovecot "$tmp"; return; }
  SINK_PORT=$(free_port "$SINK_ADDR") || return 1
  [ "${SINK_LMTP:-0}" = 1 ] && u=(-L)
  SINK_OUT=$tmp/sink.count
  [ "$(id -u)" = 0 ] && u+=(-u nobody)
  # -c: a running count ("mesg=N") at every "."; -m: more sessions than
  # either server opens (destination concurrency is 20 for both)
  "$SMTP_SINK" -c "${u[@]}" -m 500 "$SINK_ADDR:$SINK_PORT" 1024 \
    </dev/null >"$SINK_OUT" 2>"$tmp/sink.err" &
  SINK_PID=$!
  wait_smtp "$SINK_ADDR" "$SINK_PORT" 10 "$SINK_PID" || { stop_pid SINK_PID smtp-sink; return 1; }
  # the probe's own session counts no message
  return 0
}

# A private Dovecot whose LMTP service listens on SINK_ADDR:SINK_PORT and
# files every recipient's mail in TMP/dmail/<user>/ as nobody (static
# userdb); SINK_PID is its master, SINK_OUT the maildir new/ of "user".
start_dovecot() {
  local tmp=$1 d=$1/dovecot i
  SINK_PORT=$(free_port "$SINK_ADDR") || return 1
  mkdir -p "$d" "$tmp/dmail"
  chown nobody:nogroup "$tmp/dmail"; chmod 755 "$tmp"
  cat >"$d/dovecot.conf" <<EOF
protocols = lmtp
base_dir = $d/run
state_dir = $d/state
log_path = $d/dovecot.log
ssl = no
auth_username_format = %Ln
mail_location = maildir:$tmp/dmail/%n
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$tmp/dmail/%n
}
passdb {
  driver = static
  args = nopassword=y
}
service lmtp {
  inet_listener lmtp {
    address = $SINK_ADDR
    port = $SINK_PORT
  }
  process_min_avail = 2
}
EOF
  "$DOVECOT" -c "$d/dovecot.conf" </dev/null >"$tmp/sink.err" 2>&1 || return 1
  for ((i = 0; i < 100; i++)); do
    [ -s "$d/run/master.pid" ] && break
    sleep 0.1
  done
  SINK_PID=$(cat "$d/run/master.pid" 2>/dev/null) || true
  [ -n "$SINK_PID" ] || return 1
  wait_tcp "$SINK_ADDR" "$SINK_PORT" 10 || return 1
  SINK_OUT=$tmp/dmail/user/new
  SINK_KIND=maildir
  return 0
}

# Results of the last run (run_load's R_ACC_S, R_ARR_S, R_COUNT)
R_ACC_S=""; R_ARR_S=""; R_COUNT=""; R_ERR=""; R_NOTE=""

# ---------------------------------------------------------------------------
# petrel

bench_petrel() {
  local route=$1 n=$2 s=$3 z=$4 tmp port conf log hop
  tmpdir_new petrel; tmp=$MKTMP
  start_sink "$tmp" || { R_ERR="smtp-sink did not start ($(cat "$tmp/sink.err"))"; return 1; }
  port=$(free_port 127.0.0.1) || { R_ERR="no free port"; return 1; }
  conf=$tmp/petrel.conf
  log=$tmp/petreld.log
  mkdir -p "$tmp/spool" "$tmp/mail"
  local mods="smtp = { port = $SINK_PORT; ${PETREL_SMTP_CONF:-} };"
  if [ "$route" = relayhost ]; then
    hop="relayhost = \"[$SINK_ADDR]:$SINK_PORT\";"
  elif [ "$route" = lmtp ] || [ "$route" = dovecot ]; then
    hop="routes = ( { domain = \"$DOMAIN\"; transport = \"lmtp\"; nexthop = \"[$SINK_ADDR]:$SINK_PORT\"; } );"
    mods="lmtp = { };"
  else
    hop="resolver = \"$DNS_HOSTPORT\";"
  fi
  # Defaults everywhere else: the spool's fsync before 250, the smtp
  # transport's concurrency (20 per destination) and tls = "may" (the
  # sink offers no STARTTLS).
  petrel_conf "$conf" "$tmp" "$port" 'stage = "mta";' "relay_networks = [ \"127.0.0.0/8\" ];
$hop" "$mods"
  petrel_start "$conf" "$log" "$port" mta maildir router smtp lmtp || { stop_pid SINK_PID smtp-sink; return 1; }
  [ -n "${PETREL_ON_START:-}" ] && eval "$PETREL_ON_START"   # profiling hook: $PETREL_PID
  local ok=0 u st
  run_load "$port" "$n" "$s" "$z" "$tmp/smtp-source.log" "user@$DOMAIN" "$SINK_KIND" "$SINK_OUT" || ok=1
  kill -0 "$PETREL_PID" 2>/dev/null || { R_ERR="${R_ERR:+$R_ERR; }petreld died (log: $log)"; ok=1; }
  # petreld's own CPU (user + system, every thread) per message: steadier
  # than the rates when the machine is shared
  read -r u st _ < <(proc_ticks "$PETREL_PID")
  R_CPU=$(ms_per_msg $((u + st)) "$n")
  local def; def=$(grep -c 'status=deferred' "$log")
  R_NOTE="cpu ${R_CPU:-?} ms/msg"
  [ "$def" = 0 ] || R_NOTE="$R_NOTE, $def deferrals"
  [ "$ok" = 0 ] || petrel_log_tail "$log"
  petrel_stop
  stop_pid SINK_PID smtp-sink
  return "$ok"
}

# ---------------------------------------------------------------------------
# Postfix: a private instance relaying to the sink

bench_postfix() {
  local route=$1 n=$2 s=$3 z=$4 tmp port etc
  tmpdir_new postfix; tmp=$MKTMP
  chmod 755 "$tmp"
  start_sink "$tmp" || { R_ERR="smtp-sink did not start ($(cat "$tmp/sink.err"))"; return 1; }
  port=$(free_port 127.0.0.1) || { R_ERR="no free port"; return 1; }
  etc=$tmp/etc
  # lib.sh's confined instance; the queue manager and smtp client (20 per
  # destination, connection cache on demand) stay at Postfix's defaults
  pf_config "$etc" "$tmp" "$port" $(( s + 30 > 100 ? s + 30 : 100 ))
  if [ "$route" = relayhost ]; then
    echo "relayhost = [$SINK_ADDR]:$SINK_PORT" >>"$etc/main.cf"
  elif [ "$route" = lmtp ] || [ "$route" = dovecot ]; then
    printf '%s\n' "relayhost =" "transport_maps = inline:{ $DOMAIN=lmtp:inet:$SINK_ADDR:$SINK_PORT }" >>"$etc/main.cf"
  else
    # no brackets: MX lookup of remote.test (the private resolv.conf), then
    # the sink's port
    printf '%s\n' "relayhost =" "transport_maps = inline:{ $DOMAIN=smtp:$DOMAIN:$SINK_PORT }" >>"$etc/main.cf"
  fi
  cat >>"$etc/master.cf" <<EOF
smtp             unix  -       -      n      -      -       smtp
relay            unix  -       -      n      -      -       smtp
lmtp             unix  -       -      n      -      -       lmtp
EOF
  # A private mount namespace whose /etc/resolv.conf names dnsmasq: the
  # daemons master(8) starts stay in it; the host's file is untouched.
  local resolv=${DNS_RESOLV:-/etc/resolv.conf}
  # shellcheck disable=SC2016  # expanded by the inner sh
  if ! pf_start "$etc" "$tmp" "$port" unshare -m --propagation private sh -c \
       'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"' sh "$resolv"; then
    stop_pid SINK_PID smtp-sink
    return 1
  fi
  local ok=0
  run_load "$port" "$n" "$s" "$z" "$tmp/smtp-source.log" "user@$DOMAIN" "$SINK_KIND" "$SINK_OUT" || ok=1
  local def; def=$(grep -c 'status=deferred' "$tmp/maillog" 2>/dev/null)
  [ "${def:-0}" = 0 ] || R_NOTE="$def deferrals"
  [ "$ok" = 0 ] || pf_log_errors "$tmp" 'warning|fatal|panic|error|deferred'
  pf_stop
  stop_pid SINK_PID smtp-sink
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
    R_ACC_S=""; R_ARR_S=""; R_COUNT=""; R_ERR=""; R_NOTE=""
    say "$srv via $route: messages=$n sessions=$s size=$z ..."
    SINK_LMTP=0; [ "$route" = lmtp ] && SINK_LMTP=1
    SINK_DOVECOT=0; [ "$route" = dovecot ] && SINK_DOVECOT=1
    if "bench_$srv" "$route" "$n" "$s" "$z"; then
      ROWS+=("$route $s $z $srv $R_ACC_S $R_ARR_S $R_COUNT ok ${R_NOTE// /_}")
      ARR["$route $s $z $srv"]=$R_ARR_S
      say "$srv via $route: accepted in ${R_ACC_S}s, at the sink in ${R_ARR_S}s${R_NOTE:+ ($R_NOTE)}"
    else
      FAIL=1
      say "$srv via $route: FAILED: $R_ERR"
      ROWS+=("$route $s $z $srv - - ${R_COUNT:--} FAILED ${R_ERR// /_}")
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
echo "next hop: smtp-sink -c on $SINK_ADDR (relayhost [$SINK_ADDR]:PORT, or MX $DOMAIN from dnsmasq; -L for lmtp), or Dovecot LMTP there (dovecot: counted in its maildir)"
echo
ROW_FMT='%-9s %8s %7s %-7s %10s %9s %7s %8s  %s\n'
row route sessions size server accepted/s arrived/s at-sink status note
for r in "${ROWS[@]}"; do
  read -r route s z srv acc arr got st note <<<"$r"
  if [ "$st" = ok ]; then
    row "$route" "$s" "$z" "$srv" \
      "$(fdiv "$MESSAGES" "$acc" 0)" "$(fdiv "$MESSAGES" "$arr" 0)" "$got" ok "${note//_/ }"
  else
    row "$route" "$s" "$z" "$srv" - - "$got" FAILED "${note//_/ }"
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
finish "at least one run failed or did not bring exactly $MESSAGES messages to the sink"
