#!/usr/bin/env bash
# bench/submission.sh - what message submission costs: port-587-style
# submission (STARTTLS + AUTH PLAIN, one message per connection, as mail
# clients send) against petrel's msa stage and against a private Postfix
# submission smtpd with SASL from a private Dovecot auth service, both with
# the same TLS key pair and the same password hash, same load.
#
#   bench/submission.sh [-n MESSAGES] [-s SESSIONS] [-z SIZE] [-H yescrypt|sha512] [-k ROUNDS]
#                       [-p PETRELD] [--no-postfix] [--no-petrel] [--keep]
#
# Loopback only (servers on 127.0.0.1, clients from 127.0.1.x).  The load is
# bench/submission-load.py (SESSIONS processes).  See bench/README.md,
# "submission.sh".

# shellcheck disable=SC2317  # functions are also called from the EXIT trap
set -u -o pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BENCH_TMP_PREFIX=petrel-bench-sub

MESSAGES=2000
HASH=yescrypt
ROUNDS=1
TLS_SEEN=""
LOAD="$HERE/submission-load.py"
PY=${PYTHON:-/usr/bin/python3}
DOVECOT=${DOVECOT:-/usr/sbin/dovecot}
PF_MAIL_USER=${PF_MAIL_USER:-nobody}
LOGIN=bench                      # the one user; owns bench@localhost
SENDER=bench@localhost
RCPT=user@localhost

usage() {
  cat <<EOF
usage: $ME [-n MESSAGES] [-s SESSIONS] [-z SIZE] [-H yescrypt|sha512] [-k ROUNDS] [-p PETRELD]
          [--no-postfix] [--no-petrel] [--keep]

  -n MESSAGES   messages per server, one connection each (default 2000)
  -s SESSIONS   concurrent client sessions (processes; default 20)
  -z SIZE       body size in bytes (default 1024)
  -H HASH       the password hash both servers check: yescrypt (\$y\$, what
                petrelctl passwd writes; default) or sha512 (\$6\$)
  -k ROUNDS     petrel, Postfix, petrel, Postfix, ... ROUNDS times (default 1)
  -p PETRELD    petreld binary (modules from the same build directory)
  --no-postfix  petrel only (root not needed)
  --no-petrel   Postfix + Dovecot only
  --keep        keep the temp dirs (configs, logs, Maildirs)

Exit status 0 when every run delivered each message exactly once.
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    -H) HASH=${2:?}; shift 2 ;;
    -k) ROUNDS=${2:?}; shift 2 ;;
    *) common_option "$@"; shift "$OPT_N" ;;
  esac
done

check_positive MESSAGES SESSIONS SIZE ROUNDS
[ "$SESSIONS" -le 254 ] || die "at most 254 sessions (one 127.0.1.x address each)"
[ "$SIZE" -ge 2 ] || die "SIZE must be at least 2"
case "$HASH" in yescrypt) HASH_PREFIX="\$y\$" ;; sha512) HASH_PREFIX="\$6\$" ;;
  *) die "-H: yescrypt or sha512" ;; esac
command -v openssl >/dev/null || die "openssl is required"
[ -x "$PY" ] || die "python3 not found at $PY"

[ "$RUN_PETREL" = 1 ] && check_petreld
if [ "$RUN_POSTFIX" = 1 ]; then
  if [ ! -x "$DOVECOT" ]; then
    say "Dovecot (dovecot-core) is not installed: skipping the Postfix comparison"; RUN_POSTFIX=0
  elif ! check_postfix dovecot "$PF_MAIL_USER"; then
    RUN_POSTFIX=0
  fi
fi
[ "$RUN_PETREL" = 1 ] || [ "$RUN_POSTFIX" = 1 ] || die "nothing to run"

# ---------------------------------------------------------------------------
# clean-up: every server we start, by its PID (Postfix and Dovecot: every
# process in their master's session)

DV_CONF=""; DV_MASTER_PID=""

dovecot_stop() {
  [ -n "$DV_MASTER_PID" ] || return 0
  kill -TERM "$DV_MASTER_PID" 2>/dev/null
  if ! wait_session_empty "$DV_MASTER_PID" 100; then
    say "Dovecot did not stop in 10 s; killing what is left"
    kill_session "$DV_MASTER_PID"
  fi
  DV_MASTER_PID=""; DV_CONF=""
}

cleanup() {
  petrel_stop
  pf_stop
  dovecot_stop
  tmpdirs_cleanup
}
set_traps

mktmp() {  # mktmp NAME: a temp dir in $MKTMP that every server can traverse
  tmpdir_new "$1"
  chmod 755 "$MKTMP"
}

# CPU clock ticks (utime + stime + cutime + cstime) of one PID, or of every
# process in session SID.  Children that exited and were reaped count in
# their parent's cutime/cstime, so the difference of two snapshots is the
# CPU the whole session spent in between.
cpu_pid() { local u s cu cs; read -r u s cu cs < <(proc_ticks "$1"); echo $((u + s + cu + cs)); }
cpu_sid() {
  local p t=0
  for p in $(session_pids "$1"); do t=$((t + $(cpu_pid "$p"))); done
  echo "$t"
}

# check_ids DIR TAG N: each Message-ID <TAG.K@bench.client>, K < N, is in
# exactly one file; prints "files missing duplicated"
check_ids() {
  "$PY" -c 'import os, re, sys
d, tag, n = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
rx = re.compile(rb"^Message-ID: <" + re.escape(tag) + rb"\.(\d+)@bench\.client>", re.M | re.I)
seen = [0] * n
files = 0
for e in os.scandir(d):
    files += 1
    with open(e.path, "rb") as f:
        head = f.read(8192).split(b"\n\n", 1)[0].replace(b"\r\n", b"\n")
    for m in rx.finditer(head):
        k = int(m.group(1))
        if k < n:
            seen[k] += 1
print(files, sum(1 for c in seen if c == 0), sum(1 for c in seen if c > 1))' "$1" "$2" "$3"
}

jget() { "$PY" -c 'import json, sys; v = json.loads(sys.argv[1]).get(sys.argv[2]); print(" ".join(v) if isinstance(v, list) else v)' "$1" "$2"; }

# ---------------------------------------------------------------------------
# what both servers share: key pair, password, its hash

SEC=""
make_secrets() {
  mktmp secrets; SEC=$MKTMP
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$SEC/key.pem" -out "$SEC/cert.pem" \
    -days 2 -subj "/CN=bench.localhost" >/dev/null 2>&1 || die "openssl req failed"
  chmod 644 "$SEC/key.pem"        # the private Postfix's smtpd reads it as postfix
  "$PY" -c 'import secrets; print(secrets.token_urlsafe(18))' >"$SEC/password"
  HASHED=$("$PY" -c 'import ctypes, ctypes.util, sys
lib = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
lib.crypt_gensalt.restype = ctypes.c_char_p
lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
lib.crypt.restype = ctypes.c_char_p
lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
setting = lib.crypt_gensalt(sys.argv[1].encode(), 0, None, 0)
out = setting and lib.crypt(open(sys.argv[2]).read().rstrip("\n").encode(), setting)
if not out or out.startswith(b"*"):
    sys.exit("libcrypt cannot make %s hashes" % sys.argv[1])
print(out.decode())' "$HASH_PREFIX" "$SEC/password") || die "cannot hash the password"
}

# ---------------------------------------------------------------------------
# one measured run: R_* results, R_ERR on failure

R_ACC=""; R_DEL=""; R_CPU=""; R_CPU2=""; R_GEN=""; R_TLS=""; R_ERR=""; R_FILES=""

# measure PORT NEWDIR TAG LOG CPUFN ARG [CPUFN2 ARG2]
measure() {
  local port=$1 newdir=$2 tag=$3 log=$4 cpufn=$5 arg=$6 cpufn2=${7:-} arg2=${8:-}
  local c0 c1 d0=0 d1=0 out rc t0 wall ids files missing dup
  c0=$($cpufn "$arg")
  [ -n "$cpufn2" ] && d0=$($cpufn2 "$arg2")
  out=$("$PY" "$LOAD" --port "$port" -n "$MESSAGES" -s "$SESSIONS" -z "$SIZE" \
        --user "$LOGIN" --password-file "$SEC/password" --sender "$SENDER" --rcpt "$RCPT" \
        --tag "$tag" 2>>"$log")
  rc=$?
  echo "load: $out" >>"$log"
  if [ -z "$out" ]; then R_ERR="the load generator failed (exit $rc; see $log)"; return 1; fi
  if [ "$rc" != 0 ]; then
    R_ERR="$(jget "$out" ok) of $MESSAGES messages accepted, $(jget "$out" errors) errors; first: $(jget "$out" first_errors | cut -c1-300)"
    return 1
  fi
  t0=$(jget "$out" t0); wall=$(jget "$out" wall_s)
  R_ACC=$(fdiv "$MESSAGES" "$wall")
  R_GEN="$(fdiv "$(jget "$out" cpu_s)" "$MESSAGES" 4) $(jget "$out" cpu_cores)"
  R_TLS=$(jget "$out" tls)
  wait_arrival maildir "$newdir" "$MESSAGES" "$t0" $((60 + MESSAGES / 10)); rc=$?
  c1=$($cpufn "$arg")
  [ -n "$cpufn2" ] && d1=$($cpufn2 "$arg2")
  [ "$rc" = 0 ] || return 1
  R_DEL=$(fdiv "$MESSAGES" "$R_ARR_S")
  R_CPU=$(ms_per_msg $((c1 - c0)) "$MESSAGES" 2)
  R_CPU2=$(ms_per_msg $((d1 - d0)) "$MESSAGES" 2)
  sleep 1          # late duplicates
  ids=$(check_ids "$newdir" "$tag" "$MESSAGES")
  read -r files missing dup <<<"$ids"
  R_FILES=$files
  if [ "$files" != "$MESSAGES" ] || [ "$missing" != 0 ] || [ "$dup" != 0 ]; then
    R_ERR="$files files for $MESSAGES messages: $missing missing, $dup duplicated"; return 1
  fi
  return 0
}

# ---------------------------------------------------------------------------
# petrel: one msa listener, STARTTLS, AUTH, maildir

bench_petrel() {
  local tmp port conf log
  mktmp petrel; tmp=$MKTMP
  port=$(free_port) || { R_ERR="no free port"; return 1; }
  conf=$tmp/petrel.conf; log=$tmp/petreld.log
  mkdir -p "$tmp/spool" "$tmp/mail"
  echo "$LOGIN:$HASHED" >"$tmp/passwd"
  petrel_conf "$conf" "$tmp" "$port" 'stage = "msa"; tls = "starttls"; auth = true;' \
    "tls_cert_file = \"$SEC/cert.pem\";
tls_key_file = \"$SEC/key.pem\";
auth_passwords = \"$tmp/passwd\";" ""
  petrel_start "$conf" "$log" "$port" msa mta maildir router || return 1
  local ok=0
  measure "$port" "$tmp/mail/localhost/user/new" petrel "$tmp/load.log" cpu_pid "$PETREL_PID" || ok=1
  if ! kill -0 "$PETREL_PID" 2>/dev/null; then
    R_ERR="${R_ERR:+$R_ERR; }petreld died during the run (log: $log)"; ok=1
  fi
  [ "$ok" = 0 ] || petrel_log_tail "$log"
  petrel_stop
  return "$ok"
}

# ---------------------------------------------------------------------------
# Postfix: a private instance (as bench.sh's) whose one smtpd is a
# submission service; SASL from a private Dovecot auth service

bench_postfix() {
  local tmp port etc uid gid dv
  mktmp postfix; tmp=$MKTMP
  port=$(free_port) || { R_ERR="no free port"; return 1; }
  etc=$tmp/etc; dv=$tmp/dovecot
  uid=$(id -u "$PF_MAIL_USER"); gid=$(id -g "$PF_MAIL_USER")
  mkdir -p "$dv/run" "$dv/state"

  # Dovecot: auth only (no protocols), its sockets and state in $dv, a
  # passwd-file passdb/userdb with the same user and hash as petrel's.
  echo "$LOGIN:{CRYPT}$HASHED:$uid:$gid::/nonexistent::" >"$dv/users"
  chmod 640 "$dv/users"; chgrp dovecot "$dv/users"
  DV_CONF=$dv/dovecot.conf
  cat >"$DV_CONF" <<EOF
base_dir = $dv/run
state_dir = $dv/state
instance_name = petrel-bench-dovecot
protocols =
listen = 127.0.0.1
ssl = no
log_path = $dv/dovecot.log
auth_mechanisms = plain
# Postfix offers AUTH only under TLS (smtpd_tls_auth_only); the clients
# come from 127.0.1.x, which Dovecot would not count as secure
disable_plaintext_auth = no
passdb {
  driver = passwd-file
  args = $dv/users
}
userdb {
  driver = passwd-file
  args = $dv/users
}
service auth {
  unix_listener $dv/auth-postfix {
    mode = 0660
    user = postfix
    group = postfix
  }
}
EOF
  if ! "$DOVECOT" -c "$DV_CONF" >>"$dv/start.out" 2>&1; then
    R_ERR="dovecot did not start: $(tail -n 3 "$dv/start.out")"; DV_CONF=""; return 1
  fi
  local i
  for ((i = 0; i < 100; i++)); do
    [ -S "$dv/auth-postfix" ] && [ -s "$dv/run/master.pid" ] && break
    sleep 0.1
  done
  DV_MASTER_PID=$(tr -dc 0-9 <"$dv/run/master.pid" 2>/dev/null)
  if [ ! -S "$dv/auth-postfix" ] || [ -z "$DV_MASTER_PID" ]; then
    R_ERR="dovecot made no auth socket (log: $dv/dovecot.log)"; dovecot_stop; return 1
  fi

  # lib.sh's confined instance delivering to the local Maildir (as
  # bench.sh's), plus what a submission service sets: TLS required, AUTH
  # only under TLS, SASL via Dovecot, only logged-in clients, the sender
  # must belong to the login (as petrel's msa checks).
  pf_config "$etc" "$tmp" "$port" $(( SESSIONS + 10 > 100 ? SESSIONS + 10 : 100 ))
  pf_local_maildir "$etc" "$tmp" "$uid" "$gid"
  cat >>"$etc/main.cf" <<EOF
# submission
smtpd_tls_security_level = encrypt
smtpd_tls_cert_file = $SEC/cert.pem
smtpd_tls_key_file = $SEC/key.pem
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = $dv/auth-postfix
smtpd_client_restrictions = permit_sasl_authenticated, reject
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_sender_login_maps = inline:{$SENDER=$LOGIN}
smtpd_sender_restrictions = reject_sender_login_mismatch
EOF
  echo "tlsmgr           unix  -       -      n      1000?  1       tlsmgr" >>"$etc/master.cf"
  pf_start "$etc" "$tmp" "$port" || { dovecot_stop; return 1; }
  local ok=0
  measure "$port" "$tmp/mail/localhost/user/new" postfix "$tmp/load.log" \
    cpu_sid "$PF_MASTER_PID" cpu_sid "$DV_MASTER_PID" || ok=1
  if [ "$ok" != 0 ]; then
    pf_log_errors "$tmp"
    grep -iE 'error|fatal|warning' "$dv/dovecot.log" 2>/dev/null | tail -n 5 | sed 's/^/  dovecot: /' >&2
  fi
  pf_stop
  dovecot_stop
  return "$ok"
}

# ---------------------------------------------------------------------------
# driver

make_secrets
ROWS=(); ERRS=(); RATIOS=(); FAIL=0
for ((round = 1; round <= ROUNDS; round++)); do
  PA=""; PD=""; FA=""; FD=""
  for srv in petrel postfix; do
    if [ "$srv" = petrel ]; then [ "$RUN_PETREL" = 1 ] || continue; fi
    if [ "$srv" = postfix ]; then [ "$RUN_POSTFIX" = 1 ] || continue; fi
    R_ACC=""; R_DEL=""; R_CPU=""; R_CPU2=""; R_GEN=""; R_TLS=""; R_ERR=""; R_FILES=""
    la=$(cut -d' ' -f1 /proc/loadavg)
    say "round $round, $srv: $MESSAGES messages, $SESSIONS sessions, $SIZE bytes, $HASH (load $la) ..."
    if "bench_$srv"; then
      say "$srv: $R_ACC accepted/s, $R_DEL delivered/s ($R_TLS)"
      if [ "$srv" = petrel ]; then
        ROWS+=("$round petrel $R_ACC $R_DEL $R_CPU - $R_GEN $la $R_FILES ok")
        PA=$R_ACC; PD=$R_DEL
      else
        ROWS+=("$round postfix $R_ACC $R_DEL $(awk -v a="$R_CPU" -v b="$R_CPU2" 'BEGIN{printf "%.2f", a + b}') $R_CPU2 $R_GEN $la $R_FILES ok")
        FA=$R_ACC; FD=$R_DEL
      fi
      TLS_SEEN=$R_TLS
    else
      FAIL=1
      say "$srv: FAILED: $R_ERR"
      ROWS+=("$round $srv - - - - - - $la ${R_FILES:--} FAILED")
      ERRS+=("round $round, $srv: $R_ERR")
    fi
  done
  if [ -n "$PA" ] && [ -n "$FA" ]; then
    RATIOS+=("round $round: accepted $(fdiv "$PA" "$FA" 2)x, delivered $(fdiv "$PD" "$FD" 2)x")
  fi
done

echo
echo "submission benchmark: $(date -u '+%Y-%m-%d %H:%M:%SZ')  $(uname -sr)  $(nproc) cpus"
echo "load: $MESSAGES messages x $SIZE bytes, $SESSIONS client processes, one message per connection:"
echo "  EHLO, STARTTLS, EHLO, AUTH PLAIN ($HASH hash), MAIL, RCPT, DATA, QUIT${TLS_SEEN:+; $TLS_SEEN}"
echo
ROW_FMT='%-5s %-8s %10s %11s %10s %10s %10s %9s %7s %6s %7s\n'
row round server accepted/s delivered/s cpu_ms/msg sasl_ms gen_ms/msg gen_cores loadavg files status
for r in "${ROWS[@]}"; do
  read -r rd srv acc del cpu sasl gen cores la files st <<<"$r"
  [ "$gen" = - ] || gen=$(awk -v g="$gen" 'BEGIN { printf "%.2f", g * 1000 }')
  row "$rd" "$srv" "$acc" "$del" "$cpu" "$sasl" "$gen" "$cores" "$la" "$files" "$st"
done
echo
for r in "${RATIOS[@]+"${RATIOS[@]}"}"; do echo "petrel/Postfix $r"; done
cat <<EOF
cpu_ms/msg: the server's CPU (user + system) per message from the start of the load
  until the last delivery, from /proc: petreld's own; for Postfix every process
  in master(8)'s session plus the Dovecot instance's, sasl_ms = Dovecot's share.
gen_ms/msg, gen_cores: the load generator's own CPU (its $SESSIONS processes).
loadavg: the 1-minute load average when the run started (the machine is shared).
EOF
for e in "${ERRS[@]+"${ERRS[@]}"}"; do echo "FAILED: $e"; done
if [ "$FAIL" != 0 ]; then
  echo "NOT OK: at least one run failed or did not deliver each message exactly once"
  exit 1
fi
exit 0
