#!/bin/sh
# test-summary.sh BUILDDIR... - count test cases from automake's .trs files
# and print "N passed, M failed" (skips noted), listing what failed.
pass=0; fail=0; skip=0
for b in "$@"; do
  for t in $(find "$b/tests" -name '*.trs' 2>/dev/null); do
    p=$(grep -c '^:test-result: \(PASS\|XFAIL\)' "$t")
    f=$(grep -c '^:test-result: \(FAIL\|XPASS\|ERROR\)' "$t")
    s=$(grep -c '^:test-result: SKIP' "$t")
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    if [ "$f" -gt 0 ]; then
      # each failed case with the diagnostics that follow it (the
      # traceback, the daemon's last log lines), so that a CI log that
      # keeps only its head and tail still says why
      echo "FAILED in ${t%.trs}.log:"
      awk '/^(not ok|ERROR)/ { on = 1; print; next }
           on && /^# / { print; next }
           { on = 0 }' "${t%.trs}.log" | head -80
    fi
  done
done
echo "$pass passed, $fail failed, $skip skipped"
