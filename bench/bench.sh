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
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BENCH_TMP_PREFIX=petrel-bench

MESSAGES=10000
REGEX_RULES=0    # -r N: run petrel with the regex filter and N generated rules
MATRIX=0
REUSE=1          # smtp-source -d: several messages per SMTP session
FRESH_FS=0       # --fresh-fs: each server run on a newly made ext4 (root, loop device)
N_SET=0

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
    -r) REGEX_RULES=${2:?}; shift 2 ;;
    --matrix) MATRIX=1; shift ;;
    --reconnect) REUSE=0; shift ;;
    --fresh-fs) FRESH_FS=1; shift ;;
    *) common_option "$@"; shift "$OPT_N" ;;
  esac
done

check_positive MESSAGES SESSIONS SIZE

command -v python3 >/dev/null || die "python3 is required"
[ -x "$SMTP_SOURCE" ] || die "smtp-source not found at $SMTP_SOURCE (Debian package postfix)"

[ "$RUN_PETREL" = 1 ] && check_petreld
[ "$RUN_POSTFIX" = 1 ] && { check_postfix "$PF_MAIL_USER" || RUN_POSTFIX=0; }

[ "$RUN_PETREL" = 1 ] || [ "$RUN_POSTFIX" = 1 ] || die "nothing to run"

# ---------------------------------------------------------------------------
# clean-up: lib.sh's servers and temp dirs, and --fresh-fs's mounts

MOUNTS=()        # --fresh-fs: loop filesystems mounted on temp dirs

cleanup() {
  petrel_stop
  pf_stop
  local m
  for m in "${MOUNTS[@]+"${MOUNTS[@]}"}"; do
    if [ "$KEEP" = 1 ]; then say "kept mounted: $m ($m.img)"; continue; fi
    fresh_fs_umount "$m"
  done
  tmpdirs_cleanup
}
set_traps

# Results of the last bench_* call (run_load's R_ACC_S, R_ARR_S, R_COUNT)
R_ACC_S=""; R_ARR_S=""; R_COUNT=""; R_ERR=""

# mktmp NAME: tmpdir_new, and with --fresh-fs a new ext4 mounted on it
mktmp() {
  tmpdir_new "$1"
  if [ "$FRESH_FS" = 1 ]; then
    # The runs before this one are over: their filesystems go now, and
    # what they left dirty is written back before this run starts, or
    # that write-back would compete with this run (1 GB at 100 KiB).
    if [ "$KEEP" != 1 ] && [ ${#MOUNTS[@]} -gt 0 ]; then
      local m
      for m in "${MOUNTS[@]}"; do fresh_fs_umount "$m"; done
      MOUNTS=()
    fi
    # a new ext4 (mkfs defaults: with a journal) for this run alone, so no
    # run pays for the inodes an earlier run created and deleted
    fresh_fs_mount "$MKTMP"
    MOUNTS+=("$MKTMP")
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
  local filters="" regex=""
  if [ "$REGEX_RULES" -gt 0 ]; then
    python3 "$TOP/modules/regex/gen-rules.py" "$REGEX_RULES" >"$tmp/regex.rules"
    filters='filters = [ "regex" ];'
    regex="regex = { rules = \"$tmp/regex.rules\"; };"
  fi
  petrel_conf "$conf" "$tmp" "$port" 'stage = "mta";' "$filters" "$regex"
  petrel_start "$conf" "$log" "$port" mta maildir router regex || return 1
  local ok=0
  run_load "$port" "$n" "$s" "$z" "$tmp/smtp-source.log" user@localhost \
    maildir "$tmp/mail/localhost/user/new" || ok=1
  if ! kill -0 "$PETREL_PID" 2>/dev/null; then
    R_ERR="${R_ERR:+$R_ERR; }petreld died during the run (log: $log)"
    ok=1
  fi
  [ "$ok" = 0 ] || petrel_log_tail "$log"
  petrel_stop
  return "$ok"
}

# ---------------------------------------------------------------------------
# Postfix: a private instance with its own config and queue directory.

bench_postfix() {
  local n=$1 s=$2 z=$3 tmp port etc
  mktmp postfix; tmp=$MKTMP
  chmod 755 "$tmp"     # postfix and the Maildir owner must traverse it
  port=$(free_port) || { R_ERR="no free port"; return 1; }
  etc=$tmp/etc
  # lib.sh's confined instance, delivering to the local Maildir only
  pf_config "$etc" "$tmp" "$port" $(( s + 10 > 100 ? s + 10 : 100 ))
  pf_local_maildir "$etc" "$tmp" "$(id -u "$PF_MAIL_USER")" "$(id -g "$PF_MAIL_USER")"
  pf_start "$etc" "$tmp" "$port" || return 1
  local ok=0
  run_load "$port" "$n" "$s" "$z" "$tmp/smtp-source.log" user@localhost \
    maildir "$tmp/mail/localhost/user/new" || ok=1
  [ "$ok" = 0 ] || pf_log_errors "$tmp"
  pf_stop
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
    R_ACC_S=""; R_ARR_S=""; R_COUNT=""; R_ERR=""
    say "$srv: messages=$n sessions=$s size=$z ..."
    if "bench_$srv" "$n" "$s" "$z"; then
      ROWS+=("$srv $n $s $z $R_ACC_S $R_ARR_S $R_COUNT ok")
      say "$srv: accepted in ${R_ACC_S}s, delivered in ${R_ARR_S}s, $R_COUNT files"
      if [ "$srv" = petrel ]; then pa=$R_ACC_S; pd=$R_ARR_S; else fa=$R_ACC_S; fd=$R_ARR_S; fi
    else
      FAIL=1
      say "$srv: FAILED: $R_ERR"
      ROWS+=("$srv $n $s $z - - ${R_COUNT:--} FAILED")
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
ROW_FMT='%-8s %9s %9s %9s %10s %11s %12s %10s\n'
row server messages sessions size accepted/s delivered/s files-in-new status
for r in "${ROWS[@]}"; do
  read -r srv n s z acc del files st <<<"$r"
  if [ "$st" = ok ]; then
    row "$srv" "$n" "$s" "$z" "$(fdiv "$n" "$acc")" "$(fdiv "$n" "$del")" "$files" ok
  else
    row "$srv" "$n" "$s" "$z" - - "$files" FAILED
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
finish "at least one run failed or did not deliver exactly the number of messages sent"
