#!/bin/sh
# fuzz.sh BUILDDIR [SECONDS] [HARNESS...] - run each libFuzzer harness for
# SECONDS (default 20) on its seed corpus tests/fuzz/corpus/NAME/ and
# print what it found.  A harness gets -dict= when tests/fuzz/NAME.dict
# exists, or the shared dictionary mapped to it below (session and
# smtp-parse: smtp.dict).
#
# Invariants: the corpus in the tree is only read (new inputs go to a
# temporary work corpus, removed at the end; crashes are kept in
# BUILDDIR/tests/fuzz/findings/NAME/); each harness writes
# BUILDDIR/tests/fuzz/NAME.trs with one :test-result: line, PASS (no
# finding), FAIL (a finding, or a harness that does not compile where
# configure found libFuzzer) or SKIP (no libFuzzer: configure found no
# clang), so tools/test-summary.sh counts them.  Exit status 1 if any
# harness found something.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
b=${1:?usage: fuzz.sh BUILDDIR [SECONDS] [HARNESS...]}
secs=${2:-20}
[ $# -ge 2 ] && shift 2 || shift $#
all="smtp-parse mime msg-edit maildir-copy spool-envelope bounce smtp-reply session"
[ $# -gt 0 ] && all="$*"
mkdir -p "$b/tests/fuzz"
trs() { printf ':test-result: %s\n:global-test-result: %s\n:recheck: no\n:copy-in-global-log: no\n' "$2" "$2" > "$b/tests/fuzz/$1.trs"; }
if ! make -s -C "$b" fuzz >"$b/tests/fuzz/build.log" 2>&1; then
  # configure found libFuzzer, so a harness that does not compile is a
  # broken harness (an API it calls changed), not a missing compiler: FAIL
  if grep -q '^HAVE_FUZZER = yes' "$b/Makefile" 2>/dev/null; then
    echo "fuzz: FAILED: the harnesses do not build, though configure found libFuzzer:"
    grep -m5 'error' "$b/tests/fuzz/build.log" | sed 's/^/fuzz:   /'
    for h in $all; do trs "$h" FAIL; cp "$b/tests/fuzz/build.log" "$b/tests/fuzz/$h.log"; done
    exit 1
  fi
  echo "fuzz: SKIPPED: the harnesses do not build here (no clang with libFuzzer?):"
  tail -3 "$b/tests/fuzz/build.log" | sed 's/^/fuzz:   /'
  for h in $all; do trs "$h" SKIP; echo "fuzz: $h: skipped" > "$b/tests/fuzz/$h.log"; done
  exit 0
fi
st=0
work=$(mktemp -d "${TMPDIR:-/tmp}/petrel-fuzzsh-XXXXXX")
trap 'rm -rf "$work"' EXIT
for h in $all; do
  seeds="$top/tests/fuzz/corpus/$h"
  out="$b/tests/fuzz/findings/$h"
  mkdir -p "$work/$h" "$out"
  # a dictionary: tests/fuzz/NAME.dict, or a shared one named here
  case $h in
    session|smtp-parse) d=smtp ;;
    *) d=$h ;;
  esac
  dict=""
  [ -f "$top/tests/fuzz/$d.dict" ] && dict="-dict=$top/tests/fuzz/$d.dict"
  log="$b/tests/fuzz/$h.log"
  "$b/tests/fuzz/fuzz-$h" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 \
    -print_final_stats=1 -artifact_prefix="$out/" $dict "$work/$h" "$seeds" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  n=$(ls "$work/$h" | wc -l)
  if [ $rc -eq 0 ]; then
    trs "$h" PASS
    echo "fuzz: $h: ${secs}s, ${execs:-?} execs, $cov, $n new inputs, no finding"
  else
    trs "$h" FAIL; st=1
    echo "fuzz: $h: FINDING (exit $rc), saved in $out:"
    ls "$out" | sed 's/^/fuzz:   /'
    grep -m3 'invariant broken\|ERROR: \|SUMMARY' "$log" | sed 's/^/fuzz:   /'
  fi
done
exit $st
